"""A project's decision rule starts from the model's calibration: the threshold and its Review band."""

from __future__ import annotations

import shutil

import pytest

from anomalyapp.core.types import drain
from anomalyapp.core.verdicts import NORMALISED_THRESHOLD
from anomalyapp.engine.bundle import read_manifest
from anomalyapp.engine.calibration import Calibration
from anomalyapp.services import project as projects
from anomalyapp.services.records import RecordsService
from anomalyapp.services.training import TrainRequest, train


def _calibrated_band(model_folder) -> float:
    return Calibration.from_dict(read_manifest(model_folder)["calibration"]).uncertain_low_normalised


def test_a_new_project_starts_with_the_models_calibrated_band(demo_line, tmp_path):
    project = projects.create_project(tmp_path / "line", "Washers", demo_line / "train" / "good", single_user="boss")
    with RecordsService(project.root) as records:
        boss = records.auth.auto_login()
    request = TrainRequest(data=demo_line, out=project.models_dir / "first", image_size=128, device="cpu")
    model = drain(train(request, actor=boss)).model_path

    band = _calibrated_band(model)
    assert band is not None and 0 < band < NORMALISED_THRESHOLD
    with RecordsService(project.root) as records:
        assert records.decision_rule() == (NORMALISED_THRESHOLD, pytest.approx(band))
        audit = records.audit_log(subject="threshold")
    assert any("review from" in entry.new_value for entry in audit)
    reopened = projects.open_project(project.root)
    assert reopened.uncertain_low == pytest.approx(band)  # the project's copy for display follows


def test_a_model_loaded_into_records_without_a_rule_gets_its_band_once(patchcore_model, tmp_path):
    project = projects.create_project(tmp_path / "line", single_user="boss")
    shutil.copytree(patchcore_model, project.models_dir / "v1")
    band = _calibrated_band(project.models_dir / "v1")
    with RecordsService(project.root) as records:
        boss = records.auth.auto_login()
        # Recorded as a version before the band was calibrated: no rule in the records yet.
        records.store.add_model_version("v1", "trained", NORMALISED_THRESHOLD, parent_id=None, user_id=boss.id,
                                        make_current=True)
        assert records.decision_rule() == (NORMALISED_THRESHOLD, None)
        assert records.start_with_calibrated_band(boss, band, project)
        assert records.decision_rule() == (NORMALISED_THRESHOLD, pytest.approx(band))
        records.set_threshold(boss, 0.6, None, reason="no band wanted")
        assert not records.start_with_calibrated_band(boss, band, project)  # a rule chosen since stays
        assert records.decision_rule() == (0.6, None)


def test_the_loaded_model_finds_the_files_of_the_good_images_it_names(line_with_a_defect_among_good, tmp_path):
    from anomalyapp.services.inference import InferenceSession

    source, defective = line_with_a_defect_among_good
    data = shutil.copytree(source, tmp_path / "line")  # this test moves an image out; the fixture is shared
    model = drain(train(TrainRequest(data=data, out=tmp_path / "model", image_size=128, device="cpu"))).model_path
    assert InferenceSession(model, device="cpu").summary().suspect_images == [data / defective]
    # The user moved it out of the good images, as the note asks: nothing is left to show.
    (data / defective).rename(tmp_path / "set_aside.png")
    assert InferenceSession(model, device="cpu").summary().suspect_images == []
