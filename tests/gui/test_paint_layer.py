"""Painting a defect region in the viewer, driven as a person does: D, drags, [ ], E, right button, Ctrl+Z."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QSpinBox, QWidget

from anomalyapp.gui.widgets.image_viewer import ImageViewer

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer(qtbot):
    widget = ImageViewer()
    qtbot.addWidget(widget)
    widget.resize(900, 700)
    widget.show()
    qtbot.waitExposed(widget)
    widget.set_image(np.full((200, 300, 3), 100, np.uint8))
    widget.activateWindow()
    return widget


def _view(viewer) -> QWidget:
    return viewer.findChild(QWidget, "image_view")


def _screen(viewer, x: float, y: float) -> QPoint:
    """The viewport position of the centre of image pixel (x, y) (screen positions are whole pixels)."""
    scene = viewer.view_box.mapViewToScene(QPointF(x + 0.5, y + 0.5))
    return _view(viewer).mapFromScene(scene)


def _drag(qtbot, viewer, points, button=Qt.MouseButton.LeftButton) -> None:
    port = _view(viewer).viewport()
    qtbot.mousePress(port, button, pos=_screen(viewer, *points[0]))
    for point in points[1:]:
        qtbot.mouseMove(port, _screen(viewer, *point))
    qtbot.mouseRelease(port, button, pos=_screen(viewer, *points[-1]))
    qtbot.wait(10)


def test_drag_paints_a_continuous_stroke(qtbot, viewer):
    viewer.set_paint_mode(True, brush_radius=4)
    _drag(qtbot, viewer, [(40, 100), (90, 100), (160, 100), (240, 100)])
    mask = viewer.painted_mask()
    assert mask is not None
    row = mask[100]
    assert row[45:235].all(), "the stroke has gaps"
    assert not mask[:90].any() and not mask[111:].any()


def test_d_mode_shows_the_paint_bar_a_circle_cursor_and_takes_the_focus(qtbot, viewer):
    view = _view(viewer)
    assert not viewer.paint_bar.isVisible()
    viewer.set_paint_mode(True, brush_radius=10)
    qtbot.waitUntil(view.hasFocus, timeout=1000)
    assert viewer.paint_bar.isVisible() and view.cursor().shape() == Qt.CursorShape.CrossCursor
    qtbot.mouseMove(view.viewport(), _screen(viewer, 150, 80))
    cursor = viewer.paint_layer.cursor_item
    qtbot.waitUntil(cursor.isVisible, timeout=1000)
    # the circle covers exactly the pixels a stamp at (150, 80) paints: radius 10 around that pixel
    rect = cursor.rect()
    assert rect.width() == pytest.approx(21) and rect.center().x() == pytest.approx(150.5)
    assert rect.center().y() == pytest.approx(80.5)
    qtbot.keyClick(view, Qt.Key.Key_BracketRight)
    assert viewer.paint_layer.brush_radius == 12 and cursor.rect().width() == pytest.approx(25)
    viewer.set_paint_mode(False)
    assert not viewer.paint_bar.isVisible() and not cursor.isVisible()
    assert view.cursor().shape() != Qt.CursorShape.CrossCursor


def test_brush_size_keys_and_spin_box(qtbot, viewer):
    viewer.set_paint_mode(True, brush_radius=10)
    view = _view(viewer)
    qtbot.waitUntil(view.hasFocus, timeout=1000)
    spin = viewer.findChild(QSpinBox, "brush_size_spin")
    assert spin.value() == 10
    qtbot.keyClick(view, Qt.Key.Key_BracketRight)
    assert spin.value() == 12
    for _ in range(30):
        qtbot.keyClick(view, Qt.Key.Key_BracketLeft)
    assert spin.value() == 1 == viewer.paint_layer.brush_radius
    spin.setValue(3)
    assert viewer.paint_layer.brush_radius == 3
    _drag(qtbot, viewer, [(100, 50), (100, 150)])
    columns = np.flatnonzero(viewer.painted_mask().any(axis=0))
    assert (columns[0], columns[-1]) == (97, 103)


def test_right_button_and_eraser_erase_and_ctrl_z_undoes_strokes(qtbot, viewer):
    viewer.set_paint_mode(True, brush_radius=6)
    view = _view(viewer)
    qtbot.waitUntil(view.hasFocus, timeout=1000)
    _drag(qtbot, viewer, [(50, 100), (250, 100)])
    painted = viewer.painted_mask().copy()
    assert painted[100, 60:240].all()

    _drag(qtbot, viewer, [(150, 60), (150, 140)], button=Qt.MouseButton.RightButton)  # erases
    after_right = viewer.painted_mask()
    assert not after_right[100, 147:154].any() and after_right[100, 60:140].all()

    qtbot.keyClick(view, Qt.Key.Key_E)  # eraser on: the left button erases too
    assert viewer.paint_bar.eraser_button.isChecked()
    _drag(qtbot, viewer, [(80, 60), (80, 140)])
    assert not viewer.painted_mask()[100, 77:84].any()
    qtbot.keyClick(view, Qt.Key.Key_E)
    assert not viewer.paint_layer.eraser

    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(viewer.painted_mask(), after_right)
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(viewer.painted_mask(), painted)
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_array_equal(viewer.painted_mask(), after_right)
    viewer.paint_bar.undo_button.click()
    viewer.paint_bar.undo_button.click()
    assert viewer.painted_mask() is None and not viewer.paint_bar.undo_button.isEnabled()
    assert viewer.paint_bar.redo_button.isEnabled()


def test_without_paint_mode_a_drag_pans_and_paints_nothing(qtbot, viewer):
    viewer.set_paint_mode(True)
    viewer.set_paint_mode(False)
    before = viewer.view_box.viewRect()
    _drag(qtbot, viewer, [(100, 100), (140, 110), (180, 120)])
    assert viewer.painted_mask() is None
    assert viewer.view_box.viewRect().center() != before.center()


def test_a_new_image_starts_an_empty_region_and_keeps_painting_on(qtbot, viewer):
    viewer.set_paint_mode(True, brush_radius=4)
    _drag(qtbot, viewer, [(50, 50), (100, 50)])
    assert viewer.painted_mask() is not None
    viewer.set_image(np.full((120, 160), 7, np.uint8))
    assert viewer.is_painting() and viewer.painted_mask() is None
    assert not viewer.paint_layer.can_undo()
    _drag(qtbot, viewer, [(20, 20), (60, 20)])
    assert viewer.painted_mask().shape == (120, 160)
