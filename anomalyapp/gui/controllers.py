"""Controllers: one per use case. They start jobs, hold the loaded model, and update view state.

Widgets never call these directly; the main window wires widget intent signals to controller slots and
controller signals back to widget setters.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from anomalyapp.core.errors import AppError, ImageRefused
from anomalyapp.gui.widgets.results_table import THUMBNAIL_SIZE, ResultRow
from anomalyapp.gui.workers import Job, start_job

if TYPE_CHECKING:  # the correction service loads the engine: imported when a correction runs
    from anomalyapp.services.correction import CorrectionResult

CACHE_SIZE = 24  # full-size images and maps kept for instant re-display...
# ...as long as together they hold no more than this: one 400-megapixel image and its map are 2.8 GB, more than
# the whole budget, and then only the image on screen is kept.
CACHE_BUDGET_BYTES = 1 << 30


def to_qimage(rgb: np.ndarray) -> QImage:
    """An HxWx3 uint8 array -> a QImage that owns a copy of the pixels."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def thumbnail_of(pixels: np.ndarray) -> np.ndarray:
    from anomalyapp.services.rendering import display_rgb

    h, w = pixels.shape[:2]
    scale = THUMBNAIL_SIZE / max(h, w)
    small = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return display_rgb(small)


class TrainingController(QObject):
    started = Signal()
    progress = Signal(object)
    finished = Signal(str)  # message for the log
    model_ready = Signal(object)  # Path of the new model
    failed = Signal(str)
    ended = Signal(str, str)  # message, outcome: "succeeded" | "cancelled" | "failed" (after finished)
    estimate_ready = Signal(object)  # services.training.Estimate
    estimate_cancelled = Signal()  # the last estimate asked for was stopped before it ended
    estimate_failed = Signal(str)  # why it could not measure (shown where the estimate goes: it may start unasked)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.job: Job | None = None
        self.estimate_job: Job | None = None

    @property
    def estimating(self) -> bool:
        return self.estimate_job is not None and self.estimate_job.running

    @property
    def running(self) -> bool:
        # The training has ended for the window once its outcome is delivered (``ended`` is sent from there); its
        # thread may still be finishing, and a quit or a new training must not wait on that or be refused for it.
        return self.job is not None and self.job.running and not self.job.outcome_delivered

    def _request(self, project, values: dict):
        from anomalyapp.core.config import CalibrationConfig
        from anomalyapp.services.training import TrainRequest, detector_options

        if not project.good_folder:
            raise AppError("choose the folder of good images first")
        # The panel offers the stage weighting only where the detector lists it among its options (PatchCore): a
        # value chosen there is not sent to another detector, which would apply it (the CLI's flag is for both).
        offered = detector_options(values["detector"])
        return TrainRequest(
            data=Path(project.good_folder),
            detector=values["detector"],
            backbone=values["backbone"],
            image_size=values["image_size"],
            coreset_ratio=values["coreset_ratio"],  # the service reads the options of the chosen detector only
            epochs=values["epochs"],
            roi=tuple(tuple(r) for r in values.get("roi") or ()) or None,
            smallest_defect=values.get("smallest_defect") or None,
            stage_weighting=(values.get("stage_weighting") or None) if "stage_weighting" in offered else None,
            layers=tuple(values["stages"].split(",")) if values.get("stages") else None,
            calibration=CalibrationConfig(target_false_reject_rate=values.get(
                "false_reject_rate", CalibrationConfig().target_false_reject_rate)),
            device=project.training.device,
            out=project.new_model_path(),
        )

    def start(self, project, values: dict, actor=None) -> None:
        """Train into the project as ``actor`` (the logged-in user): the service checks and records it."""
        from anomalyapp.services.training import part_time, train

        if self.running:
            return
        try:
            request = self._request(project, values)
        except AppError as error:
            self.failed.emit(str(error))
            return
        started = time.monotonic()

        def succeeded(result):
            project.current_model = result.model_path.name
            project.save()
            message = (f"trained {result.detector} on {result.train_images} images in "
                       f"{time.monotonic() - started:.1f} s ({result.device}); threshold from "
                       f"{result.calibration_images} held-out good images")
            if result.summary.get("expected_false_rejects"):
                message += f"; {result.summary['expected_false_rejects']}"
            if result.summary.get("inspect_seconds"):
                message += f"; inspection about {part_time(result.summary['inspect_seconds'])} a part here"
            self.finished.emit(message)
            self.ended.emit(message, "succeeded")
            self.model_ready.emit(result.model_path)

        self.job = start_job(
            "training",
            lambda token: train(request, token, actor=actor),
            self,
            progress=self.progress.emit,
            succeeded=succeeded,
            failed=self._failed,
            cancelled=self._cancelled,
        )
        self.started.emit()

    def _cancelled(self) -> None:
        message = "training cancelled; the previous model is unchanged"
        self.finished.emit(message)
        self.ended.emit(message, "cancelled")

    def _failed(self, message: str) -> None:
        self.finished.emit("training failed; the previous model is unchanged")
        self.ended.emit("training failed; the previous model is unchanged", "failed")
        self.failed.emit(message)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def estimate(self, project, values: dict) -> None:
        """Measure what a training with ``values`` would take. It replaces an estimate still running: only the
        last one asked for is delivered, so the estimate shown is always for the settings last asked about."""
        from anomalyapp.services.training import estimate

        try:
            request = self._request(project, values)
        except AppError as error:
            self.estimate_failed.emit(str(error))
            return
        self.cancel_estimate()
        job = None

        def if_latest(signal):
            """``signal`` re-emitted for this job only while it is the latest estimate asked for."""
            return lambda *args: signal.emit(*args) if job is self.estimate_job else None

        job = self.estimate_job = start_job(
            "estimate",
            lambda token: _as_generator(lambda: estimate(request, cancel=token)),
            self,
            succeeded=if_latest(self.estimate_ready),
            failed=if_latest(self.estimate_failed),
            cancelled=if_latest(self.estimate_cancelled),
        )

    def cancel_estimate(self) -> None:
        """Stop the estimate under way, if any (a training is starting, or another estimate replaces it)."""
        if self.estimate_job is not None:
            self.estimate_job.cancel()


