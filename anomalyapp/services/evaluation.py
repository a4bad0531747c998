"""Evaluation use case: a model against a folder with ground truth (MVTec layout)."""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np

from anomalyapp.core.cancel import CancelToken, check
from anomalyapp.core.errors import DataError
from anomalyapp.core.types import Progress
from anomalyapp.data.datasets import discover_dataset, pixel_truth
from anomalyapp.engine import metrics
from anomalyapp.services.inference import InferenceSession


def evaluate(
    session: InferenceSession, data: str | os.PathLike, cancel: CancelToken | None = None
) -> Generator[Progress, None, dict]:
    """Score the test split of ``data``; returns image and pixel metrics and those at the model's threshold.

    Scores are the normalised ones (threshold 0.5). Pixel metrics use the images that have pixel truth:
    every good image, and defective images with a mask.
    """
    dataset = discover_dataset(data)
    if not dataset.test:
        raise DataError(f"{data} has no test images (expected test/good and test/<defect> folders)")
    labels, scores, masks, maps, rows, skipped = [], [], [], [], [], []
    started = time.perf_counter()
    for index, item in enumerate(dataset.test):
        check(cancel)
        result = session.predict_path(item.path)
        if not result.ok:
            skipped.append(str(result.error))
            yield Progress("warning", index, None, f"skipped {result.error}")
            continue
        prediction = result.prediction
        labels.append(int(item.is_anomalous))
        scores.append(prediction.score)
        rows.append({"path": str(item.path), "defect_type": item.defect_type, "score": prediction.score})
        truth = pixel_truth(item, prediction.anomaly_map.shape)
        if truth is not None:
            masks.append(truth)
            maps.append(prediction.anomaly_map)
        yield Progress("evaluate", index + 1, len(dataset.test), f"{item.path.name}: {prediction.verdict}")
    seconds = time.perf_counter() - started
    labels_array, scores_array = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    threshold = 0.5
    result = {
        "model": str(session.model_path),
        "data": str(Path(data)),
        "images": len(labels),
        "anomalous": int(labels_array.sum()),
        "skipped": skipped,
        "threshold": threshold,
        "threshold_raw": session.calibration.image_threshold,
        "seconds_per_image": seconds / max(1, len(labels)),
    }
    both_classes = 0 < labels_array.sum() < len(labels_array)
    result["image_auroc"] = metrics.auroc(labels_array, scores_array) if both_classes else None
    if both_classes:
        best_f1, best_threshold = metrics.f1_max(labels_array, scores_array)
        result["f1_max"], result["f1_max_threshold"] = best_f1, best_threshold
    else:
        result["f1_max"], result["f1_max_threshold"] = None, None
    yield Progress("metrics", 0, None, "pixel metrics")
    has_defect_pixels = any(mask.any() for mask in masks) and any((~mask).any() for mask in masks)
    result["pixel_auroc"] = metrics.pixel_auroc(masks, maps) if has_defect_pixels else None
    result["aupro"] = metrics.aupro(masks, maps, fpr_limit=0.3) if has_defect_pixels else None
    result |= metrics.threshold_metrics(labels_array, scores_array, threshold)
    result["per_image"] = rows
    return result
