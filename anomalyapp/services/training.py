"""Training use case: data folder -> fitted, calibrated, saved model. One generator for CLI and GUI."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from anomalyapp.core.cancel import CancelToken, check
from anomalyapp.core.config import IMAGE_SIZE_RANGE, CalibrationConfig
from anomalyapp.core.errors import DataError, ImageReadError
from anomalyapp.core.image_shapes import TrainedShapes
from anomalyapp.core.types import Progress, map_progress
from anomalyapp.core.verdicts import NORMALISED_THRESHOLD
from anomalyapp.data.datasets import discover_dataset
from anomalyapp.data.images import list_images, load_training_image


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DataError("device cuda was asked for, but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise DataError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return device


@dataclass
class TrainRequest:
    data: Path
    detector: str = "patchcore"
    out: Path | None = None
    backbone: str | None = None
    weights: str | None = None  # a file, "random", or None to search the usual places
    allow_download: bool = False
    image_size: int | None = None
    keep_aspect: bool | None = None  # None: decided from the training images (choose_keep_aspect)
    # Region of interest: rectangles (left, top, right, bottom) as shares of the image; None or (): the whole image.
    roi: tuple | None = None
    # Tiles at this scale (1.0: the image's own pixels); None: decided from smallest_defect (choose_framing).
    tile_scale: float | None = None
    smallest_defect: float | None = None  # px: the smallest defect that matters; None: no tiling unless asked
    coreset_ratio: float | None = None
    max_bank_size: int | None = None
    index: str | None = None
    epochs: int | None = None
    stage_weighting: str | None = None  # core.config.STAGE_WEIGHTINGS; None: the detector's default
    # PatchCore: the backbone stages the features come from, e.g. ("layer3", "layer4"); None: the default
    # (docs/accuracy.md: which stages, measured for the verdict and for the map).
    layers: tuple[str, ...] | None = None
    seed: int = 0
    device: str = "auto"
    defects: Path | None = None  # optional folder of known defective images: offers an F1-optimal threshold
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


@dataclass
class TrainResult:
    model_path: Path
    detector: str
    device: str
    train_images: int
    calibration_images: int
    skipped: list[ImageReadError]
    fit_seconds: float
    total_seconds: float
    summary: dict


def detector_names() -> tuple[str, ...]:
    from anomalyapp.engine.detector import DETECTORS

    return tuple(DETECTORS)


def detector_options(detector: str) -> tuple[str, ...]:
    """The ``TrainRequest`` fields that apply to ``detector`` beside backbone, image size and aspect."""
    from anomalyapp.engine.detector import config_class

    try:
        return config_class(detector).training_options
    except ValueError as error:
        raise DataError(str(error)) from None


# The stages every backbone offers features from, shallow (fine detail, stride 4) to deep (stride 32).
BACKBONE_STAGES = ("layer1", "layer2", "layer3", "layer4")


def build_config(request: TrainRequest):
    """The detector's config from its defaults and the request; only the options of that detector are read."""
    from anomalyapp.engine.detector import config_class

    try:
        cls = config_class(request.detector)
    except ValueError as error:
        raise DataError(str(error)) from None
    overrides = {name: getattr(request, name) for name in cls.training_options}
    overrides |= {"backbone": request.backbone, "image_size": request.image_size, "keep_aspect": request.keep_aspect,
                  "stage_weighting": request.stage_weighting}
    if overrides.get("layers") is not None:  # a detector that offers the choice of stages
        layers = tuple(overrides["layers"])
        if not layers or any(layer not in BACKBONE_STAGES for layer in layers) or len(set(layers)) != len(layers):
            raise DataError(f"stages {', '.join(layers) or '(none)'}: name one or more of {', '.join(BACKBONE_STAGES)}, "
                            "each once")
        overrides["layers"] = tuple(sorted(layers, key=BACKBONE_STAGES.index))
    if (request.roi or request.tile_scale is not None) and not hasattr(cls(), "tile_scale"):
        raise DataError(f"the {request.detector} detector offers no region of interest or tiles")
    if request.roi is not None:
        overrides["roi"] = tuple(tuple(float(v) for v in rectangle) for rectangle in request.roi)
    overrides["tile_scale"] = request.tile_scale
    if request.smallest_defect is not None and not request.smallest_defect > 0:
        raise DataError(f"smallest defect {request.smallest_defect} px must be above 0")
    config = replace(cls(seed=request.seed), **{k: v for k, v in overrides.items() if v is not None})
    smallest, largest = IMAGE_SIZE_RANGE
    if not smallest <= config.image_size <= largest:
        raise DataError(f"image size {config.image_size} is out of range ({smallest} to {largest})")
    framing_problem = getattr(config, "framing_problem", None)  # configs without core.config.FramingConfig
    problem = (framing_problem() if framing_problem else None) or config.problem()
    if problem:
        raise DataError(problem)
    return config


