"""Stage weighting: how the backbone stages join into one vector is part of the model, applied alike at train and
predict, saved, covered by the integrity digest, and absent from old models, which score as they always did."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anomalyapp.core.errors import DataError, ModelFileError
from anomalyapp.engine.bundle import MANIFEST, integrity_digest, load_model
from anomalyapp.engine.features import stage_weights

SCORE_SCRIPT = """
import json, sys
from anomalyapp.services.inference import InferenceSession
session = InferenceSession(sys.argv[1], device="cpu")
out = []
for path in sys.argv[2:]:
    prediction = session.predict_path(path).prediction
    out.append([prediction.raw_score, float(prediction.anomaly_map.sum())])
print(json.dumps(out))
"""


def train_model(data: Path, out: Path, detector: str = "patchcore", **overrides) -> Path:
    from anomalyapp.core.types import drain
    from anomalyapp.services.training import TrainRequest, train

    request = TrainRequest(data=data, detector=detector, out=out, image_size=128, device="cpu", **overrides)
    return drain(train(request)).model_path


def _test_paths(data: Path) -> list[str]:
    from anomalyapp.data.datasets import discover_dataset

    return [str(item.path) for item in discover_dataset(data).test[::3]]


def _scores(model: Path, paths: list[str]) -> list[list[float]]:
    from anomalyapp.services.inference import InferenceSession

    session = InferenceSession(model, device="cpu")
    out = []
    for path in paths:
        prediction = session.predict_path(path).prediction
        out.append([prediction.raw_score, float(prediction.anomaly_map.sum())])
    return out


def _without_stage_weighting(model: Path, target: Path) -> Path:
    """The model as a version before stage weighting saved it: no field, and a digest over what it then held."""
    shutil.copytree(model, target)
    manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    del manifest["config"]["stage_weighting"]
    del manifest["integrity"]
    data_files = tuple(manifest["files"])
    manifest["integrity"] = {"algorithm": "sha256", "digest": integrity_digest(manifest, data_files)}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def balanced_patchcore(demo_line, tmp_path_factory) -> Path:
    return train_model(demo_line, tmp_path_factory.mktemp("stages") / "balanced", stage_weighting="balanced")


@pytest.fixture(scope="module")
def concatenated_patchcore(demo_line, tmp_path_factory) -> Path:
    return train_model(demo_line, tmp_path_factory.mktemp("stages") / "concatenated", stage_weighting="concatenated")


def test_balanced_weights_give_every_stage_the_same_share_and_keep_the_overall_scale():
    channels = [40, 112]
    weights = stage_weights(channels, "balanced")
    shares = [w * w * c for w, c in zip(weights, channels)]  # a stage's share of the squared norm, per unit spread
    assert shares == pytest.approx([76.0, 76.0])
    assert sum(shares) == pytest.approx(sum(channels))
    assert stage_weights(channels, "concatenated") == [1.0, 1.0]


def test_patchcore_bank_holds_the_patches_predict_computes_with_the_same_weights(balanced_patchcore, demo_line):
    """Every bank vector (from training) is a patch that the reloaded model's embedding reproduces: the stages are
    weighted alike at train and predict; unweighted patches lie far from the bank."""
    from anomalyapp.core.config import CalibrationConfig
    from anomalyapp.data.datasets import discover_dataset
    from anomalyapp.data.images import load_image
    from anomalyapp.services.training import split_holdout

    detector, manifest = load_model(balanced_patchcore)
    assert manifest["config"]["stage_weighting"] == "balanced"
    fit_paths, _ = split_holdout(discover_dataset(demo_line).train_good, CalibrationConfig())
    images = [load_image(path).to_rgb() for path in fit_paths]
    patches = torch.cat([detector.embed([image]).reshape(-1, detector.model.dim) for image in images])
    bank = torch.from_numpy(detector.bank.vectors())
    exact = "donot_use_mm_for_euclid_dist"  # the matrix-product form loses ~0.03 to cancellation at these norms
    gap = torch.cdist(bank, patches, compute_mode=exact).min(dim=1).values
    assert float(gap.max()) < 1e-3 * float(bank.norm(dim=1).mean())

    # The same patches joined without the weights: the bank does not hold them.
    balanced = detector.model.stage_weights
    assert balanced[0] > 1.0 > balanced[-1]  # the narrowest stage weighs up, the widest down
    detector.model.stage_weights = [1.0] * len(balanced)
    plain = detector.embed(images[:1]).reshape(-1, detector.model.dim)
    assert float(torch.cdist(plain, bank, compute_mode=exact).min(dim=1).values.mean()) > 100 * float(gap.max()) + 1e-3


@pytest.mark.parametrize("detector", ["patchcore", "autoencoder"])
def test_a_balanced_model_reloads_in_a_fresh_process_with_identical_scores(detector, demo_line, tmp_path, request):
    if detector == "patchcore":
        model = request.getfixturevalue("balanced_patchcore")
    else:
        model = train_model(demo_line, tmp_path / detector, detector, stage_weighting="balanced", epochs=4)
    assert json.loads((model / MANIFEST).read_text())["config"]["stage_weighting"] == "balanced"
    paths = _test_paths(demo_line)
    here = _scores(model, paths)
    output = subprocess.run([sys.executable, "-c", SCORE_SCRIPT, str(model), *paths], capture_output=True, text=True,
                            check=True)
    assert json.loads(output.stdout) == here  # JSON floats round-trip exactly
    # The weighting changes the scores: a concatenated model of the same images scores otherwise.
    if detector == "autoencoder":
        loaded, _ = load_model(model)
        assert loaded.error_weights["balanced"] is not None
        loaded.error_weights = {"balanced": None}
        from anomalyapp.data.images import load_image

        # Over all the test images: on one image the two weightings' top errors may happen to agree.
        unweighted = [float(loaded.raw_predict([load_image(path).to_rgb()])[0][0]) for path in paths]
        assert unweighted != pytest.approx([score for score, *_ in here], rel=1e-3)


def test_an_old_model_without_the_field_loads_and_scores_exactly_as_before(concatenated_patchcore, demo_line,
                                                                          tmp_path):
    old = _without_stage_weighting(concatenated_patchcore, tmp_path / "old")
    detector, _ = load_model(old)
    assert detector.config.stage_weighting == "concatenated"
    paths = _test_paths(demo_line)
    assert _scores(old, paths) == _scores(concatenated_patchcore, paths)


def test_editing_the_stage_weighting_of_a_saved_model_is_refused(balanced_patchcore, tmp_path):
    model = tmp_path / "edited"
    shutil.copytree(balanced_patchcore, model)
    text = (model / MANIFEST).read_text(encoding="utf-8")
    assert text.count('"stage_weighting": "balanced"') == 1
    (model / MANIFEST).write_text(text.replace('"stage_weighting": "balanced"', '"stage_weighting": "concatenated"'),
                                  encoding="utf-8")
    with pytest.raises(ModelFileError, match="integrity digest"):
        load_model(model)


def test_an_unknown_stage_weighting_is_refused_in_one_line(balanced_patchcore, demo_line, tmp_path):
    model = tmp_path / "unknown"
    shutil.copytree(balanced_patchcore, model)
    manifest = json.loads((model / MANIFEST).read_text(encoding="utf-8"))
    manifest["config"]["stage_weighting"] = "loudest"
    del manifest["integrity"]
    manifest["integrity"] = {"algorithm": "sha256", "digest": integrity_digest(manifest, tuple(manifest["files"]))}
    (model / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelFileError, match="manifest field config.stage_weighting must be one of concatenated, "
                                             "balanced") as error:
        load_model(model)
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match="stage weighting 'loudest' must be one of"):
        train_model(demo_line, tmp_path / "never", stage_weighting="loudest")
    assert not (tmp_path / "never").exists()
