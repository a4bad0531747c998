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
    # Seconds a station will take to inspect one part with the model this training makes: reading the image,
    # features, the detector's search or network, the map; timed on the real scoring path with a stand-in of the
    # model's size (``time_inspection``). None where the detector does not say.
    inspect_seconds: float | None = None


def time_features(features: Callable[[list[np.ndarray]], torch.Tensor], images: list[np.ndarray], size: int,
                  keep_aspect: bool) -> tuple[list[torch.Tensor], float]:
    """The features of ``images`` (one tensor per batch of one input shape) and the seconds they took per image."""
    features(images[:1])  # warm-up: first calls pay for allocations
    started = time.perf_counter()
    parts = [features(batch) for batch in batched(images, key=input_shape_key(size, keep_aspect))]
    return parts, (time.perf_counter() - started) / len(images)


# Sample images an inspection estimate is timed on, after one warm-up run (which builds the search's tables).
INSPECTION_TIMED = 3


def largest_first(images: list[np.ndarray]) -> list[int]:
    """The positions of ``images`` by decreasing pixel count: a folder of mixed sizes is quoted at its larger parts."""
    return sorted(range(len(images)), key=lambda index: images[index].shape[0] * images[index].shape[1], reverse=True)


def time_inspection(raw_predict: Callable[[list[np.ndarray]], object], images: list[np.ndarray],
                    read_seconds: float) -> float:
    """Seconds to read and score one part: the median of ``raw_predict`` on up to ``INSPECTION_TIMED`` of
    ``images``, the largest first, one at a time as a station scores them, plus the read."""
    ordered = [images[index] for index in largest_first(images)]
    raw_predict(ordered[:1])
    timed = []
    for image in ordered[:INSPECTION_TIMED]:
        started = time.perf_counter()
        raw_predict([image])
        timed.append(time.perf_counter() - started)
    return read_seconds + float(np.median(timed))


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