def choose_framing(config, request: TrainRequest, paths: list[Path]):
    """The config with its tile scale chosen from the images' size and the smallest defect that matters.

    An explicit ``tile_scale`` is kept; without ``smallest_defect`` nothing is tiled (today's squeezed path).
    The size is the first readable training image's: a fixed camera gives one size.
    """
    from anomalyapp.engine.framing import choose_tile_scale

    if request.tile_scale is not None or not request.smallest_defect or not hasattr(config, "tile_scale"):
        return config
    for path in paths[:ASPECT_SAMPLE]:
        try:
            height, width = load_training_image(path).pixels.shape[:2]
        except ImageReadError:
            continue
        scale = choose_tile_scale(height, width, config.image_size, request.smallest_defect, config.roi)
        return replace(config, tile_scale=scale)
    return config


def framing_note(config) -> str | None:
    """One line on the region and tiles a training uses, or None when it sees whole images."""
    parts = []
    if getattr(config, "roi", ()):
        parts.append(f"region of interest: {len(config.roi)} rectangle{'s' if len(config.roi) > 1 else ''}")
    if getattr(config, "tile_scale", None) is not None:
        parts.append(f"tiles of {config.image_size} px at {config.tile_scale:g} x the image's pixels, "
                     f"overlapping by {config.tile_overlap:.0%}")
    return "; ".join(parts) or None


# Training images whose aspects (height / width) lie within this factor of each other count as one shape.
SAME_ASPECT_SPREAD = 1.25
ASPECT_SAMPLE = 24


def choose_keep_aspect(paths: list[Path]) -> bool:
    """Keep the images' aspect when they share one; squeeze them into a square when their shapes vary.

    A fixed camera or crop gives one aspect, and keeping it keeps thin defects thin (KolektorSDD's 500x1250
    parts: pixel AUROC 0.83 squeezed, 0.94 kept). Crops of varied shapes (magnetic tile: aspects from 0.4 to
    2.5) did better squeezed, each to the same square. Up to ``ASPECT_SAMPLE`` images spread over the list
    are read to decide; unreadable ones are left to the fit, which reports them.
    """
    step = max(1, len(paths) // ASPECT_SAMPLE)
    aspects = []
    for path in paths[::step][:ASPECT_SAMPLE]:
        try:
            height, width = load_training_image(path).pixels.shape[:2]
        except ImageReadError:
            continue
        aspects.append(height / width)
    if not aspects:
        return True
    return max(aspects) / min(aspects) <= SAME_ASPECT_SPREAD


def capture_order_key(path: Path) -> tuple:
    """Natural name order (``img9`` before ``img10``): cameras and line software number files as they capture."""
    import re

    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower())
                 for part in re.split(r"(\d+)", path.name) if part)


def split_holdout(paths: list[Path], config: CalibrationConfig, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Split good images into (fit, held out for calibration): the held-out ones are the last in capture order.

    New batches drift; the latest images stand in for them better than a random draw of the same batch.
    ``seed`` is unused (the split is no longer random) and kept for callers.
    """
    if len(paths) < config.min_holdout + 1:
        raise DataError(
            f"at least {config.min_holdout + 1} good images are needed ({config.min_holdout} are held out to set "
            f"the threshold); found {len(paths)}"
        )
    count = max(config.min_holdout, int(round(len(paths) * config.holdout_fraction)))
    count = min(count, len(paths) - 1)
    ordered = sorted(paths, key=capture_order_key)
    return ordered[: len(paths) - count], ordered[len(paths) - count :]


def fingerprint(paths: list[Path]) -> str:
    """sha256 over the names and contents of the training files: which images made this model."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode())
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"unreadable")
    return digest.hexdigest()


