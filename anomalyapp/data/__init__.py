"""Images, datasets and the demo production line on disk. Imports ``anomalyapp.core`` only; no torch, no Qt."""
