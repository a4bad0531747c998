"""The region of interest in the window: drawn on a good image, trained with, dimmed around on the viewer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt

from anomalyapp.services import project as projects

pytestmark = pytest.mark.gui


def _drag(qtbot, widget, start: QPointF, end: QPointF) -> None:
    qtbot.mousePress(widget, Qt.MouseButton.LeftButton, pos=QPoint(round(start.x()), round(start.y())))
    qtbot.mouseMove(widget, QPoint(round(end.x()), round(end.y())))
    qtbot.mouseRelease(widget, Qt.MouseButton.LeftButton, pos=QPoint(round(end.x()), round(end.y())))


def test_draw_a_region_train_with_it_and_see_the_outside_dimmed(qtbot, window, tmp_path, demo_line):
    project = projects.create_project(tmp_path / "roi", "roi", demo_line / "train" / "good", single_user="tester")
    window.set_project(project)
    panel = window.training_panel
    panel.image_size.setValue(64)
    assert panel.region_label.text() == "whole image"

    qtbot.mouseClick(panel.region_button, Qt.MouseButton.LeftButton)
    dialog = window.training.region_dialog
    qtbot.waitUntil(dialog.isVisible, timeout=5000)
    editor = dialog.editor
    area = editor.image_rect()

    def at(x: float, y: float) -> QPointF:
        return QPointF(area.left() + x * area.width(), area.top() + y * area.height())

    _drag(qtbot, editor, at(0.1, 0.2), at(0.6, 0.9))
    _drag(qtbot, editor, at(0.5, 0.5), at(0.5, 0.5))  # a click is not a rectangle
    assert len(editor.rectangles) == 1
    left, top, right, bottom = editor.rectangles[0]
    assert np.allclose([left, top, right, bottom], [0.1, 0.2, 0.6, 0.9], atol=0.02)
    dialog.accept()
    assert panel.region == editor.rectangles and panel.region_label.text() == "1 rectangle"

    with qtbot.waitSignal(window.inspection.model_loaded, timeout=180000):
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    model = project.models_dir / projects.open_project(project.root).current_model
    config = json.loads((model / "manifest.json").read_text())["config"]
    assert config["roi"] == [list(panel.region[0])]  # the drawn region is the model's
    assert projects.open_project(project.root).training.roi == [list(panel.region[0])]  # and the project's

    window.viewer.set_image(np.zeros((100, 200, 3), np.uint8))
    shade = window.viewer.region_shade_item.path()
    assert shade.contains(QPointF(5, 5)) and shade.contains(QPointF(195, 95))  # outside: dimmed
    assert not shade.contains(QPointF(left * 200 + 5, top * 100 + 5))  # inside: as it is

    qtbot.mouseClick(panel.findChild(type(panel.region_button), "region_clear_button"), Qt.MouseButton.LeftButton)
    assert panel.region == () and panel.settings_values()["roi"] == ()
