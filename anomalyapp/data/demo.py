"""The built-in demo production line: metal washers on a dark belt, some scratched or spotted.

Images are drawn from a seed alone (numpy ``Generator`` plus OpenCV drawing), so the demo needs no download
and is the same on every machine. Each image has its own generator derived from (seed, split, index), so
changing one count does not change the other images.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import cv2
import numpy as np

from anomalyapp.core.errors import DataError
from anomalyapp.data.images import save_image

DEFECT_KINDS = ("scratch", "spot")
GENERATOR_NAME = "anomalyapp demo washers"
GENERATOR_VERSION = 1
MARKER_FILE = "demo.json"

# Defect area as a fraction of the image: visible, yet small like real surface defects.
_MIN_DEFECT_AREA, _MAX_DEFECT_AREA = 0.004, 0.025
_METAL_TINT = np.array([0.97, 1.0, 1.04], np.float32)  # a cool steel tone so the colour channels differ
_SPLITS = {"train": 0, "test_good": 1, "scratch": 2, "spot": 3}
# Small defects for high-resolution lines: spots this many pixels across, scratches this wide (and a few times
# as long), whatever the image size. Squeezed to 224 px, a 6 px spot on a 2048 px frame is under one pixel.
SMALL_DEFECT_PX = (4, 10)


def make_good_image(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """One defect-free washer, HxWx3 uint8 RGB."""
    return _make_part(rng, size)[0]


def make_defect_image(rng: np.random.Generator, size: int, kind: str, small: bool = False
                      ) -> tuple[np.ndarray, np.ndarray]:
    """A washer with one defect of ``kind`` and its mask (HxW uint8, 0 or 255).

    The part is drawn first from ``rng``, so the same seed gives the same washer as ``make_good_image`` and
    the two images differ only inside the mask. ``small``: the defect is ``SMALL_DEFECT_PX`` pixels across
    whatever ``size`` is, instead of a share of the image.
    """
    if kind not in DEFECT_KINDS:
        raise ValueError(f"unknown defect kind {kind!r}; expected one of {DEFECT_KINDS}")
    image, surface = _make_part(rng, size)
    if small:
        draw = _draw_small_scratch if kind == "scratch" else _draw_small_spots
        paint, colour = draw(rng, surface)
        mask = cv2.dilate(paint, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
        return _painted(image, paint, colour, rng), mask
    draw = _draw_scratch if kind == "scratch" else _draw_spots
    for _ in range(100):  # redraw until the area is in range; bounded so a tiny size cannot loop forever
        paint, colour = draw(rng, size, surface)
        mask = cv2.dilate(paint, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
        if _MIN_DEFECT_AREA <= np.count_nonzero(mask) / mask.size <= _MAX_DEFECT_AREA:
            break
    return _painted(image, paint, colour, rng), mask


def _painted(image: np.ndarray, paint: np.ndarray, colour: float, rng: np.random.Generator) -> np.ndarray:
    defective = image.copy()
    painted = paint > 0
    shade = colour + rng.normal(0.0, 4.0, np.count_nonzero(painted))
    defective[painted] = np.clip(shade[:, None] * _METAL_TINT, 0, 255).astype(np.uint8)
    return defective


def generate_demo(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    n_train: int = 40,
    n_test_good: int = 12,
    n_test_per_defect: int = 12,
    size: int = 256,
    small_defects: bool = False,
) -> Path:
    """Write the demo as an MVTec category folder at ``out_dir`` and return it.

    The folder appears complete or not at all (built beside it, then renamed). A complete demo with the same
    settings is returned untouched; an older demo is replaced; any other existing folder is an error.
    ``small_defects``: defects ``SMALL_DEFECT_PX`` pixels across whatever ``size`` is (a high-resolution line).
    """
    if size < 64 or n_train < 1 or n_test_good < 0 or n_test_per_defect < 0:
        raise ValueError("the demo needs size >= 64, n_train >= 1 and non-negative test counts")
    target = Path(out_dir)
    settings = {
        "generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "seed": seed, "size": size,
        "n_train": n_train, "n_test_good": n_test_good, "n_test_per_defect": n_test_per_defect,
    }
    if small_defects:  # only when set, so the markers of demos written before stay equal
        settings["small_defects"] = True
    existing = _read_marker(target)
    if existing == settings:
        return target
    if target.exists() and existing is None:
        raise DataError(f"{target} already exists and is not a demo dataset; choose another folder")
    staging = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        _write_demo(staging, settings)
        if existing is not None:  # our own demo with other settings: swap it out
            stale = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old")
            os.rename(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(staging, target)
    except OSError as error:
        if _read_marker(target) == settings:  # another process finished the same demo first
            return target
        raise DataError(f"cannot write the demo dataset to {target}: {error.strerror or error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_demo(root: Path, settings: dict) -> None:
    seed, size = settings["seed"], settings["size"]

    def rng(split: str, index: int) -> np.random.Generator:
        return np.random.default_rng([seed, _SPLITS[split], index])

    def folder(*parts: str) -> Path:
        path = root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    train, test_good = folder("train", "good"), folder("test", "good")
    for index in range(settings["n_train"]):
        save_image(train / f"{index:03d}.png", make_good_image(rng("train", index), size))
    for index in range(settings["n_test_good"]):
        save_image(test_good / f"{index:03d}.png", make_good_image(rng("test_good", index), size))
    for kind in DEFECT_KINDS:
        images, masks = folder("test", kind), folder("ground_truth", kind)
        for index in range(settings["n_test_per_defect"]):
            image, mask = make_defect_image(rng(kind, index), size, kind, settings.get("small_defects", False))
            save_image(images / f"{index:03d}.png", image)
            save_image(masks / f"{index:03d}_mask.png", mask)
    (root / MARKER_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")


def _read_marker(folder: Path) -> dict | None:
    """The settings of a demo we wrote at ``folder``, or None if it is not one."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("generator") == GENERATOR_NAME else None


