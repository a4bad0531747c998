"""A project's decision rule starts from the model's calibration: the threshold and its Review band."""

from __future__ import annotations

import shutil

from anomalyapp.core.types import drain
from anomalyapp.core.verdicts import NORMALISED_THRESHOLD, stated_rule
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
        assert records.decision_rule() == stated_rule(NORMALISED_THRESHOLD, band)  # to the panel's 3 places
        audit = records.audit_log(subject="threshold")
    assert any("review from" in entry.new_value for entry in audit)
    reopened = projects.open_project(project.root)
    assert reopened.uncertain_low == stated_rule(NORMALISED_THRESHOLD, band)[1]  # the project's copy follows


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
        assert records.decision_rule() == stated_rule(NORMALISED_THRESHOLD, band)
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


def test_a_band_recorded_to_every_place_is_judged_as_the_window_states_it(tmp_path):
    from anomalyapp.services.records import THRESHOLD_IN_USE, UNCERTAIN_LOW_IN_USE

    project = projects.create_project(tmp_path / "line", single_user="boss")
    with RecordsService(project.root) as records:
        boss = records.auth.auto_login()
        # As records written before the rule was stated to 3 places kept a calibrated band.
        records.store.set_setting(THRESHOLD_IN_USE, repr(0.5), user_id=boss.id)
        records.store.set_setting(UNCERTAIN_LOW_IN_USE, repr(0.4601641396095999), user_id=boss.id)
        assert records.decision_rule() == (0.5, 0.46)
        before = len(records.audit_log())
        assert not records.set_threshold(boss, 0.5, 0.46)  # what the panel shows: no change, nothing audited
        assert len(records.audit_log()) == before
        assert records.set_threshold(boss, 0.5004, 0.4604) is False  # the same rule to 3 places
        assert records.set_threshold(boss, 0.5, 0.4996) and records.decision_rule() == (0.5, None)  # rounds onto it