def iter_pixels(paths: list[Path], skipped: list[ImageReadError], shapes: list[tuple[int, int]] | None = None
                ) -> Iterator[np.ndarray]:
    """RGB arrays of the readable images; unreadable or too small ones are recorded in ``skipped`` and passed over.
    ``shapes``, when given, gets the (height, width) of each image yielded."""
    for path in paths:
        try:
            pixels = load_training_image(path).to_rgb()
        except ImageReadError as error:
            skipped.append(error)
            continue
        if shapes is not None:
            shapes.append(pixels.shape[:2])
        yield pixels


def _at_least_one(images: Iterator[np.ndarray], message: str) -> Iterator[np.ndarray]:
    """Pass the images on; a ``DataError(message)`` when there were none, before the detector meets an empty set."""
    count = 0
    for image in images:
        count += 1
        yield image
    if count == 0:
        raise DataError(message)


def score_images(detector, paths: list[Path], skipped: list[ImageReadError], cancel, done: int = 0,
                 total: int | None = None, what: str = "held-out", seconds: list[float] | None = None
                 ) -> Generator[Progress, None, tuple[list[float], list[float]]]:
    """Raw scores and anomaly-map maxima of images, one at a time (batch 1 keeps memory flat); each image is a
    step of the calibrate stage, counted after ``done`` of its ``total`` steps. ``seconds``, when given, receives
    each image's time from reading it to its score and map, as a station inspects a part (the caller's time
    between steps left out)."""
    total = done + len(paths) if total is None else total
    scores, maxima = [], []
    started = time.perf_counter()
    for index, pixels in enumerate(iter_pixels(paths, skipped)):
        check(cancel)
        raw, maps = detector.raw_predict([pixels])
        scores.append(float(raw[0]))
        maxima.append(float(maps[0].max()))
        if seconds is not None:
            seconds.append(time.perf_counter() - started)
        yield Progress("calibrate", done + index + 1, total, f"scored {what} {index + 1}/{len(paths)}")
        started = time.perf_counter()
    return scores, maxima


def _counting_held_out(job: Generator[Progress, None, object], held_out: int) -> Generator[Progress, None, object]:
    """``job``'s progress with the calibrate stage's total raised by the ``held_out`` images scored after it, so
    that the stage reads as one: it is not done until they are, and its pace counts them."""
    return map_progress(job, lambda progress: replace(progress, total=progress.total + held_out)
                        if progress.stage == "calibrate" and progress.total else progress)


def _shown_name(path: Path, data: Path) -> str:
    """An image's path as the user knows it: relative to the data folder when inside it."""
    try:
        return Path(path).resolve().relative_to(Path(data).resolve()).as_posix()
    except ValueError:
        return str(path)


