"""Painting a defect region on the viewer's image: brush, eraser, undo/redo and a circle cursor.

``PaintLayer`` is an ``ImageItem`` over the image, of the image's own size, holding a 0/1 mask. While it is
enabled the left button paints and the right button (or the eraser) erases, in strokes: one press-drag-release
is one undo step. ``PaintBar`` is the row of controls the viewer shows while painting (brush size, eraser,
undo, redo).

Choices worth knowing:

* Strokes are drawn as thick OpenCV lines between successive mouse positions, so a fast drag leaves no gaps
  (pyqtgraph's own draw kernel stamps only at the event positions).
* Undo keeps, per stroke, only the rectangle the stroke changed (before and after), so a long session on an
  8000x6000 image holds a few small patches, not full copies of the mask. The history is bounded.
* The mask is re-rendered at most once per event-loop turn while dragging, not once per mouse event.
* The brush size is in image pixels (what lands in the mask); the cursor circle shows exactly the pixels a
  stamp covers, at any zoom.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsEllipseItem,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QToolButton,
    QWidget,
)

MIN_BRUSH_RADIUS = 1
MAX_BRUSH_RADIUS = 500
HISTORY_LIMIT = 100  # strokes that can be undone
PAINT_COLOUR = (255, 0, 255, 150)  # magenta, half transparent: the region the records and the PDF outline


def default_brush_radius(height: int, width: int) -> int:
    """A brush that covers about a hundredth of the image's long side."""
    return max(2, round(max(height, width) / 100))


def grown_radius(radius: int, step: int) -> int:
    """The brush radius one ``[`` (step -1) or ``]`` (step +1) away: about 20 % a step, at least 1 px."""
    change = max(1, round(radius * 0.2))
    return min(MAX_BRUSH_RADIUS, max(MIN_BRUSH_RADIUS, radius + step * change))


def _cosmetic_pen(colour: str, width: float) -> QPen:
    pen = QPen(QColor(colour))
    pen.setWidthF(width)
    pen.setCosmetic(True)
    return pen


@dataclass
class _Stroke:
    """What one stroke changed: the mask's rectangle [top:bottom, left:right] before and after."""

    top: int
    left: int
    before: np.ndarray
    after: np.ndarray

    def put(self, mask: np.ndarray, patch: np.ndarray) -> None:
        mask[self.top : self.top + patch.shape[0], self.left : self.left + patch.shape[1]] = patch


