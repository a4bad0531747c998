"""The main window: the composition root. It builds the widgets, view-models and controllers and wires them.

The flows live in the controllers (``session``: project lifecycle and preferences; ``review``: decisions,
corrections, the decision rule and model versions; ``flows``: training and inspection) and the decisions in
the services; the window only connects intent signals to them and view-model signals to widget setters.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from anomalyapp.gui import actions, window_dialogs
from anomalyapp.gui.access import AccessController
from anomalyapp.gui.camera_controller import CameraController
from anomalyapp.gui.controllers import EvaluationController, InspectionController, TrainingController
from anomalyapp.gui.flows import InspectionFlow, TrainingFlow
from anomalyapp.gui.review import ReviewController
from anomalyapp.gui.session import ProjectSession
from anomalyapp.gui.viewmodels import CameraViewModel, StatusViewModel, ThresholdViewModel, TrainingViewModel
from anomalyapp.gui.widgets.camera_panel import CameraPanel
from anomalyapp.gui.widgets.image_viewer import ImageViewer
from anomalyapp.gui.widgets.results_table import ResultsPanel
from anomalyapp.gui.widgets.review_bar import ReviewBar
from anomalyapp.gui.widgets.threshold_panel import ThresholdPanel
from anomalyapp.gui.widgets.training_panel import TrainingPanel
from anomalyapp.services import project as projects

SETTINGS_VERSION = 1
_GEOMETRY_KEY = f"window/v{SETTINGS_VERSION}/geometry"
_STATE_KEY = f"window/v{SETTINGS_VERSION}/state"
_IMAGES = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.PNG *.JPG *.JPEG *.BMP *.TIF *.TIFF)"


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.setWindowTitle("anomalyapp")
        self.setObjectName("main_window")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings()
        self.last_error: str | None = None
        self._quit_confirmed = False

        self.viewer, self.training_panel, self.camera_panel = ImageViewer(), TrainingPanel(), CameraPanel()
        self.results_panel, self.threshold_panel, self.review_bar = ResultsPanel(), ThresholdPanel(), ReviewBar()
        self.note_edit = self.review_bar.note_edit
        self.setCentralWidget(self.viewer)

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

        self.left_tabs = QTabWidget()
        self.left_tabs.setObjectName("left_tabs")
        self.left_tabs.addTab(self.training_panel, "Project && training")
        self.left_tabs.addTab(self.camera_panel, "Camera")
        results = QWidget()
        layout = QVBoxLayout(results)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.results_panel, 1)
        layout.addWidget(self.review_bar)
        self.setup_dock = self._dock("Setup", self.left_tabs, Qt.DockWidgetArea.LeftDockWidgetArea, "setup_dock")
        self.results_dock = self._dock("Results", results, Qt.DockWidgetArea.RightDockWidgetArea, "results_dock")
        self.threshold_dock = self._dock("Threshold", self.threshold_panel, Qt.DockWidgetArea.BottomDockWidgetArea,
                                         "threshold_dock")
        for name, text in (("user_label", "not logged in"), ("device_label", "device: —"),
                           ("model_label", "no model"), ("latency_label", "")):
            label = QLabel(text)
            label.setObjectName(name)
            setattr(self, name, label)
            self.statusBar().addPermanentWidget(label)

        actions.build_actions(self, self._fill_recent)
        self._wire()
        self._restore_state()
        self.session.apply_config()
        self._show_device()

    def _dock(self, title: str, widget: QWidget, area, name: str) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _wire(self) -> None:
        panel, status, view, threshold = self.training_panel, self.status, self.training_view, self.threshold_view
        panel.train_requested.connect(self.start_training)
        panel.cancel_requested.connect(self.trainer.cancel)
        panel.estimate_requested.connect(self.training.estimate)
        panel.good_folder_changed.connect(self.session.set_good_folder)
        view.running_changed.connect(panel.set_running)
        view.progress.connect(panel.show_progress)
        view.time_left.connect(panel.eta_label.setText)
        view.ended.connect(panel.finish)
        view.estimate_text.connect(panel.estimate_label.setText)
        view.cleared.connect(panel.clear)
        status.message.connect(lambda text, ms: self.statusBar().showMessage(text, ms))
        status.model_text.connect(self.model_label.setText)
        status.latency_text.connect(self.latency_label.setText)
        status.device_text.connect(self.device_label.setText)
        threshold.reference_scores.connect(self.threshold_panel.set_reference_scores)
        threshold.result_scores.connect(self.threshold_panel.set_result_scores)
        threshold.expected_rate.connect(self.threshold_panel.set_expected_rate)
        threshold.rule.connect(lambda value, low: (self.threshold_panel.set_threshold(value),
                                                   self.threshold_panel.set_uncertain(low)))
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
        self.camera.attach(self.camera_panel, self.viewer)
        # Probing cameras takes a moment: done in the background when the Camera tab is first opened.
        self.left_tabs.currentChanged.connect(lambda index: self.camera.refresh() if self.left_tabs.widget(index)
                                              is self.camera_panel and not self.camera.probed else None)

    # ---------------------------------------------------------------------- view-model to widgets
    def _project_replaced(self, project) -> None:
        self.setWindowTitle(f"{project.name} — anomalyapp")
        self.training_panel.set_project(project.name, project.good_folder)
        self.training_panel.set_settings(project.training)
        self.camera.captures_dir = project.captures_dir
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
        self.threshold_panel.set_editable(self.access.can("change_threshold"))
        # Locked (nobody logged in): nothing of the project is shown or reachable until someone logs in.
        for widget in (self.centralWidget(), self.setup_dock, self.results_dock, self.threshold_dock):
            widget.setEnabled(not locked)
            widget.setVisible(not locked)

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

    def new_project(self) -> None:
        from anomalyapp.gui.widgets.new_project_dialog import NewProjectDialog

        self.new_project_dialog = NewProjectDialog(self.session.create, self)
        self.new_project_dialog.open()

    def open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open project")
        if folder:
            self.open_project(folder)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in projects.recent_projects():
            self.recent_menu.addAction(str(path), lambda p=path: self.open_project(p))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def inspect_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Inspect folder (and its subfolders)")
        if folder:
            self.inspect([folder])

    def inspect_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Inspect images", "", _IMAGES)
        if files:
            self.inspect(files)

    def evaluate_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with test/ and ground_truth/ (MVTec layout)")
        if folder:
            self.inspection_flow.evaluate(folder)

    def inspect(self, inputs) -> None:
        self.inspection_flow.inspect(inputs)

    def start_training(self) -> None:
        self.training.start()

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
    show_records = window_dialogs.show_records
    edit_preferences = window_dialogs.edit_preferences
    show_shortcuts = window_dialogs.show_shortcuts
    show_about = window_dialogs.show_about

    def show_error(self, title: str, message: str) -> None:
        self.statusBar().showMessage(f"{title}: {message}", 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setObjectName("error_dialog")
        box.open()
        self.last_error = message

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            self.inspect(paths)

    # ------------------------------------------------------------------------------ lifecycle
    def _restore_state(self) -> None:
        geometry, state = self.settings.value(_GEOMETRY_KEY), self.settings.value(_STATE_KEY)
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:  # the first start fits the screen (a 1280x800 panel PC too)
            room = self.screen().availableGeometry()
            self.resize(min(1500, room.width() - 40), min(950, room.height() - 60))
        if state is not None:
            self.restoreState(state)
        else:  # first start: the image gets the most room; the threshold strip stays short
            self.resizeDocks([self.setup_dock, self.results_dock], [360, 430], Qt.Orientation.Horizontal)
            self.resizeDocks([self.threshold_dock], [250], Qt.Orientation.Vertical)

    def closeEvent(self, event) -> None:
        if self.trainer.running and not self._quit_confirmed:
            event.ignore()  # asked first; "yes" cancels the training and closes once it has stopped
            window_dialogs.ask_quit_during_training(self, self._quit_cancelling_training)
            return
        self.review.flush()
        self.settings.setValue(_GEOMETRY_KEY, self.saveGeometry())
        self.settings.setValue(_STATE_KEY, self.saveState())
        self.camera.stop()
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
