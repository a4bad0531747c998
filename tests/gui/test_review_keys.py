"""Review at the keyboard, in the real window: a note typed with letters in it, Enter back to G / B, painting."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from anomalyapp.gui.widgets.results_model import ROW_ROLE
from anomalyapp.services.records import InspectionQuery, RecordsService
from tests.gui.test_review_and_roles import OPERATOR, _inspect, _open_and_log_in, project  # noqa: F401

pytestmark = pytest.mark.gui


def _labels(project_root) -> dict[str, list]:
    with RecordsService(project_root) as records:
        return {
            row.image_path.rsplit("/", 1)[-1]: records.label_history(row.id)
            for row in records.query(InspectionQuery())
            if row.label
        }


def _queue_ready(qtbot, window, project, demo_line):  # noqa: F811
    window.resize(1500, 950)  # room for the image, whatever screen the test platform reports
    _open_and_log_in(qtbot, window, project, OPERATOR)
    _inspect(qtbot, window, demo_line)
    window.results_panel.verdict_filter.setCurrentText("Review queue")
    window.activateWindow()
    qtbot.mouseClick(window.results_panel.view.viewport(), Qt.MouseButton.LeftButton,
                     pos=window.results_panel.view.visualRect(window.results_panel.proxy().index(0, 1)).center())
    qtbot.waitUntil(window.results_panel.view.hasFocus, timeout=2000)
    return window.results_panel.proxy().rowCount()


def test_letters_type_into_the_note_and_enter_gives_g_and_b_back(qtbot, window, project, demo_line):  # noqa: F811
    queue = _queue_ready(qtbot, window, project, demo_line)
    first = window.results_panel.current_row().path.name
    note = window.note_edit
    qtbot.mouseClick(note, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(note.hasFocus, timeout=2000)
    qtbot.keyClicks(note, "burr by the bore")  # b, g, d, n, p: all typed, none decides
    assert note.text() == "burr by the bore"
    assert window.results_panel.proxy().rowCount() == queue and not _labels(project.root)

    qtbot.keyClick(note, Qt.Key.Key_Return)
    assert window.results_panel.view.hasFocus() and note.text() == "burr by the bore"
    qtbot.keyClick(window.results_panel.view, Qt.Key.Key_B)
    labels = _labels(project.root)
    assert [h[0].label for h in labels.values()] == ["NG"] and labels[first][0].note == "burr by the bore"
    assert note.text() == "" and window.results_panel.proxy().rowCount() == queue - 1

    # Esc leaves the note too, keeping it, and does not cancel anything; Ctrl+Enter as Enter
    qtbot.mouseClick(note, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(note, "dent")
    qtbot.keyClick(note, Qt.Key.Key_Escape)
    assert window.results_panel.view.hasFocus() and note.text() == "dent"
    qtbot.mouseClick(note, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(note, " near the edge")
    qtbot.keyClick(note, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert window.results_panel.view.hasFocus()
    second = window.results_panel.current_row().path.name
    qtbot.keyClick(window.results_panel.view, Qt.Key.Key_B)
    assert _labels(project.root)[second][0].note == "dent near the edge"


def test_d_paints_with_brush_keys_and_undo_then_b_records_the_region(qtbot, window, project, demo_line):  # noqa: F811
    _queue_ready(qtbot, window, project, demo_line)
    current = window.results_panel.current_row().path.name
    viewer = window.viewer
    # the selected image is loaded in the background: paint on it, not on the one before
    qtbot.waitUntil(lambda: current in viewer.title_label.text() and viewer.heat_item.image is not None,
                    timeout=10000)
    qtbot.wait(300)
    qtbot.keyClick(window.results_panel.view, Qt.Key.Key_D)
    view = viewer.findChild(QWidget, "image_view")
    assert window.paint_action.isChecked() and viewer.is_painting() and viewer.paint_bar.isVisible()
    qtbot.waitUntil(view.hasFocus, timeout=2000)
    radius = viewer.paint_layer.brush_radius
    qtbot.keyClick(view, Qt.Key.Key_BracketRight)
    assert viewer.paint_layer.brush_radius > radius

    # The strokes themselves are driven with the mouse in test_paint_layer.py; here the window's keys.
    for y in (30, 90):  # two strokes; the second is undone
        viewer.paint_layer.stroke([(20, y), (60, y), (100, y)])
    assert viewer.painted_mask()[90, 40:80].all()
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    mask = viewer.painted_mask()
    assert mask[30, 40:80].all() and not mask[80:100].any()

    qtbot.keyClick(view, Qt.Key.Key_B)  # the window's decision key works while the image has the focus
    history = _labels(project.root)[current]
    assert history[0].label == "NG" and history[0].region_png.startswith(b"\x89PNG")
    assert not window.paint_action.isChecked() and not viewer.is_painting()


def test_each_decision_opens_the_part_listed_next_and_none_is_skipped(qtbot, window, project, demo_line):  # noqa: F811
    queue = _queue_ready(qtbot, window, project, demo_line)
    assert queue >= 3
    proxy = window.results_panel.proxy()
    listed = [proxy.data(proxy.index(i, 1), ROW_ROLE).path for i in range(queue)]
    opened = []
    for _ in range(queue):
        opened.append(window.results_panel.current_row().path)
        qtbot.keyClick(window.results_panel.view, Qt.Key.Key_B)
    # one key per part, in the order listed: the decided row leaves the queue and the next one opens, not the one
    # after it
    assert opened == listed
    assert proxy.rowCount() == 0
    with RecordsService(project.root) as records:
        assert len(records.query(InspectionQuery(label="NG"))) == queue