class PaintLayer(pg.ImageItem):
    """The painted region over the image. Signals: ``brush_changed(int)`` radius in image pixels,
    ``eraser_changed(bool)``, ``history_changed()`` after a stroke, an undo or a redo."""

    brush_changed = Signal(int)
    eraser_changed = Signal(bool)
    history_changed = Signal()

    def __init__(self) -> None:
        super().__init__(axisOrder="row-major")
        self.setZValue(30)
        self.setLookupTable(np.array([[0, 0, 0, 0], PAINT_COLOUR], dtype=np.uint8))
        self._mask: np.ndarray | None = None
        self._enabled = False
        self._radius: int | None = None  # None until painting starts: then a default from the image size
        self._eraser = False
        self._undo: list[_Stroke] = []
        self._redo: list[_Stroke] = []
        self._stroke_before: np.ndarray | None = None
        self._stroke_value = 1
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(0)
        self._render_timer.timeout.connect(self._render)

        self.cursor_item = QGraphicsEllipseItem()
        self.cursor_item.setZValue(40)
        self.cursor_item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        # A light circle on a dark halo (a child drawn behind it): readable on any image, at any zoom.
        self.cursor_item.setPen(_cosmetic_pen("#ffffff", 1.2))
        self._cursor_halo = QGraphicsEllipseItem(self.cursor_item)
        self._cursor_halo.setPen(_cosmetic_pen("#000000", 3.0))
        self._cursor_halo.setFlag(QGraphicsEllipseItem.GraphicsItemFlag.ItemStacksBehindParent)
        self.cursor_item.setVisible(False)

    # ---------------------------------------------------------------------------------------- state
    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def brush_radius(self) -> int:
        return self._radius or MIN_BRUSH_RADIUS

    @property
    def eraser(self) -> bool:
        return self._eraser

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def mask(self) -> np.ndarray | None:
        """The painted region as a bool array of the image's size, or None when nothing is painted."""
        return None if self._mask is None or not self._mask.any() else self._mask.astype(bool)

    def reset(self, shape: tuple[int, int] | None) -> None:
        """A new image (of ``shape``, or none): an empty region and no history. Painting stays on or off."""
        self._undo.clear()
        self._redo.clear()
        self._stroke_before = None
        if shape is None:
            self._mask = None
            self.clear()
            self.cursor_item.setVisible(False)
        else:
            self._mask = np.zeros(shape, dtype=np.uint8)
            self.setImage(self._mask, autoLevels=False, levels=(0, 1))
            if self._radius is None and self._enabled:
                self.set_brush_radius(default_brush_radius(*shape))
        self.history_changed.emit()

    def set_enabled(self, enabled: bool) -> None:
        """Paint with the mouse (True) or leave the mouse to the view's pan and zoom (False)."""
        self._enabled = bool(enabled)
        if self._enabled and self._radius is None and self._mask is not None:
            self.set_brush_radius(default_brush_radius(*self._mask.shape))
        if not self._enabled:
            self.cursor_item.setVisible(False)
        self.setVisible(True)

    def set_brush_radius(self, radius: int) -> None:
        radius = min(MAX_BRUSH_RADIUS, max(MIN_BRUSH_RADIUS, int(radius)))
        if radius == self._radius:
            return
        self._radius = radius
        centre = self.cursor_item.rect().center() if self.cursor_item.isVisible() else None
        if centre is not None:
            self._place_cursor(centre)
        self.brush_changed.emit(radius)

    def grow_brush(self, step: int) -> None:
        """``]`` (step +1) makes the brush bigger, ``[`` (step -1) smaller."""
        self.set_brush_radius(grown_radius(self.brush_radius, step))

    def set_eraser(self, on: bool) -> None:
        if bool(on) != self._eraser:
            self._eraser = bool(on)
            self.eraser_changed.emit(self._eraser)

    def clear_mask(self) -> None:
        """Erase the whole region as one stroke (undoable)."""
        if self._mask is None or not self._mask.any():
            return
        self._begin_stroke(0)
        self._mask[:] = 0
        self._end_stroke()

    # ------------------------------------------------------------------------------------- strokes
    def stroke(self, points: list[tuple[float, float]], erase: bool = False) -> None:
        """Paint (or erase) along ``points`` in image coordinates (x, y) as one undoable stroke."""
        if self._mask is None or not points:
            return
        self._begin_stroke(0 if erase else 1)
        previous = points[0]
        for point in points:
            self._draw_segment(previous, point)
            previous = point
        self._end_stroke()

    def undo(self) -> bool:
        if not self._undo or self._mask is None:
            return False
        stroke = self._undo.pop()
        stroke.put(self._mask, stroke.before)
        self._redo.append(stroke)
        self._render()
        self.history_changed.emit()
        return True

    def redo(self) -> bool:
        if not self._redo or self._mask is None:
            return False
        stroke = self._redo.pop()
        stroke.put(self._mask, stroke.after)
        self._undo.append(stroke)
        self._render()
        self.history_changed.emit()
        return True

    def _begin_stroke(self, value: int) -> None:
        self._stroke_before = self._mask.copy()
        self._stroke_value = value

    def _draw_segment(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        radius = self.brush_radius
        a = (int(np.floor(start[0])), int(np.floor(start[1])))
        b = (int(np.floor(end[0])), int(np.floor(end[1])))
        if a != b:
            cv2.line(self._mask, a, b, self._stroke_value, thickness=2 * radius, lineType=cv2.LINE_8)
        cv2.circle(self._mask, b, radius, self._stroke_value, thickness=-1, lineType=cv2.LINE_8)
        self._render_timer.start()

    def _end_stroke(self) -> None:
        before, self._stroke_before = self._stroke_before, None
        if before is None:
            return
        changed = before != self._mask
        self._render()
        if not changed.any():
            return
        rows = np.flatnonzero(changed.any(axis=1))
        cols = np.flatnonzero(changed.any(axis=0))
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        self._undo.append(_Stroke(int(top), int(left), before[top:bottom, left:right].copy(),
                                  self._mask[top:bottom, left:right].copy()))
        del self._undo[:-HISTORY_LIMIT]
        self._redo.clear()
        self.history_changed.emit()

    def _render(self) -> None:
        self._render_timer.stop()
        if self._mask is not None:
            self.setImage(self._mask, autoLevels=False, levels=(0, 1))

    # --------------------------------------------------------------------------------- the mouse
    def _erasing(self, button: Qt.MouseButton) -> bool:
        return self._eraser or button == Qt.MouseButton.RightButton

    def hoverEvent(self, ev) -> None:  # noqa: N802 (pyqtgraph override)
        if not self._enabled or self._mask is None:
            return
        if ev.isExit():
            self.cursor_item.setVisible(False)
            return
        for button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            ev.acceptDrags(button)
            ev.acceptClicks(button)
        self._place_cursor(ev.pos())

    def mouseDragEvent(self, ev) -> None:  # noqa: N802 (pyqtgraph override)
        if (not self._enabled or self._mask is None
                or ev.button() not in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton)):
            ev.ignore()
            return
        ev.accept()
        if ev.isStart():
            self._begin_stroke(0 if self._erasing(ev.button()) else 1)
            start = ev.buttonDownPos()
            self._draw_segment((start.x(), start.y()), (ev.pos().x(), ev.pos().y()))
        elif self._stroke_before is not None:
            self._draw_segment((ev.lastPos().x(), ev.lastPos().y()), (ev.pos().x(), ev.pos().y()))
        self._place_cursor(ev.pos())
        if ev.isFinish():
            self._end_stroke()

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 (pyqtgraph override)
        if (not self._enabled or self._mask is None
                or ev.button() not in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton)):
            ev.ignore()
            return
        ev.accept()
        self.stroke([(ev.pos().x(), ev.pos().y())], erase=self._erasing(ev.button()))

    def _place_cursor(self, pos: QPointF) -> None:
        """The circle of the pixels a stamp at ``pos`` covers (centre pixel's centre, radius + half a pixel)."""
        x, y = np.floor(pos.x()) + 0.5, np.floor(pos.y()) + 0.5
        r = self.brush_radius + 0.5
        rect = QRectF(x - r, y - r, 2 * r, 2 * r)
        self.cursor_item.setRect(rect)
        self._cursor_halo.setRect(rect)
        self.cursor_item.setVisible(self._enabled)


