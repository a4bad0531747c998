"""The autoencoder learns from its hard examples (AutoencoderConfig.hard_share): a pattern that is rare among the
good vectors is rebuilt better than when every vector's error counts alike."""

from __future__ import annotations

import torch

from anomalyapp.core.config import HARD_SHARE, AutoencoderConfig
from anomalyapp.core.types import drain
from anomalyapp.engine.detector import build_detector
from anomalyapp.engine.weights import resolve_weights


def test_a_model_saved_before_hard_examples_keeps_learning_from_every_vector_alike():
    saved = AutoencoderConfig().to_dict()
    assert AutoencoderConfig.from_dict(saved).hard_share == HARD_SHARE
    del saved["hard_share"]
    assert AutoencoderConfig.from_dict(saved).hard_share is None  # how the previous version trained
    assert "hard-example share 0" in AutoencoderConfig(hard_share=0).problem()
    assert "hard-example share 1.5" in AutoencoderConfig(hard_share=1.5).problem()
    assert AutoencoderConfig(hard_share=None).problem() is None


def _vectors(basis: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(count, basis.shape[0], generator=generator) @ basis


def test_hard_examples_rebuild_a_rare_good_pattern_better():
    """Good vectors from two 6-dimensional patterns, one 3 % of them (a glint, a part's edge): trained on the mean
    error, the network spends itself on the common one; learning from its hardest quarter, it rebuilds the rare one
    with a much smaller error. Both are measured on fresh vectors of each pattern."""
    generator = torch.Generator().manual_seed(0)
    channels = 152  # Lite0's stride-8 and stride-16 stages, as the default config builds it
    common_basis, rare_basis = torch.randn(6, channels, generator=generator), torch.randn(6, channels,
                                                                                          generator=generator)
    training = torch.cat([_vectors(common_basis, 3880, generator), _vectors(rare_basis, 120, generator)])
    mean, std = training.mean(0), training.std(0)
    training = (training - mean) / std
    fresh_common = (_vectors(common_basis, 2000, generator) - mean) / std
    fresh_rare = (_vectors(rare_basis, 2000, generator) - mean) / std
    errors = {}
    for share in (None, 0.25):
        config = AutoencoderConfig(epochs=60, hard_share=share, hard_after_epochs=3, training_noise=0.0)
        detector, _ = build_detector("autoencoder", config, resolve_weights(config.backbone), "cpu")
        model = drain(detector._train(training, 16, 0, "train", None))
        with torch.no_grad():
            errors[share] = [float(((model(x) - x) ** 2).mean()) for x in (fresh_common, fresh_rare)]
    (plain_common, plain_rare), (hard_common, hard_rare) = errors[None], errors[0.25]
    assert hard_rare < 0.6 * plain_rare, errors
    # The common pattern is still rebuilt well: its error stays a small fraction of the rare one's and within a
    # few times what the plain network leaves (measured: 0.010 against 0.006, the rare 0.079).
    assert hard_common < 0.25 * hard_rare and hard_common < 3 * plain_common, errors
