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


def test_every_table_header_in_the_window_and_the_records_is_shown_whole(qtbot, window, project_with_model,
                                                                          demo_line):
    """A column squeezed below its own name ("Metri", "I…") hides what the table is about: with results listed
    and the Records window open on each of its tabs, every column's header text fits its column."""
    from PySide6.QtWidgets import QStyle, QTableView, QTabWidget

    with qtbot.waitSignal(window.inspection.model_loaded, timeout=30000):
        window.set_project(project_with_model)
    window.inspect([demo_line / "test"])
    expected = sum(1 for _ in (demo_line / "test").rglob("*.png"))
    qtbot.waitUntil(lambda: window.results_panel.model().rowCount() == expected, timeout=60000)
    window.show_records()
    dialog = window.records_dialog
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=30000)

    def squeezed(view: QTableView) -> list[str]:
        header = view.horizontalHeader()
        margin = 2 * header.style().pixelMetric(QStyle.PixelMetric.PM_HeaderMargin)
        model = view.model()
        out = []
        for column in range(model.columnCount()):
            text = str(model.headerData(column, header.orientation()) or "")
            if header.isSectionHidden(column) or not text:
                continue
            if header.fontMetrics().horizontalAdvance(text) + margin > header.sectionSize(column):
                out.append(f"{view.objectName() or type(view).__name__}: {text!r} in {header.sectionSize(column)} px")
        return out

    views = [view for view in window.findChildren(QTableView) if view.isVisible()]
    tabs = dialog.findChild(QTabWidget)
    for index in range(tabs.count()):
        tabs.setCurrentIndex(index)
        qtbot.wait(50)
        views += [view for view in tabs.currentWidget().findChildren(QTableView) if view.isVisible()]
    problems = [problem for view in views for problem in squeezed(view)]
    assert len(views) >= 4 and not problems, problems  # the results, inspections, versions and audit tables
    # The check sees a squeezed column: the results table's name column narrowed below its header.
    results = window.results_panel.view
    results.horizontalHeader().resizeSection(1, 10)
    assert squeezed(results)
