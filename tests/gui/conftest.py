"""The real window for the window tests, a project holding the session's trained PatchCore model, and loading it."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import QSettings

from anomalyapp.services import project as projects


@pytest.fixture
def window(qtbot, tmp_path):
    """The main window with its layout kept in a file of the test's own; every background job ends with it."""
    from anomalyapp.gui.app import create_application
    from anomalyapp.gui.main_window import MainWindow

    create_application()
    main = MainWindow(QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat))

    def stop_background_jobs(main):
        main.camera.stop()
        main.trainer.cancel()
        main.trainer.cancel_estimate()
        main.inspection.stop()
        qtbot.waitUntil(lambda: not main.trainer.running and not main.trainer.estimating and not main.camera.running,
                        timeout=20000)

    # pytest-qt closes and deletes the window before this fixture's own teardown: the jobs are stopped first, so
    # that no job's end is lost with the deleted window and no quit question is asked.
    qtbot.addWidget(main, before_close_func=stop_background_jobs)
    main.show()
    yield main


@pytest.fixture
def project_with_model(tmp_path, demo_line, patchcore_model):
    project = projects.create_project(tmp_path / "project", "washers", demo_line / "train" / "good")
    projects.set_up_single_user(project, "tester")
    shutil.copytree(patchcore_model, project.models_dir / "trained")
    project.current_model = "trained"
    project.training.image_size = 128
    project.save()
    return project

