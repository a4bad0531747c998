"""anomalyapp: offline visual inspection trained on good images only."""

__version__ = "0.1.0"