def suspect_messages(calibration) -> list[str]:
    """One line per good image whose unseen score is an outlier among the good ones, saying what to do."""
    from anomalyapp.engine.calibration import rate_percent

    suspects = calibration.suspects or []
    if not suspects:
        return []
    one = len(suspects) == 1
    if calibration.outliers_apart:
        effect = (f"counted apart as a part that will be rejected ({len(suspects)} of {len(calibration.good_scores)} "
                  f"good images, {100 * calibration.suspects_share:.1f} % of the {100 * calibration.target_false_reject_rate:g} % "
                  f"allowed), so that {'it does' if one else 'they do'} not stretch the threshold")
    elif calibration.outliers_left_out:
        share = f"{100 * calibration.suspects_share:.1f} %"
        if_good, _, if_good_high = calibration.expected_false_rejects_if_suspects_good()
        effect = (f"at {len(suspects)} of {len(calibration.good_scores)} good images ({share}), parts like "
                  f"{'it' if one else 'them'} would by themselves use up the "
                  f"{100 * calibration.target_false_reject_rate:g} % of false rejects allowed, so "
                  f"{'it is' if one else 'they are'} taken as defective: judged NG, and the threshold is set from the "
                  f"other good images (if {'it is a good part' if one else 'they are good parts'}, expect about "
                  f"{rate_percent(if_good)} % false rejects, up to {rate_percent(if_good_high)} %)")
    else:
        without = calibration.normalise_score(suspects[0]["threshold_without"])
        effect = (f"{'it alone holds' if one else f'these {len(suspects)} hold'} the threshold up: without "
                  f"{'it' if one else 'them'} the threshold would be {without:.2f}")
    return [
        f"good image {suspect['name']} scores like a defect when the model has not seen it "
        f"({calibration.normalise_score(suspect['score']):.2f} on the scale where the threshold is 0.50); {effect}. "
        "Look at it: if it is defective, move it out of the good images and train again (in a project: the "
        "threshold panel's Set aside, or anomalyapp set-aside PROJECT IMAGE, which keep a record of the move); if "
        "it is a good part, add more good images that show what it shows, so that the model learns it"
        for suspect in suspects
    ]


# The batch size the training output states its expected count of false rejects for.
BATCH_OF_PARTS = 100


def expected_rate_text(calibration, test_good: int = 0) -> str | None:
    """'expected false rejects 1.0 % (0.3-2.4 %) on new good parts; of 100, 0-3 judged NG (90 %)' at the
    threshold, or None (old rule). The count is what a batch shows, its own chance included: the figure an
    evaluation's good images are compared with. Where the training folder has ``test_good`` good test images, the
    count for them follows ('; of the 20 good test images here, 0-2 (0-10 %)'): what ``evaluate`` should find, said
    before it runs, since a rate measured on 20 parts moves in steps of 5 % and its interval is not the rate's."""
    from anomalyapp.engine.calibration import describe_rate

    if calibration.expected_false_reject_rate is None:
        return None
    low, high = calibration.expected_false_reject_interval
    text = describe_rate(calibration.expected_false_reject_rate, low, high)
    batch = calibration.expected_false_reject_count(NORMALISED_THRESHOLD, BATCH_OF_PARTS)
    if batch is not None:
        text += f"; of {BATCH_OF_PARTS}, {batch[0]}-{batch[1]} judged NG (90 %)"
    here = calibration.expected_false_reject_count(NORMALISED_THRESHOLD, test_good) if test_good else None
    if here is not None:
        text += (f"; of the {test_good} good test images here, {here[0]}-{here[1]} "
                 f"({100 * here[0] / test_good:.0f}-{100 * here[1] / test_good:.0f} %)")
    return text


def inspection_text(seconds: list[float]) -> str | None:
    """'inspection: about 156 ms a part on this machine (median of 8 held-out images, reading included)', or None
    without any: what the model's choices (its stages, its image size, its bank) cost a station per part, measured
    as the training scored its held-out images one at a time, as a station does."""
    if not seconds:
        return None
    return (f"inspection: about {part_time(float(np.median(seconds)))} a part on this machine (median of "
            f"{len(seconds)} held-out image{'s' if len(seconds) > 1 else ''}, reading included)")


# The number of good images the training output compares a smaller set's interval with.
MANY_GOOD_IMAGES = 200


def more_images_text(calibration) -> str | None:
    """'with 40 good images the interval is 0.2-4.3 %; 200 would narrow it to 0.4-2.4 %', or None (the old rule,
    or already that many): what collecting more good images would buy, since the interval depends on their number."""
    from anomalyapp.engine.calibration import interval_at_target, rate_percent

    count = len(calibration.good_scores)
    target = calibration.target_false_reject_rate
    if calibration.expected_false_reject_rate is None or count >= MANY_GOOD_IMAGES:
        return None
    low, high = calibration.expected_false_reject_interval
    try:
        many_low, many_high = interval_at_target(MANY_GOOD_IMAGES, target)
    except ValueError:  # a target so high that the empirical scores, not the tail, set the threshold
        return None
    return (f"with {count} good images the interval is {rate_percent(low)}-{rate_percent(high)} %; "
            f"{MANY_GOOD_IMAGES} would narrow it to {rate_percent(many_low)}-{rate_percent(many_high)} %")