def _as_generator(function):
    """Run a plain function as a job: a generator that yields nothing and returns its value."""
    yield from ()
    return function()


@dataclasses.dataclass(frozen=True)
class CorrectionDone:
    """A correction job's end: the new model version, and how long the window waited for it."""

    correction: CorrectionResult
    learned_after: float  # seconds from the request until the new version was learnt and saved
    seconds: float  # seconds from the request until every listed result was re-scored


class InspectionController(QObject):
    """Holds the loaded model; scores queued images one by one in a background job."""

    model_loaded = Signal(object)  # the model's ModelManifest (engine.manifest)
    model_failed = Signal(str)
    result_ready = Signal(object)  # ResultRow
    display_ready = Signal(object, object, str)  # pixels, normalised map (or None), title
    latency = Signal(float)  # ms per image
    busy_changed = Signal(bool)
    error = Signal(str)
    rescored = Signal(object)  # ("rescored", {row: (score, raw)}, seconds since the request)
    correction_done = Signal(object)  # CorrectionDone

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.session = None
        self.session_lock = threading.Lock()
        self._queue: collections.deque[Path] = collections.deque()
        self._queue_lock = threading.Lock()
        self._job: Job | None = None
        self._cache: collections.OrderedDict[str, tuple] = collections.OrderedDict()
        # Images are displayed in the order they were asked for, not in the order their re-scoring in the
        # background ends: a request overtaken by a newer one (a name filter moves the selection at each key) is
        # cached but not displayed, so the viewer never shows a part other than the one selected.
        self._show_request = 0
        self.model_path: Path | None = None
        self.device_preference = "auto"
        # Called in the worker thread with each ImageResult; returns its records id (or None). Set by the window.
        self.recorder = None

    # ----------------------------------------------------------------------------------- model
    def load_model(self, path: Path) -> None:
        from anomalyapp.services.inference import InferenceSession

        def load(token):
            session = InferenceSession(path, device=self.device_preference)
            yield
            return session

        def loaded(session):
            with self.session_lock:
                self.session = session
            self.model_path = Path(path)
            self._cache.clear()
            self.model_loaded.emit(session.manifest)
            self._kick()

        start_job("loading the model", load, self, succeeded=loaded, failed=self.model_failed.emit)

    @property
    def calibration(self):
        return self.session.calibration if self.session else None

    @property
    def device(self) -> str:
        return self.session.device if self.session else "cpu"

    # -------------------------------------------------------------------------------- inspection
    def inspect(self, paths: list[Path]) -> None:
        with self._queue_lock:
            self._queue.extend(paths)
        self._kick()

    def pending(self) -> int:
        with self._queue_lock:
            return len(self._queue)

    def stop(self) -> None:
        with self._queue_lock:
            self._queue.clear()
        if self._job is not None:
            self._job.cancel()

    def _kick(self) -> None:
        if self.session is None or (self._job is not None and self._job.running) or not self.pending():
            return
        self.busy_changed.emit(True)
        self._job = start_job(
            "inspection", self._run_queue, self, item=self._on_item, failed=self.error.emit, ended=self._ended
        )

    def _ended(self) -> None:
        self.busy_changed.emit(False)
        if self.pending():
            self._kick()

    def _run_queue(self, token):
        while not token.cancelled:
            with self._queue_lock:
                if not self._queue:
                    return
                path = self._queue.popleft()
            with self.session_lock:
                result = self.session.predict_path(path, keep_pixels=True)
            thumb = thumbnail_of(result.pixels) if result.pixels is not None else None  # a refused image too
            record_id = self.recorder(result) if (self.recorder is not None and result.ok) else None
            yield result, thumb, record_id

    def _on_item(self, item) -> None:
        result, thumb, record_id = item
        if result.ok:
            prediction = result.prediction
            self._remember(str(result.path), result.pixels, prediction.anomaly_map)
            row = ResultRow(
                path=result.path,
                score=prediction.score,
                raw_score=prediction.raw_score,
                thumbnail=to_qimage(thumb),
                latency_ms=result.seconds * 1000,
                record_id=record_id,
            )
            self.latency.emit(result.seconds * 1000)
        else:
            row = ResultRow(path=result.path, score=None, raw_score=None, error=result.error.reason,
                            thumbnail=to_qimage(thumb) if thumb is not None else None,
                            refused=isinstance(result.error, ImageRefused))
        self.result_ready.emit(row)

    def _remember(self, key: str, pixels, normalised_map) -> None:
        self._cache[key] = (pixels, normalised_map)
        self._cache.move_to_end(key)
        while len(self._cache) > 1 and (len(self._cache) > CACHE_SIZE or self.cache_bytes() > CACHE_BUDGET_BYTES):
            self._cache.popitem(last=False)

    def cache_bytes(self) -> int:
        return sum(pixels.nbytes + normalised_map.nbytes for pixels, normalised_map in self._cache.values())

    def show(self, path: Path) -> None:
        """Display an inspected image with its map; re-scores it in the background if not cached."""
        self._show_request += 1
        request = self._show_request
        key = str(path)
        if key in self._cache:
            pixels, normalised_map = self._cache[key]
            self._cache.move_to_end(key)
            self.display_ready.emit(pixels, normalised_map, Path(path).name)
            return
        if self.session is None:
            return

        def rescore(token):
            if request != self._show_request:
                return None  # overtaken before it began: nobody waits for this image any more
            with self.session_lock:
                result = self.session.predict_path(path, keep_pixels=True)
            yield
            return result

        def shown(result):
            if result is None:
                return
            if result.ok:
                self._remember(key, result.pixels, result.prediction.anomaly_map)
                if request == self._show_request:
                    self.display_ready.emit(result.pixels, result.prediction.anomaly_map, Path(path).name)
            elif request == self._show_request:
                self.error.emit(str(result.error))

        start_job("showing an image", rescore, self, succeeded=shown, failed=self.error.emit)

    def show_picture(self, path: Path, title: str) -> None:
        """Display an image as it is, without a map: not inspected, not recorded."""
        self._show_request += 1
        request = self._show_request

        def read(token):
            from anomalyapp.services.inference import image_pixels

            pixels = image_pixels(path)
            yield
            return pixels

        def shown(pixels):
            if request == self._show_request:
                self.display_ready.emit(pixels, None, title)

        start_job("showing an image", read, self, succeeded=shown, failed=self.error.emit)

    def forget_shown(self) -> None:
        """Nothing is selected now: an image still being re-scored for display is not displayed."""
        self._show_request += 1

    # --------------------------------------------------------------------------------- correction
    def learn_good(self, path: Path, models_dir: Path, listed: list[tuple[int, Path]], actor=None) -> None:
        """Teach the model that ``path`` is good, save a new version, re-score the listed results.

        Rows are re-scored in the order given (the caller puts the flagged ones first) and reported in
        small batches, so verdicts on screen update while the rest is still being scored.
        """
        from anomalyapp.services.correction import learn_good_images

        if self.session is None:
            self.error.emit("there is no model to correct")
            return
        started = time.perf_counter()

        def run(token):
            with self.session_lock:
                correction = yield from learn_good_images(self.session, [path], models_dir, cancel=token, actor=actor)
                learned_after = time.perf_counter() - started
                batch = {}
                for number, (row_index, row_path) in enumerate(listed, 1):
                    if token.cancelled:
                        break
                    rescored = self.session.predict_path(row_path)
                    if rescored.ok:
                        batch[row_index] = (rescored.prediction.score, rescored.prediction.raw_score)
                    if len(batch) >= 8 or number == len(listed):
                        yield ("rescored", batch, time.perf_counter() - started)
                        batch = {}
            return CorrectionDone(correction, learned_after, time.perf_counter() - started)

        def done(result: CorrectionDone):
            self._cache.clear()
            self.model_path = result.correction.folder
            self.correction_done.emit(result)

        self._cache.clear()
        start_job("correction", run, self, item=self.rescored.emit, succeeded=done, failed=self.error.emit)

    def predict_frame(self, pixels: np.ndarray):
        """Score one camera frame; called from the camera job's thread."""
        with self.session_lock:
            if self.session is None:
                return None
            return self.session.predict_pixels(pixels)


class EvaluationController(QObject):
    progress = Signal(object)
    finished = Signal(object)  # the metrics dict
    failed = Signal(str)

    def __init__(self, inspection: InspectionController, parent: QObject | None = None):
        super().__init__(parent)
        self.inspection = inspection

    def evaluate(self, folder: Path, threshold: float | None = None) -> None:
        """Evaluate ``folder`` at ``threshold`` (normalised; None: the calibrated one)."""
        from anomalyapp.core.verdicts import NORMALISED_THRESHOLD
        from anomalyapp.services.evaluation import evaluate

        if self.inspection.session is None:
            self.failed.emit("train or open a model first")
            return

        def run(token):
            with self.inspection.session_lock:
                return (yield from evaluate(self.inspection.session, folder, token,
                                            threshold=NORMALISED_THRESHOLD if threshold is None else threshold))

        start_job("evaluation", run, self, progress=self.progress.emit, succeeded=self.finished.emit,
                  failed=self.failed.emit)
