"""Marking a false positive good fixes it at once and makes a new model version; the old one is kept."""

from __future__ import annotations

import shutil

from anomalyapp.core.types import drain
from anomalyapp.data.datasets import discover_dataset
from anomalyapp.services.correction import learn_good_images
from anomalyapp.services.inference import InferenceSession


def test_false_positive_becomes_ok_and_a_new_version_is_saved(patchcore_model, demo_line, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(patchcore_model, models / "v1")
    before_files = sorted((p.name, p.read_bytes()) for p in (models / "v1").iterdir())
    session = InferenceSession(models / "v1", device="cpu")
    flagged = next(item.path for item in discover_dataset(demo_line).test if item.is_anomalous)
    other = next(item.path for item in discover_dataset(demo_line).test if item.defect_type == "good")
    assert session.predict_path(flagged).prediction.verdict == "NG"
    other_before = session.predict_path(other).prediction.score

    result = drain(learn_good_images(session, [flagged], models))

    after = session.predict_path(flagged).prediction
    assert after.verdict == "OK"
    assert session.predict_path(other).prediction.score <= other_before + 1e-9  # more good patches never raise a score
    assert result.parent == "v1" and result.folder.parent == models
    assert sorted((p.name, p.read_bytes()) for p in (models / "v1").iterdir()) == before_files
    reloaded = InferenceSession(result.folder, device="cpu").predict_path(flagged).prediction
    assert reloaded.raw_score == after.raw_score
    assert "marked good" in result.change
    # the session now stands for the new version, typed: what it was learnt from and what changed
    assert (session.manifest.parent, session.manifest.change) == ("v1", result.change)
    assert session.manifest.detector == "patchcore" and session.manifest.values["parent"] == "v1"
    assert InferenceSession(result.folder, device="cpu").manifest.parent == "v1"


def test_autoencoder_fine_tune_lowers_the_score(autoencoder_model, demo_line, tmp_path):
    shutil.copytree(autoencoder_model, tmp_path / "v1")
    session = InferenceSession(tmp_path / "v1", device="cpu")
    flagged = next(item.path for item in discover_dataset(demo_line).test if item.is_anomalous)
    before = session.predict_path(flagged).prediction.score
    result = drain(learn_good_images(session, [flagged], tmp_path))
    assert session.predict_path(flagged).prediction.score < before
    assert (result.folder / "tensors.safetensors").is_file()
