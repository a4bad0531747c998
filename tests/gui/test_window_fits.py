"""The window on a 1280x800 panel PC (issue 11): it fits the screen, and a long status message is elided."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings

from anomalyapp.services import project as projects

pytestmark = pytest.mark.gui

LONG = ("Inspection: could not read /srv/line-3/archive/2026-11-30/station-B/camera-2/batch-0042/"
        "washer_0007_left_side_under_ring_light.png: the file is truncated (4096 of 182331 bytes)")


@pytest.fixture
def window(qtbot, tmp_path, demo_line):
    from anomalyapp.gui.app import create_application
    from anomalyapp.gui.main_window import MainWindow

    create_application()
    project = projects.create_project(tmp_path / "project", "washers", demo_line / "train" / "good")
    projects.set_up_single_user(project, "tester")
    main = MainWindow(QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(main)
    main.set_project(project)
    main.resize(1280, 770)  # 800 less a title bar
    main.show()
    qtbot.waitExposed(main)
    assert main.setup_dock.isVisible() and main.results_dock.isVisible() and main.threshold_dock.isVisible()
    return main


def test_the_window_fits_a_1280x800_screen_with_its_status_bar(window):
    needed = window.minimumSizeHint()
    assert needed.width() <= 1280 and needed.height() <= 770, needed
    assert window.width() == 1280 and window.height() == 770
    bar = window.statusBar()
    assert bar.isVisible() and bar.geometry().bottom() < window.height()
    # Nothing squeezed below its own minimum: the tall panels scroll instead.
    for panel in (window.training_panel, window.camera_panel, window.results_panel, window.threshold_panel):
        assert panel.width() >= panel.minimumSizeHint().width(), type(panel).__name__


def test_a_long_status_message_is_elided_before_the_permanent_labels(qtbot, window):
    window.status.show(LONG)
    line = window.status_line
    qtbot.waitUntil(lambda: line.text() != "" and line.width() > 0)
    assert line.message() == LONG and line.toolTip() == LONG
    assert line.text().endswith("…") and len(line.text()) < len(LONG)
    assert line.fontMetrics().horizontalAdvance(line.text()) <= line.contentsRect().width()
    first_permanent = min(label.x() for label in (window.user_label, window.device_label, window.model_label)
                          if label.isVisible())
    assert line.geometry().right() < first_permanent
    window.status.show("ready")
    assert line.text() == "ready" and line.toolTip() == ""
