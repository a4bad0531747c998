"""Thin Qt widgets that show view-model state and emit intent signals."""
