"""What a training will cost, measured on a few images before committing to the whole run."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from anomalyapp.core.config import CalibrationConfig
from anomalyapp.engine.preprocessing import batched, input_shape_key

# Held-out images scored per fitted image, by default: 20 % of the good images are held out, a quarter of the rest.
HELD_OUT_PER_FITTED = CalibrationConfig.holdout_fraction / (1 - CalibrationConfig.holdout_fraction)


@dataclass(frozen=True)
class TrainingCost:
    seconds: float
    memory_mb: float
    per_image_seconds: float
    bank_size: int | None = None  # the memory bank's size, for detectors that keep one
    tiles_per_image: int = 1  # views each image is cut into (engine.framing); per_image_seconds covers them all
    # ``seconds`` split by the stages the training reports progress under, in the order it runs them:
    # ((stage, seconds), ...). The window's time left weighs the stages still to come with it
    # (core.remaining_time); empty for a detector that does not split its cost.
    stages: tuple[tuple[str, float], ...] = ()


def time_features(features: Callable[[list[np.ndarray]], torch.Tensor], images: list[np.ndarray], size: int,
                  keep_aspect: bool) -> tuple[list[torch.Tensor], float]:
    """The features of ``images`` (one tensor per batch of one input shape) and the seconds they took per image."""
    features(images[:1])  # warm-up: first calls pay for allocations
    started = time.perf_counter()
    parts = [features(batch) for batch in batched(images, key=input_shape_key(size, keep_aspect))]
    return parts, (time.perf_counter() - started) / len(images)


def peak_memory_mb() -> float | None:
    """This process's peak resident memory so far, in MB; None where the platform does not say.

    What a training estimate starts from: the network, the libraries and whatever the process holds already.
    """
    try:
        import resource
    except ImportError:  # Windows: the peak working set
        try:
            import psutil

            return psutil.Process().memory_info().peak_wset / 2**20
        except (ImportError, AttributeError):
            return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KB on Linux
