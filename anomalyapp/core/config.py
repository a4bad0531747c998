"""Typed, JSON-serialisable configuration of the detectors and of calibration."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

# The model input's side in pixels (its short side when the aspect is kept): training refuses other sizes, and a
# saved model that claims one is refused as damaged.
IMAGE_SIZE_RANGE = (32, 2048)
# PatchCore's nearest-neighbour index: auto picks flat (exact) or hnsw by the bank's size.
INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")
# Images larger than this many megapixels are refused from their header, before decoding: a 1 MB PNG can hold
# 20000 x 20000 pixels (1.2 GB decoded). 100 covers every industrial camera we know; raised with --max-pixels,
# the ANOMALYAPP_MAX_PIXELS environment variable or the settings file (data.images.set_pixel_limit).
DEFAULT_MAX_MEGAPIXELS = 100.0
# A training image needs at least this many pixels on each side: a 1x1 or 3x700 file is not a part, and its
# aspect would sway the keep-or-squeeze choice. Predict still scores such images.
MIN_TRAINING_SIDE = 32


class _JsonConfig:
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in fields(cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        return cls(**values)


@dataclass(frozen=True)
class PatchCoreConfig(_JsonConfig):
    backbone: str = "efficientnet_lite0"
    layers: tuple[str, ...] = ("layer2", "layer3")
    image_size: int = 224  # the input's short side, or its side when keep_aspect is off
    keep_aspect: bool = True  # long side in proportion to the image (engine.features.input_shape)
    # Patch vectors wider than this are reduced by adaptive average pooling over channels (Roth et al.).
    embedding_dim: int = 1024
    neighbourhood: int = 3  # local aggregation window, in feature-map cells
    coreset_ratio: float = 0.1
    max_bank_size: int | None = None
    coreset_projection_dim: int = 128
    reweight_neighbours: int = 9  # b in the paper's score re-weighting
    index: str = "auto"
    sigma: float = 4.0
    seed: int = 0

    # The fields a user sets per training (CLI flags, GUI fields) beside backbone, image size and aspect.
    training_options: ClassVar[tuple[str, ...]] = ("coreset_ratio", "max_bank_size", "index")

    def problem(self) -> str | None:
        """Why this config cannot be trained, in one line; None when it can."""
        if not 0 < self.coreset_ratio <= 1:
            return f"coreset ratio {self.coreset_ratio} must be in (0, 1]"
        return None


@dataclass(frozen=True)
class AutoencoderConfig(_JsonConfig):
    backbone: str = "efficientnet_lite0"
    layers: tuple[str, ...] = ("layer1", "layer2", "layer3")
    image_size: int = 224  # the input's short side, or its side when keep_aspect is off
    keep_aspect: bool = True  # long side in proportion to the image (engine.features.input_shape)
    # DFR pools each stage with a small window so every location describes a region, not a pixel.
    region_kernel: int = 4
    latent_dim: int | None = None  # None: smallest dimension explaining `explained_variance` (DFR's rule)
    explained_variance: float = 0.9
    epochs: int = 40
    batch_size: int = 4096  # feature vectors per step: a 1x1-conv AE sees every location independently
    learning_rate: float = 1e-3
    score_top_k: int = 10  # image score = mean of the k highest map values
    sigma: float = 4.0
    seed: int = 0

    training_options: ClassVar[tuple[str, ...]] = ("epochs",)

    def problem(self) -> str | None:
        """Why this config cannot be trained, in one line; None when it can."""
        if self.epochs < 1:
            return f"epochs must be at least 1, not {self.epochs}"
        return None


@dataclass(frozen=True)
class CalibrationConfig(_JsonConfig):
    # The share of new good parts the station accepts to see judged NG; the threshold is chosen to meet it
    # (engine.calibration). 1 %: one good part in a hundred sent to a second look.
    target_false_reject_rate: float = 0.01
    # The last images in capture (name) order are held out: they look most like the next batch.
    holdout_fraction: float = 0.2
    min_holdout: int = 2
    # Fallback with too few good images for a tail: max(mean + sigmas * std, highest unseen good score)
    sigmas: float = 3.0


@dataclass(frozen=True)
class AppConfig(_JsonConfig):
    """Per-user application settings, kept as JSON in the config folder (window geometry lives in QSettings)."""

    schema_version: int = 1
    device: str = "auto"  # auto, cpu or cuda: where training and inference run
    overlay_opacity: float = 0.5
    show_outlines: bool = True
    thumbnails: bool = True
    reopen_last_project: bool = True
    # Larger images are refused before decoding; None: the ANOMALYAPP_MAX_PIXELS variable, else the default.
    max_megapixels: float | None = None