def default_model_path(data: Path, detector: str) -> Path:
    return Path("models") / f"{data.resolve().name}-{detector}"


def train(request: TrainRequest, cancel: CancelToken | None = None, *, actor=None
          ) -> Generator[Progress, None, TrainResult]:
    """Fit, calibrate and save a model; yields progress and warnings, returns a ``TrainResult``.

    A model written into a project (``request.out`` in its ``models/``) changes what the station decides:
    ``actor`` (the acting ``User``) must be allowed to train there, checked before any work, and the model
    becomes the project's version in use, audited. Outside a project no account is involved.
    """
    from anomalyapp.services import auth
    from anomalyapp.services.project import open_model_change, use_model_version

    records = open_model_change(request.out or default_model_path(request.data, request.detector), actor, auth.TRAIN)
    try:
        result = yield from _train(request, cancel)
        if records is not None:
            use_model_version(records, result.model_path, "trained", actor)
        return result
    finally:
        if records is not None:
            records.close()


def _train(request: TrainRequest, cancel: CancelToken | None) -> Generator[Progress, None, TrainResult]:
    from anomalyapp.engine.bundle import reloads_alike, save_model
    from anomalyapp.engine.calibration import calibrate
    from anomalyapp.engine.detector import build_detector
    from anomalyapp.engine.weights import resolve_weights

    started = time.perf_counter()
    config = build_config(request)
    device = resolve_device(request.device)
    resolved = resolve_weights(config.backbone, request.weights, request.allow_download)
    dataset = discover_dataset(request.data)
    if not dataset.train_good:
        raise DataError(f"no good training images in {request.data}")
    if dataset.validation_good:
        fit_paths, calibration_paths = dataset.train_good, dataset.validation_good
        source = f"validation folder ({len(calibration_paths)} images)"
    else:
        fit_paths, calibration_paths = split_holdout(dataset.train_good, request.calibration, request.seed)
        source = f"{len(calibration_paths)} of {len(dataset.train_good)} good images held out"
    defect_paths = list_images(request.defects) if request.defects else []
    if request.keep_aspect is None:
        config = replace(config, keep_aspect=choose_keep_aspect(dataset.train_good))
    config = choose_framing(config, request, dataset.train_good)

    yield Progress("setup", 0, None, f"backbone {config.backbone} ({resolved.source}) on {device}")
    if config.keep_aspect:
        input_note = f"input: short side {config.image_size} px, long side in proportion to each image"
    elif request.keep_aspect is None:
        input_note = (f"input: {config.image_size} x {config.image_size} px (the training images' shapes vary, "
                      "so each is squeezed to a square)")
    else:
        input_note = f"input: {config.image_size} x {config.image_size} px"
    yield Progress("setup", 0, None, input_note)
    if framing_note(config):
        yield Progress("setup", 0, None, framing_note(config))
    detector, weights_sha = build_detector(request.detector, config, resolved, device)

    skipped: list[ImageReadError] = []
    fit_shapes: list[tuple[int, int]] = []  # what the model learned: inspection refuses images shaped unlike them
    reported = 0
    fit_started = time.perf_counter()
    try:
        unusable = (f"no image to fit in {request.data} could be used ({len(fit_paths)} tried, {len(calibration_paths)} "
                    "held out; each reason is above)")
        for progress in detector.fit(_at_least_one(iter_pixels(fit_paths, skipped, fit_shapes), unusable),
                                     len(fit_paths), cancel):
            while reported < len(skipped):
                yield Progress("warning", reported, None, f"skipped {skipped[reported]}")
                reported += 1
            yield progress
    except DataError:
        for _ in iter_pixels(calibration_paths, skipped):  # the held-out ones' reasons too, when they have any
            pass
        for error in skipped[reported:]:  # every file's reason, then the one-line error
            yield Progress("warning", 0, None, f"skipped {error}")
        raise
    fit_seconds = time.perf_counter() - fit_started
    fitted_count = len(fit_paths) - len(skipped)

    held_out = len(calibration_paths) + len(defect_paths)
    yield Progress("calibrate", 0, fitted_count + held_out, "scoring each fitted image without itself")
    unseen_scores, unseen_maxima = yield from _counting_held_out(detector.unseen_scores(
        iter_pixels(fit_paths, []), fitted_count, cancel,  # unreadable ones were reported by the fit
        reference=lambda: iter_pixels(calibration_paths, []),  # unreadable ones are reported when scored below
    ), held_out)
    yield Progress("calibrate", fitted_count, fitted_count + held_out, "scoring held-out good images")
    before = len(skipped)
    inspect_seconds: list[float] = []
    good_scores, good_maxima = yield from score_images(detector, calibration_paths, skipped, cancel, fitted_count,
                                                       fitted_count + held_out, seconds=inspect_seconds)
    defect_scores, _ = yield from score_images(detector, defect_paths, skipped, cancel,
                                               fitted_count + len(calibration_paths), fitted_count + held_out,
                                               "known defect")
    for error in skipped[before:]:
        yield Progress("warning", 0, None, f"skipped {error}")
    if not good_scores:
        raise DataError("none of the held-out good images could be read; the threshold cannot be set")
    evidence = {"held_out": len(good_scores), "fitted_unseen": len(unseen_scores)}
    unreadable = {error.path for error in skipped}
    names = [_shown_name(path, request.data) for path in calibration_paths + fit_paths if str(path) not in unreadable]
    detector.calibration = calibrate(
        good_scores + unseen_scores, good_maxima + unseen_maxima, source=source + " + each fitted image scored unseen",
        target_false_reject_rate=request.calibration.target_false_reject_rate, sigmas=request.calibration.sigmas,
        defect_scores=defect_scores, evidence=evidence,
        names=names if len(names) == len(good_scores) + len(unseen_scores) else None,
    )
    for message in suspect_messages(detector.calibration):
        yield Progress("warning", 0, None, message)
    expected = expected_rate_text(detector.calibration, sum(not item.is_anomalous for item in dataset.test))
    if expected:
        yield Progress("calibrate", 0, None, expected)
        more = more_images_text(detector.calibration)
        if more:
            yield Progress("calibrate", 0, None, more)
    inspection = inspection_text(inspect_seconds)
    if inspection:
        yield Progress("calibrate", 0, None, inspection)
    check(cancel)

    out = request.out or default_model_path(request.data, request.detector)
    backbone = {
        "name": config.backbone,
        "source": resolved.source,
        "path": str(resolved.path) if resolved.path else None,
        "file": resolved.path.name if resolved.path else None,
        "weights_sha256": weights_sha,
    }
    training_set = {
        "root": str(Path(request.data).resolve()),
        "layout": dataset.layout,
        "fit_images": fitted_count,
        "calibration_images": len(good_scores),
        "skipped": [str(e) for e in skipped],
        "fingerprint": fingerprint(fit_paths + calibration_paths),
        "image_shapes": TrainedShapes.of(fit_shapes).to_dict(),
    }
    # The saved folder, loaded as a station loads it, must score a held-out image as the model just calibrated does.
    probe = next(iter_pixels(calibration_paths, []))
    yield Progress("save", 0, 1, "saving the model and checking that, loaded again, it scores alike")
    path = save_model(detector, out, backbone=backbone, training_set=training_set, extra={"device_trained": device},
                      check=reloads_alike(detector, probe, out, device))
    summary = {"threshold_raw": detector.calibration.image_threshold, "calibration": detector.calibration.source,
               "expected_false_rejects": expected,
               "inspect_seconds": float(np.median(inspect_seconds)) if inspect_seconds else None,
               "suspect_good_images": [suspect["name"] for suspect in detector.calibration.suspects or []]}
    summary |= detector.summary()
    yield Progress("save", 1, 1, f"saved {path} (loaded again, it scores a held-out image alike)")
    return TrainResult(
        model_path=path,
        detector=request.detector,
        device=device,
        train_images=fitted_count,
        calibration_images=len(good_scores),
        skipped=skipped,
        fit_seconds=fit_seconds,
        total_seconds=time.perf_counter() - started,
        summary=summary,
    )


