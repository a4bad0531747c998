"""Backbones: the Lite0 weights are real ImageNet weights; ResNets load from state-dict files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalyapp.core.errors import WeightsError
from anomalyapp.engine import backbones, features, preprocessing, weights


def _classify(image: np.ndarray) -> list[int]:
    resolved = weights.resolve_weights("efficientnet_lite0")
    network = weights.load_network("efficientnet_lite0", resolved)
    batch = preprocessing.preprocess([image], 224, backbones.backbone_spec("efficientnet_lite0"))
    with torch.inference_mode():
        return network(batch).topk(3).indices[0].tolist()


def test_lite0_classifies_real_photos():
    skimage_data = pytest.importorskip("skimage.data")
    # ImageNet 281-285 are the domestic cats; 967 is espresso.
    assert _classify(skimage_data.chelsea())[0] in range(281, 286)
    assert _classify(skimage_data.coffee())[0] == 967


def test_lite0_features_survive_batchnorm_folding():
    resolved = weights.resolve_weights("efficientnet_lite0")
    plain = weights.load_network("efficientnet_lite0", resolved)
    folded = features.FeatureExtractor("efficientnet_lite0", ("layer2", "layer3"), weights.load_network("efficientnet_lite0", resolved))
    x = torch.rand(1, 3, 96, 96) * 2 - 1
    with torch.inference_mode():
        expected = plain.stages(x, ("layer2", "layer3"))
    got = folded(x)
    for name in ("layer2", "layer3"):
        assert got[name].shape == expected[name].shape
        torch.testing.assert_close(got[name], expected[name], atol=2e-4, rtol=1e-3)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "wide_resnet50_2"])
def test_resnet_loads_from_state_dict_file(name, tmp_path):
    import torchvision

    torch.manual_seed(1)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    resolved = weights.resolve_weights(name, path)
    assert resolved.source == "file"
    network = weights.load_network(name, resolved)
    for key, value in reference.state_dict().items():
        assert torch.equal(network.net.state_dict()[key], value), key
    assert weights.state_dict_sha256(network) == weights.state_dict_sha256(reference)


def test_resnet_found_in_models_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ANOMALYAPP_DATA_DIR", str(tmp_path))
    import torchvision

    (tmp_path / "models").mkdir()
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "models" / "resnet18-f37072fd.pth")
    assert weights.resolve_weights("resnet18").source == "models-folder"


def test_missing_resnet_weights_name_the_file_and_never_fall_back(tmp_path, monkeypatch):
    monkeypatch.setenv("ANOMALYAPP_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(WeightsError) as error:
        weights.resolve_weights("resnet50")
    assert "resnet50-0676ba61.pth" in str(error.value)
    assert "--allow-download" in str(error.value)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match="do not fit resnet50"):
        weights.load_network("resnet50", weights.resolve_weights("resnet50", path))


class Payload:
    """Any class: unpickling it would run arbitrary import machinery, which weights_only refuses."""


def test_pickled_object_weights_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, path)
    with pytest.raises(WeightsError, match="cannot read backbone weights"):
        weights.read_state_dict(path)


def test_random_weights_reproduce_for_a_seed():
    a = weights.load_network("resnet18", weights.ResolvedWeights("random", None), seed=3)
    b = weights.load_network("resnet18", weights.ResolvedWeights("random", None), seed=3)
    assert weights.state_dict_sha256(a) == weights.state_dict_sha256(b)


def test_preprocess_accepts_8_16_bit_and_float():
    spec = backbones.backbone_spec("efficientnet_lite0")
    base = np.random.default_rng(0).integers(0, 256, (300, 200, 3)).astype(np.uint8)
    eight = preprocessing.preprocess([base], 64, spec)
    sixteen = preprocessing.preprocess([base.astype(np.uint16) * 257], 64, spec)
    floating = preprocessing.preprocess([base.astype(np.float32) / 255], 64, spec)
    assert eight.shape == (1, 3, 64, 64)
    torch.testing.assert_close(eight, sixteen, atol=1e-2, rtol=0)
    torch.testing.assert_close(eight, floating, atol=1e-2, rtol=0)


def test_input_shape_keeps_the_aspect_in_steps_of_16_up_to_4_to_1():
    assert preprocessing.input_shape(900, 900, 224, True) == (224, 224)
    assert preprocessing.input_shape(1250, 500, 224, True) == (560, 224)  # KolektorSDD: 224 * 2.5 = 560
    assert preprocessing.input_shape(480, 640, 224, True) == (224, 304)  # 298.7 rounded to a step of 16
    assert preprocessing.input_shape(100, 2000, 224, True) == (224, 896)  # 20:1 strip squeezed to 4:1
    assert preprocessing.input_shape(1250, 500, 224, False) == (224, 224)
    assert preprocessing.input_shape(230, 224, 224, True) == (224, 224)  # nearly square rounds to square


def test_preprocess_keeps_the_aspect_and_refuses_batches_of_mixed_shapes():
    spec = backbones.backbone_spec("efficientnet_lite0")
    tall = np.zeros((300, 100, 3), np.uint8)
    assert preprocessing.preprocess([tall], 64, spec, keep_aspect=True).shape == (1, 3, 192, 64)
    assert preprocessing.preprocess([tall], 64, spec).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="share an input shape"):
        preprocessing.preprocess([tall, np.zeros((100, 100, 3), np.uint8)], 64, spec, keep_aspect=True)


def test_batches_end_where_the_input_shape_changes():
    shapes = [(100, 100), (100, 100), (300, 100), (100, 100)] + [(100, 100)] * 9
    images = [np.zeros((*shape, 3), np.uint8) for shape in shapes]
    key = preprocessing.input_shape_key(64, True)
    sizes = [len(batch) for batch in preprocessing.batched(images, size=8, key=key)]
    assert sizes == [2, 1, 8, 2]
    assert [len(batch) for batch in preprocessing.batched(images, size=8)] == [8, 5]
