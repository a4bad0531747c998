"""The training estimate's inspection time: timed on the real scoring path with a stand-in of the model's size,
which is gone again afterwards."""

import numpy as np
import pytest

from anomalyapp.core.config import AutoencoderConfig, PatchCoreConfig
from anomalyapp.core.errors import ModelNotFitted
from anomalyapp.engine.detector import build_detector
from anomalyapp.engine.memory_bank import MemoryBank
from anomalyapp.engine.weights import resolve_weights


def _images(count: int, size: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def test_patchcore_times_a_part_against_a_bank_of_the_size_the_fit_keeps_and_keeps_none(monkeypatch):
    config = PatchCoreConfig(image_size=64)
    detector, _ = build_detector("patchcore", config, resolve_weights(config.backbone), "cpu")
    built = []
    build = MemoryBank.build

    def recording_build(vectors, kind="auto", seed=0):
        built.append(vectors.shape)
        return build(vectors, kind, seed)

    monkeypatch.setattr(MemoryBank, "build", staticmethod(recording_build))
    cost = detector.training_cost(_images(4), 1000)
    assert cost.bank_size == 6400  # 64 patches per image, 10 %
    assert built == [(6400, detector.model.dim)]
    assert cost.inspect_seconds > 0
    assert detector.bank is None
    with pytest.raises(ModelNotFitted):
        detector.predict(_images(1)[0])


def test_patchcore_with_an_approximate_index_does_not_guess_its_inspection_time():
    config = PatchCoreConfig(image_size=64, index="hnsw")
    detector, _ = build_detector("patchcore", config, resolve_weights(config.backbone), "cpu")
    assert detector.training_cost(_images(2), 10).inspect_seconds is None


def test_the_autoencoder_times_a_part_with_a_network_of_its_width_and_keeps_none():
    config = AutoencoderConfig(image_size=64)
    detector, _ = build_detector("autoencoder", config, resolve_weights(config.backbone), "cpu")
    cost = detector.training_cost(_images(3), 10)
    assert cost.inspect_seconds > 0
    assert detector.autoencoder is None
    with pytest.raises(ModelNotFitted):
        detector.predict(_images(1)[0])