@dataclass
class Estimate:
    images: int
    seconds: float
    bank_size: int | None
    memory_mb: float
    per_image_ms: float
    tiles_per_image: int = 1
    stages: tuple[tuple[str, float], ...] = ()  # ``seconds`` by stage, in the order the training runs them
    inspect_ms: float | None = None  # what the model will take to read and score a part here; None: not timed

    def describe(self) -> str:
        bank = f", memory bank {self.bank_size:,} patches" if self.bank_size else ""
        tiles = f" ({self.tiles_per_image} tiles each)" if self.tiles_per_image > 1 else ""
        # The stage choice trades inspection speed for recall: a line that needs 20 parts a second sees it here,
        # before the training rather than after.
        inspection = f"; then inspection about {part_time(self.inspect_ms / 1000)} a part" if self.inspect_ms else ""
        return (f"{self.images} images{tiles}: about {_duration(self.seconds)}, peak memory about "
                f"{self.memory_mb:,.0f} MB{bank}{inspection}")

    def describe_stages(self) -> str | None:
        """'features 6 s, train 40 s, fold 1/3 27 s, ...': where the time goes, or None without a split."""
        if not self.stages:
            return None
        return ", ".join(f"{stage} {_duration(seconds, least=0)}" for stage, seconds in self.stages)


