"""Typed, JSON-serialisable configuration of the detectors and of calibration."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

# The model input's side in pixels (its short side when the aspect is kept): training refuses other sizes, and a
# saved model that claims one is refused as damaged.
IMAGE_SIZE_RANGE = (32, 2048)
# PatchCore's nearest-neighbour index: auto picks flat (exact) or hnsw by the bank's size.
INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")
# The autoencoder's default training noise, in standard deviations of each feature (AutoencoderConfig).
TRAINING_NOISE = 1.0
# The autoencoder's image score is the mean error of its highest cells, this share of its grid: the 10 cells of
# the 56 x 56 grid of a 224 x 224 input on the stride-4 grid it had until the sixth session (the fixed count used
# before), 2 of today's 28 x 28, and an input whose aspect is kept (KolektorSDD) averages over the same share of
# the part, where 10 cells were a smaller one (docs/accuracy.md: the autoencoder's image score).
SCORE_TOP_SHARE = 10 / (56 * 56)
# The autoencoder's hard-example share: after its first epochs each training step learns from the share of the
# batch's vectors it rebuilds worst (AutoencoderConfig.hard_share; docs/accuracy.md, the hard examples).
HARD_SHARE = 0.25
# How a detector joins its backbone stages into one vector (engine.features.stage_weights): "concatenated" as they
# come (the wider stage dominates the distance), "balanced" with each stage scaled so that all weigh the same.
# "score_concatenated_map_balanced": the image score under the concatenated weighting, the map under the balanced
# one (PatchCore: one bank of concatenated vectors, half its picks chosen to cover each distance, searched under
# both; the autoencoder: its one reconstruction error weighed both ways).
# A model saved without the field was concatenated.
STAGE_WEIGHTINGS = ("concatenated", "balanced", "score_concatenated_map_balanced")
# Each weighting as (the bank's vectors and the image score's distance, the anomaly map's distance).
STAGE_WEIGHTING_PARTS = {
    "concatenated": ("concatenated", "concatenated"),
    "balanced": ("balanced", "balanced"),
    "score_concatenated_map_balanced": ("concatenated", "balanced"),
}
# Images larger than this many megapixels are refused from their header, before decoding: a 1 MB PNG can hold
# 20000 x 20000 pixels (1.2 GB decoded). 100 covers every industrial camera we know; raised with --max-pixels,
# the ANOMALYAPP_MAX_PIXELS environment variable or the settings file (data.images.set_pixel_limit).
DEFAULT_MAX_MEGAPIXELS = 100.0
# A training image needs at least this many pixels on each side: a 1x1 or 3x700 file is not a part, and its
# aspect would sway the keep-or-squeeze choice. Predict still scores such images.
MIN_TRAINING_SIDE = 32


def stage_weighting_problem(value: str, allowed: tuple[str, ...] = STAGE_WEIGHTINGS) -> str | None:
    if value not in allowed:
        return f"stage weighting {value!r} must be one of {', '.join(allowed)}"
    return None


class _JsonConfig:
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in fields(cls)}
        values = {k: _tuples(v) for k, v in data.items() if k in known}
        return cls(**values)


def _tuples(value):
    """JSON lists back into the tuples a config holds, nested ones too (the region's rectangles)."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


# A rectangle of the region of interest: (left, top, right, bottom) as shares of the image's width and height, so
# it holds whatever size the images come in.
Rectangle = tuple[float, float, float, float]
# Tile overlap, as a share of the tile's side: enough that a defect on one tile's edge is inside the next.
DEFAULT_TILE_OVERLAP = 0.125


@dataclass(frozen=True)
class FramingConfig(_JsonConfig):
    """What of each image a detector sees: its region of interest and its tiles (engine.framing).

    Fields every detector's config has; their defaults keep the whole image, squeezed to ``image_size``.
    """

    # Empty: the whole image. Otherwise only these rectangles are trained on and scored; the map is zero outside.
    roi: tuple[Rectangle, ...] = ()
    # None: the image (or the region's bounding box) is resized to image_size as a whole. A scale (1.0 the
    # image's own pixels) cuts it, resized by that factor, into overlapping tiles of image_size px.
    tile_scale: float | None = None
    tile_overlap: float = DEFAULT_TILE_OVERLAP

    def framing_problem(self) -> str | None:
        """Why this region or these tiles cannot be used, in one line; None when they can."""
        for rectangle in self.roi:
            if len(rectangle) != 4 or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in rectangle):
                return f"region of interest rectangle {list(rectangle)} must be 4 numbers from 0 to 1"
            left, top, right, bottom = rectangle
            if not (left < right and top < bottom):
                return f"region of interest rectangle {list(rectangle)} must have left < right and top < bottom"
        if self.tile_scale is not None and not 0 < self.tile_scale <= 4:
            return f"tile scale {self.tile_scale} must be above 0 and at most 4"
        if not 0 <= self.tile_overlap <= 0.75:
            return f"tile overlap {self.tile_overlap} must be from 0 to 0.75"
        return None


