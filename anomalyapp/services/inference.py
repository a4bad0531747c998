"""Inference use cases: a loaded model scoring images, folders, and writing results with overlays."""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from anomalyapp.core.cancel import CancelToken, check
from anomalyapp.core.csv_cells import csv_text
from anomalyapp.core.errors import DataError, ImageReadError, ImageRefused
from anomalyapp.core.files import write_text_atomically
from anomalyapp.core.image_names import folder_of
from anomalyapp.core.image_shapes import TrainedShapes
from anomalyapp.core.types import Prediction, Progress
from anomalyapp.data.images import encode_image, images_in, is_image_file, load_image, save_encoded_image, save_image
from anomalyapp.services import rendering
from anomalyapp.services.training import resolve_device


@dataclass
class ImageResult:
    path: Path
    prediction: Prediction | None
    error: ImageReadError | None = None
    seconds: float = 0.0
    pixels: object = None  # the stored pixels, kept only when the caller asks for them

    @property
    def ok(self) -> bool:
        return self.prediction is not None


@dataclass(frozen=True)
class ModelSummary:
    description: str  # "patchcore / resnet18 (2026-11-30 10:12)", ", corrected" for a correction's version
    good_scores: list[float]  # held-out good images, normalised
    defect_scores: list[float]  # labelled defects the calibration saw, normalised
    calibration: object  # the model's engine Calibration (expected false rejects, the Review band)
    # The good training images the calibration named as scoring like defects, where they still are on disk.
    suspect_images: list[Path] = field(default_factory=list)


class InferenceSession:
    """A model loaded once, then asked about one image after another. Thread-confined: one per worker."""

    def __init__(self, model_path: str | os.PathLike, *, device: str = "auto", weights: str | None = None):
        from anomalyapp.engine.bundle import load_model
        from anomalyapp.engine.manifest import ModelManifest

        self.model_path = Path(model_path)
        self.device = resolve_device(device)
        self._weights = weights
        self.detector, manifest = load_model(self.model_path, weights=weights, device=self.device)
        self.manifest: ModelManifest = ModelManifest.of(manifest)
        # The shapes the model learned (None for a model saved before they were recorded: nothing is refused).
        self.trained_shapes = TrainedShapes.from_dict(self.manifest.training_set.get("image_shapes"))

    @property
    def calibration(self):
        return self.detector.calibration

    def reload(self) -> None:
        """The detector as its saved folder holds it: after a change in place that was not saved (a correction
        whose save failed or was cancelled), it must not go on scoring with what it learnt."""
        from anomalyapp.engine.bundle import load_model

        self.detector, _ = load_model(self.model_path, weights=self._weights, device=self.device)

    def summary(self) -> ModelSummary:
        """What the window shows about the loaded model: its name and its calibration's reference scores,
        on the normalised scale (the calibration's own rule, ``Calibration.normalise_score``)."""
        manifest, calibration = self.manifest, self.calibration
        return ModelSummary(
            description=manifest.description,
            good_scores=[calibration.normalise_score(s) for s in calibration.good_scores],
            defect_scores=[calibration.normalise_score(s) for s in calibration.defect_scores],
            calibration=calibration,
            suspect_images=self.suspect_images(),
        )

    def suspect_images(self) -> list[Path]:
        """The files of the good training images the calibration named (``Calibration.suspects``: their names
        are relative to the training data's folder, which the manifest keeps), those that still exist."""
        root = Path(self.manifest.training_set.get("root") or ".")
        found = []
        for suspect in self.calibration.suspects or []:
            path = Path(suspect["name"])
            path = path if path.is_absolute() else root / path
            if path.is_file():
                found.append(path)
        return found

    def shape_problem(self, pixels) -> str | None:
        """Why the model cannot judge an image shaped like ``pixels`` (``core.image_shapes``); None when it can."""
        if self.trained_shapes is None:
            return None
        return self.trained_shapes.problem(pixels.shape[0], pixels.shape[1])

    def predict_pixels(self, pixels, name: str = "camera frame") -> Prediction:
        """Score an image already in memory (gray or RGB array, any supported type); one shaped unlike the
        training images is refused (``ImageRefused`` naming it as ``name``)."""
        import numpy as np

        problem = self.shape_problem(pixels)
        if problem:
            raise ImageRefused(name, problem)
        rgb = np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels
        return self.detector.predict(rgb)

    def predict_path(self, path: str | os.PathLike, keep_pixels: bool = False) -> ImageResult:
        started = time.perf_counter()
        try:
            image = load_image(path)
        except ImageReadError as error:
            return ImageResult(Path(path), None, error)
        problem = self.shape_problem(image.pixels)
        if problem:
            return ImageResult(Path(path), None, ImageRefused(path, problem), time.perf_counter() - started,
                               image.pixels if keep_pixels else None)  # read, so it can be shown as it is
        prediction = self.detector.predict(image.to_rgb())
        return ImageResult(
            Path(path), prediction, None, time.perf_counter() - started, image.pixels if keep_pixels else None
        )

    def predict_paths(
        self, paths: list[Path], cancel: CancelToken | None = None, keep_pixels: bool = False
    ) -> Generator[ImageResult, None, None]:
        for path in paths:
            check(cancel)
            yield self.predict_path(path, keep_pixels)


