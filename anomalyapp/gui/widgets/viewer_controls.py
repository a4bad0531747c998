"""The image viewer's controls, built onto an ``ImageViewer``: the toolbar, the readout status line, the
paint bar and the keyboard shortcuts. Kept apart from the viewer so that its module holds the view logic;
the widgets stay attributes of the viewer (``viewer.fit_button``, ``viewer.opacity_slider``, …)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QFontDatabase, QKeySequence
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QSlider, QToolButton

from anomalyapp.gui.widgets.paint_layer import PaintBar
from anomalyapp.gui.widgets.viewer_parts import ElidedLabel, separator

if TYPE_CHECKING:
    from anomalyapp.gui.widgets.image_viewer import ImageViewer


def build_controls(viewer: ImageViewer) -> None:
    """The toolbar (zoom, overlay toggles, opacity, title), the readout status line and the paint bar."""
    viewer._toolbar = QFrame()
    viewer._toolbar.setObjectName("viewer_toolbar")
    bar = QHBoxLayout(viewer._toolbar)
    bar.setContentsMargins(4, 3, 4, 3)
    bar.setSpacing(4)

    def button(text: str, name: str, tip: str, checkable: bool = False, checked: bool = False) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setObjectName(name)
        b.setToolTip(tip)
        b.setCheckable(checkable)
        b.setChecked(checked)
        b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        bar.addWidget(b)
        return b

    viewer.fit_button = button("Fit", "fit_button", "Fit the whole image in the view (F)")
    viewer.one_to_one_button = button("1:1", "one_to_one_button", "One image pixel per screen pixel (1)")
    bar.addWidget(separator())
    viewer.overlay_toggle = button("Overlay", "overlay_toggle", "Show the heat map over the image, or the "
                                 "original image alone (O)", checkable=True, checked=viewer._overlay_on)
    viewer.outlines_toggle = button("Outlines", "outlines_toggle", "Outline regions at or above the threshold",
                                  checkable=True, checked=viewer._outlines_on)
    viewer.boxes_toggle = button("Boxes", "boxes_toggle", "Bounding boxes around regions at or above the "
                               "threshold", checkable=True, checked=viewer._boxes_on)
    bar.addWidget(separator())

    opacity_caption = QLabel("Opacity")
    bar.addWidget(opacity_caption)
    viewer.opacity_slider = QSlider(Qt.Orientation.Horizontal)
    viewer.opacity_slider.setObjectName("opacity_slider")
    viewer.opacity_slider.setRange(0, 100)
    viewer.opacity_slider.setSingleStep(5)
    viewer.opacity_slider.setPageStep(10)
    viewer.opacity_slider.setMinimumWidth(80)
    viewer.opacity_slider.setMaximumWidth(140)
    viewer.opacity_slider.setToolTip("Heat-map opacity")
    opacity_caption.setBuddy(viewer.opacity_slider)
    bar.addWidget(viewer.opacity_slider)
    viewer.opacity_label = QLabel()
    viewer.opacity_label.setObjectName("opacity_label")
    viewer.opacity_label.setMinimumWidth(viewer.opacity_label.fontMetrics().horizontalAdvance("100 %") + 4)
    bar.addWidget(viewer.opacity_label)
    bar.addSpacing(8)

    viewer.title_label = ElidedLabel()
    viewer.title_label.setObjectName("title_label")
    viewer.title_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    viewer.title_label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    bar.addWidget(viewer.title_label, 1)

    viewer._status = QFrame()
    viewer._status.setObjectName("viewer_status")
    status = QHBoxLayout(viewer._status)
    status.setContentsMargins(6, 2, 6, 2)
    viewer.readout_label = ElidedLabel()
    viewer.readout_label.setObjectName("readout_label")
    viewer.readout_label.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    viewer.readout_label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    viewer.readout_label.setToolTip("Pixel under the cursor: position, original value and anomaly score")
    status.addWidget(viewer.readout_label, 1)
    viewer.image_info_label = QLabel()
    viewer.image_info_label.setObjectName("image_info_label")
    status.addWidget(viewer.image_info_label)

    viewer.paint_bar = PaintBar(viewer._paint_layer)
    viewer.paint_bar.setVisible(False)

    viewer.fit_button.clicked.connect(viewer.fit)
    viewer.one_to_one_button.clicked.connect(viewer.zoom_one_to_one)
    viewer.overlay_toggle.toggled.connect(viewer.set_overlay_visible)
    viewer.outlines_toggle.toggled.connect(viewer.set_outlines_visible)
    viewer.boxes_toggle.toggled.connect(viewer.set_boxes_visible)
    # Opacity only repaints (no recomputation), so the slider drives it directly, unthrottled.
    viewer.opacity_slider.valueChanged.connect(lambda value: viewer.set_opacity(value / 100.0))

def build_shortcuts(viewer: ImageViewer) -> None:
    """The viewer's keys (F, 1, O, painting keys), active while it or a child has focus."""
    def action(name: str, key: str, slot, text: str) -> QAction:
        a = QAction(text, viewer)
        a.setObjectName(name)
        a.setShortcut(QKeySequence(key))
        a.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        a.triggered.connect(slot)
        viewer.addAction(a)
        return a

    viewer.fit_action = action("fit_action", "F", viewer.fit, "Fit the image in the view")
    viewer.one_to_one_action = action("one_to_one_action", "1", viewer.zoom_one_to_one, "One image pixel per "
                                    "screen pixel")
    viewer.overlay_action = action("overlay_action", "O", viewer.overlay_toggle.toggle, "Original image / overlay")
    layer = viewer._paint_layer
    viewer.brush_smaller_action = action("brush_smaller_action", "[", lambda: layer.grow_brush(-1),
                                       "Smaller brush (painting)")
    viewer.brush_bigger_action = action("brush_bigger_action", "]", lambda: layer.grow_brush(+1),
                                      "Bigger brush (painting)")
    viewer.eraser_action = action("eraser_action", "E", lambda: layer.set_eraser(not layer.eraser),
                                "Eraser on / off (painting; the right button always erases)")
    viewer.undo_paint_action = action("undo_paint_action", "Ctrl+Z", layer.undo, "Undo the last stroke")
    viewer.redo_paint_action = action("redo_paint_action", "Ctrl+Shift+Z", layer.redo, "Redo the stroke undone")
    viewer.redo_paint_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