def _make_part(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A washer image (HxWx3 uint8) and the uint8 mask of its flat surface, away from the edges."""
    scale = size / 256
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = size / 2 + rng.uniform(-3, 3, 2) * scale  # parts sit a few pixels off centre
    radius = np.hypot(x - cx, y - cy)
    outer, inner = 0.36 * size * rng.uniform(0.985, 1.015), 0.14 * size

    belt = 38 + 4 * cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 2 * scale)
    brushed = cv2.blur(rng.normal(0, 1, (size, size)).astype(np.float32), (max(3, size // 10), 1))
    light = rng.uniform(0.6, 1.0)  # direction of the light across the part, in radians
    metal = (
        rng.uniform(140, 165)
        + 18 * ((x - cx) * np.cos(light) + (y - cy) * np.sin(light)) / outer
        + 6 * brushed / brushed.std()
        + rng.normal(0, 2, (size, size))
        - 30 * np.clip(1 - (outer - radius) / (4 * scale), 0, 1)  # bevelled rims are darker
        - 30 * np.clip(1 - (radius - inner) / (4 * scale), 0, 1)
    )
    alpha = np.clip(outer - radius + 0.5, 0, 1) * np.clip(radius - inner + 0.5, 0, 1)  # anti-aliased edges
    gray = belt * (1 - alpha) + metal * alpha
    image = np.clip(gray[:, :, None] * _METAL_TINT, 0, 255).astype(np.uint8)
    surface = ((radius < outer - 8 * scale) & (radius > inner + 8 * scale)).astype(np.uint8)
    return image, surface


def _pick_point(rng: np.random.Generator, surface: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(surface)
    index = rng.integers(len(ys))
    return np.array([xs[index], ys[index]], np.float64)


def _draw_scratch(rng: np.random.Generator, size: int, surface: np.ndarray) -> tuple[np.ndarray, float]:
    """A thin, slightly bent line on the surface; returns the painted pixels and their gray level."""
    start = _pick_point(rng, surface)
    angle, bend = rng.uniform(0, 2 * np.pi), rng.uniform(-0.35, 0.35)
    half = rng.uniform(0.12, 0.22) * size
    middle = start + half * np.array([np.cos(angle), np.sin(angle)])
    end = middle + half * np.array([np.cos(angle + bend), np.sin(angle + bend)])
    paint = np.zeros((size, size), np.uint8)
    thickness = max(1, round(rng.integers(2, 4) * size / 256))
    cv2.polylines(paint, [np.round([start, middle, end]).astype(np.int32)], False, 255, thickness, cv2.LINE_8)
    colour = rng.uniform(225, 245) if rng.random() < 0.5 else rng.uniform(35, 60)
    return paint & (surface * 255), colour


def _draw_spots(rng: np.random.Generator, size: int, surface: np.ndarray) -> tuple[np.ndarray, float]:
    """Two or three small blobs (dirt, pits or splashes) on the surface."""
    paint = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(2, 4)):
        centre = tuple(int(v) for v in _pick_point(rng, surface))
        major = rng.uniform(5, 9) * size / 256
        axes = (max(1, round(major)), max(1, round(major * rng.uniform(0.6, 1.0))))
        cv2.ellipse(paint, centre, axes, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_8)
    colour = rng.uniform(45, 75) if rng.random() < 0.7 else rng.uniform(215, 240)
    return paint & (surface * 255), colour


def _draw_small_spots(rng: np.random.Generator, surface: np.ndarray) -> tuple[np.ndarray, float]:
    """One or two round blobs ``SMALL_DEFECT_PX`` pixels across, on the surface."""
    low, high = SMALL_DEFECT_PX
    paint = np.zeros(surface.shape, np.uint8)
    for _ in range(rng.integers(1, 3)):
        centre = tuple(int(v) for v in _pick_point(rng, surface))
        cv2.circle(paint, centre, max(1, int(rng.integers(low, high + 1)) // 2), 255, -1, cv2.LINE_8)
    colour = rng.uniform(45, 75) if rng.random() < 0.7 else rng.uniform(215, 240)
    return paint & (surface * 255), colour


def _draw_small_scratch(rng: np.random.Generator, surface: np.ndarray) -> tuple[np.ndarray, float]:
    """A short straight scratch 2-3 pixels wide and 3-5 times ``SMALL_DEFECT_PX`` long, on the surface."""
    low, high = SMALL_DEFECT_PX
    start = _pick_point(rng, surface)
    angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(3 * low, 4 * high)
    end = start + length * np.array([np.cos(angle), np.sin(angle)])
    paint = np.zeros(surface.shape, np.uint8)
    cv2.line(paint, tuple(np.round(start).astype(int)), tuple(np.round(end).astype(int)), 255,
             int(rng.integers(2, 4)), cv2.LINE_8)
    colour = rng.uniform(225, 245) if rng.random() < 0.5 else rng.uniform(35, 60)
    return paint & (surface * 255), colour
