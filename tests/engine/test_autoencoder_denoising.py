"""The autoencoder learns to give back clean features from noisy ones (AutoencoderConfig.training_noise)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from anomalyapp.core.config import TRAINING_NOISE, AutoencoderConfig
from anomalyapp.core.types import drain
from anomalyapp.data.datasets import discover_dataset
from anomalyapp.data.images import load_image
from anomalyapp.engine.detector import build_detector
from anomalyapp.engine.weights import resolve_weights


def test_a_model_saved_before_denoising_keeps_training_without_noise():
    saved = replace(AutoencoderConfig(), training_noise=0.5).to_dict()
    assert AutoencoderConfig.from_dict(saved).training_noise == 0.5
    del saved["training_noise"]
    assert AutoencoderConfig.from_dict(saved).training_noise == 0.0  # how the previous version trained
    assert AutoencoderConfig().training_noise == TRAINING_NOISE > 0
    assert "training noise -1" in AutoencoderConfig(training_noise=-1).problem()


def _trained(config: AutoencoderConfig, demo_line):
    detector, _ = build_detector("autoencoder", config, resolve_weights(config.backbone), "cpu")
    images = [load_image(p).to_rgb() for p in discover_dataset(demo_line).train_good]
    drain(detector.fit(iter(images), len(images)))
    return detector


def test_noise_changes_what_is_learned_and_stays_reproducible(demo_line):
    config = AutoencoderConfig(image_size=64, epochs=3)
    noisy, again = _trained(config, demo_line), _trained(config, demo_line)
    clean = _trained(replace(config, training_noise=0.0), demo_line)
    weights = [w.numpy() for w in noisy.autoencoder.state_dict().values()]
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(weights, again.autoencoder.state_dict().values()))
    assert not all(np.array_equal(a, b.numpy()) for a, b in zip(weights, clean.autoencoder.state_dict().values()))
    # The loss is against the clean features: noisy inputs are harder to give back than clean ones.
    assert noisy.loss_history[-1] > clean.loss_history[-1]
