"""Both detectors fitted on the demo line: they separate defects, add_normal works, AE is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyapp.core.cancel import Cancelled, CancelToken
from anomalyapp.core.config import AutoencoderConfig, PatchCoreConfig
from anomalyapp.core.types import drain
from anomalyapp.data.datasets import discover_dataset
from anomalyapp.data.images import load_image
from anomalyapp.engine.detector import build_detector
from anomalyapp.engine.metrics import auroc
from anomalyapp.engine.weights import resolve_weights


def _fitted(kind, config, data):
    detector, _ = build_detector(kind, config, resolve_weights(config.backbone), "cpu")
    images = [load_image(p).to_rgb() for p in discover_dataset(data).train_good]
    drain(detector.fit(iter(images), len(images)))
    return detector


def _test_scores(detector, data):
    dataset = discover_dataset(data)
    labels = [int(item.is_anomalous) for item in dataset.test]
    scores = [detector.raw_predict([load_image(item.path).to_rgb()])[0][0] for item in dataset.test]
    return np.array(labels), np.array(scores)


@pytest.fixture(scope="module")
def patchcore(demo_line):
    return _fitted("patchcore", PatchCoreConfig(image_size=128), demo_line)


def test_patchcore_separates_defects(patchcore, demo_line):
    labels, scores = _test_scores(patchcore, demo_line)
    assert auroc(labels, scores) >= 0.9
    # The default mixed rule's bank: two coresets of half the count each, their union.
    count = round(patchcore.training_patches * 0.1)
    assert count - count // 2 <= patchcore.bank.size <= count


def test_patchcore_map_marks_the_defect(patchcore, demo_line):
    from anomalyapp.data.datasets import load_mask

    item = next(i for i in discover_dataset(demo_line).test if i.is_anomalous)
    _, maps = patchcore.raw_predict([load_image(item.path).to_rgb()])
    mask = load_mask(item.mask_path, maps[0].shape)
    assert maps[0][mask].mean() > maps[0][~mask].mean() * 1.3


def test_add_normal_lowers_the_score_of_an_added_image(demo_line):
    detector = _fitted("patchcore", PatchCoreConfig(image_size=128), demo_line)
    item = next(i for i in discover_dataset(demo_line).test if i.is_anomalous)
    image = load_image(item.path).to_rgb()
    before = detector.raw_predict([image])[0][0]
    size_before = detector.bank.size
    added = drain(detector.add_normal([image]))
    after = detector.raw_predict([image])[0][0]
    assert added > 0 and detector.bank.size == size_before + added
    assert after < before
    assert after <= detector.coverage_radius + 1e-4


def test_patchcore_fit_cancel_raises(demo_line):
    config = PatchCoreConfig(image_size=128)
    detector, _ = build_detector("patchcore", config, resolve_weights(config.backbone), "cpu")
    images = [load_image(p).to_rgb() for p in discover_dataset(demo_line).train_good]
    token = CancelToken()
    job = detector.fit(iter(images), len(images), token)
    next(job)
    token.cancel()
    with pytest.raises(Cancelled):
        drain(job)
    assert detector.bank is None


def test_autoencoder_separates_defects_and_is_deterministic(demo_line):
    config = AutoencoderConfig(image_size=128, epochs=6)
    first = _fitted("autoencoder", config, demo_line)
    second = _fitted("autoencoder", config, demo_line)
    labels, scores = _test_scores(first, demo_line)
    assert auroc(labels, scores) >= 0.85
    assert first.loss_history == second.loss_history
    for a, b in zip(first.autoencoder.state_dict().values(), second.autoencoder.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())
    assert first.loss_history[-1] < first.loss_history[0]


def test_autoencoder_latent_from_explained_variance():
    import torch

    from anomalyapp.engine.autoencoder import latent_from_variance

    generator = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 20, generator=generator)
    vectors = torch.randn(5000, 3, generator=generator) @ basis + 0.01 * torch.randn(5000, 20, generator=generator)
    assert latent_from_variance(vectors, 0.9) <= 3


def test_autoencoder_fine_tune_lowers_the_error_of_new_images(demo_line):
    detector = _fitted("autoencoder", AutoencoderConfig(image_size=128, epochs=6), demo_line)
    item = next(i for i in discover_dataset(demo_line).test if i.is_anomalous)
    image = load_image(item.path).to_rgb()
    before = detector.raw_predict([image])[0][0]
    drain(detector.fine_tune([image], epochs=10))
    assert detector.raw_predict([image])[0][0] < before


def _tall_part(seed: int, scratch: bool = False) -> np.ndarray:
    """A 128x512 part with a vertical-streak texture; a scratch is a 3-pixel-thin horizontal line."""
    import cv2

    rng = np.random.default_rng(seed)
    texture = cv2.resize(rng.normal(128, 20, (64, 16)).astype(np.float32), (128, 512), interpolation=cv2.INTER_CUBIC)
    texture += rng.normal(0, 6, texture.shape)
    if scratch:
        texture[250:253, 20:110] -= 70
    return np.repeat(np.clip(texture, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize(
    "kind, config_class, extra",
    [("patchcore", PatchCoreConfig, {}), ("autoencoder", AutoencoderConfig, {"epochs": 10})],
)
def test_keeping_the_aspect_finds_a_thin_scratch_that_squeezing_hides(kind, config_class, extra):
    train = [_tall_part(i) for i in range(10)]
    good = [_tall_part(100 + i) for i in range(4)]
    scratched = [_tall_part(200 + i, scratch=True) for i in range(4)]
    separation = {}
    for keep_aspect in (False, True):
        config = config_class(image_size=64, keep_aspect=keep_aspect, **extra)
        detector, _ = build_detector(kind, config, resolve_weights(config.backbone), "cpu")
        drain(detector.fit(iter(train), len(train)))
        good_scores = [detector.raw_predict([image])[0][0] for image in good]
        scratched_scores = [detector.raw_predict([image])[0][0] for image in scratched]
        separation[keep_aspect] = min(scratched_scores) / max(good_scores)
        expected_shape = (256, 64) if keep_aspect else (64, 64)
        assert detector.raw_predict([scratched[0]])[1][0].shape == expected_shape
    assert separation[True] > 1.0  # every scratched part above every good one
    assert separation[True] > separation[False] + 0.3
