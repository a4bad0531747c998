"""The viewer's parts that stand on their own: overlay path items, an eliding label, display levels, the
pixel readout format and the image pyramid (halved copies for zoomed-out views)."""

from __future__ import annotations

import math

import cv2
import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QFrame, QGraphicsPathItem, QLabel


class OutlineItem(QGraphicsPathItem):
    """A path in image coordinates drawn with cosmetic pens: a dark halo under a light line.

    Cosmetic pens keep their width in screen pixels at any zoom, so the bounding rectangle is padded by the
    halo width converted to item units (``set_pixel_size``); Qt's own padding assumes item units.
    """

    def __init__(self, pen: QPen, halo_pen: QPen) -> None:
        super().__init__()
        self.setPen(pen)
        self._halo_pen = halo_pen
        self._pad = 0.0
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def set_pixel_size(self, item_units_per_pixel: float) -> None:
        pad = item_units_per_pixel * max(self.pen().widthF(), self._halo_pen.widthF())
        if not math.isclose(pad, self._pad):
            self.prepareGeometryChange()
            self._pad = pad

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt override)
        path = self.path()
        if path.isEmpty():
            return QRectF()
        pad = self._pad
        return path.controlPointRect().adjusted(-pad, -pad, pad, pad)

    def shape(self) -> QPainterPath:
        return self.path()

    def paint(self, painter: QPainter, option, widget=None) -> None:
        path = self.path()
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(self._halo_pen)
        painter.drawPath(path)
        painter.setPen(self.pen())
        painter.drawPath(path)


class ElidedLabel(QLabel):
    """A one-line label that shortens its text in the middle instead of widening the layout."""

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return QSize(0, super().minimumSizeHint().height())

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        painter = QPainter(self)
        rect = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideMiddle, rect.width())
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(rect, int(self.alignment()), text)


def cosmetic_pen(colour: str, width: float, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    pen = QPen(QColor(colour))
    pen.setWidthF(width)
    pen.setCosmetic(True)
    pen.setStyle(style)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    return pen


def display_levels(pixels: np.ndarray) -> tuple[float, float]:
    """Levels that map an image to the screen: the full 8-bit range, else robust percentiles of a sample."""
    if pixels.dtype == np.uint8:
        return 0.0, 255.0
    step = max(1, max(pixels.shape[:2]) // 1024)
    sample = pixels[::step, ::step].astype(np.float32, copy=False)
    low, high = (float(v) for v in np.nanpercentile(sample, (0.5, 99.5)))
    if not (math.isfinite(low) and math.isfinite(high)):
        return 0.0, 1.0
    return (low, high) if high > low else (low, low + 1.0)


def format_value(value: np.ndarray | np.generic) -> str:
    values = np.atleast_1d(value)
    if values.dtype.kind in "fc":
        return ", ".join(f"{float(v):.4g}" for v in values)
    return ", ".join(str(int(v)) for v in values)


def separator() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.VLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


class ImagePyramid:
    """Level 0 is the image to draw; level k is it halved k times (OpenCV ``INTER_AREA``, so zoomed-out views
    are free of aliasing), each built from the next finer one the first time a zoom needs it."""

    def __init__(self, display: np.ndarray | None) -> None:
        self._levels: dict[int, np.ndarray] = {} if display is None else {0: display}

    def level(self, level: int) -> np.ndarray:
        if level not in self._levels:
            finer = max(k for k in self._levels if k < level)
            height, width = self._levels[0].shape[:2]
            size = (max(1, round(width / 2**level)), max(1, round(height / 2**level)))
            self._levels[level] = cv2.resize(self._levels[finer], size, interpolation=cv2.INTER_AREA)
        return self._levels[level]
