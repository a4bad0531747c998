"""The camera use case in the window: list sources, run the live loop in a job, show frames, capture."""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from anomalyapp.core.verdicts import Verdicts
from anomalyapp.gui.workers import Job, start_job


class CameraController(QObject):
    error = Signal(str)
    frame_shown = Signal(object)  # LiveFrame, after it reached the viewer (tests and the status bar)
    # Just before a frame takes the viewer: whatever the viewer showed (a selected result) is no longer shown.
    taking_viewer = Signal()
    status_changed = Signal(object)  # CameraStatus

    def __init__(self, inspection, parent: QObject | None = None):
        super().__init__(parent)
        self.inspection = inspection
        self.job: Job | None = None
        self.paused = threading.Event()
        self.captures_dir: Path | None = None
        self.verdicts = Verdicts()
        self.last_frame = None
        self.panel = None
        self.viewer = None
        self.probed = False  # cameras listed at least once
        self.source_factory = None  # (spec, resolution) -> CameraSource; tests put a simulated camera here

    def attach(self, panel, viewer) -> None:
        self.panel, self.viewer = panel, viewer
        panel.start_requested.connect(self.start)
        panel.stop_requested.connect(self.stop)
        panel.pause_toggled.connect(self.set_paused)
        panel.capture_requested.connect(self.capture)
        panel.refresh_requested.connect(self.refresh)
        panel.set_cameras([])

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def refresh(self) -> None:
        from anomalyapp.services.camera import list_cameras

        self.probed = True
        self.panel.show_status("looking for cameras…")

        def probe(token):
            yield
            return list_cameras()

        def found(cameras):
            self.panel.set_cameras(cameras)
            self.panel.show_status(f"{len(cameras)} camera(s) found" if cameras else
                                   "no camera found: choose a video file or a stream URL")

        start_job("looking for cameras", probe, self, succeeded=found, failed=self.error.emit)

    def start(self, spec, resolution=None) -> None:
        from anomalyapp.services.camera import camera_source, live_inspection

        if self.running:
            return
        predict = self.inspection.predict_frame if self.inspection.session is not None else None
        self.paused.clear()

        def run(token):
            factory = self.source_factory or camera_source
            yield from live_inspection(lambda: factory(spec, resolution), predict, token, paused=self.paused)

        self.job = start_job("camera", run, self, item=self._on_item, failed=self._failed, ended=self._ended)
        self.panel.set_running(True)
        self.panel.show_status("connecting…" if predict else "connecting… (no model: frames are shown unscored)")

    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def set_paused(self, paused: bool) -> None:
        (self.paused.set if paused else self.paused.clear)()
        if self.panel is not None:
            self.panel.show_status("frozen" if paused else "live")

    def capture(self) -> None:
        from anomalyapp.core.errors import AppError
        from anomalyapp.services.camera import save_capture

        if self.last_frame is None or self.captures_dir is None:
            return
        try:
            path = save_capture(self.last_frame.frame, self.captures_dir)
        except AppError as error:
            self.error.emit(str(error))
            return
        self.panel.show_status(f"captured {path.name}")

    def _on_item(self, item) -> None:
        from anomalyapp.services.camera import CameraStatus

        if isinstance(item, CameraStatus):
            self.panel.show_status(item.message or item.state)
            self.status_changed.emit(item)
            return
        self.last_frame = item
        self.taking_viewer.emit()
        self.viewer.set_image(item.frame, f"frame {item.index}")
        if item.prediction is not None:
            self.viewer.set_anomaly_map(item.prediction.anomaly_map)
            self.panel.show_verdict(self.verdicts.verdict(item.prediction.score), item.prediction.score)
        self.panel.fps_label.setText(f"{item.fps:.1f} frames/s scored, {item.dropped} dropped")
        self.frame_shown.emit(item)

    def _failed(self, message: str) -> None:
        self.panel.show_status(f"stopped: {message}")  # not the last state it reported ("playing", "live")
        self.error.emit(message)

    def _ended(self) -> None:
        self.panel.set_running(False)
        self.job = None