class PaintBar(QFrame):
    """Brush size, eraser, undo and redo: the controls the viewer shows while painting."""

    def __init__(self, layer: PaintLayer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("paint_bar")
        self._layer = layer
        bar = QHBoxLayout(self)
        bar.setContentsMargins(4, 2, 4, 2)
        bar.setSpacing(4)
        caption = QLabel("Brush")
        bar.addWidget(caption)
        self.brush_spin = QSpinBox()
        self.brush_spin.setObjectName("brush_size_spin")
        self.brush_spin.setRange(MIN_BRUSH_RADIUS, MAX_BRUSH_RADIUS)
        self.brush_spin.setSuffix(" px")
        self.brush_spin.setToolTip("Brush radius in image pixels ([ smaller, ] bigger)")
        self.brush_spin.setValue(layer.brush_radius)
        caption.setBuddy(self.brush_spin)
        bar.addWidget(self.brush_spin)

        def button(text: str, name: str, tip: str, checkable: bool = False) -> QToolButton:
            b = QToolButton()
            b.setText(text)
            b.setObjectName(name)
            b.setToolTip(tip)
            b.setCheckable(checkable)
            bar.addWidget(b)
            return b

        self.eraser_button = button("Eraser (E)", "eraser_button", "Erase instead of paint (E); the right "
                                    "button always erases", checkable=True)
        self.undo_button = button("Undo", "paint_undo_button", "Undo the last stroke (Ctrl+Z)")
        self.redo_button = button("Redo", "paint_redo_button", "Redo the stroke undone (Ctrl+Shift+Z)")
        hint = QLabel("left button paints, right button erases")
        hint.setObjectName("paint_hint")
        bar.addWidget(hint)
        bar.addStretch(1)

        self.brush_spin.valueChanged.connect(layer.set_brush_radius)
        layer.brush_changed.connect(self.brush_spin.setValue)
        self.eraser_button.toggled.connect(layer.set_eraser)
        layer.eraser_changed.connect(self.eraser_button.setChecked)
        self.undo_button.clicked.connect(layer.undo)
        self.redo_button.clicked.connect(layer.redo)
        layer.history_changed.connect(self._update_history_buttons)
        self._update_history_buttons()

    def _update_history_buttons(self) -> None:
        self.undo_button.setEnabled(self._layer.can_undo())
        self.redo_button.setEnabled(self._layer.can_redo())
