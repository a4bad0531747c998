"""The inspection viewer: overlay geometry, readouts, toggles, zoom, and large frames."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtWidgets import QSlider, QToolButton, QWidget

from anomalyapp.core.colours import HEAT_FLOOR_FRACTION
from anomalyapp.gui.widgets.image_viewer import ImageViewer

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer(qtbot):
    widget = ImageViewer()
    qtbot.addWidget(widget)
    widget.resize(900, 700)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def rgb_image(height=200, width=300, value=(90, 100, 110)) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[...] = value
    return image


def hot_square_map(shape, rows, cols, value=0.9) -> np.ndarray:
    heat = np.zeros(shape, np.float32)
    heat[rows[0]:rows[1], cols[0]:cols[1]] = value
    return heat


def assert_rect_close(rect: QRectF, expected: tuple[float, float, float, float], tol: float) -> None:
    got = (rect.left(), rect.top(), rect.right(), rect.bottom())
    x, y, w, h = expected
    assert np.allclose(got, (x, y, x + w, y + h), atol=tol), (got, (x, y, x + w, y + h))


def view_span(viewer: ImageViewer) -> tuple[float, float]:
    rect = viewer.view_box.viewRect()
    return rect.width(), rect.height()


@pytest.mark.parametrize("scale", [1, 2])
def test_outline_and_box_match_hot_square_in_image_coordinates(viewer, scale):
    # The square covers image rows 40..80 and columns 100..160; a half-resolution map holds it at 20..40, 50..80.
    viewer.set_image(rgb_image(200, 300))
    viewer.set_anomaly_map(hot_square_map((200 // scale, 300 // scale), (40 // scale, 80 // scale),
                                          (100 // scale, 160 // scale)))
    viewer.set_boxes_visible(True)

    # Outlines run through the centres of the boundary pixels: within one map pixel of the square's edges.
    assert_rect_close(viewer.outline_item.path().boundingRect(), (100, 40, 60, 40), tol=scale)
    assert_rect_close(viewer.box_item.path().boundingRect(), (100, 40, 60, 40), tol=1e-6)
    # The heat map is stretched over the whole image whatever its own resolution.
    assert_rect_close(viewer.heat_item.mapRectToParent(viewer.heat_item.boundingRect()), (0, 0, 300, 200), 1e-6)
    assert viewer.heat_item.isVisible() and viewer.outline_item.isVisible() and viewer.box_item.isVisible()


def test_heat_map_has_fixed_levels_a_transparent_floor_and_fades_in_up_to_the_threshold(viewer):
    viewer.set_image(rgb_image())
    viewer.set_anomaly_map(hot_square_map((100, 150), (10, 20), (10, 20), value=3.0))  # above 1 is allowed
    assert tuple(viewer.heat_item.getLevels()) == (0.0, 1.0)
    alpha = viewer.heat_item.lut[:, 3].astype(int)
    floor_index = int(HEAT_FLOOR_FRACTION * 0.5 * alpha.shape[0])
    threshold_index = int(0.5 * alpha.shape[0])
    assert floor_index > 0
    assert (alpha[:floor_index] == 0).all() and (alpha[threshold_index:] == 255).all()
    # In between it rises step by step, without the hard edge that left holes in a good part's overlay.
    ramp = alpha[floor_index - 1 : threshold_index + 1]
    assert (np.diff(ramp) >= 0).all() and np.diff(ramp).max() <= 3 and 0 < alpha[(floor_index + threshold_index) // 2] < 255


def test_clean_pixels_show_the_image_and_hot_pixels_are_coloured(viewer, qtbot):
    viewer.set_image(rgb_image(200, 300, (128, 128, 128)))
    viewer.set_anomaly_map(hot_square_map((200, 300), (40, 120), (40, 160)))
    viewer.set_outlines_visible(False)
    qtbot.wait(20)
    picture = viewer.grab().toImage()

    def colour_at(x, y):
        view = viewer.findChild(QWidget, "image_view")
        point = view.mapTo(viewer, view.mapFromScene(viewer.view_box.mapViewToScene(QPointF(x, y))))
        colour = picture.pixelColor(point)
        return colour.red(), colour.green(), colour.blue()

    assert colour_at(250.5, 170.5) == (128, 128, 128)
    assert colour_at(100.5, 80.5) != (128, 128, 128)


def test_threshold_level_redraws_outlines_and_moves_the_colour_bar_marker(viewer):
    heat = hot_square_map((200, 300), (40, 120), (40, 200), value=0.6)
    heat[60:80, 100:140] = 0.9
    viewer.set_image(rgb_image())
    viewer.set_anomaly_map(heat)
    assert_rect_close(viewer.outline_item.path().boundingRect(), (40, 40, 160, 80), tol=1)

    viewer.set_threshold_level(0.8)
    assert viewer.threshold_level == 0.8
    assert_rect_close(viewer.outline_item.path().boundingRect(), (100, 60, 40, 20), tol=1)
    assert all(line.value() == pytest.approx(0.8 * 256) for line in viewer._threshold_lines)
    assert (viewer.heat_item.lut[: int(HEAT_FLOOR_FRACTION * 0.8 * 256), 3] == 0).all()

    viewer.set_threshold_level(0.95)
    assert viewer.outline_item.path().isEmpty()
    viewer.set_threshold_level(0.0)  # everything is "above": one outline round the whole map, no transparent floor
    assert_rect_close(viewer.outline_item.path().boundingRect(), (0, 0, 300, 200), tol=1)
    assert (viewer.heat_item.lut[:, 3] == 255).all()
    with pytest.raises(ValueError):
        viewer.set_threshold_level(float("nan"))


def test_gray_16_bit_readout_shows_the_raw_value(viewer, qtbot):
    image = np.full((120, 160), 1000, np.uint16)
    image[5, 7] = 40000
    image[60:, :] = 3000
    viewer.set_image(image, "sensor.tiff")
    viewer.set_anomaly_map(hot_square_map((60, 80), (0, 10), (0, 10), value=0.73))

    assert viewer.readout_at(7.5, 5.5) == "x 7  y 5  value 40000  score 0.73"
    assert viewer.readout_at(-1, 5) == "" and viewer.readout_at(160, 5) == ""
    # Shown through display levels from the data (not 0..65535), while the readout stays raw.
    low, high = viewer.image_item.getLevels()
    assert 900 <= low < high <= 3100

    scene = viewer.view_box.scene()
    with qtbot.waitSignal(viewer.hover_changed, timeout=1000) as hovered:
        scene.sigMouseMoved.emit(viewer.view_box.mapViewToScene(QPointF(7.5, 5.5)))
    assert hovered.args == ["x 7  y 5  value 40000  score 0.73"]
    assert viewer.findChild(type(viewer.readout_label), "readout_label").text() == hovered.args[0]

    with qtbot.waitSignal(viewer.hover_changed, timeout=1000) as left:
        scene.sigMouseMoved.emit(viewer.view_box.mapViewToScene(QPointF(-50, -50)))
    assert left.args == [""]


def test_readout_formats_rgb_and_float_values(viewer):
    image = rgb_image(20, 30)
    image[3, 4] = (1, 2, 250)
    viewer.set_image(image)
    assert viewer.readout_at(4.2, 3.9) == "x 4  y 3  value 1, 2, 250"
    viewer.set_image(np.full((20, 30), 0.125, np.float32))
    assert viewer.readout_at(0, 0) == "x 0  y 0  value 0.125"


def test_toggles_and_shortcut_actions_change_what_is_shown(viewer, qtbot):
    viewer.set_image(rgb_image())
    viewer.set_anomaly_map(hot_square_map((200, 300), (40, 80), (100, 160)))
    overlay = viewer.findChild(QToolButton, "overlay_toggle")
    outlines = viewer.findChild(QToolButton, "outlines_toggle")
    boxes = viewer.findChild(QToolButton, "boxes_toggle")
    assert overlay.isChecked() and outlines.isChecked() and not boxes.isChecked()
    assert viewer.heat_item.isVisible() and viewer.outline_item.isVisible() and not viewer.box_item.isVisible()

    overlay.click()
    assert not viewer.heat_item.isVisible() and not viewer.outline_item.isVisible()
    viewer.overlay_action.trigger()  # the O shortcut
    assert overlay.isChecked() and viewer.heat_item.isVisible()

    outlines.click()
    assert not viewer.outline_item.isVisible() and viewer.heat_item.isVisible()
    boxes.click()
    assert viewer.box_item.isVisible()

    viewer.set_boxes_visible(False)
    assert not boxes.isChecked() and not viewer.box_item.isVisible()
    viewer.set_overlay_visible(False)
    assert not overlay.isChecked()


def test_opacity_slider_drives_the_heat_map(viewer):
    slider = viewer.findChild(QSlider, "opacity_slider")
    assert (slider.minimum(), slider.maximum()) == (0, 100)
    slider.setValue(20)
    assert viewer.heat_item.opacity() == pytest.approx(0.2)
    assert viewer.opacity_label.text() == "20 %"
    viewer.set_opacity(0.8)
    assert slider.value() == 80 and viewer.opacity == pytest.approx(0.8)
    viewer.set_opacity(7)
    assert slider.value() == 100


def test_fit_one_to_one_and_zoom(viewer, qtbot):
    viewer.set_image(rgb_image(300, 400))
    width, height = view_span(viewer)
    assert width >= 400 and height >= 300
    assert min(width / 400, height / 300) == pytest.approx(1.04, abs=0.02)  # fitted with a small margin

    viewer.zoom_one_to_one()
    ratio = viewer._graphics.devicePixelRatioF()
    assert view_span(viewer)[0] == pytest.approx(viewer.view_box.width() * ratio, rel=0.02)
    assert viewer.view_box.viewRect().center().x() == pytest.approx(200, abs=1)

    before = view_span(viewer)
    viewer.zoom(2.0)
    assert view_span(viewer)[0] == pytest.approx(before[0] / 2, rel=0.01)

    viewer.findChild(QToolButton, "fit_button").click()
    assert view_span(viewer)[0] == pytest.approx(width, rel=0.01)
    viewer.findChild(QToolButton, "one_to_one_button").click()
    assert view_span(viewer)[0] == pytest.approx(viewer.view_box.width() * ratio, rel=0.02)


def test_same_sized_image_keeps_the_view_and_drops_the_old_map(viewer):
    viewer.set_image(rgb_image(200, 300))
    viewer.set_anomaly_map(hot_square_map((200, 300), (40, 80), (100, 160)))
    viewer.zoom(3.0)
    zoomed = viewer.view_box.viewRect()
    viewer.set_image(rgb_image(200, 300, (10, 10, 10)), "next part")
    assert viewer.view_box.viewRect() == zoomed
    assert not viewer.heat_item.isVisible() and viewer.outline_item.path().isEmpty()
    viewer.set_image(rgb_image(100, 100))
    assert view_span(viewer)[1] < 120  # a new size is fitted


def test_clear_resets_everything(viewer):
    viewer.set_image(rgb_image(), "part 7")
    viewer.set_anomaly_map(hot_square_map((200, 300), (40, 80), (100, 160)))
    viewer.clear()
    assert not viewer.has_image() and viewer.image_item.image is None
    assert not viewer.heat_item.isVisible() and viewer.heat_item.image is None
    assert viewer.outline_item.path().isEmpty() and viewer.box_item.path().isEmpty()
    assert viewer.title_label.text() == "" and viewer.readout_label.text() == ""
    assert viewer.readout_at(5, 5) == ""
    viewer.fit()
    viewer.zoom_one_to_one()  # harmless without an image
    with pytest.raises(RuntimeError):
        viewer.set_anomaly_map(np.zeros((4, 4), np.float32))


def test_rejects_what_is_not_an_image(viewer):
    with pytest.raises(ValueError):
        viewer.set_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError):
        viewer.set_image(np.zeros((0, 4), np.uint8))
    viewer.set_image(np.zeros((4, 4, 1), np.uint8))
    with pytest.raises(ValueError):
        viewer.set_anomaly_map(np.zeros((4, 4, 3), np.float32))


def test_large_image_stays_responsive(viewer, qtbot):
    image = np.zeros((6000, 8000, 3), np.uint8)
    image[:, ::7] = 200
    image[2000:4000, 3000:5000] = (30, 120, 220)
    heat = hot_square_map((3072, 4096), (1000, 1500), (1500, 2200))

    start = time.perf_counter()
    viewer.set_image(image, "big")
    image_seconds = time.perf_counter() - start
    viewer.set_anomaly_map(heat)
    viewer.grab()  # forces a render of both items
    total_seconds = time.perf_counter() - start
    print(f"\n8000x6000 RGB: set_image {image_seconds:.3f} s, with map and first render {total_seconds:.3f} s")
    assert total_seconds < 15  # a freeze detector only; the figure above is the measurement

    # Zoomed out, a reduced pyramid level is drawn; at 1:1 the original pixels are.
    assert viewer.image_item.image.shape[1] < 8000
    assert_rect_close(viewer.image_item.mapRectToParent(viewer.image_item.boundingRect()), (0, 0, 8000, 6000), 1e-6)
    assert_rect_close(viewer.box_item.path().boundingRect(), (1500 * 8000 / 4096, 1000 * 6000 / 3072,
                                                              700 * 8000 / 4096, 500 * 6000 / 3072), 1e-6)
    start = time.perf_counter()
    viewer.zoom_one_to_one()
    qtbot.waitUntil(lambda: viewer.image_item.image.shape == image.shape, timeout=5000)
    viewer.grab()
    print(f"1:1 at full resolution {time.perf_counter() - start:.3f} s")
    assert viewer.readout_at(3000.5, 2000.5).startswith("x 3000  y 2000  value 30, 120, 220  score 0.90")


def test_keyboard_shortcuts_work_while_the_view_has_focus(viewer, qtbot):
    viewer.set_image(rgb_image(300, 400))
    view = viewer.findChild(QWidget, "image_view")
    viewer.activateWindow()
    view.setFocus()
    qtbot.waitUntil(view.hasFocus, timeout=1000)
    fitted = view_span(viewer)

    qtbot.keyClick(view, Qt.Key.Key_1)
    assert view_span(viewer)[0] == pytest.approx(viewer.view_box.width() * view.devicePixelRatioF(), rel=0.02)
    qtbot.keyClick(view, Qt.Key.Key_F)
    assert view_span(viewer) == pytest.approx(fitted, rel=0.01)
    qtbot.keyClick(view, Qt.Key.Key_O)
    assert not viewer.overlay_toggle.isChecked()