def image_pixels(path: str | os.PathLike):
    """An image's pixels as its file holds them (gray and 16-bit kept), to show it without inspecting it; an
    unreadable file is an ``ImageReadError`` naming it and the reason."""
    return load_image(path).pixels


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files and folders -> image paths in order; a missing input is a ``DataError``.

    Folders are read with their subfolders (an MVTec ``test/`` holds one folder per defect class): a
    folder's own images first, then each subfolder's in name order. A folder tree without any image is an
    error naming the folder.
    """
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = images_in_tree(path)
            if not found:
                raise DataError(f"no images (png, jpg, bmp, tif) in {path} or its subfolders")
            paths.extend(found)
        elif path.is_file():
            if not is_image_file(path):
                raise DataError(f"{path} is not an image file (png, jpg, bmp, tif)")
            paths.append(path)
        else:
            raise DataError(f"input {path} does not exist")
    if not paths:
        raise DataError("no input images given")
    return paths


def images_in_tree(folder: Path) -> list[Path]:
    """The images in ``folder`` and below it (hidden folders skipped), depth first, each level by name."""
    found = images_in(folder)
    try:
        subfolders = sorted((p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")),
                            key=lambda p: p.name)
    except OSError as error:
        raise DataError(f"cannot list the folders in {folder}: {error.strerror or error}") from None
    for subfolder in subfolders:
        found.extend(images_in_tree(subfolder))
    return found


def _overlay_name(path: Path, used: set[str]) -> str:
    """``<stem>_overlay.png``; inputs that share a stem (test/good/000.png, test/scratch/000.png) get their
    folder's name in front, and a counter as the last resort."""
    name = f"{path.stem}_overlay.png"
    if name in used:
        name = f"{path.parent.name}_{path.stem}_overlay.png"
    counter = 1
    while name in used:
        counter += 1
        name = f"{path.parent.name}_{path.stem}_{counter}_overlay.png"
    used.add(name)
    return name


def run_folder(parent: str | os.PathLike) -> Path:
    """A new, empty folder ``parent/run-YYYYmmdd-HHMMSS-<pid>[-n]`` for one predict run.

    Created with an exclusive mkdir, so two runs (two processes, or two calls in one) never write into the
    same folder, and one run's table never describes another run's overlays.
    """
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create output folder {parent}: {exc.strerror or exc}") from None
    stem = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    for attempt in range(1000):
        folder = parent / (stem if attempt == 0 else f"{stem}-{attempt + 1}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
        except OSError as exc:
            raise DataError(f"cannot create output folder {folder}: {exc.strerror or exc}") from None
    raise DataError(f"cannot create a new run folder in {parent}: {stem} and its numbered variants all exist")


RESULTS_COLUMNS = ["path", "score", "verdict", "raw_score", "error", "folder"]


class RunOutput:
    """What one predict run writes, fed its results in input order: the rows of ``results.csv``, one overlay
    per scored image (in ``out``, when there is one) and the counts. Shared by the plain run and the cluster
    run (``services.batch_scoring``), so both write the same table and the same overlay names."""

    def __init__(self, out: Path | None):
        self.out = out
        self.rows: list[list[str]] = []
        self.counts = {"OK": 0, "NG": 0, "error": 0}
        self._overlay_names: set[str] = set()

    def add(self, result: ImageResult, overlay_png: bytes | None = None) -> str:
        """Record one result (its overlay drawn from ``result.pixels``, or given already encoded); its verdict."""
        if result.ok:
            verdict = result.prediction.verdict
            self.rows.append([str(result.path), f"{result.prediction.score:.6f}", verdict,
                              f"{result.prediction.raw_score:.6f}", "", folder_of(result.path)])
            if self.out is not None:
                target = self.out / _overlay_name(result.path, self._overlay_names)
                if overlay_png is not None:
                    save_encoded_image(target, overlay_png)
                elif result.pixels is not None:
                    save_image(target, rendering.overlay(result.pixels, result.prediction.anomaly_map))
                result.pixels = None
        else:
            verdict = "error"
            self.rows.append([str(result.path), "", "error", "", result.error.reason, folder_of(result.path)])
        self.counts[verdict] += 1
        return verdict

    def finish(self, images: int) -> dict:
        """Write ``results.csv`` (last, atomically) and return the run's summary."""
        if self.out is not None:
            write_text_atomically(self.out / "results.csv", csv_text(RESULTS_COLUMNS, self.rows))
        return {"images": images, **self.counts, "out": str(self.out) if self.out else None}


def overlay_png(result: ImageResult) -> bytes:
    """The overlay file ``RunOutput`` would write for a scored result that kept its pixels, as bytes."""
    return encode_image("overlay.png", rendering.overlay(result.pixels, result.prediction.anomaly_map))


def predict_to_folder(
    session: InferenceSession,
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike | None,
    cancel: CancelToken | None = None,
) -> Generator[Progress | ImageResult, None, dict]:
    """Score every input; with ``out_dir``, write ``results.csv`` and one overlay PNG per image into a new
    folder of this run's own inside it (``run_folder``).

    Yields each ``ImageResult`` as it comes and a ``Progress`` after it; returns a summary whose ``out`` is
    the run's folder. The CSV is written once at the end, atomically: a run folder without ``results.csv``
    is one that was interrupted, and runs at the same time never share a folder.
    """
    paths = expand_inputs(inputs)
    output = RunOutput(run_folder(out_dir) if out_dir else None)
    for index, result in enumerate(session.predict_paths(paths, cancel, keep_pixels=output.out is not None)):
        verdict = output.add(result)
        yield result
        yield Progress("predict", index + 1, len(paths), f"{result.path.name}: {verdict}")
    return output.finish(len(paths))
