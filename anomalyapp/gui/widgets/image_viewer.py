"""The inspection viewer: an image with its anomaly heat map, region outlines and a fixed colour scale.

One pyqtgraph ``ViewBox`` (aspect locked, y down) holds two ``ImageItem``s: the base image and the heat map
stretched over it with ``setRect`` (the map may have a lower resolution than the image, same aspect).
Wheel zoom and drag pan are the ViewBox's own. The widget is thin: it shows what it is given and reads
nothing from disk.

Choices worth knowing:

* Both items get ``axisOrder="row-major"`` themselves, so the viewer is right whatever the process-wide
  pyqtgraph option says (``gui/app.py`` sets it too).
* The heat map has fixed levels (0, 1): the model threshold sits at 0.5 for every image, so colours compare
  across images. Values above 1 take the top colour. The heat map is drawn with ``core.colours.heat_alpha``, as
  written overlays are: transparent below a floor (a share of the threshold level), rising to full at the
  threshold. The transparency goes through the alpha channel of the lookup table rather than by writing
  NaN into a copy of the map: pyqtgraph locates NaN pixels with ``nonzero()`` on every render, which it
  expects to be rare, and on a clean map they are nearly all pixels (over a second per render at 1:1 on a
  4096 px map). The effect on screen is the same.
* The base image is not auto-downsampled by pyqtgraph: for 8-bit colour images its block mean runs about
  eight seconds per zoom step on an 8000x6000 frame. The viewer instead keeps a lazily built pyramid of
  halved images (OpenCV ``INTER_AREA``) and shows the level that matches the zoom, so zoomed-out views are
  both fast and free of aliasing. The hover readout always reads the original array.
* 16-bit and float images are shown through display levels taken from their 0.5th and 99.5th percentiles
  (as ``services.rendering.display_rgb`` does), without converting the data; the readout shows raw values.
* Outlines are traced on the map (at most 4096 px) and scaled to image coordinates; they go through the
  centres of the boundary pixels of each region. Boxes are the regions' pixel-edge bounding rectangles.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem, QVBoxLayout, QWidget

from anomalyapp.core.colours import ANOMALY_COLOUR_MAP, heat_alpha
from anomalyapp.core.verdicts import NORMALISED_THRESHOLD
from anomalyapp.gui.widgets.paint_layer import PaintLayer
from anomalyapp.gui.widgets.viewer_controls import build_controls, build_shortcuts
from anomalyapp.gui.widgets.viewer_parts import (
    ImagePyramid,
    OutlineItem,
    cosmetic_pen,
    display_levels,
    format_value,
)
from anomalyapp.services.rendering import regions_above

DEFAULT_THRESHOLD_LEVEL = NORMALISED_THRESHOLD
DEFAULT_OPACITY = 0.5
BACKGROUND = "#1b1d21"
_LUT_SIZE = 256
_MIN_LEVEL_SIDE = 256  # the coarsest pyramid level keeps at least this many pixels on its long side


class ImageViewer(QWidget):
    """Shows one image, optionally with its normalised anomaly map (threshold at 0.5) on top.

    Emits ``hover_changed(str)`` with a readout of the pixel under the cursor ("" off the image).
    """

    hover_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None, colormap: str = ANOMALY_COLOUR_MAP) -> None:
        super().__init__(parent)
        self._pixels: np.ndarray | None = None  # the caller's array, unchanged: the readout reads it
        self._levels: tuple[float, float] = (0.0, 255.0)
        self._pyramid = ImagePyramid(None)  # halved copies of the shown image, built when a zoom needs one
        self._shown_level: int | None = None
        self._map: np.ndarray | None = None
        self._threshold_level = DEFAULT_THRESHOLD_LEVEL
        self._overlay_on = True
        self._outlines_on = True
        self._boxes_on = False
        self._last_scene_pos: QPointF | None = None
        self._readout = ""
        self._colormap = pg.colormap.get(colormap)

        self._build_view()
        build_controls(self)
        build_shortcuts(self)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._toolbar)
        layout.addWidget(self.paint_bar)
        layout.addWidget(self._graphics, 1)
        layout.addWidget(self._status)

        self._level_timer = QTimer(self)
        self._level_timer.setSingleShot(True)
        self._level_timer.setInterval(0)
        self._level_timer.timeout.connect(self._update_base_level)
        self._view_box.sigRangeChanged.connect(self._on_view_changed)
        self._view_box.sigResized.connect(self._on_view_changed)

        self.set_opacity(DEFAULT_OPACITY)
        self._apply_threshold_level()
        self._update_visibility()

    # ----------------------------------------------------------------------------------------- building
    def _build_view(self) -> None:
        self._graphics = pg.GraphicsLayoutWidget()
        self._graphics.setObjectName("image_view")
        self._graphics.setBackground(BACKGROUND)
        self._graphics.ci.layout.setContentsMargins(4, 4, 4, 4)
        self._graphics.ci.layout.setHorizontalSpacing(6)
        self._graphics.installEventFilter(self)

        self._view_box = self._graphics.addViewBox(row=0, col=0, lockAspect=True, invertY=True, enableMenu=False)
        self._view_box.disableAutoRange()
        self._view_box.setDefaultPadding(0.02)

        self._image_item = pg.ImageItem(axisOrder="row-major")
        self._image_item.setBorder(pg.mkPen("#5f6368", width=1))
        self._view_box.addItem(self._image_item)

        self._heat_item = pg.ImageItem(axisOrder="row-major", autoDownsample=True)
        self._heat_item.setZValue(10)
        self._view_box.addItem(self._heat_item)

        self._outline_item = OutlineItem(cosmetic_pen("#ffffff", 1.6), cosmetic_pen("#000000", 3.6))
        self._outline_item.setZValue(20)
        self._view_box.addItem(self._outline_item, ignoreBounds=True)

        dash = Qt.PenStyle.DashLine
        self._box_item = OutlineItem(cosmetic_pen("#ffd400", 1.4, dash), cosmetic_pen("#000000", 3.0))
        self._box_item.setZValue(21)
        self._view_box.addItem(self._box_item, ignoreBounds=True)
        self._view_box.sigTransformChanged.connect(self._on_transform_changed)

        # Outside the model's region of interest the image is dimmed: nothing there is scored.
        self._region_rectangles: tuple = ()
        self._region_shade = QGraphicsPathItem()
        self._region_shade.setPen(QPen(Qt.PenStyle.NoPen))
        self._region_shade.setBrush(QBrush(QColor(0, 0, 0, 150)))
        self._region_shade.setZValue(15)
        self._view_box.addItem(self._region_shade, ignoreBounds=True)

        self._paint_layer = PaintLayer()
        self._view_box.addItem(self._paint_layer, ignoreBounds=True)
        self._view_box.addItem(self._paint_layer.cursor_item, ignoreBounds=True)

        self._color_bar = pg.ColorBarItem(
            values=(0.0, 1.0), colorMap=self._colormap, interactive=False, colorMapMenu=False, width=14,
            label="anomaly score",
        )
        self._color_bar.getAxis("left").setPen("#9aa0a6")
        self._color_bar.getAxis("left").setTextPen("#bdc1c6")
        self._color_bar.axis.setTextPen("#e8eaed")
        # The threshold marker: a light line on a dark one, readable on every colour of the bar.
        self._threshold_lines = [
            pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(colour, width=width))
            for colour, width in (("#000000", 5), ("#ffffff", 2))
        ]
        for z, line in enumerate(self._threshold_lines):
            line.setZValue(1000 + z)
            self._color_bar.addItem(line)
        self._graphics.addItem(self._color_bar, row=0, col=1)

        self._graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)

    @property
    def region_shade_item(self) -> QGraphicsPathItem:
        return self._region_shade

    def set_region(self, rectangles) -> None:
        """Dim the image outside these rectangles (left, top, right, bottom as shares of the image); () or None:
        nothing dimmed."""
        self._region_rectangles = tuple(tuple(r) for r in (rectangles or ()))
        self._update_region_shade()

    def _update_region_shade(self) -> None:
        shape = self.image_shape()
        path = QPainterPath()
        if self._region_rectangles and shape is not None:
            height, width = shape[:2]
            path.addRect(QRectF(0, 0, width, height))
            inside = QPainterPath()
            for left, top, right, bottom in self._region_rectangles:
                rectangle = QPainterPath()
                rectangle.addRect(QRectF(left * width, top * height, (right - left) * width, (bottom - top) * height))
                inside = inside.united(rectangle)
            path = path.subtracted(inside)
        self._region_shade.setPath(path)

    # ----------------------------------------------------------------------------------------- public API
    @property
    def view_box(self) -> pg.ViewBox:
        return self._view_box

    @property
    def image_item(self) -> pg.ImageItem:
        return self._image_item

    @property
    def heat_item(self) -> pg.ImageItem:
        return self._heat_item

    @property
    def outline_item(self) -> QGraphicsPathItem:
        return self._outline_item

    @property
    def box_item(self) -> QGraphicsPathItem:
        return self._box_item

    @property
    def color_bar(self) -> pg.ColorBarItem:
        return self._color_bar

    @property
    def paint_layer(self) -> PaintLayer:
        return self._paint_layer

    @property
    def threshold_level(self) -> float:
        return self._threshold_level

    @property
    def opacity(self) -> float:
        return self._heat_item.opacity()

    def has_image(self) -> bool:
        return self._pixels is not None

    def image_shape(self) -> tuple[int, ...] | None:
        return None if self._pixels is None else tuple(self._pixels.shape)

    def set_image(self, pixels: np.ndarray, title: str = "") -> None:
        """Show ``pixels`` (HxW gray or HxWx3 RGB; uint8, uint16 or float). Drops any previous anomaly map.

        The view is fitted when the image size changes and kept otherwise, so a camera stream or a series of
        same-sized parts can be compared at one spot. The array is not copied; do not modify it while shown.
        """
        pixels = np.asarray(pixels)
        if pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]
        if pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = pixels[:, :, :3]
        if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3) or 0 in pixels.shape[:2]:
            raise ValueError(f"expected an HxW or HxWx3 image, got shape {pixels.shape}")
        if pixels.dtype.kind not in "uif":
            raise ValueError(f"expected a numeric image, got dtype {pixels.dtype}")

        previous = self.image_shape()
        # A painted region belongs to one image; painting itself stays on for the next one.
        self._paint_layer.reset(pixels.shape[:2] if self._paint_layer.enabled else None)
        self._pixels = pixels
        drawable = pixels.dtype in (np.uint8, np.uint16, np.float32, np.float64)
        display = pixels if drawable else pixels.astype(np.float32)
        self._levels = display_levels(display)
        self._pyramid = ImagePyramid(display)
        self._shown_level = None
        self._clear_map()

        height, width = pixels.shape[:2]
        kind = "gray" if pixels.ndim == 2 else "RGB"
        self.image_info_label.setText(f"{width} \u00d7 {height}  {kind} {pixels.dtype.name}")
        self.title_label.setText(title)
        self.title_label.setToolTip(title)
        if previous is None or previous[:2] != pixels.shape[:2]:
            self.fit()
            self._update_region_shade()
        self._update_base_level()
        self._refresh_readout()

    def set_anomaly_map(self, normalised_map: np.ndarray | None) -> None:
        """Lay a normalised anomaly map (threshold 0.5, fixed 0..1 scale) over the image; None removes it.

        The map may be smaller than the image (same aspect); it is stretched over the whole image.
        """
        if normalised_map is None:
            self._clear_map()
            self._refresh_readout()
            return
        if self._pixels is None:
            raise RuntimeError("set_image must come before set_anomaly_map")
        heat = np.asarray(normalised_map)
        if heat.ndim == 3 and heat.shape[2] == 1:
            heat = heat[:, :, 0]
        if heat.ndim != 2 or 0 in heat.shape:
            raise ValueError(f"expected an HxW anomaly map, got shape {heat.shape}")
        self._map = heat.astype(np.float32, copy=False)
        height, width = self._pixels.shape[:2]
        self._heat_item.setImage(self._map, autoLevels=False, levels=(0.0, 1.0))
        self._heat_item.setRect(QRectF(0, 0, width, height))
        self._update_regions()
        self._update_visibility()
        self._refresh_readout()

    # ------------------------------------------------------------------ painting a defect region
    def set_paint_mode(self, enabled: bool, brush_radius: int | None = None) -> None:
        """Let the mouse paint the defect region (left button) and erase it (right button) instead of panning.

        The paint layer has the image's own size; ``painted_mask()`` returns it as a bool array. While painting
        the paint bar (brush size, eraser, undo) shows, the cursor is a circle of the brush size and the view
        takes the keyboard focus, so [ ] E Ctrl+Z work at once.
        """
        layer = self._paint_layer
        layer.set_enabled(enabled)
        if self._pixels is not None and (layer.image is None or layer.image.shape != self._pixels.shape[:2]):
            layer.reset(self._pixels.shape[:2])
        if brush_radius is not None:
            layer.set_brush_radius(brush_radius)
        self.paint_bar.setVisible(enabled)
        if enabled:
            self._graphics.setCursor(Qt.CursorShape.CrossCursor)
            self._graphics.setFocus(Qt.FocusReason.OtherFocusReason)
        else:
            self._graphics.unsetCursor()

    def is_painting(self) -> bool:
        return self._paint_layer.enabled

    def painted_mask(self) -> np.ndarray | None:
        return self._paint_layer.mask()

    def clear_paint(self) -> None:
        self._paint_layer.clear_mask()

    def clear(self) -> None:
        """Show nothing: no image, no map, no title, no readout."""
        self._paint_layer.reset(None)
        self._pixels = None
        self._pyramid = ImagePyramid(None)
        self._shown_level = None
        self._clear_map()
        self._image_item.clear()
        self._update_region_shade()
        self.title_label.setText("")
        self.title_label.setToolTip("")
        self.image_info_label.setText("")
        self._set_readout("")

    def fit(self) -> None:
        """Fit the whole image in the view."""
        if self._pixels is None:
            return
        height, width = self._pixels.shape[:2]
        self._view_box.setRange(QRectF(0, 0, width, height), padding=0.02)

    def zoom_one_to_one(self) -> None:
        """One image pixel per physical screen pixel, keeping the view centre (clamped onto the image)."""
        if self._pixels is None:
            return
        height, width = self._pixels.shape[:2]
        ratio = self._graphics.devicePixelRatioF() or 1.0
        span_x = max(1.0, self._view_box.width() * ratio)
        span_y = max(1.0, self._view_box.height() * ratio)
        centre = self._view_box.viewRect().center()
        cx = min(max(centre.x(), 0.0), float(width))
        cy = min(max(centre.y(), 0.0), float(height))
        self._view_box.setRange(QRectF(cx - span_x / 2, cy - span_y / 2, span_x, span_y), padding=0.0)

    def zoom(self, factor: float) -> None:
        """Zoom about the view centre; ``factor`` > 1 zooms in."""
        if factor <= 0 or self._pixels is None:
            return
        centre = self._view_box.viewRect().center()
        self._view_box.scaleBy(s=(1.0 / factor, 1.0 / factor), center=centre)

    def set_overlay_visible(self, visible: bool) -> None:
        """Show the heat map, outlines and boxes (True) or the original image alone (False)."""
        self._overlay_on = bool(visible)
        self.overlay_toggle.setChecked(self._overlay_on)
        self._update_visibility()

    def set_outlines_visible(self, visible: bool) -> None:
        self._outlines_on = bool(visible)
        self.outlines_toggle.setChecked(self._outlines_on)
        self._update_visibility()

    def set_boxes_visible(self, visible: bool) -> None:
        self._boxes_on = bool(visible)
        self.boxes_toggle.setChecked(self._boxes_on)
        self._update_visibility()

    def set_opacity(self, opacity: float) -> None:
        """Heat-map opacity, 0..1 (outlines and boxes stay opaque)."""
        opacity = min(max(float(opacity), 0.0), 1.0)
        self._heat_item.setOpacity(opacity)
        percent = round(opacity * 100)
        if self.opacity_slider.value() != percent:
            self.opacity_slider.blockSignals(True)
            self.opacity_slider.setValue(percent)
            self.opacity_slider.blockSignals(False)
        self.opacity_label.setText(f"{percent} %")

    def set_threshold_level(self, level: float) -> None:
        """Move the decision level on the normalised scale (0.5 is the calibrated threshold)."""
        level = float(level)
        if not math.isfinite(level):
            raise ValueError(f"threshold level must be a finite number, got {level}")
        if level == self._threshold_level:
            return
        self._threshold_level = level
        self._apply_threshold_level()
        self._update_regions()

    def readout_at(self, x: float, y: float) -> str:
        """The hover text for view (= image) coordinates ``x``, ``y``; "" off the image."""
        if self._pixels is None or not (math.isfinite(x) and math.isfinite(y)):
            return ""
        height, width = self._pixels.shape[:2]
        col, row = math.floor(x), math.floor(y)
        if not (0 <= col < width and 0 <= row < height):
            return ""
        text = f"x {col}  y {row}  value {format_value(self._pixels[row, col])}"
        if self._map is not None:
            map_h, map_w = self._map.shape
            score = self._map[min(row * map_h // height, map_h - 1), min(col * map_w // width, map_w - 1)]
            text += f"  score {float(score):.2f}"
        return text

    # ----------------------------------------------------------------------------------------- internals
    def _clear_map(self) -> None:
        self._map = None
        self._heat_item.clear()
        self._outline_item.setPath(QPainterPath())
        self._box_item.setPath(QPainterPath())
        self._update_visibility()

    def _update_visibility(self) -> None:
        shown = self._map is not None and self._overlay_on
        self._heat_item.setVisible(shown)
        self._outline_item.setVisible(shown and self._outlines_on)
        self._box_item.setVisible(shown and self._boxes_on)

    def _apply_threshold_level(self) -> None:
        """Lookup table whose alpha is ``heat_alpha`` at the threshold level, and the threshold marker on the bar."""
        level = self._threshold_level
        lut = self._colormap.getLookupTable(start=0.0, stop=1.0, nPts=_LUT_SIZE, alpha=True)
        # Index i covers scores [i/256, (i+1)/256): its alpha is the rule's at the middle of that span.
        lut[:, 3] = np.round(255 * heat_alpha((np.arange(_LUT_SIZE) + 0.5) / _LUT_SIZE, level)).astype(lut.dtype)
        self._heat_item.setLookupTable(lut)

        shown = min(max(level, 0.0), 1.0)
        for line in self._threshold_lines:
            line.setPos(shown * _LUT_SIZE)  # the bar spans 0..256 in its own coordinates
        major = [(0.0, "0"), (shown, f"{level:.2f}"), (1.0, "1")]
        major = [tick for tick in major if tick[0] == shown or abs(tick[0] - shown) > 0.08]
        minor = [(v, "") for v in (0.25, 0.5, 0.75) if abs(v - shown) > 0.02]
        self._color_bar.axis.setTicks([major, minor])

    def _update_regions(self) -> None:
        """Outlines and bounding boxes of the map's regions at or above the threshold, in image coordinates."""
        outline, boxes = QPainterPath(), QPainterPath()
        if self._map is not None and self._pixels is not None:
            height, width = self._pixels.shape[:2]
            map_h, map_w = self._map.shape
            sx, sy = width / map_w, height / map_h
            contours = regions_above(self._map, self._threshold_level)
            if contours:
                closed = [np.concatenate([c[:, 0, :], c[:1, 0, :]]) for c in contours]
                points = (np.concatenate(closed).astype(np.float64) + 0.5) * (sx, sy)
                connect = np.ones(len(points), dtype=np.int32)
                connect[np.cumsum([len(c) for c in closed]) - 1] = 0  # no line from one contour to the next
                outline = pg.arrayToQPath(points[:, 0], points[:, 1], connect=connect, finiteCheck=False)
                for contour in contours:
                    x, y, w, h = cv2.boundingRect(contour)
                    boxes.addRect(QRectF(x * sx, y * sy, w * sx, h * sy))
        self._outline_item.setPath(outline)
        self._box_item.setPath(boxes)

    def _on_view_changed(self, *_args) -> None:
        if self._pixels is not None:
            self._level_timer.start()

    def _on_transform_changed(self, *_args) -> None:
        pixel = max(self._view_box.viewPixelSize())
        self._outline_item.set_pixel_size(pixel)
        self._box_item.set_pixel_size(pixel)

    def _wanted_level(self) -> int:
        """The coarsest pyramid level that still has at least one of its pixels per physical screen pixel."""
        height, width = self._pixels.shape[:2]
        rect = self._view_box.viewRect()
        size = self._view_box.size()
        if size.width() < 1 or size.height() < 1 or rect.width() <= 0 or rect.height() <= 0:
            return 0
        ratio = self._graphics.devicePixelRatioF() or 1.0
        image_px_per_screen_px = min(rect.width() / size.width(), rect.height() / size.height()) / ratio
        if image_px_per_screen_px < 2:
            return 0
        coarsest = max(0, int(math.log2(max(height, width) / _MIN_LEVEL_SIDE)))
        return min(int(math.log2(image_px_per_screen_px)), coarsest)

    def _update_base_level(self) -> None:
        if self._pixels is None:
            return
        level = self._wanted_level()
        if level == self._shown_level:
            return
        self._shown_level = level
        height, width = self._pixels.shape[:2]
        self._image_item.setImage(self._pyramid.level(level), autoLevels=False, levels=self._levels)
        self._image_item.setRect(QRectF(0, 0, width, height))

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        self._last_scene_pos = QPointF(scene_pos)
        self._refresh_readout()

    def _refresh_readout(self) -> None:
        pos = self._last_scene_pos
        if pos is None or not self._view_box.sceneBoundingRect().contains(pos):
            self._set_readout("")
            return
        point = self._view_box.mapSceneToView(pos)
        self._set_readout(self.readout_at(point.x(), point.y()))

    def _set_readout(self, text: str) -> None:
        self.readout_label.setText(text)
        if text != self._readout:
            self._readout = text
            self.hover_changed.emit(text)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if watched is self._graphics and event.type() == QEvent.Type.Leave:
            self._last_scene_pos = None
            self._set_readout("")
            self._paint_layer.cursor_item.setVisible(False)
        return super().eventFilter(watched, event)
