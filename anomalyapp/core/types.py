"""Plain data passed between layers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from anomalyapp.core.verdicts import NORMALISED_THRESHOLD, Verdict, verdict_for


@dataclass(frozen=True)
class Progress:
    """One step of a long job. ``total`` is None when the length is unknown."""

    stage: str
    step: int
    total: int | None
    message: str = ""
    metrics: dict = field(default_factory=dict)
    # What the job, measuring itself, expects each of its stages to take, all of them from its start:
    # ((stage, seconds), ...), sent once it knows (the autoencoder a few epochs into its training). Empty on most steps.
    plan: tuple[tuple[str, float], ...] = ()

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.step / self.total)


@dataclass(frozen=True)
class Prediction:
    """The result for one image.

    ``score`` is normalised so that the model's threshold sits at ``NORMALISED_THRESHOLD`` (0.5);
    ``raw_score`` is the detector's own distance or error. ``anomaly_map`` has the input image's height and
    width and the same normalisation, so one colour means the same evidence on every image of a model.
    """

    score: float
    raw_score: float
    anomaly_map: np.ndarray
    threshold: float = NORMALISED_THRESHOLD

    @property
    def is_anomalous(self) -> bool:
        return self.verdict is Verdict.NG

    @property
    def verdict(self) -> Verdict:
        """The verdict at the model's own threshold, without an uncertain band (the GUI's rule may add one)."""
        return verdict_for(self.score, self.threshold)


def map_progress(job, change):
    """A long job's progress, each ``Progress`` passed through ``change`` (restated: counted another way, a plan
    added), other items as they come; returns the job's return value."""
    while True:
        try:
            item = next(job)
        except StopIteration as stop:
            return stop.value
        yield change(item) if isinstance(item, Progress) else item


def drain(job):
    """Run a long-job generator to its end, ignoring what it yields; return its return value."""
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value
