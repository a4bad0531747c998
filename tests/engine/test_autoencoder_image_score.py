"""The autoencoder's image score: the mean error of its highest cells, a fixed share of the grid
(AutoencoderConfig.score_top_share), so that an input whose aspect is kept scores over the same share of the part."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from anomalyapp.core.config import SCORE_TOP_SHARE, AutoencoderConfig
from anomalyapp.core.types import drain
from anomalyapp.data.datasets import discover_dataset
from anomalyapp.data.images import load_image
from anomalyapp.engine.detector import build_detector
from anomalyapp.engine.weights import resolve_weights


def _detector(config: AutoencoderConfig):
    return build_detector("autoencoder", config, resolve_weights(config.backbone), "cpu")[0]


def test_the_share_is_the_previous_count_on_a_square_input_and_grows_with_the_grid():
    detector = _detector(AutoencoderConfig())
    assert detector.score_cells(56 * 56) == 10  # a 224 x 224 input: as before
    assert detector.score_cells(56 * 144) == 26  # KolektorSDD's aspect-kept 224 x 576 input
    assert detector.score_cells(100) == 1  # never none
    assert "share of cells 0" in AutoencoderConfig(score_top_share=0.0).problem()
    assert AutoencoderConfig().score_top_share == SCORE_TOP_SHARE


def test_a_model_saved_before_the_share_keeps_averaging_its_count():
    saved = AutoencoderConfig().to_dict()
    assert AutoencoderConfig.from_dict(saved).score_top_share == SCORE_TOP_SHARE
    del saved["score_top_share"]
    old = AutoencoderConfig.from_dict(saved)
    assert old.score_top_share is None and _detector(old).score_cells(56 * 144) == old.score_top_k == 10


def test_the_image_score_is_the_mean_of_that_many_highest_cells_of_the_error(demo_line):
    config = AutoencoderConfig(image_size=64, epochs=2, score_top_share=0.05)
    detector = _detector(config)
    images = [load_image(p).to_rgb() for p in discover_dataset(demo_line).train_good]
    drain(detector.fit(iter(images), len(images)))
    defect = load_image(next(item.path for item in discover_dataset(demo_line).test if item.is_anomalous)).to_rgb()

    grid = detector.error_grids([defect])[0][0].numpy().ravel()
    count = detector.score_cells(grid.size)
    assert count == round(0.05 * grid.size) > 1
    scores, _ = detector.raw_predict([defect])
    assert np.isclose(scores[0], np.sort(grid)[-count:].mean(), rtol=1e-6)
    detector.config = replace(config, score_top_share=None)  # as a model saved before the share scores
    scores, _ = detector.raw_predict([defect])
    assert np.isclose(scores[0], np.sort(grid)[-10:].mean(), rtol=1e-6)
