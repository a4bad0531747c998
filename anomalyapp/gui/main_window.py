"""The main window: the composition root. It builds the widgets and controllers and wires them; no logic."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from anomalyapp import __version__
from anomalyapp.core.errors import AppError
from anomalyapp.core.verdicts import NORMALISED_THRESHOLD, Verdicts
from anomalyapp.gui.access import AccessController
from anomalyapp.gui.camera_controller import CameraController
from anomalyapp.gui.controllers import EvaluationController, InspectionController, TrainingController
from anomalyapp.gui.widgets.camera_panel import CameraPanel
from anomalyapp.gui.widgets.evaluation_plots import EvaluationPlots
from anomalyapp.gui.widgets.image_viewer import ImageViewer
from anomalyapp.gui.widgets.results_table import ResultsPanel
from anomalyapp.gui.widgets.threshold_panel import ThresholdPanel
from anomalyapp.gui.widgets.training_panel import TrainingPanel
from anomalyapp.services import project as projects
from anomalyapp.services.settings import apply_pixel_limit, load_settings, save_settings

SETTINGS_VERSION = 1
_GEOMETRY_KEY = f"window/v{SETTINGS_VERSION}/geometry"
_STATE_KEY = f"window/v{SETTINGS_VERSION}/state"


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.setWindowTitle("anomalyapp")
        self.setObjectName("main_window")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings()
        self.project: projects.Project | None = None
        self.app_config = load_settings()
        apply_pixel_limit(self.app_config.max_megapixels)

        self.viewer = ImageViewer()
        self.setCentralWidget(self.viewer)
        self.training_panel = TrainingPanel()
        self.camera_panel = CameraPanel()
        self.results_panel = ResultsPanel()
        self.threshold_panel = ThresholdPanel()

        self.trainer = TrainingController(self)
        self.inspection = InspectionController(self)
        self.evaluation = EvaluationController(self.inspection, self)
        self.camera = CameraController(self.inspection, self)
        self.access = AccessController(self)
        self.inspection.recorder = self._record_result
        self._threshold_settled = QTimer(self)
        self._threshold_settled.setSingleShot(True)
        self._threshold_settled.setInterval(250)
        self._threshold_settled.timeout.connect(self._threshold_came_to_rest)
        # Results can arrive every 20 ms; the histogram is redrawn at most a few times a second.
        self._histogram_refresh = QTimer(self)
        self._histogram_refresh.setSingleShot(True)
        self._histogram_refresh.setInterval(400)
        self._histogram_refresh.timeout.connect(
            lambda: self.threshold_panel.set_result_scores(self.results_panel.model().scores())
        )

        self.left_tabs = QTabWidget()
        self.left_tabs.setObjectName("left_tabs")
        self.left_tabs.addTab(self.training_panel, "Project && training")
        self.left_tabs.addTab(self.camera_panel, "Camera")
        self.setup_dock = self._dock("Setup", self.left_tabs, Qt.DockWidgetArea.LeftDockWidgetArea, "setup_dock")
        self.results_dock = self._dock("Results", self._results_with_review(), Qt.DockWidgetArea.RightDockWidgetArea, "results_dock")
        self.threshold_dock = self._dock(
            "Threshold", self.threshold_panel, Qt.DockWidgetArea.BottomDockWidgetArea, "threshold_dock"
        )

        self.user_label = QLabel("not logged in")
        self.user_label.setObjectName("user_label")
        self.statusBar().addPermanentWidget(self.user_label)
        self.device_label = QLabel("device: —")
        self.model_label = QLabel("no model")
        self.latency_label = QLabel("")
        for label, name in ((self.device_label, "device_label"), (self.model_label, "model_label"),
                            (self.latency_label, "latency_label")):
            label.setObjectName(name)
            self.statusBar().addPermanentWidget(label)

        self._build_actions()
        self._wire()
        self._restore_state()
        self._apply_config()
        self._show_device()

    # ---------------------------------------------------------------------------------- building
    def _dock(self, title: str, widget: QWidget, area, name: str) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot, shortcut=None, tip: str = "", name: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        tip_text = tip or text.replace("…", "").replace("&", "")
        if shortcut:
            tip_text += f" ({QKeySequence(shortcut).toString()})"
        action.setToolTip(tip_text)
        action.setStatusTip(tip_text)
        action.triggered.connect(slot)
        action.setObjectName(name)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        a = self._action
        self.new_project_action = a("&New project…", self.new_project, QKeySequence.StandardKey.New, name="new_project_action")
        self.open_project_action = a("&Open project…", self.open_project_dialog, QKeySequence.StandardKey.Open, name="open_project_action")
        self.inspect_folder_action = a("Inspect &folder…", self.inspect_folder_dialog, "Ctrl+I", "Score every image in a folder", name="inspect_folder_action")
        self.inspect_files_action = a("Inspect fi&les…", self.inspect_files_dialog, "Ctrl+Shift+I", name="inspect_files_action")
        self.train_action = a("&Train", self.start_training, "Ctrl+T", "Train on the good images", name="train_action")
        self.cancel_action = a("&Cancel", self.cancel_work, "Esc", "Cancel training or inspection", name="cancel_action")
        self.evaluate_action = a("&Evaluate…", self.evaluate_dialog, "Ctrl+E", "Metrics on a folder with ground truth (MVTec layout)", name="evaluate_action")
        self.next_action = a("Next image", self.results_panel.select_next, "N", name="next_action")
        self.previous_action = a("Previous image", self.results_panel.select_previous, "P", name="previous_action")
        self.mark_ok_action = a("Mark OK (a false positive is learned as good)", lambda: self.label_current("OK"), "G",
                                name="mark_ok_action")
        self.false_positive_action = a(
            "Mark false positive (learn as good)", self.correct_false_positive, "F2",
            "Mark the selected NG part good and teach the model at once, without retraining",
            name="false_positive_action",
        )
        self.mark_ng_action = a("Mark NG (defect)", lambda: self.label_current("NG"), "B", name="mark_ng_action")
        self.zoom_in_action = a("Zoom in", lambda: self.viewer.zoom(1.25), QKeySequence.StandardKey.ZoomIn, name="zoom_in_action")
        self.zoom_out_action = a("Zoom out", lambda: self.viewer.zoom(0.8), QKeySequence.StandardKey.ZoomOut, name="zoom_out_action")
        self.records_action = a("&Records and reports…", self.show_records, "Ctrl+R",
                                "Search inspections, export CSV/PDF, threshold from labels, model versions",
                                name="records_action")
        self.users_action = a("&Users…", self.show_users, None, "Accounts and single-user mode (supervisor)",
                              name="users_action")
        self.lock_action = a("&Lock station", self.access.lock, "Ctrl+L", name="lock_action")
        self.paint_action = a("Paint defect region", self._toggle_paint, "D", name="paint_action")
        self.paint_action.setCheckable(True)
        self.quit_action = a("&Quit", self.close, QKeySequence.StandardKey.Quit, name="quit_action")
        self.preferences_action = a("&Preferences…", self.edit_preferences, QKeySequence.StandardKey.Preferences,
                                    name="preferences_action")

        menu = self.menuBar()
        file_menu = menu.addMenu("&Project")
        file_menu.addActions([self.new_project_action, self.open_project_action])
        self.recent_menu = QMenu("Open &recent", self)
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        file_menu.addMenu(self.recent_menu)
        file_menu.addSeparator()
        file_menu.addActions([self.records_action, self.users_action, self.lock_action])
        file_menu.addSeparator()
        file_menu.addAction(self.preferences_action)
        file_menu.addAction(self.quit_action)
        inspect_menu = menu.addMenu("&Inspect")
        inspect_menu.addActions([self.inspect_folder_action, self.inspect_files_action, self.evaluate_action])
        inspect_menu.addSeparator()
        inspect_menu.addActions([self.next_action, self.previous_action, self.mark_ok_action, self.mark_ng_action,
                                 self.false_positive_action, self.paint_action])
        model_menu = menu.addMenu("&Model")
        model_menu.addActions([self.train_action, self.cancel_action])
        view_menu = menu.addMenu("&View")
        view_menu.addActions([self.zoom_in_action, self.zoom_out_action])
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self._action("&Keyboard shortcuts", self._show_shortcuts, name="shortcuts_action"))
        help_menu.addAction(self._action("&About", self._about, name="about_action"))

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main_toolbar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        toolbar.addActions([self.new_project_action, self.open_project_action])
        toolbar.addSeparator()
        toolbar.addActions([self.train_action, self.cancel_action])
        toolbar.addSeparator()
        toolbar.addActions([self.inspect_folder_action, self.inspect_files_action, self.evaluate_action])
        toolbar.addSeparator()
        toolbar.addActions([self.records_action, self.lock_action])

    def _wire(self) -> None:
        panel = self.training_panel
        panel.train_requested.connect(self.start_training)
        panel.cancel_requested.connect(self.trainer.cancel)
        panel.estimate_requested.connect(self._estimate)
        panel.good_folder_changed.connect(self._good_folder_changed)
        self.trainer.started.connect(lambda: panel.set_running(True))
        self.trainer.progress.connect(panel.show_progress)
        self.trainer.finished.connect(panel.finish)
        self.trainer.failed.connect(lambda message: self.show_error("Training", message))
        self.trainer.estimate_ready.connect(panel.estimate_label.setText)
        self.trainer.model_ready.connect(self._model_trained)

        self.inspection.model_loaded.connect(self._model_loaded)
        self.inspection.model_failed.connect(lambda message: self.show_error("Model", message))
        self.inspection.result_ready.connect(self._result_ready)
        self.inspection.display_ready.connect(self._display)
        self.inspection.latency.connect(lambda ms: self.latency_label.setText(f"{ms:.0f} ms/image"))
        self.inspection.error.connect(lambda message: self.show_error("Inspection", message))
        self.inspection.busy_changed.connect(self._busy_changed)
        self.inspection.rescored.connect(self._rescored)
        self.inspection.correction_done.connect(self._correction_done)

        self.results_panel.current_changed.connect(self._current_changed)
        self.threshold_panel.verdicts_changed.connect(self._verdicts_changed)
        self.viewer.hover_changed.connect(lambda text: self.statusBar().showMessage(text))

        self.evaluation.progress.connect(lambda p: self.statusBar().showMessage(p.message))
        self.evaluation.finished.connect(self._show_evaluation)
        self.evaluation.failed.connect(lambda message: self.show_error("Evaluation", message))

        self.access.user_changed.connect(self._user_changed)
        self.access.login_needed.connect(self._ask_login)
        self.access.first_user_needed.connect(self._ask_first_user)
        self.access.error.connect(lambda message: self.show_error("Permission", message))
        self.access.records_warning.connect(lambda message: self.show_error("Records changed outside anomalyapp", message))

        self.camera.attach(self.camera_panel, self.viewer)
        # Probing cameras takes a moment: done in the background when the Camera tab is first opened.
        self.left_tabs.currentChanged.connect(
            lambda index: self.camera.refresh()
            if self.left_tabs.widget(index) is self.camera_panel and not self.camera.probed else None
        )
        self.camera.error.connect(lambda message: self.show_error("Camera", message))

    def _results_with_review(self) -> QWidget:
        """The results table with the review bar under it: note, paint, OK / NG decisions."""
        self.note_edit = QLineEdit()
        self.note_edit.setObjectName("review_note")
        self.note_edit.setPlaceholderText("Note for the next decision (optional)")
        ok_button = QPushButton("OK — false positive (G)")
        ok_button.setObjectName("review_ok_button")
        ok_button.clicked.connect(lambda: self.label_current("OK"))
        ng_button = QPushButton("NG — confirmed (B)")
        ng_button.setObjectName("review_ng_button")
        ng_button.clicked.connect(lambda: self.label_current("NG"))
        paint = QCheckBox("Paint region (D)")
        paint.setObjectName("review_paint_toggle")
        paint.toggled.connect(lambda on: self.paint_action.setChecked(on) or self._toggle_paint())
        self.paint_toggle = paint
        buttons = QHBoxLayout()
        buttons.addWidget(ok_button)
        buttons.addWidget(ng_button)
        buttons.addWidget(paint)
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.results_panel, 1)
        layout.addWidget(self.note_edit)
        layout.addLayout(buttons)
        return box

    # ------------------------------------------------------------------------------ accounts
    def _user_changed(self, user) -> None:
        self.user_label.setText(self.access.user_text)
        can = self.access.can
        for action, permission in ((self.train_action, "train"), (self.users_action, "manage_users"),
                                   (self.inspect_folder_action, "inspect"), (self.inspect_files_action, "inspect"),
                                   (self.evaluate_action, "inspect"), (self.mark_ok_action, "label"),
                                   (self.mark_ng_action, "label"), (self.false_positive_action, "train")):
            action.setEnabled(can(permission))
        self.training_panel.train_button.setEnabled(can("train") and not self.trainer.running)
        self.threshold_panel.set_editable(can("change_threshold"))
        # Locked (nobody logged in): nothing of the project is shown or reachable until someone logs in.
        locked = user is None
        for widget in (self.centralWidget(), self.setup_dock, self.results_dock, self.threshold_dock):
            widget.setEnabled(not locked)
            widget.setVisible(not locked)
        for action in (self.records_action, self.new_project_action, self.open_project_action,
                       self.preferences_action, self.lock_action):
            action.setEnabled(not locked)

    def _ask_login(self) -> None:
        from anomalyapp.gui.widgets.account_dialogs import LoginDialog

        name = self.project.name if self.project else "anomalyapp"
        self.login_dialog = LoginDialog(self.access.login, name, locked=True, parent=self)
        self.login_dialog.open()

    def _ask_first_user(self) -> None:
        from anomalyapp.gui.widgets.account_dialogs import FirstSupervisorDialog

        self.first_user_dialog = FirstSupervisorDialog(self.access.create_first_supervisor, self)
        self.first_user_dialog.open()

    def show_users(self) -> None:
        from anomalyapp.gui.widgets.account_dialogs import UsersDialog

        if self.access.require("manage_users"):
            self.users_dialog = UsersDialog(self.access.records.auth, self.access.user, self)
            self.users_dialog.finished.connect(lambda _: self._user_changed(self.access.user))
            self.users_dialog.open()

    def show_records(self) -> None:
        from anomalyapp.gui.widgets.records_dialog import RecordsDialog

        if self.access.records is None or self.access.user is None:
            return
        self.records_dialog = RecordsDialog(self.access.records, self.access, self)
        self.records_dialog.threshold_applied.connect(self._threshold_applied)
        self.records_dialog.version_restored.connect(self._version_restored)
        self.records_dialog.show()

    def _threshold_applied(self, value: float) -> None:
        self.threshold_panel.set_threshold(value)
        self.statusBar().showMessage(f"threshold {value:.3f} applied as a new model version", 8000)

    def _version_restored(self, version) -> None:
        self.project.current_model = version.folder
        self._save_project()
        self._show_decision_rule()
        self.inspection.load_model(self.project.models_dir / version.folder)
        self.statusBar().showMessage(f"rolled back to version {version.id} ({version.change})", 8000)

    # ------------------------------------------------------------------------------- records
    def _record_result(self, result):
        """Runs in the inspection worker: write the decision to the project's records."""
        records, user = self.access.records, self.access.user
        if records is None or user is None:
            return None
        try:
            saved = records.record_results([result], user)  # judged with the rule and model version in use
        except AppError as error:
            self.inspection.error.emit(f"could not record {result.path.name}: {error}")
            return None
        return saved[0].id if saved else None

    def _commit_threshold(self) -> None:
        """The threshold panel at rest: make its rule the one in use (the service checks and audits it); a
        refusal puts the panel back on the rule in use."""
        records = self.access.records
        if records is None:
            return
        verdicts = self.results_panel.model().verdicts()
        try:
            if (verdicts.threshold, verdicts.uncertain_low) != records.decision_rule():
                records.set_threshold(self.access.user, verdicts.threshold, verdicts.uncertain_low,
                                      reason="threshold panel", project=self.project)
        except AppError as error:
            self.show_error("Threshold", str(error))
            self._show_decision_rule()

    def _show_decision_rule(self) -> None:
        """Show the rule in use (the project's records hold it; the project file only a copy)."""
        records = self.access.records
        if records is None:
            threshold, uncertain_low = self.project.threshold, self.project.uncertain_low
        else:
            threshold, uncertain_low = records.decision_rule()
        self.threshold_panel.set_threshold(threshold)
        self.threshold_panel.set_uncertain(uncertain_low)

    def _toggle_paint(self) -> None:
        on = self.paint_action.isChecked()
        if self.paint_toggle.isChecked() != on:
            self.paint_toggle.setChecked(on)
        self.viewer.set_paint_mode(on)

    def _region_png(self) -> bytes | None:
        import cv2

        mask = self.viewer.painted_mask()
        if mask is None:
            return None
        ok, encoded = cv2.imencode(".png", mask.astype("uint8") * 255)
        return encoded.tobytes() if ok else None

    # ---------------------------------------------------------------------------------- projects
    def set_project(self, project: projects.Project) -> None:
        self.project = project
        self.setWindowTitle(f"{project.name} — anomalyapp")
        self.training_panel.set_project(project.name, project.good_folder)
        project.training.device = self.app_config.device
        self.training_panel.set_settings(project.training)
        self.camera.captures_dir = project.captures_dir
        try:
            self.access.open_project(project)
            if (project.threshold, project.uncertain_low) != (NORMALISED_THRESHOLD, None):
                # a rule set before the records kept it: it stays the rule in use
                self.access.records.adopt_decision_rule(project.threshold, project.uncertain_low)
        except AppError as error:
            self.show_error("Records", str(error))
        self.results_panel.model().clear()
        self.viewer.clear()
        self._show_decision_rule()
        if project.model_path is not None:
            self.inspection.load_model(project.model_path)
        else:
            self.model_label.setText("no model yet: train on the good images")
            if project.good_folder and Path(project.good_folder).is_dir() and self.access.can("train"):
                # The time and memory a training would take, shown before the user starts one; deferred, and
                # skipped when a training starts first, so the two never compete for the CPU.
                QTimer.singleShot(1500, self, lambda: None if self.trainer.running else self._estimate())

    def new_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the new project")
        if not folder:
            return
        good = QFileDialog.getExistingDirectory(self, "Folder of good images", folder)
        try:
            # Nothing else is asked before the first verdict: the station starts as a single-user one, and
            # a supervisor adds accounts and switches logins on later (Project → Users). Whoever is logged in
            # must be allowed to create projects: the creator becomes the new project's supervisor.
            import getpass

            project = projects.create_project(folder, good_folder=good or None, single_user=getpass.getuser(),
                                              actor=self.access.user)
            self.set_project(project)
        except AppError as error:
            self.show_error("New project", str(error))

    def open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open project")
        if folder:
            self.open_project(folder)

    def open_project(self, folder) -> None:
        try:
            self.set_project(projects.open_project(folder))
        except AppError as error:
            self.show_error("Open project", str(error))

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in projects.recent_projects():
            self.recent_menu.addAction(str(path), lambda p=path: self.open_project(p))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def _good_folder_changed(self, folder: str) -> None:
        if self.project is not None:
            self.project.good_folder = folder or None
            self._save_project()

    def _save_project(self) -> None:
        try:
            self.project.save()
        except AppError as error:
            self.show_error("Project", str(error))

    # ---------------------------------------------------------------------------------- training
    def start_training(self) -> None:
        if self.project is not None and not self.access.require("train"):
            return
        if self.project is None:
            self.show_error("Training", "create or open a project first (Project → New project)")
            return
        values = self.training_panel.settings_values()
        for key, value in values.items():
            setattr(self.project.training, key, value)
        self._save_project()
        self.trainer.start(self.project, values, self.access.user)

    def _model_trained(self, path) -> None:
        # A new model brings its own calibration: the training recorded it as the version in use, with the
        # normalised threshold again.
        self._show_decision_rule()
        self.inspection.load_model(path)

    def _estimate(self) -> None:
        if self.project is not None:
            self.training_panel.estimate_label.setText("measuring on a few images…")
            self.trainer.estimate(self.project, self.training_panel.settings_values())

    def cancel_work(self) -> None:
        self.trainer.cancel()
        self.inspection.stop()

    def _model_loaded(self, manifest: dict) -> None:
        calibration = manifest["calibration"]
        scale = NORMALISED_THRESHOLD / calibration["image_threshold"]
        self.threshold_panel.set_reference_scores(
            [s * scale for s in calibration["good_scores"]], [s * scale for s in calibration.get("defect_scores", [])]
        )
        # The expected false-reject rate on new good parts follows the threshold (the model's tail fit).
        loaded = self.inspection.calibration
        self.threshold_panel.set_expected_rate(loaded.describe_expected_false_rejects if loaded is not None else None)
        backbone = manifest["backbone"]["name"]
        self.model_label.setText(f"model: {manifest['detector']} / {backbone} ({manifest['created'][:16]})")
        self._show_device()
        self.statusBar().showMessage("model loaded; inspect a folder (Ctrl+I), drop images here, or start the camera", 8000)

    def _show_device(self) -> None:
        from anomalyapp.services.device import describe_device

        self.device_label.setText(f"device: {describe_device()}")

    # -------------------------------------------------------------------------------- inspection
    def inspect_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Inspect folder")
        if folder:
            self.inspect([folder])

    def inspect_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self, "Inspect images", "", "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.PNG *.JPG *.JPEG *.BMP *.TIF *.TIFF)"
        )
        if files:
            self.inspect(files)

    def inspect(self, inputs) -> None:
        from anomalyapp.services.inference import expand_inputs

        if self.inspection.session is None:
            self.show_error("Inspection", "there is no model yet: train one first (Ctrl+T)")
            return
        try:
            paths = expand_inputs(inputs)
        except AppError as error:
            self.show_error("Inspection", str(error))
            return
        self.inspection.inspect(paths)

    def _result_ready(self, row) -> None:
        index = self.results_panel.model().add_result(row)
        if row.score is not None and not self._histogram_refresh.isActive():
            self._histogram_refresh.start()
        if index == 0:
            self.results_panel.select_source_row(0)

    def _busy_changed(self, busy: bool) -> None:
        if busy:
            self.statusBar().showMessage("inspecting…")
        else:
            counts = self.results_panel.model().counts()
            self.statusBar().showMessage(
                f"done: {counts['OK']} OK, {counts['NG']} NG, {counts['Review']} to review, {counts['Error']} unreadable", 10000
            )

    def _current_changed(self, row) -> None:
        if row is None or row.score is None:
            if row is not None:
                self.viewer.clear()
                self.statusBar().showMessage(f"{row.path.name}: {row.error}")
            return
        self.inspection.show(row.path)

    def _display(self, pixels, normalised_map, title: str) -> None:
        self.viewer.set_image(pixels, title)
        self.viewer.set_anomaly_map(normalised_map)

    def _verdicts_changed(self, verdicts: Verdicts) -> None:
        """Re-judge the listed results at once; outlines, the project file and the audit follow when the
        threshold has come to rest, so dragging the line stays smooth."""
        self.results_panel.model().set_verdicts(verdicts)
        self.camera.verdicts = verdicts
        self._threshold_settled.start()

    def _threshold_came_to_rest(self) -> None:
        verdicts = self.results_panel.model().verdicts()
        self.viewer.set_threshold_level(verdicts.threshold)
        if self.project is not None:
            self._commit_threshold()

    def label_current(self, label: str) -> None:
        """One key per decision: record the label (with note and painted region), then open the next image.

        OK on a part the model called NG or Review is a false positive: the model learns it at once.
        """
        row_index = self.results_panel.current_source_row()
        if row_index is None or not self.access.require("label"):
            return
        model = self.results_panel.model()
        row = model.row_at(row_index)
        records = self.access.records
        if records is not None and row.record_id is not None:
            try:
                records.label(row.record_id, label, self.note_edit.text().strip(), self._region_png(), self.access.user)
            except AppError as error:
                self.show_error("Label", str(error))
                return
        self.note_edit.clear()
        self.paint_action.setChecked(False)
        self._toggle_paint()
        false_positive = label == "OK" and model.verdict_at(row_index) in ("NG", "Review")
        if false_positive and self.inspection.session is not None and self.access.can("train"):
            self.correct_false_positive()
            return
        if false_positive:
            # Operators may not change the model: the label is kept for a supervisor to teach (F2).
            self.statusBar().showMessage(
                f"{row.path.name} recorded as a false positive; a supervisor can teach it to the model (F2)", 10000
            )
        position = self.results_panel.view.currentIndex().row()
        model.set_label(row_index, label)
        self._select_after_decision(position)

    def _select_after_decision(self, position: int) -> None:
        """Open the next image; in the review queue the decided row has just left the list."""
        proxy = self.results_panel.proxy()
        if proxy.rowCount() == 0:
            return
        if self.results_panel.view.currentIndex().isValid():
            self.results_panel.select_next()
        else:
            target = proxy.index(min(position, proxy.rowCount() - 1), 1)
            self.results_panel.select_source_row(proxy.mapToSource(target).row())

    def correct_false_positive(self) -> None:
        """Label the selected result OK and add it to the model's notion of good, at once."""
        row_index = self.results_panel.current_source_row()
        if row_index is None or self.project is None or not self.access.require("train"):
            return
        model = self.results_panel.model()
        row = model.row_at(row_index)
        if row.score is None:
            return
        position = self.results_panel.view.currentIndex().row()
        model.set_label(row_index, "OK")
        self._select_after_decision(position)
        # The flagged rows first: their verdicts are the ones the technician is waiting for.
        order = sorted(range(model.rowCount()), key=lambda i: (model.verdict_at(i) == "OK", i != row_index))
        listed = [(i, model.row_at(i).path) for i in order if model.row_at(i).score is not None]
        self._correction_started = time.perf_counter()
        self._correction_first_update = None
        self.statusBar().showMessage(f"learning {row.path.name} as good…")
        self.inspection.learn_good(row.path, self.project.models_dir, listed, self.access.user)

    def _rescored(self, item) -> None:
        _, scores, _seconds = item
        changed = self.results_panel.model().update_scores(scores)
        if not self._histogram_refresh.isActive():
            self._histogram_refresh.start()
        if self._correction_first_update is None:
            self._correction_first_update = time.perf_counter() - self._correction_started
        self._correction_changed = getattr(self, "_correction_changed", 0) + changed

    def _correction_done(self, result: dict) -> None:
        seconds = time.perf_counter() - self._correction_started
        self.project.current_model = Path(result["folder"]).name  # the correction recorded it as the version in use
        self._save_project()
        self.last_correction = result | {"first_update_s": self._correction_first_update, "gui_seconds": seconds}
        self.model_label.setText(f"model: {Path(result['folder']).name} (corrected)")
        self.statusBar().showMessage(
            f"learned as good in {result['learned_after']:.2f} s; first verdicts updated after "
            f"{self._correction_first_update or seconds:.2f} s, all {seconds:.2f} s; {result['change']}", 15000
        )
        row_index = self.results_panel.current_source_row()
        if row_index is not None:
            self.inspection.show(self.results_panel.model().row_at(row_index).path)

    # -------------------------------------------------------------------------------- evaluation
    def evaluate_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with test/ and ground_truth/ (MVTec layout)")
        if folder:
            self.evaluation.evaluate(Path(folder))

    def _show_evaluation(self, result: dict) -> None:
        dialog = QDialog(self)
        dialog.setObjectName("evaluation_dialog")
        dialog.setWindowTitle(f"Evaluation — {Path(result['data']).name}")
        plots = EvaluationPlots()
        plots.show_evaluation(result)
        layout = QVBoxLayout(dialog)
        layout.addWidget(plots)
        dialog.resize(1100, 650)
        self.evaluation_dialog = dialog
        dialog.show()

    # ------------------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            self.inspect(paths)

    # ------------------------------------------------------------------------------------ misc
    def show_error(self, title: str, message: str) -> None:
        self.statusBar().showMessage(f"{title}: {message}", 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setObjectName("error_dialog")
        box.open()
        self.last_error = message

    def _show_shortcuts(self) -> None:
        lines = [f"{a.shortcut().toString():>14}   {a.text().replace('&', '')}" for a in self.actions() if not a.shortcut().isEmpty()]
        QMessageBox.information(self, "Keyboard shortcuts", "\n".join(lines))

    def _about(self) -> None:
        QMessageBox.about(self, "About anomalyapp", f"anomalyapp {__version__}\nOffline visual inspection trained on good images only.")

    def edit_preferences(self) -> None:
        from anomalyapp.gui.widgets.settings_dialog import SettingsDialog
        from anomalyapp.services.device import cuda_available

        dialog = SettingsDialog(self.app_config, cuda_available(), self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.app_config = dialog.config()
            try:
                save_settings(self.app_config)
            except AppError as error:
                self.show_error("Preferences", str(error))
            self._apply_config()

    def _apply_config(self) -> None:
        self.viewer.set_opacity(self.app_config.overlay_opacity)
        self.viewer.set_outlines_visible(self.app_config.show_outlines)
        self.inspection.device_preference = self.app_config.device
        if self.project is not None:
            self.project.training.device = self.app_config.device

    def _restore_state(self) -> None:
        geometry = self.settings.value(_GEOMETRY_KEY)
        state = self.settings.value(_STATE_KEY)
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 950)
        if state is not None:
            self.restoreState(state)
        else:
            # First start: the image gets the most room; the threshold strip stays short.
            self.resizeDocks([self.setup_dock, self.results_dock], [360, 430], Qt.Orientation.Horizontal)
            self.resizeDocks([self.threshold_dock], [250], Qt.Orientation.Vertical)

    def closeEvent(self, event) -> None:
        if self._threshold_settled.isActive():  # a threshold moved just before closing is still saved
            self._threshold_settled.stop()
            self._threshold_came_to_rest()
        self.settings.setValue(_GEOMETRY_KEY, self.saveGeometry())
        self.settings.setValue(_STATE_KEY, self.saveState())
        self.camera.stop()
        self.trainer.cancel()
        self.inspection.stop()
        super().closeEvent(event)

    def auto_start(self) -> None:
        """For the demo: train when there is no model, then inspect the demo's test images."""
        if self.project is None:
            return
        test_folder = Path(self.project.good_folder).parent.parent / "test" if self.project.good_folder else None

        def inspect_demo(*_):
            if test_folder is not None and test_folder.is_dir():
                folders = [str(p) for p in sorted(test_folder.iterdir()) if p.is_dir()]
                QTimer.singleShot(0, self, lambda: self.inspect(folders))

        self.inspection.model_loaded.connect(inspect_demo, Qt.ConnectionType.SingleShotConnection)
        if self.project.model_path is None:
            self.start_training()
