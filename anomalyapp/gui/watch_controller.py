"""The hot folder in the window: Project → Watch folder starts and stops ``services.hot_folder.watch_folder`` as
a job, puts each verdict into the results table like any inspection, and keeps a status line (folder, queue,
dropped, and the line link's state and backlog).

The watch scores with the window's loaded model under its lock and records as the person logged in; the job's
thread also draws each row's thumbnail from the scored image, so the GUI thread only adds rows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from anomalyapp.core.errors import AppError
from anomalyapp.core.types import Progress
from anomalyapp.gui.controllers import thumbnail_of, to_qimage
from anomalyapp.gui.widgets.results_table import ResultRow
from anomalyapp.gui.workers import Job, start_job


class WatchController(QObject):
    result_ready = Signal(object)  # ResultRow, for the results table
    status_text = Signal(str)
    running_changed = Signal(bool)
    error = Signal(str)

    def __init__(self, inspection, access, session, parent: QObject | None = None):
        super().__init__(parent)
        self.inspection, self.access, self.session = inspection, access, session
        self.job: Job | None = None
        self.link = None
        self.folder: Path | None = None
        self.metrics: dict = {}
        self.warning = ""
        self._link_refresh = QTimer(self)
        self._link_refresh.setInterval(1000)
        self._link_refresh.timeout.connect(self._show_status)
        self._choices: dict | None = None
        self._restart = False
        # A new model (trained, corrected, rolled back): the watch goes on with it, never with the old one
        # while the records name the new version.
        inspection.model_loaded.connect(self._model_changed)

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def start(self, folder, sort: str | None = None, queue_limit: int = 20, overlay_dir=None,
              settle_seconds: float = 0.5) -> None:
        from anomalyapp.services.hot_folder import WatchSettings, open_line_link, watch_folder

        if self.running:
            return
        project = self.session.project
        if project is None:
            self.error.emit("create or open a project first (Project → New project)")
            return
        if self.inspection.session is None:
            self.error.emit("there is no model yet: train one first (Ctrl+T)")
            return
        if not self.access.require("inspect"):
            return
        if not str(folder or "").strip():
            self.error.emit("choose the folder to watch")
            return
        try:
            settings = WatchSettings(Path(folder), sort=sort, queue_limit=int(queue_limit),
                                     overlay_dir=Path(overlay_dir) if overlay_dir else None,
                                     settle_seconds=settle_seconds).checked()
            self.link = open_line_link(project.root)
        except AppError as error:
            self.error.emit(str(error))
            return
        records, user, session, lock = self.access.records, self.access.user, self.inspection.session, \
            self.inspection.session_lock
        line = self.link

        def run(token):
            job = watch_folder(session, records, user, settings, token, line=line,
                               project_name=project.name, model_lock=lock, keep_pixels=True)
            while True:
                try:
                    item = next(job)
                except StopIteration as stop:
                    return stop.value
                if isinstance(item, Progress):
                    yield item
                else:  # the thumbnail drawn here, in the job's thread; the full image is not kept
                    thumbnail = to_qimage(thumbnail_of(item.pixels)) if item.pixels is not None else None
                    yield dataclasses.replace(item, pixels=None), thumbnail

        self._choices = {"folder": folder, "sort": sort, "queue_limit": queue_limit, "overlay_dir": overlay_dir,
                         "settle_seconds": settle_seconds}
        self.folder, self.metrics, self.warning = settings.folder.resolve(), {}, ""
        self.job = start_job("watching a folder", run, self, item=self._outcome, progress=self._progress,
                             failed=self.error.emit, ended=self._ended)
        self._link_refresh.start()
        self.running_changed.emit(True)
        self._show_status()

    def stop(self) -> None:
        self._restart = False
        if self.job is not None:
            self.job.cancel()

    def _model_changed(self, _manifest) -> None:
        if self.running and not self.job.token.cancelled:  # not one already stopping (a project replaced)
            self.stop()
            self._restart = True

    def _ended(self) -> None:
        self._link_refresh.stop()
        if self.link is not None:
            self.link.close()
            self.link = None
        self.running_changed.emit(False)
        done = self.metrics.get("done", 0)
        self.status_text.emit(f"stopped watching {self.folder}: {done} inspected, "
                              f"{self.metrics.get('dropped', 0)} dropped")
        if self._restart and self._choices is not None:
            self._restart = False
            self.start(**self._choices)  # queued files are taken up again from the records

    def _outcome(self, item) -> None:
        outcome, thumbnail = item
        if outcome.state == "done":
            self.result_ready.emit(ResultRow(path=outcome.path, score=outcome.score, raw_score=outcome.raw_score,
                                             thumbnail=thumbnail, source="watch", record_id=outcome.inspection_id))
        elif outcome.state == "error":  # shown in the table as unreadable, like any inspection
            self.result_ready.emit(ResultRow(path=outcome.path, score=None, raw_score=None, error=outcome.reason,
                                             source="watch"))
        else:  # skipped (not an image) or dropped: in the status line, and counted
            self.warning = f"{outcome.file_name}: {outcome.reason}"
            self._show_status()

    def _progress(self, progress: Progress) -> None:
        if progress.metrics:
            self.metrics = progress.metrics
        if progress.stage == "warning":
            self.warning = progress.message
        elif progress.metrics.get("reachable", True) and "not reachable" in self.warning:
            self.warning = ""
        self._show_status()

    def status(self) -> str:
        """'watching /line/in: 2 queued, 0 dropped, 17 inspected; line: mqtt connected, backlog 0'."""
        from anomalyapp.services.hot_folder import describe_link, describe_status

        if not self.running:
            return "not watching"
        metrics = {"folder": str(self.folder), "queued": 0, "dropped": 0, "done": 0, **self.metrics}
        parts = [describe_status(metrics)]
        if self.link is not None:
            link_text = describe_link(self.link.state())
            if link_text:
                parts.append(link_text)
        if self.warning:
            parts.append(self.warning)
        return "; ".join(parts)

    def _show_status(self) -> None:
        self.status_text.emit(self.status())


def open_watch_dialog(window) -> None:
    """Project → Watch folder: the dialog (one per window, kept on it), wired to the window's watch controller."""
    from anomalyapp.gui.widgets.watch_dialog import WatchFolderDialog

    if getattr(window, "watch_dialog", None) is None:
        dialog = WatchFolderDialog(window)
        watch = window.watch
        dialog.start_requested.connect(lambda choices: watch.start(**choices))
        dialog.stop_requested.connect(watch.stop)
        watch.running_changed.connect(dialog.set_running)
        watch.status_text.connect(dialog.set_status)
        dialog.set_running(watch.running)
        window.watch_dialog = dialog
    window.watch_dialog.show()
    window.watch_dialog.raise_()
