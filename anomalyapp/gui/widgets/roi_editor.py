"""Drawing the region of interest on a good image: drag rectangles, clear them; the outside is shown dimmed.

The rectangles are kept as shares of the image (left, top, right, bottom from 0 to 1), as the model stores
them (core.config.FramingConfig), so they hold whatever size the line's images come in.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

# A drag shorter than this many screen pixels is a click, not a rectangle.
MIN_DRAG_PX = 4


def _to_qimage(pixels: np.ndarray) -> QImage:
    """An 8-bit RGB copy of ``pixels`` (gray or RGB, uint8, uint16 or float in [0, 1]) for display."""
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        pixels = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    pixels = np.ascontiguousarray(pixels[:, :, :3])
    height, width = pixels.shape[:2]
    return QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


class RoiEditor(QWidget):
    """The image fitted into the widget; drag with the left button to add a rectangle."""

    region_changed = Signal(tuple)  # the rectangles, shares of the image

    def __init__(self, pixels: np.ndarray, rectangles=(), parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("roi_editor")
        self._image = _to_qimage(pixels)
        self._rectangles: list[tuple[float, float, float, float]] = [tuple(r) for r in rectangles]
        self._drag_start: QPointF | None = None
        self._drag_now: QPointF | None = None
        self.setMinimumSize(320, 240)
        self.setCursor(Qt.CursorShape.CrossCursor)

    @property
    def rectangles(self) -> tuple:
        return tuple(self._rectangles)

    def clear(self) -> None:
        self._rectangles.clear()
        self.region_changed.emit(self.rectangles)
        self.update()

    def image_rect(self) -> QRectF:
        """Where the image is drawn: fitted into the widget, aspect kept, centred."""
        scale = min(self.width() / self._image.width(), self.height() / self._image.height())
        width, height = self._image.width() * scale, self._image.height() * scale
        return QRectF((self.width() - width) / 2, (self.height() - height) / 2, width, height)

    def _share(self, point: QPointF) -> tuple[float, float]:
        area = self.image_rect()
        return (min(1.0, max(0.0, (point.x() - area.left()) / area.width())),
                min(1.0, max(0.0, (point.y() - area.top()) / area.height())))

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if event.button() == Qt.MouseButton.LeftButton:
            self._drag_start = self._drag_now = event.position()
            self.update()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if self._drag_start is not None:
            self._drag_now = event.position()
            self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if self._drag_start is None or event.button() != Qt.MouseButton.LeftButton:
            return
        start, end = self._drag_start, event.position()
        self._drag_start = self._drag_now = None
        if abs(end.x() - start.x()) >= MIN_DRAG_PX and abs(end.y() - start.y()) >= MIN_DRAG_PX:
            (x0, y0), (x1, y1) = self._share(start), self._share(end)
            rectangle = (round(min(x0, x1), 4), round(min(y0, y1), 4), round(max(x0, x1), 4), round(max(y0, y1), 4))
            if rectangle[0] < rectangle[2] and rectangle[1] < rectangle[3]:
                self._rectangles.append(rectangle)
                self.region_changed.emit(self.rectangles)
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt override)
        painter = QPainter(self)
        area = self.image_rect()
        painter.drawImage(area, self._image)
        if self._rectangles:
            shade = QPainterPath()
            shade.addRect(area)
            inside = QPainterPath()
            for left, top, right, bottom in self._rectangles:
                rectangle = QPainterPath()
                rectangle.addRect(QRectF(area.left() + left * area.width(), area.top() + top * area.height(),
                                         (right - left) * area.width(), (bottom - top) * area.height()))
                inside = inside.united(rectangle)
            painter.fillPath(shade.subtracted(inside), QColor(0, 0, 0, 150))
            painter.setPen(QPen(QColor("#ffd400"), 1.5))
            painter.drawPath(inside)
        if self._drag_start is not None and self._drag_now is not None:
            painter.setPen(QPen(QColor("#ffffff"), 1.0, Qt.PenStyle.DashLine))
            painter.drawRect(QRectF(self._drag_start, self._drag_now).normalized())
        painter.end()


class RoiDialog(QDialog):
    """The editor with Clear, OK and Cancel; ``rectangles`` after OK is the region to train with."""

    def __init__(self, pixels: np.ndarray, rectangles=(), parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Region of interest")
        self.editor = RoiEditor(pixels, rectangles, self)
        hint = QLabel("Drag rectangles over the part of the image to inspect; the rest is left out of training and "
                      "scoring. The part must sit in the same place in every image.")
        hint.setWordWrap(True)
        clear = QPushButton("Clear")
        clear.setObjectName("roi_clear_button")
        clear.clicked.connect(self.editor.clear)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(clear)
        row.addStretch(1)
        row.addWidget(buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(hint)
        layout.addWidget(self.editor, 1)
        layout.addLayout(row)
        self.resize(720, 560)

    @property
    def rectangles(self) -> tuple:
        return self.editor.rectangles
