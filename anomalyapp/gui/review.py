"""The review use case in the window: decisions (OK / NG with note and painted region), teaching a false
positive to the model, the decision rule in use, and model versions (loaded, trained, rolled back).

What is decided or recorded is done by the services with the acting user (``services.review``,
``services.records``); this controller only gathers the inputs from the view and moves the selection on.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from anomalyapp.core.errors import AppError
from anomalyapp.services import review


@dataclasses.dataclass(frozen=True)
class CorrectionFigures:
    """The last correction as the operator saw it (``tools/bench_correction.py`` reports these)."""

    correction: object  # services.correction.CorrectionResult
    learned_after: float  # seconds until the new version was learnt and saved
    first_update_s: float  # seconds until the first re-scored verdicts were on screen
    gui_seconds: float  # seconds until every listed result was re-scored and shown


class ReviewController(QObject):
    error = Signal(str, str)  # title, message

    def __init__(self, session, access, inspection, results_panel, viewer, review_bar, status, threshold,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.session, self.access, self.inspection = session, access, inspection
        self.results_panel, self.viewer, self.review_bar = results_panel, viewer, review_bar
        self.status, self.threshold = status, threshold
        self.last_correction: CorrectionFigures | None = None
        self._correction_started = 0.0
        self._correction_first_update: float | None = None
        # (model folder, why it is being loaded) when its load should say why (a rollback); a load of another
        # folder, after this one failed, does not
        self._loading_for: tuple[Path, str] | None = None
        self._threshold_settled = QTimer(self)
        self._threshold_settled.setSingleShot(True)
        self._threshold_settled.setInterval(250)
        self._threshold_settled.timeout.connect(self.commit_threshold)
        self._pending_rule = None
        inspection.recorder = self.record_result
        inspection.rescored.connect(self._rescored)
        inspection.correction_done.connect(self._correction_done)

    # ------------------------------------------------------------------------------- recording
    def record_result(self, result):
        """Runs in the inspection worker: the records service judges the result with the rule and model
        version in use and writes it; nothing here reads a Qt object."""
        records, user = self.access.records, self.access.user
        if records is None or user is None:
            return None
        try:
            saved = records.record_results([result], user)
        except AppError as error:
            self.inspection.error.emit(f"could not record {result.path.name}: {error}")
            return None
        return saved[0].id if saved else None

    # ------------------------------------------------------------------------------- decisions
    def label_current(self, label: str) -> None:
        """One key per decision: record the label (with note and painted region), then open the next image.
        OK on a part the model called NG or Review is a false positive: the model learns it at once when the
        person may change the model."""
        row_index = self.results_panel.current_source_row()
        if row_index is None or not self.access.require("label"):
            return
        # A threshold moved a moment ago is the rule this decision was made under: in the records first, and with
        # the version it was set on, not with a model version the decision makes.
        self.flush()
        model = self.results_panel.model()
        row = model.row_at(row_index)
        try:
            decision = review.decide(self.access.records, row.record_id, label, model.verdict_at(row_index),
                                     self.access.user, self.review_bar.note(), self.viewer_region_png(),
                                     model_loaded=self.inspection.session is not None)
        except AppError as error:
            self.error.emit("Label", str(error))
            return
        self.review_bar.clear()
        if decision.teach:
            self.correct_false_positive()
            return
        if decision.false_positive:
            # Operators may not change the model: the label is kept for a supervisor to teach (F2).
            self.status.show(f"{row.path.name} recorded as a false positive; a supervisor can teach it to the "
                             "model (F2)", 10000)
        self._label_and_open_next(row_index, label)

    def viewer_region_png(self) -> bytes | None:
        from anomalyapp.services.rendering import mask_png

        mask = self.viewer.painted_mask()
        return None if mask is None else mask_png(mask)

    def _label_and_open_next(self, row_index: int, label: str) -> None:
        """Show the decided row's label, then open the part listed after it, whether the label kept the row in the
        list or took it off (the review queue); after the last part, the one now last. The part after it is noted
        first: once the row has left a filtered list, the view's current index has already moved on."""
        position = self.results_panel.view.currentIndex().row()
        following = self.results_panel.source_row_after_current()
        self.results_panel.model().set_label(row_index, label)
        proxy = self.results_panel.proxy()
        if proxy.rowCount() == 0:
            self.viewer.clear()  # the list is done: the last decided part is no longer in it
            return
        if following is not None and self.results_panel.select_source_row(following):
            return
        target = proxy.index(min(position, proxy.rowCount() - 1), 1)
        self.results_panel.select_source_row(proxy.mapToSource(target).row())

    def correct_false_positive(self) -> None:
        """Label the selected result OK and add it to the model's notion of good, at once."""
        row_index = self.results_panel.current_source_row()
        project = self.session.project
        if row_index is None or project is None or not self.access.require("train"):
            return
        model = self.results_panel.model()
        row = model.row_at(row_index)
        if row.score is None:
            return
        self._label_and_open_next(row_index, "OK")
        order = review.correction_order([model.verdict_at(i) for i in range(model.rowCount())], row_index)
        listed = [(i, model.row_at(i).path) for i in order if model.row_at(i).score is not None]
        self._correction_started = time.perf_counter()
        self._correction_first_update = None
        self.status.show(f"learning {row.path.name} as good…")
        self.inspection.learn_good(row.path, project.models_dir, listed, self.access.user)

    def _rescored(self, item) -> None:
        _, scores, _seconds = item
        self.results_panel.model().update_scores(scores)
        self.threshold.result_scores.emit(self.results_panel.model().scores())
        if self._correction_first_update is None:
            self._correction_first_update = time.perf_counter() - self._correction_started

    def _correction_done(self, done) -> None:
        seconds = time.perf_counter() - self._correction_started
        folder = Path(done.correction.folder).name
        self.session.project.current_model = folder  # the correction recorded it as the version in use
        self.session.save()
        self.last_correction = CorrectionFigures(done.correction, done.learned_after,
                                                 self._correction_first_update or seconds, seconds)
        self.status.model_text.emit(f"model: {self.inspection.session.manifest.description}")  # as once reloaded
        self.status.show(
            f"learned as good in {done.learned_after:.2f} s; first verdicts updated after "
            f"{self.last_correction.first_update_s:.2f} s, all {seconds:.2f} s; {done.correction.change}", 15000
        )
        row_index = self.results_panel.current_source_row()
        if row_index is not None:
            self.inspection.show(self.results_panel.model().row_at(row_index).path)
        else:
            # The taught part left the list with its new verdict (Show: NG): its map, drawn by the model before the
            # correction, would stay on screen with an outline the new model no longer draws.
            self.viewer.clear()

    # --------------------------------------------------------------------------- decision rule
    def rule_moved(self, verdicts) -> None:
        """The threshold panel moved: the listed results are re-judged at once (by the window's wiring);
        the records follow when the threshold has come to rest, so dragging the line stays smooth."""
        self._pending_rule = verdicts
        self._threshold_settled.start()

    def flush(self) -> None:
        """A threshold moved just before closing or switching is still saved."""
        if self._threshold_settled.isActive():
            self._threshold_settled.stop()
            self.commit_threshold()

    def commit_threshold(self) -> None:
        """Make the panel's rule the one in use (the service checks and audits it); a refusal puts the panel
        back on the rule in use."""
        verdicts, records = self._pending_rule, self.access.records
        if verdicts is None:
            return
        self.viewer.set_threshold_level(verdicts.threshold)
        if records is None or self.session.project is None:
            return
        try:
            if (verdicts.threshold, verdicts.uncertain_low) != records.decision_rule():
                records.set_threshold(self.access.user, verdicts.threshold, verdicts.uncertain_low,
                                      reason="threshold panel", project=self.session.project)
        except AppError as error:
            self.error.emit("Threshold", str(error))
            self.show_decision_rule()

    def show_decision_rule(self) -> None:
        """Show the rule in use (the project's records hold it; the project file only a copy)."""
        records, project = self.access.records, self.session.project
        if records is not None:
            self.threshold.rule.emit(*records.decision_rule())
        elif project is not None:
            self.threshold.rule.emit(project.threshold, project.uncertain_low)

    # ---------------------------------------------------------------------------- model versions
    def model_loaded(self, _manifest) -> None:
        """A model loaded: its reference scores (normalised by its calibration) and expected false rejects;
        into records that hold no rule yet, the model's calibrated Review band."""
        summary = self.inspection.session.summary()
        self.threshold.reference_scores.emit(summary.good_scores, summary.defect_scores)
        loaded = summary.calibration
        self.threshold.expected_rate.emit(loaded.describe_expected_false_rejects)
        self.threshold.suspects.emit(loaded.describe_suspects())
        self.threshold.suspect_images.emit(summary.suspect_images)
        self.threshold.calibrated_band.emit(loaded.uncertain_low_normalised)
        records = self.access.records
        if records is not None and self.session.project is not None and self.access.can("change_threshold"):
            try:
                if records.start_with_calibrated_band(self.access.user, loaded.uncertain_low_normalised,
                                                      self.session.project):
                    self.show_decision_rule()
            except AppError as error:
                self.error.emit("Threshold", str(error))
        self.status.model_text.emit(f"model: {summary.description}")
        # What brought this model in (a rollback) is said with it: the load's own message would replace it.
        pending, self._loading_for = self._loading_for, None
        done = pending[1] if pending and self.inspection.model_path == pending[0] else None
        if self.access.user is None:
            return  # behind the login: the status keeps saying the station is locked, not what to inspect
        self.status.show((f"{done}; model " if done else "model ")
                         + "loaded; inspect a folder (Ctrl+I), drop images here, or start the camera", 8000)

    def set_aside(self, images: list[Path]) -> bool:
        """Move good training images that are not good out of the good images (the records service checks
        that the user may train and audits each move); True when all moved."""
        records, user, project = self.access.records, self.access.user, self.session.project
        if records is None or user is None or project is None or not project.good_folder:
            return False
        for image in images:
            try:
                moved = records.set_aside_good_image(image, project.good_folder, user,
                                                     reason="named by the calibration as scoring like a defect")
            except AppError as error:
                self.error.emit("Set aside", str(error))
                return False
            self.status.show(f"{Path(image).name} set aside: {moved}", 8000)
        # Nothing is left to show or move until the new model says otherwise.
        self.threshold.suspect_images.emit([image for image in images if Path(image).is_file()])
        return True

    def model_trained(self, path) -> None:
        # A new model brings its own calibration: the training recorded it as the version in use.
        self.show_decision_rule()
        self.inspection.load_model(path)

    def threshold_applied(self, value: float) -> None:
        self.show_decision_rule()
        self.status.show(f"threshold {value:.3f} applied as a new model version", 8000)

    def version_restored(self, version) -> None:
        project = self.session.project
        project.current_model = version.folder
        project.keep_decision_rule(*self.access.records.decision_rule())  # the rule restored with it; saves
        self.show_decision_rule()
        done = f"rolled back to version {version.id} ({version.change})"
        self._loading_for = (project.models_dir / version.folder, done)
        self.inspection.load_model(project.models_dir / version.folder)
        self.status.show(f"{done}: loading its model…")