def part_time(seconds: float) -> str:
    """'92 ms' or '5.7 s' (a tiled 2048 px part): what inspecting one part takes, in the unit read at a glance."""
    milliseconds = round(1000 * seconds)
    return f"{milliseconds} ms" if milliseconds < 1000 else f"{seconds:,.1f} s"


def _duration(seconds: float, least: int = 1) -> str:
    """'2 min 43 s' or '37 s', whole seconds, at least ``least``."""
    minutes, rest = divmod(max(least, round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


# Images an estimate measures on, spread over the folder. The autoencoder's latent width (and so its step time)
# follows the variety of the sample: from the first 3 magnetic tiles it was 68 against the whole set's 101.
ESTIMATE_SAMPLE = 8


def estimate(request: TrainRequest, sample: int = ESTIMATE_SAMPLE, cancel: CancelToken | None = None) -> Estimate:
    """Time and memory of a training, measured on a few images before committing to the whole run.

    Feature extraction is timed on ``sample`` images; the detector costs the rest of its fit from them
    (``training_cost``: PatchCore's coreset, the autoencoder's epochs) and the memory of its feature table.
    ``cancel`` is checked between images and stages: a training that starts stops its estimate rather than share
    the CPU with it.
    """
    from anomalyapp.engine.detector import build_detector
    from anomalyapp.engine.weights import resolve_weights

    config = build_config(request)
    device = resolve_device(request.device)
    dataset = discover_dataset(request.data)
    paths = dataset.train_good
    if request.keep_aspect is None:
        config = replace(config, keep_aspect=choose_keep_aspect(paths))
    config = choose_framing(config, request, paths)
    skipped: list[ImageReadError] = []
    started = time.perf_counter()
    images = []
    for image in iter_pixels(paths[:: max(1, len(paths) // sample)][:sample], skipped):
        check(cancel)
        images.append(image)
    if not images:
        raise DataError(f"none of the {sample} sample images in {request.data} could be read")
    read_seconds = (time.perf_counter() - started) / (len(images) + len(skipped))
    detector, _ = build_detector(request.detector, config, resolve_weights(config.backbone, request.weights), device)
    check(cancel)
    # The detector costs the images it fits; the held-out ones are only scored.
    fitted = len(paths) if dataset.validation_good else len(split_holdout(paths, request.calibration)[0])
    cost = detector.training_cost(images, fitted, read_seconds)
    return Estimate(len(paths), cost.seconds, cost.bank_size, cost.memory_mb, cost.per_image_seconds * 1000,
                    cost.tiles_per_image, cost.stages,
                    None if cost.inspect_seconds is None else cost.inspect_seconds * 1000)
