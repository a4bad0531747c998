"""The detectors the app knows, and how one is built from a config."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from anomalyapp.core.config import AutoencoderConfig, PatchCoreConfig
from anomalyapp.core.types import Prediction
from anomalyapp.engine.autoencoder import AutoencoderDetector
from anomalyapp.engine.calibration import Calibration
from anomalyapp.engine.features import FeatureExtractor, ResolvedWeights, load_network, state_dict_sha256
from anomalyapp.engine.patchcore import PatchCoreDetector


class Detector(Protocol):
    name: str
    config: PatchCoreConfig | AutoencoderConfig
    calibration: Calibration | None

    def fit(self, images, total: int, cancel=None): ...
    # Right after fit: raw scores and map maxima of the fitted images, each from a model that did not see it.
    def unseen_scores(self, images, total: int, cancel=None): ...
    def raw_predict(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]: ...
    def predict(self, image: np.ndarray) -> Prediction: ...


DETECTORS: dict[str, tuple[type, type]] = {
    "patchcore": (PatchCoreDetector, PatchCoreConfig),
    "autoencoder": (AutoencoderDetector, AutoencoderConfig),
}


def config_class(name: str) -> type:
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return DETECTORS[name][1]


def build_detector(name: str, config, weights: ResolvedWeights, device: str = "cpu"):
    """Build an unfitted detector; returns it with the sha256 of the backbone weights it loaded."""
    detector_class, _ = DETECTORS[name]
    network = load_network(config.backbone, weights, seed=config.seed)
    weights_sha256 = state_dict_sha256(network)
    extractor = FeatureExtractor(config.backbone, config.layers, network).to(device)
    return detector_class(config, extractor), weights_sha256
