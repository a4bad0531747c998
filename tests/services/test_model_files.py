"""Model folders: no pickle, exact reload in a fresh process, atomic saves, clear errors on damage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from anomalyapp.core.cancel import Cancelled, CancelToken
from anomalyapp.core.errors import ModelFileError
from anomalyapp.engine.bundle import FORMAT_VERSION, load_model, read_manifest
from anomalyapp.services.inference import InferenceSession
from anomalyapp.services.training import TrainRequest, train

SCORE_SCRIPT = """
import json, sys
from anomalyapp.services.inference import InferenceSession
session = InferenceSession(sys.argv[1], device="cpu")
out = []
for path in sys.argv[2:]:
    result = session.predict_path(path)
    out.append([result.prediction.raw_score, float(result.prediction.anomaly_map.sum())])
print(json.dumps(out))
"""


def _test_paths(data: Path) -> list[str]:
    from anomalyapp.data.datasets import discover_dataset

    return [str(item.path) for item in discover_dataset(data).test[::3]]


@pytest.mark.parametrize("model_fixture", ["patchcore_model", "autoencoder_model"])
def test_reload_in_fresh_process_gives_identical_scores(model_fixture, demo_line, request):
    model = request.getfixturevalue(model_fixture)
    paths = _test_paths(demo_line)
    session = InferenceSession(model, device="cpu")
    here = []
    for path in paths:
        prediction = session.predict_path(path).prediction
        here.append([prediction.raw_score, float(prediction.anomaly_map.sum())])
    output = subprocess.run([sys.executable, "-c", SCORE_SCRIPT, str(model), *paths], capture_output=True,
                            text=True, check=True)
    assert json.loads(output.stdout) == here  # bit-identical: JSON floats round-trip exactly


def test_manifest_describes_the_model(patchcore_model):
    manifest = read_manifest(patchcore_model)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["detector"] == "patchcore"
    assert manifest["backbone"]["name"] == "efficientnet_lite0" and len(manifest["backbone"]["weights_sha256"]) == 64
    assert manifest["config"]["layers"] == ["layer2", "layer3", "layer4"]
    assert manifest["calibration"]["image_threshold"] > 0
    assert len(manifest["training_set"]["fingerprint"]) == 64
    assert set(manifest["files"]) == {"index.faiss"}
    files = {p.name for p in Path(patchcore_model).iterdir()}
    assert files == {"manifest.json", "index.faiss"}
    assert not any(name.endswith((".pkl", ".pt", ".pth", ".ckpt")) for name in files)


def _copy(model: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(model, target)
    return target


def test_truncated_index_is_reported(patchcore_model, tmp_path):
    model = _copy(patchcore_model, tmp_path)
    index = model / "index.faiss"
    index.write_bytes(index.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="index.faiss is truncated or has been changed"):
        load_model(model)


def test_truncated_tensors_are_reported(autoencoder_model, tmp_path):
    model = _copy(autoencoder_model, tmp_path)
    tensors = model / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-10])
    with pytest.raises(ModelFileError, match="tensors.safetensors is truncated"):
        load_model(model)


def test_garbled_manifest_is_reported(patchcore_model, tmp_path):
    model = _copy(patchcore_model, tmp_path)
    (model / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelFileError, match="manifest .* is damaged"):
        load_model(model)


def test_newer_format_is_reported(patchcore_model, tmp_path):
    model = _copy(patchcore_model, tmp_path)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="newer anomalyapp"):
        load_model(model)


def test_foreign_and_missing_folders_are_reported(tmp_path):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelFileError, match="not an anomalyapp model"):
        load_model(tmp_path / "foreign")
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="manifest.json is missing"):
        load_model(tmp_path / "empty")


def test_different_backbone_weights_are_refused(patchcore_model):
    with pytest.raises(Exception, match="differ from those"):
        load_model(patchcore_model, weights="random")


def test_cancelled_training_leaves_nothing_behind(demo_line, tmp_path):
    token = CancelToken()
    out = tmp_path / "models" / "cancelled"
    job = train(TrainRequest(data=demo_line, out=out, image_size=96, device="cpu"), token)
    with pytest.raises(Cancelled):
        for progress in job:
            if progress.stage == "coreset":
                token.cancel()
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []


def test_cancel_during_training_keeps_previous_model(demo_line, patchcore_model, tmp_path):
    import shutil

    out = tmp_path / "model"
    shutil.copytree(patchcore_model, out)
    before = sorted((p.name, p.read_bytes()) for p in out.iterdir())
    token = CancelToken()
    job = train(TrainRequest(data=demo_line, out=out, image_size=96, device="cpu"), token)
    with pytest.raises(Cancelled):
        for progress in job:
            if progress.stage == "features":
                token.cancel()
    assert sorted((p.name, p.read_bytes()) for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_saved_model_that_scores_unlike_the_trained_one_is_not_kept(demo_line, patchcore_model, tmp_path,
                                                                      monkeypatch):
    """Before the written folder takes the model's name it is loaded as a station loads it and must score a
    held-out image as the trained model did: a save that lost something (here: a reload whose scores drift by
    1 %) leaves the model already there unchanged and nothing half-written beside it."""
    import shutil

    import anomalyapp.engine.bundle as bundle

    out = tmp_path / "model"
    shutil.copytree(patchcore_model, out)
    before = sorted((p.name, p.read_bytes()) for p in out.iterdir())
    messages = [p.message for p in train(TrainRequest(data=demo_line, out=tmp_path / "fresh", image_size=96,
                                                       device="cpu"))]
    assert messages[-1].endswith("(loaded again, it scores a held-out image alike)")
    real_load = bundle.load_model

    def drifting_load(folder, **kwargs):
        detector, manifest = real_load(folder, **kwargs)
        raw_predict = detector.raw_predict
        detector.raw_predict = lambda images: (raw_predict(images)[0] * 1.01, raw_predict(images)[1])
        return detector, manifest

    monkeypatch.setattr(bundle, "load_model", drifting_load)
    with pytest.raises(ModelFileError, match=r"the model written for .*model scores a held-out good image .* where "
                                             r"the trained model scored .*: it was not kept"):
        for _ in train(TrainRequest(data=demo_line, out=out, image_size=96, device="cpu")):
            pass
    assert sorted((p.name, p.read_bytes()) for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "model"]


def test_failed_save_leaves_no_partial_folder(demo_line, tmp_path, monkeypatch):
    import anomalyapp.engine.bundle as bundle

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle, "_fsync", full_disk)
    with pytest.raises(ModelFileError, match="No space left on device"):
        for _ in train(TrainRequest(data=demo_line, out=tmp_path / "m", image_size=96, device="cpu")):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_model_of_mixed_aspects_reloads_with_identical_scores(demo_line, tmp_path):
    import cv2

    from anomalyapp.core.types import drain

    # The demo's square parts, stretched tall and wide: one model sees three input shapes.
    folder = tmp_path / "stretched"
    folder.mkdir()
    sources = sorted((demo_line / "train" / "good").iterdir())[:9]
    for index, source in enumerate(sources):
        image = cv2.imread(str(source))
        size = [(128, 320), (320, 128), (128, 128)][index % 3]
        cv2.imwrite(str(folder / f"part{index}.png"), cv2.resize(image, size))
    request = TrainRequest(data=folder, out=tmp_path / "model", image_size=128, keep_aspect=True, device="cpu")
    model = drain(train(request)).model_path
    assert read_manifest(model)["config"]["keep_aspect"] is True
    paths = [str(folder / "part0.png"), str(folder / "part1.png")]
    session = InferenceSession(model, device="cpu")
    here = []
    for path in paths:
        prediction = session.predict_path(path).prediction
        assert prediction.anomaly_map.shape == cv2.imread(path).shape[:2]
        here.append([prediction.raw_score, float(prediction.anomaly_map.sum())])
    output = subprocess.run([sys.executable, "-c", SCORE_SCRIPT, str(model), *paths], capture_output=True,
                            text=True, check=True)
    assert json.loads(output.stdout) == here


def test_format_1_models_still_load_as_the_square_models_they_were(patchcore_model, tmp_path):
    model = _copy(patchcore_model, tmp_path)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["format_version"] = 1
    del manifest["config"]["keep_aspect"]
    del manifest["integrity"]  # format 1 had none
    (model / "manifest.json").write_text(json.dumps(manifest))
    assert load_model(model)[0].config.keep_aspect is False
    assert load_model(patchcore_model)[0].config.keep_aspect is True


def test_aspect_is_kept_when_the_training_images_share_one(tmp_path):
    import cv2
    import numpy as np

    from anomalyapp.services.training import choose_keep_aspect

    def folder(name, sizes):
        path = tmp_path / name
        path.mkdir()
        for index, (width, height) in enumerate(sizes):
            cv2.imwrite(str(path / f"{index}.png"), np.full((height, width, 3), 128, np.uint8))
        (path / "broken.png").write_bytes(b"not an image")  # left to the fit to report
        return sorted(path.iterdir())

    assert choose_keep_aspect(folder("line", [(100, 250), (100, 252), (98, 250)])) is True
    assert choose_keep_aspect(folder("crops", [(100, 250), (250, 100), (100, 100)])) is False


def test_an_image_shaped_unlike_the_training_images_is_refused_not_judged(patchcore_model, demo_line, tmp_path):
    """An 8 x 8 thumbnail was upscaled and judged NG (1.98); a frame of another camera's shape is judged by a model
    that never saw such a frame. Both are refused with both shapes named, like an unreadable file; the same view
    at twice the resolution is inspected. A model saved before shapes were recorded refuses nothing."""
    import cv2
    import numpy as np

    from anomalyapp.core.errors import ImageRefused
    from anomalyapp.engine.bundle import integrity_digest

    assert read_manifest(patchcore_model)["training_set"]["image_shapes"]["smallest"] == [128, 128]
    good = sorted((demo_line / "test" / "good").iterdir())[0]
    image = cv2.imread(str(good))
    files = {"thumbnail.png": cv2.resize(image, (8, 8)), "stretched.png": cv2.resize(image, (128, 320)),
             "larger.png": cv2.resize(image, (256, 256))}
    for name, pixels in files.items():
        cv2.imwrite(str(tmp_path / name), pixels)
    session = InferenceSession(patchcore_model, device="cpu")
    assert session.predict_path(good).ok and session.predict_path(tmp_path / "larger.png").ok
    thumbnail = session.predict_path(tmp_path / "thumbnail.png")
    assert not thumbnail.ok and isinstance(thumbnail.error, ImageRefused)
    assert str(thumbnail.error) == (f"{tmp_path / 'thumbnail.png'}: 8 x 8 px is far smaller than the "
                                    "images the model learned (the smallest: 128 x 128 px); check the camera's "
                                    "resolution or the image")
    stretched = session.predict_path(tmp_path / "stretched.png")
    assert not stretched.ok and "128 x 320 px (aspect 0.40) is shaped unlike" in stretched.error.reason
    with pytest.raises(ImageRefused, match="camera frame: 8 x 8 px is far smaller"):
        session.predict_pixels(np.zeros((8, 8), np.uint8))

    older = _copy(patchcore_model, tmp_path)
    manifest = json.loads((older / "manifest.json").read_text())
    del manifest["training_set"]["image_shapes"]
    manifest["integrity"] = {"algorithm": "sha256", "digest": integrity_digest(manifest, tuple(manifest["files"]))}
    (older / "manifest.json").write_text(json.dumps(manifest))
    assert InferenceSession(older, device="cpu").predict_path(tmp_path / "thumbnail.png").ok
