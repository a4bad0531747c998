"""The project session: which project the station works on, and its lifecycle (open, new, switch, close).

Replacing the project resets every view-model first, so nothing of the previous project (histogram, results,
training log, camera verdict, latency) is shown beside the new one; then the project's records open (who is
logged in), the decision rule in use is shown and its model loads.
"""

from __future__ import annotations

import getpass
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from anomalyapp.core.errors import AppError
from anomalyapp.core.verdicts import NORMALISED_THRESHOLD
from anomalyapp.services import project as projects
from anomalyapp.services.settings import apply_pixel_limit, load_settings, save_settings


class ProjectSession(QObject):
    about_to_replace = Signal()  # the old project's last moment: pending changes are saved into it
    # Before a project's files are read: pending edits reach them first (the one opened may be the one open).
    pending_edits_wanted = Signal()
    replaced = Signal(object)  # the new Project, after every view-model was reset
    config_changed = Signal(object)  # AppConfig (preferences)
    error = Signal(str, str)  # title, message
    estimate_wanted = Signal()  # a project without a model opened: show what a training would take

    def __init__(self, access, inspection, trainer, view_models, parent: QObject | None = None):
        super().__init__(parent)
        self.access, self.inspection, self.trainer = access, inspection, trainer
        self.view_models = list(view_models)  # each has reset()
        self.project: projects.Project | None = None
        self.app_config = load_settings()
        apply_pixel_limit(self.app_config.max_megapixels)
        self.inspection.device_preference = self.app_config.device

    # ------------------------------------------------------------------------------- lifecycle
    def set_project(self, project: projects.Project) -> None:
        self.about_to_replace.emit()
        self.inspection.stop()
        for view_model in self.view_models:
            view_model.reset()
        self.project = project
        project.training.device = self.app_config.device
        try:
            self.access.open_project(project)
            if (project.threshold, project.uncertain_low) != (NORMALISED_THRESHOLD, None):
                # a rule set before the records kept it: it stays the rule in use
                self.access.records.adopt_decision_rule(project.threshold, project.uncertain_low)
        except AppError as error:
            self.error.emit("Records", str(error))
        self.replaced.emit(project)
        if project.model_path is not None:
            self.inspection.load_model(project.model_path)
        elif project.good_folder and Path(project.good_folder).is_dir() and self.access.can("train"):
            # The time and memory a training would take, shown before the user starts one; deferred, and
            # skipped when a training starts first, so the two never compete for the CPU.
            QTimer.singleShot(1500, self, lambda: None if self.trainer.running else self.estimate_wanted.emit())

    def open(self, folder) -> bool:
        self.pending_edits_wanted.emit()
        try:
            self.set_project(projects.open_project(folder))
        except AppError as error:
            self.error.emit("Open project", str(error))
            return False
        return True

    def create(self, root: Path, name: str, good_folder: str | None) -> bool:
        """A new project in ``root`` (which must be new or empty): the station starts as a single-user one
        and a supervisor adds accounts later (Project → Users); the creator becomes its supervisor, so
        whoever is logged in must be allowed to create projects."""
        try:
            projects.check_new_project_folder(root)
            project = projects.create_project(root, name or None, good_folder=good_folder or None,
                                              single_user=getpass.getuser(), actor=self.access.user)
        except AppError as error:
            self.error.emit("New project", str(error))
            return False
        self.set_project(project)
        return True

    def save(self) -> None:
        if self.project is None:
            return
        try:
            self.project.save()
        except AppError as error:
            self.error.emit("Project", str(error))

    def set_good_folder(self, folder: str) -> None:
        if self.project is not None:
            self.project.good_folder = folder or None
            self.save()

    # ----------------------------------------------------------------------------- preferences
    def set_config(self, config) -> None:
        self.app_config = config
        try:
            save_settings(config)
        except AppError as error:
            self.error.emit("Preferences", str(error))
        self.apply_config()

    def apply_config(self) -> None:
        self.inspection.device_preference = self.app_config.device
        if self.project is not None:
            self.project.training.device = self.app_config.device
        self.config_changed.emit(self.app_config)

    # ------------------------------------------------------------------------------------ demo
    def demo_test_folders(self) -> list[str]:
        """The demo line's test folders (one per defect class), next to its good images."""
        if self.project is None or not self.project.good_folder:
            return []
        test_folder = Path(self.project.good_folder).parent.parent / "test"
        return [str(p) for p in sorted(test_folder.iterdir()) if p.is_dir()] if test_folder.is_dir() else []
