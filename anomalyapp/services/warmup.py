"""Loading the engine ahead of time, for front ends that must not freeze on first use."""

from __future__ import annotations


def import_engine() -> None:
    """Import torch, faiss and the engine modules the use cases load lazily (about 0.35 s)."""
    import anomalyapp.engine.bundle  # noqa: F401  (torch, faiss, safetensors)
    import anomalyapp.engine.detector  # noqa: F401
    import anomalyapp.engine.metrics  # noqa: F401
