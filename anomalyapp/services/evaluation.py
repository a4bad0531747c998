"""Evaluation use case: a model against a folder with ground truth (MVTec layout)."""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np

from anomalyapp.core.cancel import CancelToken, check
from anomalyapp.core.errors import AppError, DataError
from anomalyapp.core.types import Progress
from anomalyapp.core.verdicts import NORMALISED_THRESHOLD
from anomalyapp.data.datasets import discover_dataset, pixel_truth
from anomalyapp.engine import metrics
from anomalyapp.services.inference import InferenceSession

# False-reject rates at which the recall the scores allow is reported.
REPORTED_FALSE_REJECT_RATES = (0.01, 0.05)


def recall_at_false_reject_rate(labels, scores, rate: float) -> float | None:
    """Share of defective images judged NG at the lowest threshold that judges at most ``rate`` of the good NG.

    The threshold sits just above the (m+1)-th highest good score, m = floor(rate * good images); ties with
    it stay OK. None without both classes.
    """
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    good, defective = np.sort(scores[~labels])[::-1], scores[labels]
    if good.size == 0 or defective.size == 0:
        return None
    allowed = int(np.floor(rate * good.size + 1e-9))
    if allowed >= good.size:
        return 1.0
    return float(np.mean(defective > good[allowed]))