@dataclass(frozen=True)
class PatchCoreConfig(FramingConfig):
    backbone: str = "efficientnet_lite0"
    # The stride-8, -16 and -32 stages on the stride-8 grid. Under the mixed stage weighting the image score weighs
    # them as they come, so the widest and deepest stage leads it: a patch seen with its surroundings tells a thin
    # crack from the part's own texture, and KolektorSDD's recall at the threshold rose from 0.365 to 0.654 at the
    # same false-reject rate. The map weighs them alike and keeps the stride-8 detail. Models saved with the
    # stride-8 and -16 stages alone keep them (docs/accuracy.md, which backbone stages).
    layers: tuple[str, ...] = ("layer2", "layer3", "layer4")
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
    # One of STAGE_WEIGHTINGS (docs/accuracy.md: stage balance). The mixed rule, its bank half chosen to cover the
    # image score's distance and half the map's, gave the best image and pixel AUROC on all three shared sets.
    stage_weighting: str = "score_concatenated_map_balanced"
    seed: int = 0

    # The fields a user sets per training (CLI flags, GUI fields) beside backbone, image size and aspect.
    # "layers": the backbone stages, measured for PatchCore (docs/accuracy.md, which backbone stages).
    training_options: ClassVar[tuple[str, ...]] = ("coreset_ratio", "max_bank_size", "index", "stage_weighting",
                                                   "layers")

    @classmethod
    def from_dict(cls, data: dict):
        # A model saved before stage weightings existed concatenated its stages; it keeps doing so.
        return super().from_dict(data if "stage_weighting" in data else {**data, "stage_weighting": "concatenated"})

    def problem(self) -> str | None:
        """Why this config cannot be trained, in one line; None when it can."""
        if not 0 < self.coreset_ratio <= 1:
            return f"coreset ratio {self.coreset_ratio} must be in (0, 1]"
        return stage_weighting_problem(self.stage_weighting)


