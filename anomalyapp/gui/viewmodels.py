"""View-models: what the window shows, as QObjects with typed signals that the widgets observe.

Controllers change a view-model; the window connects each view-model's signals to its widget's setters once.
``reset`` puts a view-model back to "nothing of a project shown": the project session calls it on every
view-model when a project replaces another, so no histogram, log, verdict or latency outlives its project.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Signal

from anomalyapp.core.remaining_time import RemainingTime, describe_seconds
from anomalyapp.core.types import Progress


class StatusViewModel(QObject):
    message = Signal(str, int)  # text, milliseconds to show it (0: until the next)
    model_text = Signal(str)
    latency_text = Signal(str)
    device_text = Signal(str)

    def show(self, text: str, milliseconds: int = 0) -> None:
        self.message.emit(text, milliseconds)

    def reset(self) -> None:
        self.message.emit("", 0)
        self.model_text.emit("no model")
        self.latency_text.emit("")


class ThresholdViewModel(QObject):
    """The histogram's data: the loaded model's reference scores, the listed results' scores, the expected
    false-reject readout. The rule itself (threshold, band) lives in the project's records."""

    reference_scores = Signal(object, object)  # good, defects (normalised)
    result_scores = Signal(object)
    expected_rate = Signal(object)  # describe(threshold) -> str | None, or None
    suspects = Signal(object)  # the loaded model's note on good images that score like defects, or None
    suspect_images = Signal(object)  # those images' files (list of Path), to show them
    rule = Signal(float, object)  # threshold, uncertain band's lower end or None
    calibrated_band = Signal(object)  # the loaded model's calibrated band's lower end, or None

    def reset(self) -> None:
        self.reference_scores.emit([], [])
        self.result_scores.emit([])
        self.expected_rate.emit(None)
        self.suspects.emit(None)
        self.suspect_images.emit([])
        self.calibrated_band.emit(None)


class CameraViewModel(QObject):
    cleared = Signal()

    def reset(self) -> None:
        self.cleared.emit()


class TrainingViewModel(QObject):
    """A training's course as the panel shows it: running, progress, time left, and how it ended."""

    running_changed = Signal(bool)
    progress = Signal(object)  # Progress
    time_left = Signal(str)
    ended = Signal(str, str)  # message, outcome: "succeeded" | "cancelled" | "failed"
    estimate_text = Signal(str)
    cleared = Signal()

    def __init__(self, parent: QObject | None = None, clock=time.monotonic):
        super().__init__(parent)
        self.clock = clock
        self.estimate = None  # the last pre-estimate of this project (services.training.Estimate), if any
        self._remaining: RemainingTime | None = None

    @property
    def estimate_seconds(self) -> float | None:
        return None if self.estimate is None else self.estimate.seconds

    @property
    def estimate_stages(self) -> tuple[tuple[str, float], ...]:
        """The estimate's seconds by stage; () without one."""
        return () if self.estimate is None else self.estimate.stages

    def set_estimate(self, estimate) -> None:
        """A training estimate (``services.training.Estimate``): shown, and the time left starts from it."""
        self.estimate = estimate
        self.estimate_text.emit(estimate.describe())

    def show_estimate(self, current: bool) -> None:
        """The estimate's text, or, when the settings have changed since it was made, a line saying so."""
        if self.estimate is not None:
            self.estimate_text.emit(self.estimate.describe() if current else
                                    "the estimate was for other settings: Estimate time and memory again")

    def forget_estimate(self) -> None:
        """The estimate no longer describes the training to come (its settings changed): drop it and its text."""
        if self.estimate is not None:
            self.estimate = None
            self.estimate_text.emit("")

    def start(self) -> None:
        self._remaining = RemainingTime(self.estimate_seconds, self.clock(), self.estimate_stages)
        self.running_changed.emit(True)

    def show_progress(self, progress: Progress) -> None:
        self.progress.emit(progress)
        if progress.total and self._remaining is not None and progress.stage != "warning":
            self._remaining.adopt_plan(progress.plan)
            left = self._remaining.update(progress.stage, progress.step, progress.total, self.clock())
            if left is None:
                return
            # A figure for the running stage alone says so.
            if self._remaining.covers_whole_job:
                self.time_left.emit(describe_seconds(left))
            elif self._remaining.estimate_seconds is None:
                self.time_left.emit(f"{progress.stage}: {describe_seconds(left)}")
            else:
                self.time_left.emit(f"past the estimate; {progress.stage}: {describe_seconds(left)}")

    def end(self, message: str, outcome: str) -> None:
        self._remaining = None
        self.running_changed.emit(False)
        self.time_left.emit("")
        self.ended.emit(message, outcome)

    def reset(self) -> None:
        self._remaining = None
        self.estimate = None
        self.cleared.emit()
