"""The main window: the composition root. It builds the widgets, view-models and controllers and wires them.

The flows live in the controllers (``session``: project lifecycle and preferences; ``review``: decisions,
corrections, the decision rule and model versions; ``flows``: training and inspection) and the decisions in
the services; where the panels sit is ``window_layout``'s, the dialogs are ``window_dialogs``'. The window only
connects intent signals to them and view-model signals to widget setters.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QMainWindow

from anomalyapp.gui import actions, window_dialogs, window_layout
from anomalyapp.gui.access import AccessController
from anomalyapp.gui.camera_controller import CameraController
from anomalyapp.gui.controllers import EvaluationController, InspectionController, TrainingController
from anomalyapp.gui.flows import InspectionFlow, TrainingFlow
from anomalyapp.gui.review import ReviewController
from anomalyapp.gui.session import ProjectSession
from anomalyapp.gui.viewmodels import CameraViewModel, StatusViewModel, ThresholdViewModel, TrainingViewModel
from anomalyapp.gui.watch_controller import WatchController, open_watch_dialog
from anomalyapp.gui.widgets.camera_panel import CameraPanel
from anomalyapp.gui.widgets.image_viewer import ImageViewer
from anomalyapp.gui.widgets.results_table import ResultsPanel
from anomalyapp.gui.widgets.review_bar import ReviewBar
from anomalyapp.gui.widgets.threshold_panel import ThresholdPanel
from anomalyapp.gui.widgets.training_panel import TrainingPanel

LOCKED_MESSAGE = "station locked: log in to continue"


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.setWindowTitle("anomalyapp")
        self.setObjectName("main_window")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings()
        # The folder each file chooser last chose, per (purpose, project root): window_dialogs._start_folder.
        self.last_folders: dict[tuple[str, str | None], str] = {}
        self.last_error: str | None = None
        self._quit_confirmed = False

        self.viewer, self.training_panel, self.camera_panel = ImageViewer(), TrainingPanel(), CameraPanel()
        self.results_panel, self.threshold_panel, self.review_bar = ResultsPanel(), ThresholdPanel(), ReviewBar()
        self.note_edit = self.review_bar.note_edit
        window_layout.build(self)

        self.status, self.threshold_view = StatusViewModel(self), ThresholdViewModel(self)
        self.training_view, self.camera_view = TrainingViewModel(self), CameraViewModel(self)
        self.trainer, self.inspection = TrainingController(self), InspectionController(self)
        self.evaluation = EvaluationController(self.inspection, self)
        self.camera, self.access = CameraController(self.inspection, self), AccessController(self)
        self.inspection_flow = InspectionFlow(self.inspection, self.evaluation, self.results_panel, self.viewer,
                                              self.status, self.threshold_view, self)
        self.session = ProjectSession(self.access, self.inspection, self.trainer,
                                      [self.status, self.threshold_view, self.training_view, self.camera_view,
                                       self.inspection_flow], self)
        self.review = ReviewController(self.session, self.access, self.inspection, self.results_panel, self.viewer,
                                       self.review_bar, self.status, self.threshold_view, self)
        self.training = TrainingFlow(self.session, self.access, self.trainer, self.training_panel,
                                     self.training_view, self.review, self)
        self.watch = WatchController(self.inspection, self.access, self.session, self)
        actions.build_actions(self, lambda: window_dialogs.fill_recent(self))
        self._wire()
        window_layout.restore(self, self.settings)
        self.session.apply_config()
        self._show_device()

    def _wire(self) -> None:
        panel, status, view, threshold = self.training_panel, self.status, self.training_view, self.threshold_view
        panel.train_requested.connect(self.start_training)
        panel.cancel_requested.connect(self.trainer.cancel)
        panel.estimate_requested.connect(self.training.estimate)
        panel.region_requested.connect(self.training.draw_region)
        panel.good_folder_changed.connect(self.session.set_good_folder)
        view.running_changed.connect(panel.set_running)
        view.progress.connect(panel.show_progress)
        view.time_left.connect(panel.eta_label.setText)
        view.ended.connect(panel.finish)
        view.estimate_text.connect(panel.estimate_label.setText)
        view.cleared.connect(panel.clear)
        status.message.connect(self.status_line.show_message)
        status.model_text.connect(self.model_label.setText)
        status.latency_text.connect(self.latency_label.setText)
        status.device_text.connect(self.device_label.setText)
        threshold.reference_scores.connect(self.threshold_panel.set_reference_scores)
        threshold.result_scores.connect(self.threshold_panel.set_result_scores)
        threshold.expected_rate.connect(self.threshold_panel.set_expected_rate)
        threshold.suspects.connect(self.threshold_panel.set_suspects_note)
        threshold.suspect_images.connect(self.threshold_panel.set_suspect_images)
        self.threshold_panel.show_suspect_requested.connect(self.show_good_image)
        self.threshold_panel.set_aside_requested.connect(self.confirm_set_aside)
        threshold.rule.connect(self.threshold_panel.set_rule)
        threshold.calibrated_band.connect(self.threshold_panel.set_calibrated_band)
        self.camera_view.cleared.connect(lambda: (self.camera_panel.verdict_label.clear(),
                                                  self.camera_panel.verdict_label.setStyleSheet(""),
                                                  self.camera_panel.fps_label.clear()))
        self.threshold_panel.verdicts_changed.connect(self._verdicts_changed)
        self.review_bar.decision_requested.connect(self.label_current)
        self.review_bar.note_finished.connect(self.results_panel.view.setFocus)  # G / B decide again
        self.review_bar.paint_toggled.connect(lambda on: (self.paint_action.setChecked(on), self.viewer.set_paint_mode(on)))
        self.viewer.hover_changed.connect(lambda text: status.show(text))
        self.inspection.model_loaded.connect(self.review.model_loaded)
        self.inspection.model_loaded.connect(lambda _: self._show_device())
        # The model's region of interest, dimmed around on the viewer (nothing outside it is scored).
        self.inspection.model_loaded.connect(lambda manifest: self.viewer.set_region(manifest.values["config"].get("roi")))
        for source, title in ((self.inspection.model_failed, "Model"), (self.inspection.error, "Inspection"),
                              (self.evaluation.failed, "Evaluation"), (self.access.error, "Permission"),
                              (self.access.records_warning, "Records changed outside anomalyapp"),
                              (self.camera.error, "Camera")):
            source.connect(lambda message, title=title: self.show_error(title, message))
        for controller in (self.session, self.review, self.training, self.inspection_flow):
            controller.error.connect(self.show_error)
        self.evaluation.finished.connect(lambda result: window_dialogs.show_evaluation(self, result))
        self.session.about_to_replace.connect(self.review.flush)
        self.session.replaced.connect(self._project_replaced)
        self.session.config_changed.connect(self._config_changed)
        self.access.user_changed.connect(self.user_changed)
        self.access.login_needed.connect(lambda: window_dialogs.ask_login(self))
        self.access.first_user_needed.connect(lambda: window_dialogs.ask_first_user(self))
        self.trainer.ended.connect(lambda *_: self.close() if self._quit_confirmed else None)
        # Cancel (Esc) is there while a training or an inspection runs, greyed out otherwise, as a stop button is.
        self._cancellable = {"training": False, "inspection": False}
        self.trainer.started.connect(lambda: self._set_cancellable("training", True))
        self.trainer.ended.connect(lambda *_: self._set_cancellable("training", False))
        self.inspection.busy_changed.connect(lambda busy: self._set_cancellable("inspection", busy))
        self.cancel_action.setEnabled(False)
        self.watch.result_ready.connect(self.inspection.result_ready)  # into the table like any inspection
        self.watch.status_text.connect(lambda text: status.show(text))
        self.watch.error.connect(lambda message: self.show_error("Watch folder", message))
        self.session.about_to_replace.connect(self.watch.stop)
        self.camera.attach(self.camera_panel, self.viewer)
        # A live frame replaces the selected result in the viewer: the result is deselected, so that G, B and the
        # paint brush, which act on the selection, cannot label a part the viewer no longer shows (Freeze stops
        # the frames, and a result selected then is shown and labelled as usual).
        self.camera.taking_viewer.connect(self._camera_takes_viewer)
        # Probing cameras takes a moment: done in the background when the Camera tab is first opened.
        self.left_tabs.currentChanged.connect(lambda index: self.camera.refresh() if self.left_tabs.widget(index)
                                              is self.camera_tab and not self.camera.probed else None)

    # ---------------------------------------------------------------------- view-model to widgets
    def _project_replaced(self, project) -> None:
        self.setWindowTitle(f"{project.name} — anomalyapp")
        self.training_panel.set_project(project.name, project.good_folder)
        self.training_panel.set_settings(project.training)
        self.camera.captures_dir = project.captures_dir
        self.threshold_panel.forget_band()
        self.review.show_decision_rule()
        if project.model_path is None:
            self.status.model_text.emit("no model yet: train on the good images")

    def _verdicts_changed(self, verdicts) -> None:
        self.results_panel.model().set_verdicts(verdicts)  # re-judged at once, without the model
        self.camera.verdicts = verdicts
        self.review.rule_moved(verdicts)

    def _config_changed(self, config) -> None:
        self.viewer.set_opacity(config.overlay_opacity)
        self.viewer.set_outlines_visible(config.show_outlines)

    def user_changed(self, user) -> None:
        self.user_label.setText(self.access.user_text)
        locked = user is None
        actions.gate(self, self.access, locked)
        self.training_panel.train_button.setEnabled(self.access.can("train") and not self.trainer.running)
        self.training_panel.set_settings_editable(self.access.can("train"))  # as flows keeps them: "train" alone
        self.threshold_panel.set_editable(self.access.can("change_threshold"))
        self.threshold_panel.set_aside_button.setEnabled(self.access.can("train"))  # the service checks it too
        # Locked (nobody logged in): nothing of the project is shown or reachable until someone logs in.
        for widget in (self.centralWidget(), self.setup_dock, self.results_dock, self.threshold_dock):
            widget.setEnabled(not locked)
            widget.setVisible(not locked)
        if locked:  # the last message may name a part or a folder of the project now hidden
            self.status_line.show_message(LOCKED_MESSAGE)
        elif self.status_line.message() == LOCKED_MESSAGE:  # someone logged in (or a project opened and did)
            self.status_line.show_message("")

    def _show_device(self) -> None:
        from anomalyapp.services.device import describe_device

        self.status.device_text.emit(f"device: {describe_device()}")

    # ----------------------------------------------------------------- intents (actions, tests)
    project = property(lambda self: self.session.project)
    app_config = property(lambda self: self.session.app_config)
    last_correction = property(lambda self: self.review.last_correction)

    def set_project(self, project) -> None:
        self.session.set_project(project)

    def open_project(self, folder) -> None:
        self.session.open(folder)

    new_project = window_dialogs.new_project
    open_project_dialog = window_dialogs.open_project_dialog
    inspect_folder_dialog = window_dialogs.inspect_folder_dialog
    inspect_files_dialog = window_dialogs.inspect_files_dialog
    evaluate_dialog = window_dialogs.evaluate_dialog
    confirm_set_aside = window_dialogs.confirm_set_aside
    watch_folder_dialog = open_watch_dialog

    def inspect(self, inputs) -> None:
        self.inspection_flow.inspect(inputs)

    def _camera_takes_viewer(self) -> None:
        if self.results_panel.current_row() is not None:
            self.results_panel.select_none()

    def show_good_image(self, path) -> None:
        """A good training image the model's note names, shown as it is. Nothing in the results stays selected:
        G and B act on the selection, and must not label a part the viewer no longer shows."""
        self.results_panel.select_none()
        name = Path(path).name
        self.inspection.show_picture(Path(path), f"{name}: not inspected")
        self.status.show(f"{name} as it is, from the good images: look whether it is good. Not inspected: the model "
                         "learnt it; the note gives the score it gets unseen", 20000)

    def start_training(self) -> None:
        self.training.start()

    def _set_cancellable(self, work: str, running: bool) -> None:
        self._cancellable[work] = running
        self.cancel_action.setEnabled(any(self._cancellable.values()))

    def cancel_work(self) -> None:
        self.trainer.cancel()
        self.inspection.stop()

    def label_current(self, label: str) -> None:
        self.review.label_current(label)

    def correct_false_positive(self) -> None:
        self.review.correct_false_positive()

    def toggle_paint(self) -> None:
        self.review_bar.set_painting(self.paint_action.isChecked())
        self.viewer.set_paint_mode(self.paint_action.isChecked())

    select_next = property(lambda self: self.results_panel.select_next)
    select_previous = property(lambda self: self.results_panel.select_previous)
    mark_ok = property(lambda self: lambda: self.label_current("OK"))
    mark_ng = property(lambda self: lambda: self.label_current("NG"))
    zoom_in = property(lambda self: lambda: self.viewer.zoom(1.25))
    zoom_out = property(lambda self: lambda: self.viewer.zoom(0.8))
    lock = property(lambda self: self.access.lock)
    show_users = window_dialogs.show_users
    change_password = window_dialogs.change_password
    show_records = window_dialogs.show_records
    edit_preferences = window_dialogs.edit_preferences
    show_shortcuts = window_dialogs.show_shortcuts
    show_about = window_dialogs.show_about

    show_error = window_dialogs.show_error

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            self.inspect(paths)

    # ------------------------------------------------------------------------------ lifecycle
    def closeEvent(self, event) -> None:
        if self.trainer.running and not self._quit_confirmed:
            event.ignore()  # asked first; "yes" cancels the training and closes once it has stopped
            window_dialogs.ask_quit_during_training(self, self._quit_cancelling_training)
            return
        self.review.flush()
        self.training.flush_settings()
        window_layout.save(self, self.settings)
        self.camera.stop()
        self.watch.stop()
        self.trainer.cancel()
        self.inspection.stop()
        super().closeEvent(event)

    def _quit_cancelling_training(self) -> None:
        self._quit_confirmed = True
        self.trainer.cancel()
        if not self.trainer.running:
            self.close()

    def auto_start(self) -> None:
        """For the demo: train when there is no model, then inspect the demo's test images."""
        folders = self.session.demo_test_folders()
        if folders:
            self.inspection.model_loaded.connect(lambda *_: QTimer.singleShot(0, self, lambda: self.inspect(folders)),
                                                 Qt.ConnectionType.SingleShotConnection)
        if self.project is not None and self.project.model_path is None:
            self.start_training()