def false_reject_metrics(labels, scores, threshold: float) -> dict:
    """The threshold's false-reject rate and recall, and the recall the same scores allow at set rates."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    judged_ng = scores >= threshold
    reached = float(judged_ng[~labels].mean()) if (~labels).any() else None
    return {
        "false_reject_rate": reached,
        "recall": float(judged_ng[labels].mean()) if labels.any() else None,
        "recall_at_false_reject_rate": {
            f"{rate:g}": recall_at_false_reject_rate(labels, scores, rate) for rate in REPORTED_FALSE_REJECT_RATES
        },
        "recall_at_reached_false_reject_rate": (
            recall_at_false_reject_rate(labels, scores, reached) if reached is not None else None
        ),
    }


def images_the_model_learnt_from(manifest) -> dict[Path, str]:
    """The images a model learnt from, resolved, each with how: "training" (the good images of its training folder,
    as the folder is now, when it is still there) or "taught" (marked good since, by a false-positive fix). An
    evaluation that scores them flatters the model: the fix taught it exactly those images."""
    learnt: dict[Path, str] = {}
    root = manifest.training_set.get("root")
    if root:
        try:
            learnt |= {path.resolve(): "training" for path in discover_dataset(root).train_good}
        except (AppError, OSError):
            pass  # the training images are not here: nothing to compare with
    learnt |= {Path(path).resolve(): "taught" for path in manifest.training_set.get("added_good_images", ())}
    return learnt


def false_rejects_against_expected(calibration, labels, scores, threshold: float) -> dict | None:
    """How many good images ``threshold`` judges NG, against the 90 % interval the calibration expected for a
    batch of that many new good parts (``Calibration.expected_false_reject_count``): whether this set's good
    images behave as the calibration said new ones would. None without good images or a tail model."""
    good = np.asarray(scores, dtype=np.float64)[~np.asarray(labels, dtype=bool)]
    if good.size == 0:
        return None
    expected = calibration.expected_false_reject_count(threshold, int(good.size))
    if expected is None:
        return None
    judged_ng = int((good >= threshold).sum())
    return {"good_images": int(good.size), "judged_ng": judged_ng, "expected_low": expected[0],
            "expected_high": expected[1], "within": expected[0] <= judged_ng <= expected[1]}


def evaluate(
    session: InferenceSession,
    data: str | os.PathLike,
    cancel: CancelToken | None = None,
    threshold: float = NORMALISED_THRESHOLD,
) -> Generator[Progress, None, dict]:
    """Score the test split of ``data``; returns image and pixel metrics and those at ``threshold``.

    Scores are the normalised ones (the model's calibrated threshold is 0.5; pass the working threshold when
    a station uses another). Pixel metrics use the images that have pixel truth:
    every good image, and defective images with a mask. ``roc`` holds the image-level ROC curve
    (``fpr``, ``tpr`` lists; None with one class only).
    """
    if not np.isfinite(threshold) or threshold <= 0:
        raise DataError(f"threshold {threshold} must be a positive number (normalised; the calibrated one is 0.5)")
    dataset = discover_dataset(data)
    if not dataset.test:
        raise DataError(f"{data} has no test images (expected test/good and test/<defect> folders)")
    labels, scores, masks, maps, rows, skipped = [], [], [], [], [], []
    learnt = images_the_model_learnt_from(session.manifest)
    map_learnt: list[bool] = []  # beside masks and maps: whether the model learnt from that image
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
        rows.append({"path": str(item.path), "defect_type": item.defect_type, "score": prediction.score,
                     "learnt": learnt.get(item.path.resolve())})
        truth = pixel_truth(item, prediction.anomaly_map.shape)
        if truth is not None:
            masks.append(truth)
            maps.append(prediction.anomaly_map)
            map_learnt.append(bool(rows[-1]["learnt"]))
        yield Progress("evaluate", index + 1, len(dataset.test), f"{item.path.name}: {prediction.verdict}")
    seconds = time.perf_counter() - started
    labels_array, scores_array = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    result = {
        "model": str(session.model_path),
        "data": str(Path(data)),
        "images": len(labels),
        "anomalous": int(labels_array.sum()),
        "skipped": skipped,
        "threshold": threshold,
        "threshold_raw": threshold / NORMALISED_THRESHOLD * session.calibration.image_threshold,
        "calibrated_threshold_raw": session.calibration.image_threshold,
        "target_false_reject_rate": session.calibration.target_false_reject_rate,
        "expected_false_reject_rate": session.calibration.expected_false_rejects(threshold),
        "seconds_per_image": seconds / max(1, len(labels)),
    }
    both_classes = 0 < labels_array.sum() < len(labels_array)
    result["image_auroc"] = metrics.auroc(labels_array, scores_array) if both_classes else None
    # The curve for plotting, from the engine's one ROC (front ends draw it, they never recompute it).
    if both_classes:
        fpr, tpr, roc_thresholds = metrics.roc_curve(labels_array, scores_array)
        # Each point's threshold, so that a front end can list the images behind a point; the first point's
        # (+inf: nothing judged NG) is None, which JSON can hold.
        thresholds = [float(t) if np.isfinite(t) else None for t in roc_thresholds]
        result["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds}
    else:
        result["roc"] = None
    if both_classes:
        best_f1, best_threshold = metrics.f1_max(labels_array, scores_array)
        result["f1_max"], result["f1_max_threshold"] = best_f1, best_threshold
    else:
        result["f1_max"], result["f1_max_threshold"] = None, None
    yield Progress("metrics", 0, None, "pixel metrics")
    result |= _pixel_metrics(masks, maps)
    result |= metrics.threshold_metrics(labels_array, scores_array, threshold)
    result |= false_reject_metrics(labels_array, scores_array, threshold)
    result["false_rejects_against_expected"] = false_rejects_against_expected(
        session.calibration, labels_array, scores_array, threshold)
    result["per_image"] = rows
    # Evaluated images the model learnt from (a test image taught good from the review, a test folder that is the
    # training folder): named, so that nobody reads the metrics as those of unseen parts.
    result["learnt_images"] = [{"path": row["path"], "how": row["learnt"]} for row in rows if row["learnt"]]
    if result["learnt_images"]:
        yield Progress("metrics", 0, None, "the figures without the images the model learnt from")
        result["unseen"] = _unseen_metrics(rows, labels_array, scores_array, threshold) | _pixel_metrics(
            [mask for mask, seen in zip(masks, map_learnt) if not seen],
            [anomaly for anomaly, seen in zip(maps, map_learnt) if not seen])
    else:
        result["unseen"] = None
    return result


def _pixel_metrics(masks: list[np.ndarray], maps: list[np.ndarray]) -> dict:
    """Pixel AUROC and AUPRO@0.3 over the images with pixel truth; None without both kinds of pixel."""
    has_defect_pixels = any(mask.any() for mask in masks) and any((~mask).any() for mask in masks)
    return {"pixel_auroc": metrics.pixel_auroc(masks, maps) if has_defect_pixels else None,
            "aupro": metrics.aupro(masks, maps, fpr_limit=0.3) if has_defect_pixels else None}


def _unseen_metrics(rows: list[dict], labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """The image-level figures over the test images the model did not learn from: what the evaluation would say
    of unseen parts."""
    unseen = np.array([not row["learnt"] for row in rows], dtype=bool)
    labels, scores = labels[unseen], scores[unseen]
    both_classes = 0 < labels.sum() < len(labels)
    return {"images": int(unseen.sum()), "image_auroc": metrics.auroc(labels, scores) if both_classes else None,
            **false_reject_metrics(labels, scores, threshold)}


def write_scores_csv(path: str | os.PathLike, result: dict) -> Path:
    """The per-image scores of an evaluation (path, defect_type, score, verdict at its threshold) as CSV,
    written atomically; cells a spreadsheet would run as formulas are guarded."""
    from anomalyapp.core.csv_cells import csv_text
    from anomalyapp.core.files import write_text_atomically
    from anomalyapp.core.verdicts import verdict_for

    rows = []
    for row in result["per_image"]:
        verdict = verdict_for(row["score"], result["threshold"])
        rows.append([row["path"], row["defect_type"], f"{row['score']:.6f}", verdict])
    return write_text_atomically(path, csv_text(["path", "defect_type", "score", "verdict"], rows))
