"""Typed, JSON-serialisable configuration of the detectors and of calibration."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


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


@dataclass(frozen=True)
class CalibrationConfig(_JsonConfig):
    holdout_fraction: float = 0.2
    min_holdout: int = 2
    # threshold = max(mean + sigmas * std, highest held-out score) over held-out good images
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