@dataclass(frozen=True)
class AutoencoderConfig(FramingConfig):
    backbone: str = "efficientnet_lite0"
    # The stride-8 and stride-16 stages, each location a 3 x 3 region: PatchCore's patch features. DFR's stride-4
    # stage (and its window of 4) gave maps whose fine texture scored on good parts; without it pixel AUROC rose
    # on all three shared sets, and the grid has a quarter of the cells to train on (docs/accuracy.md).
    layers: tuple[str, ...] = ("layer2", "layer3")
    image_size: int = 224  # the input's short side, or its side when keep_aspect is off
    keep_aspect: bool = True  # long side in proportion to the image (engine.features.input_shape)
    # DFR pools each stage with a small window so every location describes a region, not a pixel.
    region_kernel: int = 3
    latent_dim: int | None = None  # None: smallest dimension explaining `explained_variance` (DFR's rule)
    # DFR's rule keeps 90 %; a network trained denoising needs a wider latent to give good features back.
    explained_variance: float = 0.97
    epochs: int = 40
    batch_size: int = 4096  # feature vectors per step: a 1x1-conv AE sees every location independently
    # A small training set (a dozen images of a coarse grid) fills fewer batches than this, and 40 epochs of one
    # step each leave the network untrained: its batches are then made smaller, to this many steps an epoch.
    # At 8 the network was still learning at its last epoch on bottle's 34 images (26,656 vectors: 320 steps in
    # all), and it rebuilt the held-out good images with 28 % more error than at 32 (docs/accuracy.md).
    min_steps_per_epoch: int = 32
    learning_rate: float = 1e-3
    score_top_k: int = 10  # models saved before score_top_share: image score = mean of the k highest cells
    score_top_share: float | None = SCORE_TOP_SHARE  # image score = mean of this share of cells; None: score_top_k
    # The map: each stage's error weighed alike (the image score keeps the concatenated error, as PatchCore's
    # mixed rule does), smoothed over about one cell of the stride-8 grid. Balancing alone localised bottle better
    # and magnetic tile's large defects no better; the wider smoothing fills those defects' areas, and together
    # they raised pixel AUROC on bottle and magnetic tile in every seed, for 0.004 on KolektorSDD (docs/accuracy.md).
    sigma: float = 8.0
    stage_weighting: str = "score_concatenated_map_balanced"  # one of STAGE_WEIGHTINGS
    # Denoising: the standard deviation of the Gaussian noise added to the (standardised) features the autoencoder
    # takes in while it learns to give back the clean ones. An autoencoder that learns to pull noisy features back
    # to good ones also pulls a defect's features towards good ones, so its error there grows (docs/accuracy.md).
    # It acts on training only; scoring is unchanged.
    training_noise: float = TRAINING_NOISE
    # Hard examples: from epoch hard_after_epochs on, each step's loss is the mean error of the hard_share of its
    # vectors rebuilt worst. Rare good patterns (a glint, a tile's edge) are then learnt as well as the common
    # ones, instead of being outweighed by them, and score lower on good parts; defects in the good images are
    # learnt too, which the training's screen of its evidence names (engine.calibration.screen_outliers).
    # None: every vector's error counts alike, as before.
    hard_share: float | None = HARD_SHARE
    hard_after_epochs: int = 5
    seed: int = 0

    training_options: ClassVar[tuple[str, ...]] = ("epochs",)

    @classmethod
    def from_dict(cls, data: dict):
        # A model saved before denoising existed was trained without noise; its fine-tunes stay so. One saved
        # before the share scored the mean of score_top_k cells, and keeps scoring so. One saved before
        # min_steps_per_epoch took full batches whatever the training set's size, and one saved before hard_share
        # learnt from every vector alike. One saved before the mixed map without a weighting was concatenated.
        before = {"training_noise": 0.0, "score_top_share": None, "min_steps_per_epoch": 1, "hard_share": None,
                  "stage_weighting": "concatenated", "sigma": 4.0}
        return super().from_dict({**{key: value for key, value in before.items() if key not in data}, **data})

    def problem(self) -> str | None:
        """Why this config cannot be trained, in one line; None when it can."""
        if self.epochs < 1:
            return f"epochs must be at least 1, not {self.epochs}"
        if not 0 <= self.training_noise <= 10:
            return f"training noise {self.training_noise} must be from 0 to 10 (standard deviations)"
        if self.min_steps_per_epoch < 1:
            return f"steps per epoch must be at least 1, not {self.min_steps_per_epoch}"
        if self.hard_share is not None and not 0 < self.hard_share <= 1:
            return f"the hard-example share {self.hard_share} must be above 0 and at most 1"
        if self.hard_after_epochs < 0:
            return f"the epochs before hard examples must be at least 0, not {self.hard_after_epochs}"
        if self.score_top_share is not None and not 0 < self.score_top_share <= 1:
            return f"the image score's share of cells {self.score_top_share} must be above 0 and at most 1"
        return stage_weighting_problem(self.stage_weighting)


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
