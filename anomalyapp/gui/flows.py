"""Training and inspection as the window runs them: permission, project settings, results into the table.

``TrainingFlow`` starts, estimates and cancels trainings for the project session and feeds the training
view-model; ``InspectionFlow`` expands what the person chose to inspect, streams results into the table and
the histogram, shows the selected image and launches evaluations.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from anomalyapp.core.errors import AppError

# An estimate no longer current is made again once the settings have rested this long: each change of a spin box
# would otherwise measure, and the estimate itself takes a few seconds of CPU.
REESTIMATE_AFTER_MS = 1500
KEEP_SETTINGS_AFTER_MS = 500


class TrainingFlow(QObject):
    error = Signal(str, str)  # title, message

    def __init__(self, session, access, trainer, panel, view_model, review, parent: QObject | None = None):
        super().__init__(parent)
        self.session, self.access, self.trainer, self.panel = session, access, trainer, panel
        self.view_model, self.review = view_model, review
        self.region_dialog = None  # the open region-of-interest editor, if any
        self._estimated = None  # what the estimate shown was made for: (good folder, settings)
        self._requested = None  # what the estimate under way, or the last one asked for, is for
        # The settings the project's model was trained with (as opened, or as the last training started): a
        # change away from them is measured at once, as it would be with an estimate shown.
        self._settled = None
        self._training = None  # the settings of the training under way: settled once its model is ready
        self._failed = None  # the settings an estimate could not measure (its reason is shown): changed, measured
        self._reestimate = QTimer(self)
        self._reestimate.setSingleShot(True)
        self._reestimate.setInterval(REESTIMATE_AFTER_MS)
        self._reestimate.timeout.connect(self._estimate_again)
        self._keep = QTimer(self)  # the settings are written to the project once they rest, not at each key
        self._keep.setSingleShot(True)
        self._keep.setInterval(KEEP_SETTINGS_AFTER_MS)
        self._keep.timeout.connect(self._keep_settings)
        trainer.started.connect(view_model.start)
        trainer.progress.connect(view_model.show_progress)
        trainer.ended.connect(view_model.end)
        trainer.failed.connect(lambda message: self.error.emit("Training", message))
        trainer.estimate_ready.connect(self._estimate_ready)
        trainer.estimate_cancelled.connect(self._estimate_cancelled)
        trainer.estimate_failed.connect(self._estimate_failed)
        trainer.model_ready.connect(review.model_trained)
        trainer.model_ready.connect(self._model_trained)
        trainer.ended.connect(self._check_estimate)  # settings changed during the training are measured now
        session.estimate_wanted.connect(self.estimate)
        panel.settings_changed.connect(self._settings_changed)
        session.about_to_replace.connect(self.flush_settings)  # changed just before another project was opened
        session.replaced.connect(self._project_opened)
        session.pending_edits_wanted.connect(self.flush_settings)

    def start(self) -> None:
        project = self.session.project
        if project is None:
            self.error.emit("Training", "create or open a project first (Project → New project)")
            return
        if not self.access.require("train"):
            return
        values = self.panel.settings_values()
        self._keep.stop()
        self._reestimate.stop()
        self.trainer.cancel_estimate()  # it would share the CPU with the training, which times itself
        self._store(values)
        self._training = self._estimate_key(values)
        if self._estimated != self._training:
            # An estimate made for other settings or images (an autoencoder's, for a PatchCore training) would
            # give the time left of another job.
            self.view_model.forget_estimate()
        self.trainer.start(project, values, self.access.user)

    def _estimate_key(self, values: dict):
        """What an estimate depends on: the images and every setting but the false-reject rate, which moves the
        threshold, not the work."""
        settings = sorted((name, value) for name, value in values.items() if name != "false_reject_rate")
        project = self.session.project
        return (str(project.good_folder) if project is not None else None), repr(settings)

    def _store(self, values: dict) -> None:
        project = self.session.project
        if all(_plain(getattr(project.training, key)) == _plain(value) for key, value in values.items()):
            return  # nothing to write (the panel was just filled from the project)
        for key, value in values.items():
            setattr(project.training, key, value)
        self.session.save()

    def _keep_settings(self) -> None:
        """The panel's settings are the project's once changed (a detector chosen, a region drawn), not only once a
        training starts: closing the window or switching project keeps them. They change no verdict until trained."""
        if self.session.project is not None and self.access.can("train"):
            self._store(self.panel.settings_values())

    def flush_settings(self) -> None:
        """Settings changed less than a moment ago are kept now: the project is about to close."""
        if self._keep.isActive():
            self._keep.stop()
            self._keep_settings()

    def _settings_changed(self) -> None:
        """The estimate's text says whether it still describes the training the panel would start (looked at once
        the change has reached the project: a new good-images folder is set there by another slot)."""
        QTimer.singleShot(0, self, self._check_estimate)
        self._keep.start()

    def _project_opened(self, project) -> None:
        """A project was opened: nothing estimated of it yet. Its settings, read once the panel shows them, are the
        ones its model (if any) was trained with."""
        self._estimated = self._requested = self._settled = self._failed = None
        if project.model_path is not None:
            QTimer.singleShot(0, self, self._settle)  # queued after the panel is filled by the window's own slot

    def _model_trained(self, _path) -> None:
        self._settled = self._training

    def _settle(self) -> None:
        if self.session.project is not None:
            self._settled = self._panel_key()

    def _estimate_wanted(self) -> bool:
        """Whether the panel's settings call for an estimate: one is shown for other settings (or one could not
        measure others), or the project has a model and they are no longer those it was trained with (retraining
        would cost something else)."""
        key = self._panel_key()
        if key in (self._estimated, self._failed):
            return False
        # Nothing is measured for the settings the model was trained with, as when the project opened: back on them
        # after a change, the estimate shown says it was for other settings. (It measured them again 1.5 s later,
        # which a test saw only on a loaded machine, where the measuring was still under way.) Only a reason why
        # other settings could not be measured is replaced by measuring these.
        if key == self._settled and self._failed is None:
            return False
        return self.view_model.estimate is not None or self._failed is not None or self._settled is not None

    def _panel_key(self):
        """What an estimate of the training the panel would start depends on (``_estimate_key``)."""
        return self._estimate_key(self.panel.settings_values())

    def _show_estimate(self) -> None:
        """The estimate's text, or a line saying it was made for other settings than the panel's."""
        self.view_model.show_estimate(current=self._estimated == self._panel_key())

    def _check_estimate(self, *_) -> None:
        if self.session.project is not None:
            self._show_estimate()
            if self._estimate_wanted():
                self._reestimate.start()  # the panel would start another training than the one measured: measure it

    def _estimate_ready(self, estimate) -> None:
        self._estimated, self._failed = self._requested, None
        self.view_model.set_estimate(estimate)
        self._check_estimate()  # the settings may have changed while it measured

    def _estimate_cancelled(self) -> None:
        """Stopped for a training: the estimate shown before stays (marked if it was for other settings)."""
        if self.view_model.estimate is None:
            self.view_model.estimate_text.emit("")
        elif self.session.project is not None:
            self._show_estimate()

    def _estimate_failed(self, message: str) -> None:
        """Said where the estimate goes, not in a dialog: an estimate starts unasked when the settings change, and
        the training itself reports the same problem if it is started. The estimate shown before is dropped."""
        self.view_model.forget_estimate()
        self._estimated, self._failed = None, self._requested
        self.view_model.estimate_text.emit(f"no estimate: {message}")

    def _estimate_again(self) -> None:
        """Measure the panel's settings (they changed, see ``_estimate_wanted``), unless a training runs, the
        settings went back, or nothing could be trained. An estimate still measuring older settings is replaced."""
        project = self.session.project
        if (project is None or self.trainer.running or not self.access.can("train") or not project.good_folder
                or not Path(project.good_folder).is_dir() or not self._estimate_wanted()
                or (self.trainer.estimating and self._requested == self._panel_key())):
            return
        self.estimate()

    def draw_region(self) -> None:
        """Open the region-of-interest editor on the project's first good image; OK sets the panel's region."""
        from anomalyapp.gui.widgets.roi_editor import RoiDialog
        from anomalyapp.services.project import first_good_image

        project = self.session.project
        if project is None or not project.good_folder:
            self.error.emit("Region of interest", "choose the folder of good images first")
            return
        try:
            pixels = first_good_image(project.good_folder)
        except AppError as error:
            self.error.emit("Region of interest", str(error))
            return
        self.region_dialog = RoiDialog(pixels, self.panel.region, self.panel.window())
        self.region_dialog.accepted.connect(lambda: self.panel.set_region(self.region_dialog.rectangles))
        self.region_dialog.open()

    def estimate(self) -> None:
        if self.session.project is not None:
            self.view_model.estimate_text.emit("measuring on a few images…")
            values = self.panel.settings_values()
            self._requested = self._estimate_key(values)
            self.trainer.estimate(self.session.project, values)


def _plain(value):
    """A setting as JSON gives it back (a region's rectangles as lists), so that a loaded value compares equal; a
    float to 9 places, as the panel's percent field gives 0.7 / 100 = 0.006999999999999999 for 0.007."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return round(value, 9) if isinstance(value, float) else value


class InspectionFlow(QObject):
    error = Signal(str, str)

    def __init__(self, inspection, evaluation, results_panel, viewer, status, threshold,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.inspection, self.evaluation = inspection, evaluation
        self.results_panel, self.viewer, self.status, self.threshold = results_panel, viewer, status, threshold
        self._open_when_listed = None  # the image Open in viewer asked for, selected once its result is listed
        # Results can arrive every 20 ms; the histogram is redrawn at most a few times a second.
        self._histogram_refresh = QTimer(self)
        self._histogram_refresh.setSingleShot(True)
        self._histogram_refresh.setInterval(400)
        self._histogram_refresh.timeout.connect(
            lambda: threshold.result_scores.emit(results_panel.model().scores()))
        inspection.result_ready.connect(self._result_ready)
        inspection.display_ready.connect(self._display)
        inspection.latency.connect(lambda ms: status.latency_text.emit(f"{ms:.0f} ms/image"))
        inspection.busy_changed.connect(self._busy_changed)
        results_panel.current_changed.connect(self._current_changed)
        evaluation.progress.connect(lambda p: status.show(p.message))
        # The last step's text ("pixel metrics") would otherwise stay on as if the evaluation were still running.
        evaluation.finished.connect(lambda _: status.show("evaluation done: metrics and plots in their window", 15000))

    def inspect(self, inputs, open_first: bool = False) -> None:
        """Score and list ``inputs``. ``open_first``: select the first of them once it is listed (Open in viewer),
        rather than leave the selection where it was when the list already held results."""
        from anomalyapp.services.inference import expand_inputs

        if self.inspection.session is None:
            self.error.emit("Inspection", "there is no model yet: train one first (Ctrl+T)")
            return
        try:
            paths = expand_inputs(inputs)
        except AppError as error:
            self.error.emit("Inspection", str(error))
            return
        if open_first:
            self._open_when_listed = paths[0]
        self.inspection.inspect(paths)

    def reset(self) -> None:
        """A new project: no results, no image."""
        self._open_when_listed = None
        self._histogram_refresh.stop()
        self.results_panel.model().clear()
        self.viewer.clear()

    def _result_ready(self, row) -> None:
        index = self.results_panel.model().add_result(row)
        if self._open_when_listed is not None and row.path == self._open_when_listed:
            self._open_when_listed = None
            self.results_panel.select_source_row(index)
        if row.score is not None and not self._histogram_refresh.isActive():
            self._histogram_refresh.start()
        if index == 0:
            self.results_panel.select_source_row(0)

    def _busy_changed(self, busy: bool) -> None:
        if busy:
            self.status.show("inspecting…")
            return
        counts = self.results_panel.model().counts()
        self.status.show(f"done: {counts['OK']} OK, {counts['NG']} NG, {counts['Review']} to review, "
                         f"{counts['Error']} not inspected", 10000)

    def _current_changed(self, row) -> None:
        """The viewer shows the selected part, and nothing when nothing is selected (a filter that hides every
        result): a key that decides acts on the selection, so it must never show another part."""
        if row is None or row.score is None:
            self.inspection.forget_shown()
            self.viewer.clear()
            if row is not None:
                self.status.show(f"{row.path.name}: {row.error}")
                if row.refused:  # it could be read: seeing it says more than its size (a rotated part, a thumbnail)
                    self.inspection.show_picture(row.path, f"{row.path.name}: not inspected")
            return
        self.inspection.show(row.path)

    def _display(self, pixels, normalised_map, title: str) -> None:
        self.viewer.set_image(pixels, title)
        self.viewer.set_anomaly_map(normalised_map)

    def evaluate(self, folder) -> None:
        # At the working threshold: the station's rule, not the calibrated 0.5 when they differ.
        self.evaluation.evaluate(Path(folder), self.results_panel.model().verdicts().threshold)
