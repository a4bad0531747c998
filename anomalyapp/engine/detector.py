"""The detector contract, the detectors the app knows, and how one is built from a config.

Everything outside the engine reaches a detector through this contract and the registry, never by its class
or name: a third detector joins by implementing ``Detector`` and adding one line to ``DETECTORS``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import torch

from anomalyapp.core.cancel import CancelToken
from anomalyapp.core.types import Prediction, Progress
from anomalyapp.engine.autoencoder import AutoencoderDetector
from anomalyapp.engine.calibration import Calibration
from anomalyapp.engine.cost import TrainingCost
from anomalyapp.engine.features import FeatureExtractor
from anomalyapp.engine.framing import framed
from anomalyapp.engine.patchcore import PatchCoreDetector
from anomalyapp.engine.weights import ResolvedWeights, load_network, state_dict_sha256


class Detector(Protocol):
    name: ClassVar[str]
    # The files a saved model holds beside manifest.json; the model format fixes them, a manifest cannot.
    # ``TENSORS`` (engine.bundle) is written from state_dict()'s tensors, any other file by write_file.
    data_files: ClassVar[tuple[str, ...]]
    # A frozen dataclass from core.config with ``training_options`` (the fields a user sets per training)
    # and ``problem()`` (why a config cannot be trained). Deriving it from ``FramingConfig`` gives the detector
    # a region of interest and tiles (engine.framing wraps it), with nothing more to write.
    config_class: ClassVar[type]
    config: object
    extractor: FeatureExtractor
    calibration: Calibration | None

    def fit(self, images: Iterable[np.ndarray], total: int, cancel: CancelToken | None = None
            ) -> Generator[Progress, None, None]: ...
    # Right after fit: raw scores and map maxima of the fitted images, each from a model that did not see it,
    # on the final model's scale. ``reference()`` iterates good images no model saw (the held-out ones), for a
    # detector whose unseen models differ from the final one to rescale with.
    def unseen_scores(self, images, total: int, cancel=None, reference=None): ...
    def raw_predict(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]: ...
    def predict(self, image: np.ndarray) -> Prediction: ...

    # ---- what a saved model holds: tensors for TENSORS and the manifest's JSON "state"
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]: ...
    def write_file(self, name: str, path: Path) -> None: ...
    # Restore from a saved model's tensors and state; ``folder`` for its other data files and for messages.
    # A part that does not fit is a ModelFileError naming the folder and the file.
    def load_state(self, tensors: dict[str, torch.Tensor], state: dict, folder: Path) -> None: ...

    # ---- the false-positive loop: learn that these images are good; returns what changed, in words
    def learn_from_good(self, images: list[np.ndarray], cancel: CancelToken | None = None
                        ) -> Generator[Progress, None, str]: ...

    # Figures of the fitted model worth reporting after training (bank size, final loss).
    def summary(self) -> dict: ...
    # Time and memory of fitting ``count`` images and calibrating (held-out images are only scored), measured on a
    # few sample ``images`` with this unfitted detector; ``stages`` splits the time as the training reports it.
    # ``read_seconds``: reading and decoding one image file, for each time a stage reads one (a 5 MP PNG takes
    # several times what its features at 224 px take).
    def training_cost(self, images: list[np.ndarray], count: int, read_seconds: float = 0.0) -> TrainingCost: ...


DETECTORS: dict[str, type[Detector]] = {
    PatchCoreDetector.name: PatchCoreDetector,
    AutoencoderDetector.name: AutoencoderDetector,
}


def detector_class(name: str) -> type[Detector]:
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return DETECTORS[name]


def config_class(name: str) -> type:
    return detector_class(name).config_class


def build_detector(name: str, config, weights: ResolvedWeights, device: str = "cpu"):
    """Build an unfitted detector; returns it with the sha256 of the backbone weights it loaded."""
    cls = detector_class(name)
    network = load_network(config.backbone, weights, seed=config.seed)
    weights_sha256 = state_dict_sha256(network)
    extractor = FeatureExtractor(config.backbone, config.layers, network).to(device)
    # A region of interest or tiles wrap the detector; without them it is returned as it is.
    return framed(cls(config, extractor)), weights_sha256
