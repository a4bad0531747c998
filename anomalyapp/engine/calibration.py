"""Threshold and score normalisation, learned from good images only.

Rule: over the raw scores of held-out good images, the threshold is ``mean + sigmas * std`` (sample std),
and never below the highest held-out score, so no held-out good image is judged NG. The same rule over
the held-out images' anomaly-map maxima gives the pixel threshold that the viewer outlines.

Normalisation is linear and anchored at zero: ``normalised = 0.5 * raw / threshold``. The threshold maps to
0.5 for every model, and one colour in an anomaly map means the same evidence on every image of a model.
When labelled defective images are at hand, the F1-optimal threshold is offered beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


def threshold_from_good(scores, sigmas: float) -> float:
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("calibration needs at least one held-out good image")
    spread = values.std(ddof=1) if values.size > 1 else 0.0
    threshold = max(values.mean() + sigmas * spread, values.max())
    # A model so perfect that every good score is 0 still needs a positive scale.
    return float(threshold) if threshold > 0 else 1e-6


@dataclass
class Calibration:
    image_threshold: float
    pixel_threshold: float
    good_scores: list[float]
    good_map_maxima: list[float]
    source: str
    rule: str
    defect_scores: list[float] = field(default_factory=list)
    f1_threshold: float | None = None

    def normalise_score(self, raw: float) -> float:
        return 0.5 * float(raw) / self.image_threshold

    def normalise_map(self, raw_map: np.ndarray) -> np.ndarray:
        return raw_map * np.float32(0.5 / self.pixel_threshold)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(**data)


def calibrate(good_scores, good_map_maxima, *, sigmas: float, source: str, defect_scores=None) -> Calibration:
    image_threshold = threshold_from_good(good_scores, sigmas)
    pixel_threshold = threshold_from_good(good_map_maxima, sigmas)
    calibration = Calibration(
        image_threshold=image_threshold,
        pixel_threshold=pixel_threshold,
        good_scores=[float(s) for s in good_scores],
        good_map_maxima=[float(s) for s in good_map_maxima],
        source=source,
        rule=f"max(mean + {sigmas:g} std, max) of held-out good scores",
    )
    if defect_scores:
        from anomalyapp.engine.metrics import f1_max

        labels = [0] * len(good_scores) + [1] * len(defect_scores)
        _, best = f1_max(np.asarray(labels), np.asarray(list(good_scores) + list(defect_scores), dtype=np.float64))
        calibration.defect_scores = [float(s) for s in defect_scores]
        calibration.f1_threshold = float(best)
    return calibration
