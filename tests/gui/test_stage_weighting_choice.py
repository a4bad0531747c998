"""The stage weighting offered in the training panel, as the coreset ratio is: PatchCore only, kept with the project,
and the trained model's."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt

from anomalyapp.services import project as projects

pytestmark = pytest.mark.gui

MIXED = "score_concatenated_map_balanced"


def test_the_chosen_stage_weighting_is_the_trained_models_and_the_projects(qtbot, window, tmp_path, demo_line):
    project = projects.create_project(tmp_path / "stages", "stages", demo_line / "train" / "good", single_user="tester")
    window.set_project(project)
    panel = window.training_panel
    panel.image_size.setValue(64)
    combo = panel.stage_weighting
    assert combo.currentData() == ""  # the detector's default
    assert [combo.itemData(i) for i in range(combo.count())] == ["", "concatenated", "balanced", MIXED]

    panel.detector.setCurrentIndex(panel.detector.findData("autoencoder"))
    assert combo.isHidden()  # offered for PatchCore only, like the coreset ratio
    panel.detector.setCurrentIndex(panel.detector.findData("patchcore"))
    assert not combo.isHidden()

    stages = panel.stages  # the backbone stages, offered beside it (PatchCore)
    assert [stages.itemData(i) for i in range(stages.count())] == ["", "layer2,layer3", "layer3,layer4"]
    assert not stages.isHidden()
    stages.setCurrentIndex(stages.findData("layer3,layer4"))
    combo.setCurrentIndex(combo.findData(MIXED))
    with qtbot.waitSignal(window.inspection.model_loaded, timeout=180000):
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    reopened = projects.open_project(project.root)
    manifest = json.loads((project.models_dir / reopened.current_model / "manifest.json").read_text())
    assert manifest["config"]["stage_weighting"] == MIXED
    assert reopened.training.stage_weighting == MIXED
    assert manifest["config"]["layers"] == ["layer3", "layer4"] and reopened.training.stages == "layer3,layer4"
    combo.setCurrentIndex(0)
    stages.setCurrentIndex(0)
    panel.set_settings(reopened.training)
    assert combo.currentData() == MIXED and stages.currentData() == "layer3,layer4"
    panel.detector.setCurrentIndex(panel.detector.findData("autoencoder"))
    assert stages.isHidden()


def test_a_stage_weighting_chosen_for_patchcore_is_not_sent_to_the_autoencoder(window, tmp_path, demo_line):
    """The panel hides the weighting for the autoencoder; the request the window builds must not carry it either."""
    project = projects.create_project(tmp_path / "hidden", "hidden", demo_line / "train" / "good", single_user="tester")
    window.set_project(project)
    panel = window.training_panel
    panel.stage_weighting.setCurrentIndex(panel.stage_weighting.findData("balanced"))
    assert window.trainer._request(project, panel.settings_values()).stage_weighting == "balanced"
    panel.detector.setCurrentIndex(panel.detector.findData("autoencoder"))
    assert panel.stage_weighting.isHidden()
    assert window.trainer._request(project, panel.settings_values()).stage_weighting is None
