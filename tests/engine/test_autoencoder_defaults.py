"""The autoencoder's defaults since 2026-12-01 (sixth session): PatchCore's patch features (the stride-8 and
stride-16 stages, 3 x 3 regions), a latent for 97 % of the variance, and batches small enough for a small
training set to get several steps an epoch. Models saved before keep what they were trained with."""

from __future__ import annotations

from anomalyapp.core.config import AutoencoderConfig
from anomalyapp.engine.detector import build_detector
from anomalyapp.engine.weights import resolve_weights


def _detector(config: AutoencoderConfig):
    return build_detector("autoencoder", config, resolve_weights(config.backbone), "cpu")[0]


def test_a_small_training_set_gets_smaller_batches_and_a_large_one_full_batches():
    detector = _detector(AutoencoderConfig())
    # A dozen 128 px images on the stride-8 grid: 12 x 16 x 16 vectors, one full batch an epoch before.
    assert detector.batch_size(12 * 16 * 16) == 96
    assert detector.batch_size(26_656) == 833  # bottle's fit: 32 steps an epoch (8 of 3,332 before 2026-12-02)
    assert detector.batch_size(200_000) == 4096  # a large set: full batches, 49 an epoch
    assert detector.batch_size(3) == 2  # batch norm needs two vectors
    assert "steps per epoch must be at least 1" in AutoencoderConfig(min_steps_per_epoch=0).problem()


def test_a_model_saved_before_these_defaults_keeps_its_features_latent_and_full_batches():
    saved = AutoencoderConfig().to_dict()
    saved.update(layers=["layer1", "layer2", "layer3"], region_kernel=4, explained_variance=0.9)
    del saved["min_steps_per_epoch"]
    old = AutoencoderConfig.from_dict(saved)
    assert (old.layers, old.region_kernel, old.explained_variance) == (("layer1", "layer2", "layer3"), 4, 0.9)
    assert old.min_steps_per_epoch == 1
    assert _detector(old).batch_size(12 * 32 * 32) == 4096  # as it trained: one batch of all 12,288 vectors
    new = AutoencoderConfig()
    assert (new.layers, new.region_kernel, new.explained_variance) == (("layer2", "layer3"), 3, 0.97)


def test_the_map_weighs_the_stages_alike_and_smooths_wider_and_models_saved_before_keep_their_map():
    new = AutoencoderConfig()
    assert (new.stage_weighting, new.sigma) == ("score_concatenated_map_balanced", 8.0)
    saved = new.to_dict()
    saved.update(stage_weighting="concatenated", sigma=4.0)  # as every model saved before 2026-12-02 wrote them
    kept = AutoencoderConfig.from_dict(saved)
    assert (kept.stage_weighting, kept.sigma) == ("concatenated", 4.0)
    del saved["stage_weighting"], saved["sigma"]  # older still: no weighting field
    old = AutoencoderConfig.from_dict(saved)
    assert (old.stage_weighting, old.sigma) == ("concatenated", 4.0)
