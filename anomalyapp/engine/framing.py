"""What of each image a detector sees: the region of interest and the tiles, and the map put back together.

A model with a region of interest (``roi``) or tiling (``tile_scale``) wraps its detector in ``FramedDetector``,
which keeps the detector contract (engine.detector): the services, the CLI, the camera and the window call it
like any detector and never learn that it tiles.

- Region of interest: each image is cropped to the bounding box of the rectangles, and the pixels of that box
  outside every rectangle are painted a flat mid-gray before the backbone sees them, so nothing outside the
  region reaches a training patch or a score (a defect outside cannot even bleed in through the receptive
  field). The anomaly map is zero outside the region; the image score comes from inside it.
- Tiling: the (cropped) image, resized by ``tile_scale``, is cut into overlapping tiles of ``image_size``
  pixels. One detector (one memory bank, one autoencoder) learns all tiles of all images; each tile is scored,
  the maps are stitched (overlaps averaged) and the image score is the highest tile score, so calibration and
  the threshold work unchanged on it.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path

import cv2
import numpy as np
import torch

from anomalyapp.core.cancel import CancelToken, check
from anomalyapp.core.errors import ModelNotFitted
from anomalyapp.core.types import Prediction, Progress, map_progress
from anomalyapp.engine import anomaly_map
from anomalyapp.engine.calibration import Calibration
from anomalyapp.engine.cost import TrainingCost

# Tiles per backbone call when scoring: one call for a 6 x 6 grid, bounded memory for bigger ones.
TILE_BATCH = 36
# A defect this many input pixels across is still seen by the model (its finest stage has a cell per 8 input
# pixels, averaged over 3x3 cells); below it the squeezed model loses it and tiling is chosen.
MIN_DEFECT_INPUT_PX = 3.0
# Tiles sampled for the estimate before training: enough to time a batch, few enough to answer in seconds.
ESTIMATE_TILES = 24


def is_framed(config) -> bool:
    """Whether a config asks for a region of interest or tiles (else the detector sees whole images as before).

    A detector's config gets these fields from core.config.FramingConfig; one without them is never framed.
    """
    return bool(getattr(config, "roi", ())) or getattr(config, "tile_scale", None) is not None


def choose_tile_scale(height: int, width: int, image_size: int, smallest_defect_px: float | None,
                      roi: tuple = ()) -> float | None:
    """The tile scale for images of ``height`` x ``width`` (None: no tiling, today's squeezed path).

    Squeezed, the region's short side becomes ``image_size``; a defect of ``smallest_defect_px`` shrinks by the
    same factor. When it would end up under ``MIN_DEFECT_INPUT_PX`` input pixels, the image is tiled at the
    smallest scale that keeps it at that size (never above the image's own pixels): fewer tiles, same defect.
    """
    if not smallest_defect_px or smallest_defect_px <= 0:
        return None
    top, bottom, left, right = crop_box(height, width, roi)
    squeeze = image_size / max(1, min(bottom - top, right - left))
    if smallest_defect_px * squeeze >= MIN_DEFECT_INPUT_PX:
        return None
    return round(min(1.0, MIN_DEFECT_INPUT_PX / smallest_defect_px), 3)


def crop_box(height: int, width: int, roi: tuple) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) in pixels of the bounding box of the region's rectangles (the whole image
    without a region)."""
    if not roi:
        return 0, height, 0, width
    left = min(r[0] for r in roi)
    top = min(r[1] for r in roi)
    right = max(r[2] for r in roi)
    bottom = max(r[3] for r in roi)
    top_px, left_px = int(math.floor(top * height)), int(math.floor(left * width))
    bottom_px = max(top_px + 1, int(math.ceil(bottom * height)))
    right_px = max(left_px + 1, int(math.ceil(right * width)))
    return top_px, min(height, bottom_px), left_px, min(width, right_px)


def region_mask(height: int, width: int, roi: tuple) -> np.ndarray:
    """Bool mask (height x width) of the pixels inside any rectangle of the region (all, without one)."""
    if not roi:
        return np.ones((height, width), bool)
    mask = np.zeros((height, width), bool)
    for left, top, right, bottom in roi:
        y0, y1 = int(math.floor(top * height)), int(math.ceil(bottom * height))
        x0, x1 = int(math.floor(left * width)), int(math.ceil(right * width))
        mask[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)] = True
    return mask


def _fill_value(dtype: np.dtype):
    """Mid-gray in the image's own type: the flat paint outside the region."""
    if dtype == np.uint8:
        return 128
    if dtype == np.uint16:
        return 32768
    return 0.5


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Evenly spread tile origins along one side: first at 0, last flush with the end, steps at most
    ``tile * (1 - overlap)``. A side shorter than a tile gets one tile (the detector resizes it)."""
    if length <= tile:
        return [0]
    step = max(1.0, tile * (1.0 - overlap))
    count = math.ceil((length - tile) / step) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


@dataclass(frozen=True)
class Layout:
    """Where one image's views came from: its crop, the crop's size after scaling, the tiles' origins and size."""

    height: int
    width: int
    crop: tuple[int, int, int, int]  # top, bottom, left, right in image pixels
    scaled: tuple[int, int]  # the crop's (height, width) once scaled; the crop's own size without tiling
    origins: tuple[tuple[int, int], ...]  # each tile's (top, left) in the scaled crop
    tile: tuple[int, int]  # the tiles' (height, width)


class Framing:
    """Cuts images into the views a detector learns and scores, and stitches the views' maps back."""

    def __init__(self, config):
        self.roi = tuple(tuple(r) for r in config.roi)
        self.tile_scale = config.tile_scale
        self.overlap = config.tile_overlap
        self.tile_side = config.image_size

    def layout(self, height: int, width: int) -> Layout:
        crop = crop_box(height, width, self.roi)
        crop_height, crop_width = crop[1] - crop[0], crop[3] - crop[2]
        if self.tile_scale is None:
            return Layout(height, width, crop, (crop_height, crop_width), ((0, 0),), (crop_height, crop_width))
        scaled = (max(1, round(crop_height * self.tile_scale)), max(1, round(crop_width * self.tile_scale)))
        tile = (min(self.tile_side, scaled[0]), min(self.tile_side, scaled[1]))
        origins = tuple((top, left) for top in tile_starts(scaled[0], self.tile_side, self.overlap)
                        for left in tile_starts(scaled[1], self.tile_side, self.overlap))
        return Layout(height, width, crop, scaled, origins, tile)

    def views(self, image: np.ndarray) -> tuple[list[np.ndarray], Layout]:
        """The image's views (its tiles, or its cropped region) and their layout."""
        layout = self.layout(image.shape[0], image.shape[1])
        top, bottom, left, right = layout.crop
        view = image[top:bottom, left:right]
        if self.roi:
            outside = ~region_mask(image.shape[0], image.shape[1], self.roi)[top:bottom, left:right]
            if outside.any():
                view = view.copy()
                view[outside] = _fill_value(image.dtype)
        if self.tile_scale is None:
            return [np.ascontiguousarray(view)], layout
        if layout.scaled != view.shape[:2]:
            shrinking = layout.scaled[0] < view.shape[0]
            view = cv2.resize(view, (layout.scaled[1], layout.scaled[0]),
                              interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        tile_height, tile_width = layout.tile
        tiles = [np.ascontiguousarray(view[y:y + tile_height, x:x + tile_width]) for y, x in layout.origins]
        return tiles, layout

    def stitch(self, maps: list[np.ndarray], layout: Layout) -> np.ndarray:
        """The views' maps -> one map over the whole image (zero outside the region), at the views' resolution
        (capped at ``anomaly_map.MAX_MAP_SIDE``); overlapping tiles are averaged."""
        if self.tile_scale is None:
            crop_map = maps[0]
        else:
            crop_map = np.zeros(layout.scaled, np.float32)
            weight = np.zeros(layout.scaled, np.float32)
            tile_height, tile_width = layout.tile
            for (y, x), tile_map in zip(layout.origins, maps, strict=True):
                if tile_map.shape != (tile_height, tile_width):
                    tile_map = cv2.resize(tile_map, (tile_width, tile_height), interpolation=cv2.INTER_LINEAR)
                crop_map[y:y + tile_height, x:x + tile_width] += tile_map
                weight[y:y + tile_height, x:x + tile_width] += 1.0
            crop_map /= np.maximum(weight, 1.0)
        if not self.roi:
            return crop_map
        top, bottom, left, right = layout.crop
        scale_y = crop_map.shape[0] / (bottom - top)
        scale_x = crop_map.shape[1] / (right - left)
        cap = min(1.0, anomaly_map.MAX_MAP_SIDE / max(layout.height * scale_y, layout.width * scale_x))
        scale_y, scale_x = scale_y * cap, scale_x * cap
        full = np.zeros((max(1, round(layout.height * scale_y)), max(1, round(layout.width * scale_x))), np.float32)
        y0, y1 = round(top * scale_y), max(round(top * scale_y) + 1, round(bottom * scale_y))
        x0, x1 = round(left * scale_x), max(round(left * scale_x) + 1, round(right * scale_x))
        y1, x1 = min(y1, full.shape[0]), min(x1, full.shape[1])
        full[y0:y1, x0:x1] = cv2.resize(crop_map, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        full[~region_mask(full.shape[0], full.shape[1], self.roi)] = 0.0
        return full


class FramedDetector:
    """A detector that learns and scores the views ``Framing`` cuts from each image; the detector contract.

    ``inner`` is the plain detector built from the same config: its ``image_size`` is the tile's side. One
    inner model learns the views of every image; this wrapper takes the maximum of an image's view scores and
    stitches its views' maps.
    """

    def __init__(self, inner):
        self.inner = inner
        self.framing = Framing(inner.config)
        self.calibration: Calibration | None = None
        self._fit_view_counts: list[int] = []

    # The contract's class-level facts are the inner detector's: a saved framed model is that detector's model.
    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def data_files(self) -> tuple[str, ...]:
        return self.inner.data_files

    @property
    def config_class(self) -> type:
        return self.inner.config_class

    @property
    def config(self):
        return self.inner.config

    @property
    def extractor(self):
        return self.inner.extractor

    def _all_views(self, images: Iterable[np.ndarray], counts: list[int]) -> Iterator[np.ndarray]:
        for image in images:
            views, _ = self.framing.views(image)
            counts.append(len(views))
            yield from views

    def _with_view_total(self, images: Iterable[np.ndarray], total: int) -> tuple[Iterator[np.ndarray], int]:
        """The images again and the number of views they will give (from the first image's layout)."""
        iterator = iter(images)
        try:
            first = next(iterator)
        except StopIteration:
            return iter(()), 0
        per_image = len(self.framing.layout(first.shape[0], first.shape[1]).origins)
        return chain([first], iterator), max(1, total) * per_image

    def fit(self, images: Iterable[np.ndarray], total: int, cancel: CancelToken | None = None
            ) -> Generator[Progress, None, None]:
        images, view_total = self._with_view_total(images, total)
        self._fit_view_counts = []
        yield from self.inner.fit(self._all_views(images, self._fit_view_counts), view_total, cancel)

    def unseen_scores(self, images: Iterable[np.ndarray], total: int, cancel: CancelToken | None = None,
                      reference=None) -> Generator[Progress, None, tuple[list[float], list[float]]]:
        """The inner detector's unseen scores of every fitted view; an image's are the highest of its views'.

        With tiles, a tile is left out but the overlapping strips of its neighbours are not, so these lean
        low where tiles overlap; the held-out good images, scored whole, keep the threshold honest.
        """
        counts = self._fit_view_counts
        if not counts:
            raise ModelNotFitted("unseen scores need a fit in this session")
        views = self._all_views(images, []) if images is not None else None
        views_of_reference = None if reference is None else (lambda: self._all_views(reference(), []))
        job = self.inner.unseen_scores(views, sum(counts), cancel, reference=views_of_reference)
        # The inner detector counts views; the caller counts images.
        view_scores, view_maxima = yield from map_progress(job, lambda progress: replace(
            progress, step=progress.step * len(counts) // progress.total, total=len(counts)) if progress.total else progress)
        scores, maxima, start = [], [], 0
        for count in counts:
            scores.append(max(view_scores[start:start + count]))
            maxima.append(max(view_maxima[start:start + count]))
            start += count
        return scores, maxima

    def _views_scored(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        views, layout = self.framing.views(image)
        scores, maps = [], []
        for first in range(0, len(views), TILE_BATCH):  # tiles of one image share a shape: one backbone call
            part_scores, part_maps = self.inner.raw_predict(views[first:first + TILE_BATCH])
            scores.extend(float(s) for s in part_scores)
            maps.extend(part_maps)
        return max(scores), self.framing.stitch(maps, layout)

    def raw_predict(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Raw scores (the highest view score) and stitched maps at the views' resolution."""
        scored = [self._views_scored(image) for image in images]
        return np.array([score for score, _ in scored], dtype=np.float64), [m for _, m in scored]

    def predict(self, image: np.ndarray) -> Prediction:
        if self.calibration is None:
            raise ModelNotFitted("the model has no calibration")
        score, stitched = self._views_scored(image)
        normalised = self.calibration.normalise_map(stitched)
        return Prediction(
            score=self.calibration.normalise_score(score),
            raw_score=score,
            anomaly_map=anomaly_map.to_image_size(normalised, image.shape[0], image.shape[1]),
        )

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        return self.inner.state_dict()

    def write_file(self, name: str, path: Path) -> None:
        self.inner.write_file(name, path)

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict, folder: Path) -> None:
        self.inner.load_state(tensors, state, folder)

    def learn_from_good(self, images: list[np.ndarray], cancel: CancelToken | None = None
                        ) -> Generator[Progress, None, str]:
        views = []
        for image in images:
            check(cancel)
            views.extend(self.framing.views(image)[0])
        return (yield from self.inner.learn_from_good(views, cancel))

    def summary(self) -> dict:
        summary = dict(self.inner.summary())
        if self._fit_view_counts:
            summary["tiles_per_image"] = max(self._fit_view_counts)
        return summary

    def training_cost(self, images: list[np.ndarray], count: int, read_seconds: float = 0.0) -> TrainingCost:
        """The inner detector's cost of all views, timed on up to ``ESTIMATE_TILES`` views of the sample images."""
        views, per_image = [], []
        for image in images:
            image_views, _ = self.framing.views(image)
            per_image.append(len(image_views))
            views.extend(image_views)
        step = max(1, len(views) // ESTIMATE_TILES)
        tiles = max(per_image)
        # The inner detector counts views; an image is read once for all its views.
        cost = self.inner.training_cost(views[::step][:ESTIMATE_TILES], count * tiles, read_seconds / tiles)
        inspect = None if cost.inspect_seconds is None else cost.inspect_seconds * tiles
        return replace(cost, per_image_seconds=cost.per_image_seconds * tiles, tiles_per_image=tiles,
                       inspect_seconds=inspect)


def framed(detector):
    """``detector`` as its config frames it: wrapped when it has a region of interest or tiles, else as it is."""
    return FramedDetector(detector) if is_framed(detector.config) else detector
