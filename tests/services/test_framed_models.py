"""Models with a region of interest and tiles: in the manifest, exact after a reload, checked on load, estimated."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anomalyapp.core.errors import DataError, ModelFileError
from anomalyapp.core.types import drain
from anomalyapp.engine.bundle import MANIFEST, integrity_digest, load_model
from anomalyapp.services.inference import InferenceSession
from anomalyapp.services.training import TrainRequest, estimate, train

ROI = ((0.1, 0.05, 0.6, 0.9), (0.55, 0.5, 0.95, 0.95))

SCORE_SCRIPT = """
import json, sys
from anomalyapp.services.inference import InferenceSession
session = InferenceSession(sys.argv[1], device="cpu")
out = []
for path in sys.argv[2:]:
    prediction = session.predict_path(path).prediction
    out.append([prediction.raw_score, prediction.score, float(prediction.anomaly_map.sum())])
print(json.dumps(out))
"""


@pytest.fixture(scope="module", params=["patchcore", "autoencoder"])
def framed_model(request, demo_line, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("framed") / request.param
    extra = {"epochs": 3} if request.param == "autoencoder" else {}
    job = train(TrainRequest(data=demo_line, detector=request.param, out=out, weights="random", image_size=64,
                             roi=ROI, tile_scale=1.0, device="cpu", **extra))
    return drain(job).model_path


def test_region_and_tiles_are_in_the_manifest_and_survive_a_reload(framed_model, demo_line):
    manifest = json.loads((framed_model / MANIFEST).read_text())
    assert manifest["config"]["roi"] == [list(r) for r in ROI]
    assert manifest["config"]["tile_scale"] == 1.0 and manifest["config"]["tile_overlap"] == 0.125
    detector, _ = load_model(framed_model)
    assert detector.config.roi == ROI and detector.config.tile_scale == 1.0

    from anomalyapp.data.datasets import discover_dataset

    paths = [str(item.path) for item in discover_dataset(demo_line).test[::3]]
    session = InferenceSession(framed_model, device="cpu")
    here = []
    for path in paths:
        prediction = session.predict_path(path).prediction
        here.append([prediction.raw_score, prediction.score, float(prediction.anomaly_map.sum())])
        anomaly = prediction.anomaly_map
        assert anomaly.shape == (128, 128)
        assert np.all(anomaly[:, :6] == 0) and np.all(anomaly[:3, :] == 0)  # zero left of and above the region
        assert np.all(anomaly[:60, 80:] == 0)  # zero in the corner neither rectangle covers
    output = subprocess.run([sys.executable, "-c", SCORE_SCRIPT, str(framed_model), *paths], capture_output=True,
                            text=True, check=True)
    assert json.loads(output.stdout) == here  # bit-identical: JSON floats round-trip exactly


@pytest.mark.parametrize("field, value, expected", [
    ("roi", [[0.5, 0.0, 0.2, 1.0]], "config.roi must be a list of up to 64 rectangles"),
    ("roi", [[0.0, 0.0, 1.5, 1.0]], "config.roi must be"),
    ("tile_scale", 0, "config.tile_scale must be null or a finite number above 0"),
    ("tile_overlap", 0.9, "config.tile_overlap must be a finite number of at least 0 and at most 0.75"),
])
def test_a_bad_region_or_tile_field_is_refused_by_name(framed_model, tmp_path, field, value, expected):
    copy = tmp_path / "model"
    shutil.copytree(framed_model, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["config"][field] = value
    manifest["integrity"] = {"algorithm": "sha256", "digest": integrity_digest(manifest, tuple(manifest["files"]))}
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=expected.replace(".", r"\.")):
        load_model(copy)


def test_changing_the_region_breaks_the_integrity_check(framed_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(framed_model, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["config"]["roi"] = [[0.0, 0.0, 1.0, 1.0]]  # a valid region, but not the one trained
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="does not match its integrity digest"):
        load_model(copy)


def test_the_estimate_counts_tiles_chosen_from_the_smallest_defect(demo_line):
    plain = estimate(TrainRequest(data=demo_line, weights="random", image_size=32, device="cpu"))
    # 128 px squeezed to 32: a 2 px defect would be half a pixel, so tiles at 1.0 (the 3 px rule caps at 1).
    tiled = estimate(TrainRequest(data=demo_line, weights="random", image_size=32, smallest_defect=2, device="cpu"))
    assert plain.tiles_per_image == 1 and "tiles" not in plain.describe()
    assert tiled.tiles_per_image == 25  # 128 px in tiles of 32 overlapping by 1/8: 5 x 5
    assert "25 tiles each" in tiled.describe()
    assert tiled.bank_size > 10 * plain.bank_size and tiled.memory_mb > plain.memory_mb


def test_a_bad_region_in_a_request_is_one_line(demo_line, tmp_path):
    with pytest.raises(DataError, match=r"rectangle \[0\.5, 0\.0, 0\.2, 1\.0\] must have left < right"):
        drain(train(TrainRequest(data=demo_line, out=tmp_path / "m", weights="random", roi=((0.5, 0.0, 0.2, 1.0),))))
    with pytest.raises(DataError, match="smallest defect -1 px must be above 0"):
        drain(train(TrainRequest(data=demo_line, out=tmp_path / "m", weights="random", smallest_defect=-1)))
