"""Texts that were clipped or squeezed (issue 11, trap 8): each one now fits the widget that shows it."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings

from anomalyapp.core.config import AppConfig
from anomalyapp.gui.widgets.camera_panel import CameraPanel
from anomalyapp.gui.widgets.image_viewer import ImageViewer
from anomalyapp.gui.widgets.settings_dialog import SettingsDialog
from anomalyapp.gui.widgets.training_panel import TrainingPanel

pytestmark = pytest.mark.gui

FINAL = ("trained patchcore on 32 images in 23.2 s (cpu); threshold from 8 held-out good images; expected false "
         "rejects 1.0 % (0.07-1.8 %) on new good parts\nsaved /a/long/folder/models/20261130-192240-patchcore")


def test_final_training_text_is_one_line_that_fits_the_bar(qtbot):
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.resize(480, 500)
    panel.show()
    qtbot.waitExposed(panel)
    panel.finish(FINAL)
    shown = panel.progress.format()
    assert "\n" not in shown and shown.startswith("trained patchcore")
    assert panel.progress.fontMetrics().horizontalAdvance(shown) <= panel.progress.contentsRect().width()
    assert panel.progress.toolTip() == FINAL


def test_opacity_is_in_percent_in_preferences_and_in_the_viewer(qtbot):
    dialog = SettingsDialog(AppConfig(overlay_opacity=0.57), cuda_available=False)
    qtbot.addWidget(dialog)
    assert dialog.opacity.value() == 57 and dialog.opacity.suffix() == " %"
    dialog.opacity.setValue(35)
    assert dialog.config().overlay_opacity == pytest.approx(0.35)
    viewer = ImageViewer()
    qtbot.addWidget(viewer)
    viewer.set_opacity(dialog.config().overlay_opacity)
    assert viewer.opacity_label.text() == "35 %"


def test_a_video_file_source_is_short_with_the_path_in_the_tooltip(qtbot):
    panel = CameraPanel()
    qtbot.addWidget(panel)
    panel.resize(360, 400)
    panel.show()
    qtbot.waitExposed(panel)
    panel.set_cameras([])
    path = "/srv/line-3/recordings/2026-11-30/station-B/washer_inspection_run_0007.mp4"
    panel.add_source("File: washer_inspection_run_0007.mp4", path)
    combo = panel.source
    assert combo.toolTip() == path
    assert combo.width() <= panel.width()
    assert combo.sizeHint().width() < combo.fontMetrics().horizontalAdvance(path)


def test_the_shortcuts_list_names_the_viewer_and_camera_keys(qtbot, tmp_path):
    from anomalyapp.gui.app import create_application
    from anomalyapp.gui.main_window import MainWindow
    from anomalyapp.gui.window_dialogs import shortcut_rows

    create_application()
    window = MainWindow(QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    keys = {keys for _, keys, _ in shortcut_rows(window)}
    for key in ("F", "1", "O", "Space", "C", "G", "B", "D", "[", "]", "E", "Ctrl+Z"):
        assert key in keys, key
    window.show_shortcuts()
    assert "Space" in window.shortcuts_box.text() and "Fit the image" in window.shortcuts_box.text()
