"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

``PatchCoreModel`` is the pure-torch part: the configured backbone stages, locally aware 3x3 aggregation, the
coarser stages upsampled to the finest one, and a projection to a fixed width. ``PatchCoreDetector`` adds the greedy
coreset memory bank, nearest-neighbour scoring with the paper's re-weighting, the anomaly map, and
``add_normal`` for the false-positive loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anomalyapp.core.cancel import CancelToken, check
from anomalyapp.core.config import STAGE_WEIGHTING_PARTS, PatchCoreConfig
from anomalyapp.core.errors import ModelFileError, ModelNotFitted
from anomalyapp.core.types import Prediction, Progress, map_progress
from anomalyapp.engine import anomaly_map
from anomalyapp.engine.calibration import Calibration
from anomalyapp.engine.cost import (
    HELD_OUT_PER_FITTED,
    INSPECTION_TIMED,
    TrainingCost,
    largest_first,
    peak_memory_mb,
    time_features,
    time_inspection,
)
from anomalyapp.engine.features import FeatureExtractor, stage_weights
from anomalyapp.engine.memory_bank import AUTO_APPROXIMATE_ABOVE, MemoryBank
from anomalyapp.engine.preprocessing import batched, input_shape, input_shape_key, preprocess
from anomalyapp.engine.sampling import CoresetResult, coreset_pending_bytes, coreset_seconds, greedy_coreset
from anomalyapp.engine.stage_split_search import StageSplitSearch


class PatchCoreModel(nn.Module):
    """Images -> a grid of patch vectors (B, H, W, D) at the finer stage's resolution."""

    def __init__(self, extractor: FeatureExtractor, config: PatchCoreConfig):
        super().__init__()
        self.extractor = extractor
        self.config = config
        self.native_dim = sum(extractor.channels())
        self.dim = min(self.native_dim, config.embedding_dim)
        channels = [extractor.spec.channels[name] for name in config.layers]
        weighting = config.stage_weighting
        bank_weighting, map_weighting = STAGE_WEIGHTING_PARTS.get(weighting, (weighting, weighting))
        self.stage_weights = stage_weights(channels, bank_weighting)
        # Where the map weighs the stages unlike the bank (score_concatenated_map_balanced): the factor each
        # column's squared difference takes in the map's distance; None when the map uses the bank's distance.
        self.map_column_weights = None
        if map_weighting != bank_weighting:
            map_weights = stage_weights(channels, map_weighting)
            self.map_column_weights = _column_weights(channels, map_weights, self.dim) / _column_weights(
                channels, self.stage_weights, self.dim)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        stages = self.extractor(batch)
        k = self.config.neighbourhood
        pooled = [F.avg_pool2d(stages[name], k, 1, k // 2) if k > 1 else stages[name] for name in self.config.layers]
        pooled = [p if weight == 1.0 else p * weight for p, weight in zip(pooled, self.stage_weights)]
        grid = pooled[0].shape[-2:]
        pooled = [pooled[0]] + [F.interpolate(p, size=grid, mode="bilinear", align_corners=False) for p in pooled[1:]]
        patches = torch.cat(pooled, dim=1).permute(0, 2, 3, 1).float()
        if self.native_dim > self.dim:
            b, h, w, c = patches.shape
            patches = F.adaptive_avg_pool1d(patches.reshape(-1, 1, c), self.dim).reshape(b, h, w, self.dim)
        return patches.contiguous()


class PatchCoreDetector:
    name = "patchcore"
    # The files a saved model of this kind holds beside manifest.json; the model format fixes this list.
    data_files = ("index.faiss",)
    config_class = PatchCoreConfig

    def __init__(self, config: PatchCoreConfig, extractor: FeatureExtractor):
        self.config = config
        self.model = PatchCoreModel(extractor, config)
        self.bank: MemoryBank | None = None
        self.coverage_radius: float | None = None
        self.calibration: Calibration | None = None
        self.training_patches = 0
        self._bank_owners: torch.Tensor | None = None  # fitted image of each bank vector, this session only
        self._fit_patches: tuple | None = None  # the fit's patch table and grids, until unseen_scores
        self._split: tuple | None = None  # (bank, its size, StageSplitSearch) when the map weighs stages apart
        self._map_bank: tuple | None = None  # (bank, its size, the bank reweighted for the map) for large banks

    @property
    def extractor(self) -> FeatureExtractor:
        return self.model.extractor

    @property
    def device(self) -> torch.device:
        return next(self.model.extractor.network.parameters()).device

    # ---------------------------------------------------------------------------------------------- fit
    def embed(self, images: list[np.ndarray]) -> torch.Tensor:
        config = self.config
        batch = preprocess(images, config.image_size, self.model.extractor.spec, config.keep_aspect).to(self.device)
        return self.model(batch).cpu()

    def _embed_all(
        self, images: Iterable[np.ndarray], total: int, cancel: CancelToken | None
    ) -> Generator[Progress, None, torch.Tensor]:
        config = self.config
        chunks, owners, grids, done = [], [], [], 0
        for batch in batched(images, key=input_shape_key(config.image_size, config.keep_aspect)):
            check(cancel)
            grid = self.embed(batch)
            chunks.append(grid.reshape(-1, self.model.dim))
            owners.append(torch.arange(done, done + len(batch)).repeat_interleave(grid.shape[1] * grid.shape[2]))
            # All images of a batch share one input shape, hence one grid.
            shape = input_shape(batch[0].shape[0], batch[0].shape[1], config.image_size, config.keep_aspect)
            grids.extend([(grid.shape[1], grid.shape[2], shape)] * len(batch))
            done += len(batch)
            yield Progress("features", done, total, f"features {done}/{total}")
        if not chunks:
            raise ValueError("no training images")
        self._patch_owners = torch.cat(owners)  # which image each patch came from (leave-one-out scoring)
        self._patch_grids = grids  # (grid height, grid width, input shape) of each image, in order
        return torch.cat(chunks)

    def bank_size_for(self, patch_count: int) -> int:
        size = max(1, int(round(patch_count * self.config.coreset_ratio)))
        if self.config.max_bank_size:
            size = min(size, self.config.max_bank_size)
        return min(size, patch_count)

    def fit(
        self, images: Iterable[np.ndarray], total: int, cancel: CancelToken | None = None
    ) -> Generator[Progress, None, None]:
        """Build the memory bank from good images; yields progress, honours ``cancel``.

        Once the features are done the fit sends its plan by stage (``Progress.plan``, from ``stage_plan`` with the
        features' own pace), so that a training started without an estimate still shows the whole time left: the
        coreset and the calibration take most of it (magnetic tile: features 3 s of about 30)."""
        started = time.perf_counter()  # reading the images is in the loop: the features stage counts it
        patches = yield from self._embed_all(images, total, cancel)
        fitted = len(self._patch_grids)
        plan = self.stage_plan((time.perf_counter() - started) / fitted, fitted, patches.shape[0], patches.shape[1])
        self.training_patches = patches.shape[0]
        count = self.bank_size_for(patches.shape[0])
        choosing = f"memory bank: choosing {count} of {patches.shape[0]} patches" if count < patches.shape[0] else \
            f"memory bank: all {patches.shape[0]} patches"
        yield Progress("coreset", 0, count, choosing, plan=plan)
        result = None
        if count < patches.shape[0]:
            result = yield from self._coreset(patches, count, cancel)
            selected = patches[result.indices]
            self._bank_owners = self._patch_owners[result.indices]
        else:
            selected = patches
            self._bank_owners = self._patch_owners
        check(cancel)
        bank = MemoryBank.build(selected.numpy(), self.config.index, self.config.seed)
        # Every training patch lies within this distance of the bank; add_normal keeps that promise.
        if result is not None and result.assignment is not None and bank.is_exact:
            # Each patch's distance to the bank vector the coreset assigned it bounds its distance to the bank.
            bounds = torch.cat([
                torch.linalg.vector_norm(patches[start : start + 65536] - selected[part], dim=1)
                for start, part in zip(range(0, patches.shape[0], 65536), result.assignment.split(65536))
            ])
            self.coverage_radius = bank.largest_nearest_distance(patches, bounds)
        else:
            self.coverage_radius = float(bank.nearest_distances(patches).max())
        self.bank = bank
        # Kept until unseen_scores scores each fitted image without itself from this table, then dropped.
        self._fit_patches = (patches, self._patch_grids)
        yield Progress("bank", 1, 1, f"memory bank: {bank.size} of {patches.shape[0]} patches ({bank.kind})")

    def _coreset(self, patches: torch.Tensor, count: int, cancel: CancelToken | None
                 ) -> Generator[Progress, None, CoresetResult]:
        """The greedy coreset of ``count`` patches. Where the map weighs the stages unlike the bank (the mixed rule),
        half the picks cover the bank's distance and half the map's, and the bank is their union: a coreset
        chosen on one distance alone leaves the other's patches covered more thinly (docs/accuracy.md)."""
        config = self.config

        def pick(picks: int, before: int = 0, column_scale: torch.Tensor | None = None):
            """One greedy coreset of the patches, their columns scaled by ``column_scale``; its progress counted
            among all ``count`` picks, ``before`` of them done."""
            job = greedy_coreset(patches, picks, seed=config.seed, projection_dim=config.coreset_projection_dim,
                                 cancel=cancel, column_scale=column_scale)
            return map_progress(job, lambda progress: replace(
                progress, step=before + progress.step, total=count, message=f"coreset {before + progress.step}/{count}"))

        weights = self.model.map_column_weights
        if weights is None:
            return (yield from pick(count))
        half = max(1, count // 2)
        by_score = yield from pick(count - half)
        by_map = yield from pick(half, count - half, weights.sqrt())
        # The score's picks first and in order, so its assignment (each patch's nearest pick) still points at them.
        taken = torch.zeros(patches.shape[0], dtype=torch.bool)
        taken[by_score.indices] = True
        extra = by_map.indices[~taken[by_map.indices]]
        return CoresetResult(torch.cat([by_score.indices, extra]), by_score.radius, by_score.assignment)

    def unseen_scores(
        self, images: Iterable[np.ndarray] | None, total: int, cancel: CancelToken | None = None, reference=None
    ) -> Generator[Progress, None, tuple[list[float], list[float]]]:
        """Leave-one-image-out raw scores and map maxima of the fitted images, right after ``fit``.

        Each fitted image is scored against the bank with the vectors its own patches contributed masked
        out: the score a new good part like it would get, since the bank cannot simply remember it.
        Re-weighting uses the bank as it is. The patches come from the fit's own table, so no image is
        embedded again (``images`` is part of the detector contract and not read here); the table is
        dropped afterwards. A bank without one image of n scores like the final bank, so ``reference`` (the
        held-out images, which the autoencoder's folds use to rescale) is not needed here.
        """
        bank = self._require_bank()
        owners = self._bank_owners
        material = getattr(self, "_fit_patches", None)
        if owners is None or owners.shape[0] != bank.size or material is None:
            raise ModelNotFitted("leave-one-out scores need the bank of a fit in this session")
        patches, grids = material
        split = self._split_search()
        if split is None:  # the plain masked product; the split search holds its own copies of the bank
            vectors = torch.from_numpy(bank.vectors())
            vectors_t = vectors.T.contiguous()
            sq_norms = (vectors * vectors).sum(1)
        # The bank columns each image contributed, to be masked on that image's rows.
        order = torch.argsort(owners, stable=True)
        ends = torch.cumsum(torch.bincount(owners, minlength=len(grids)), 0).tolist()
        own_columns = [order[(ends[i - 1] if i else 0):ends[i]] for i in range(len(grids))]
        starts = [0]
        for h, w, _ in grids:
            starts.append(starts[-1] + h * w)
        # Images go in blocks of about this many distance entries: large matrix products, bounded memory.
        block_entries = max(1 << 24, max(h * w for h, w, _ in grids) * bank.size)
        scores, maxima = [], []
        config = self.config
        first = 0
        while first < len(grids):
            check(cancel)
            last = first + 1
            while last < len(grids) and (starts[last + 1] - starts[first]) * bank.size <= block_entries:
                last += 1
            flat = patches[starts[first]:starts[last]]
            bounds = [start - starts[first] for start in starts[first:last + 1]]
            if split is None:
                squared = torch.addmm(sq_norms, flat, vectors_t, alpha=-2.0) + (flat * flat).sum(1, keepdim=True)
                for index in range(first, last):
                    squared[bounds[index - first]:bounds[index - first + 1], own_columns[index]] = float("inf")
                best, nearest = squared.min(dim=1)
                del squared
                block_map = best.clamp_min(0).sqrt_()
                tops = []  # per image: its top row, that row's squared distance and nearest bank vector
                for image in range(last - first):
                    top = bounds[image] + int(torch.argmax(block_map[bounds[image]:bounds[image + 1]]))
                    tops.append((top, float(best[top]), int(nearest[top])))
            else:  # the map from the map's weighting; the score's distance only where the maximum may be
                block_map, tops = split.leave_out_search(flat, bounds, own_columns[first:last])
            for image, (top, top_squared, nearest_index) in enumerate(tops):
                h, w, shape = grids[first + image]
                scores.append(math.sqrt(max(top_squared, 0.0)) * self._reweight(flat[top], nearest_index))
                map_distances = block_map[bounds[image]:bounds[image + 1]]
                smoothed = anomaly_map.gaussian_smooth(map_distances.reshape(h, w).numpy(), shape, config.sigma)
                maxima.append(float(smoothed.max()))
            first = last
            yield Progress("calibrate", first, total, f"leave-one-out {first}/{total}")
        self._fit_patches = None
        return scores, maxima

    # ------------------------------------------------------------------------------------------ scoring
    def _require_bank(self) -> MemoryBank:
        if self.bank is None:
            raise ModelNotFitted("the PatchCore model has not been fitted")
        return self.bank

    def _split_search(self) -> StageSplitSearch | None:
        """The bank searched under the map's weighting too; None when the map uses the bank's own distance."""
        weights = self.model.map_column_weights
        if weights is None:
            return None
        bank = self._require_bank()
        if self._split is None or self._split[0] is not bank or self._split[1] != bank.size:
            self._split = (bank, bank.size, StageSplitSearch(torch.from_numpy(bank.vectors()), weights))
        return self._split[2]

    def score_patches(self, patches: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, H, W, D) patch grids -> raw image scores (B,) and patch-distance grids (B, H, W)."""
        bank = self._require_bank()
        b, h, w, d = patches.shape
        flat = patches.reshape(-1, d)
        weights = self.model.map_column_weights
        split = self._split_search() if weights is not None and bank.search == "product" else None
        if split is not None:
            # The map from the map's weighting; the score from the bank's own distance at its farthest patch.
            map_distances, tops = split.search(flat, h * w)
            scores = np.empty(b, dtype=np.float64)
            for i, row in enumerate(tops.tolist()):
                distance, nearest = bank.nearest(flat[row][None])
                scores[i] = float(distance[0]) * self._reweight(flat[row], int(nearest[0]))
            return scores, map_distances.reshape(b, h, w).numpy()
        distances = bank.nearest_distances(flat).reshape(b, h * w)
        scores = np.empty(b, dtype=np.float64)
        for i in range(b):
            top = int(torch.argmax(distances[i]))
            patch = flat[i * h * w + top]
            # The nearest bank patch is looked up again for this one patch only; every other patch needs
            # just its distance.
            nearest = int(bank.nearest(patch[None])[1][0])
            scores[i] = float(distances[i, top]) * self._reweight(patch, nearest)
        if weights is not None:
            # A bank searched by clusters (or by faiss): the map's distances from a second bank of the reweighted
            # vectors, searched the same way. On a 300-image line's bank of 19,049 vectors, two such searches cost
            # far less than the split search's full products (docs/performance.md).
            distances = self._reweighted_bank().nearest_distances(flat * weights.sqrt()).reshape(b, h * w)
        return scores, distances.reshape(b, h, w).numpy()

    def _reweighted_bank(self) -> MemoryBank:
        """The bank's vectors scaled by the map's stage weights, where the plain distance is the map's weighted one;
        searched exactly, by clusters from the same size as the bank."""
        bank = self._require_bank()
        if self._map_bank is None or self._map_bank[0] is not bank or self._map_bank[1] != bank.size:
            scaled = torch.from_numpy(bank.vectors()) * self.model.map_column_weights.sqrt()
            reweighted = MemoryBank.build(scaled.numpy(), "flat")
            reweighted.pruned_search_from = bank.pruned_search_from
            self._map_bank = (bank, bank.size, reweighted)
        return self._map_bank[2]

    def _reweight(self, test_patch: torch.Tensor, nearest_index: int) -> float:
        """The paper's weight: 1 - softmax over distances to m* and its b nearest bank neighbours, at m*.

        A test patch whose nearest bank patch sits in a dense, consistent neighbourhood keeps most of its
        score; one near a rare bank patch that has no close neighbours is trusted less.
        """
        b = self.config.reweight_neighbours
        bank = self._require_bank()
        if b <= 1 or bank.size < 2:
            return 1.0
        distances = torch.linalg.vector_norm(bank.neighbourhood(nearest_index, b) - test_patch, dim=1).double()
        return float(1.0 - torch.softmax(distances, 0)[0])

    def raw_predict(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Raw scores and smoothed maps at the model's input resolution."""
        scores, grids = self.score_patches(self.embed(images))
        config = self.config
        shape = input_shape(images[0].shape[0], images[0].shape[1], config.image_size, config.keep_aspect)
        return scores, [anomaly_map.gaussian_smooth(grid, shape, config.sigma) for grid in grids]

    def predict(self, image: np.ndarray) -> Prediction:
        if self.calibration is None:
            raise ModelNotFitted("the model has no calibration")
        scores, maps = self.raw_predict([image])
        # Normalise at model resolution, then resize: the same result for a fraction of the work.
        normalised = self.calibration.normalise_map(maps[0])
        return Prediction(
            score=self.calibration.normalise_score(scores[0]),
            raw_score=float(scores[0]),
            anomaly_map=anomaly_map.to_image_size(normalised, image.shape[0], image.shape[1]),
        )

    # ---------------------------------------------------------------------------------------- add_normal
    def add_normal(
        self, images: list[np.ndarray], cancel: CancelToken | None = None
    ) -> Generator[Progress, None, int]:
        """Append the patches of new good images that the bank does not yet cover; returns how many.

        This continues the greedy coreset: the farthest uncovered patch is added until every new patch lies
        within the target radius of the bank. The radius is the fit's coverage radius, tightened below the
        image threshold when the model is calibrated, so an added image is then judged OK.
        """
        bank = self._require_bank()
        patches = yield from self._embed_all(images, len(images), cancel)
        radius = self.coverage_radius or 0.0
        if self.calibration is not None:
            radius = min(radius, 0.8 * self.calibration.image_threshold)
        distances = bank.nearest_distances(patches)
        chosen = []
        while True:
            check(cancel)
            top = int(torch.argmax(distances))
            if float(distances[top]) <= radius:
                break
            chosen.append(top)
            to_new = torch.linalg.vector_norm(patches - patches[top], dim=1)
            distances = torch.minimum(distances, to_new)
        if chosen:
            bank.add(patches[torch.tensor(chosen)].numpy())
            self._bank_owners = None  # the added vectors belong to no fitted image
            self._fit_patches = None
        self.training_patches += patches.shape[0]
        yield Progress("add_normal", 1, 1, f"added {len(chosen)} patches; bank size {bank.size}")
        return len(chosen)

    def learn_from_good(
        self, images: list[np.ndarray], cancel: CancelToken | None = None
    ) -> Generator[Progress, None, str]:
        """The false-positive loop: the images' uncovered patches join the bank (``add_normal``)."""
        added = yield from self.add_normal(images, cancel)
        return f"{added} patches added to the memory bank"

    # --------------------------------------------------------------------------------------- saved state
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        """No tensors (the bank is ``index.faiss``, written by ``write_file``); the manifest's state."""
        bank = self._require_bank()
        return {}, {
            "coverage_radius": self.coverage_radius,
            "training_patches": self.training_patches,
            "bank_size": bank.size,
            "bank_kind": bank.kind,
            "embedding_dim": self.model.dim,
        }

    def write_file(self, name: str, path: Path) -> None:
        if name != self.data_files[0]:
            raise ValueError(f"no writer for a {self.name} model's {name}")
        self._require_bank().save(path)

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict, folder: Path) -> None:
        index = self.data_files[0]
        try:
            bank = MemoryBank.load(folder / index)
        except RuntimeError as exc:
            raise ModelFileError(f"model {folder} is damaged: {index} cannot be read ({exc})") from None
        if bank.dim != self.model.dim:
            raise ModelFileError(f"model {folder} is damaged: {index} has the wrong vector width")
        if bank.size != state.get("bank_size", bank.size):
            raise ModelFileError(f"model {folder} is damaged: {index} does not hold the bank its manifest describes")
        self.bank = bank
        self.coverage_radius = state["coverage_radius"]
        self.training_patches = state["training_patches"]

    def summary(self) -> dict:
        return {"bank_size": self._require_bank().size, "training_patches": self.training_patches}

    def training_cost(self, images: list[np.ndarray], count: int, read_seconds: float = 0.0) -> TrainingCost:
        """Features timed on ``images``; the coreset and the leave-one-out calibration timed on tables of the
        real size (``engine.sampling.coreset_seconds``; one slice of the patches-by-bank product); peak memory
        is this process's so far (the network, the libraries) plus the tables the fit and calibration hold."""
        config = self.config
        parts, per_image = time_features(self.embed, images, config.image_size, config.keep_aspect)
        per_image_patches = sum(part.shape[0] * part.shape[1] * part.shape[2] for part in parts) / len(images)
        dim = parts[0].shape[3]
        total_patches = int(per_image_patches * count)
        bank = self.bank_size_for(total_patches)
        projected = min(dim, config.coreset_projection_dim)
        stages = self.stage_plan(per_image + read_seconds, count, total_patches, dim)
        seconds = sum(part for _, part in stages)
        block = max(1 << 24, int(per_image_patches) * bank)  # unseen_scores' distance block, in entries
        pending = coreset_pending_bytes(total_patches, bank) if bank < total_patches else 0
        # The patches (the mixed rule's second coreset scales them inside its projection, without a copy) and the
        # coreset's tables; the bank and its transposed copy; one distance block.
        table_bytes = (total_patches * (dim + projected + 5) * 4 + total_patches * 8 + pending
                       + bank * dim * 4 * 2 + block * 4 * 2)
        memory_mb = (peak_memory_mb() or 0.0) + table_bytes / 2**20  # before the inspection's stand-in bank
        # Each sample image's patches, in the images' order (``batched`` keeps it): the stand-in bank's material.
        grids = [grid.reshape(-1, dim) for part in parts for grid in part]
        return TrainingCost(seconds, memory_mb, per_image, bank, stages=stages,
                            inspect_seconds=self._time_inspection(images, grids, bank, read_seconds))

    def _time_inspection(self, images: list[np.ndarray], grids: list[torch.Tensor], bank_size: int,
                         read_seconds: float) -> float | None:
        """Seconds a part will take to read and score, timed on the real scoring path against a stand-in bank of
        the size the fit will keep, made of the patches (``grids``, one table per image, already embedded) of the
        sample images not timed (repeated up to that size).
        Real patches matter: the search for an image's top patch stops early when the bank resembles the part, and
        random vectors would make it search every row. None for the approximate indexes, whose stand-in would
        take longer to build than the estimate itself.
        """
        kind = self.config.index
        if kind not in ("auto", "flat") or (kind == "auto" and bank_size > AUTO_APPROXIMATE_ABOVE):
            return None
        ordered = largest_first(images)
        timed = ordered[:max(1, min(INSPECTION_TIMED, len(ordered) - 1))]
        # With one sample image the bank holds its own patches: the top patch is then found at once, and the time
        # understates the search a little.
        others = ordered[len(timed):] or timed
        patches = torch.cat([grids[index] for index in others])
        rows = torch.arange(bank_size) % patches.shape[0]
        kept = self.bank, self._split, self._map_bank
        self.bank = MemoryBank.build(patches[rows].numpy(), "flat")
        try:
            return time_inspection(self.raw_predict, [images[index] for index in timed], read_seconds)
        finally:
            self.bank, self._split, self._map_bank = kept

    def stage_plan(self, image_seconds: float, count: int, total_patches: int, dim: int
                   ) -> tuple[tuple[str, float], ...]:
        """Seconds of each stage a fit of ``count`` images of ``total_patches`` patches of width ``dim`` reports,
        from the seconds one image takes to read and embed: the estimate's split, and the plan the fit sends
        once its features are done (then the patches are counted, not projected).

        The coreset and the leave-one-out calibration are timed on tables of the real size
        (``engine.sampling.coreset_seconds``; one slice of the patches-by-bank product); "calibrate" also reads
        and scores the held-out images.
        """
        bank = self.bank_size_for(total_patches)
        projected = min(dim, self.config.coreset_projection_dim)
        # The mixed rule picks the bank in two halves, each a coreset of the whole table (``_coreset``); they differ
        # by one pick at most, so one is timed (timing costs 0.1-0.3 s, a few per cent of a fit).
        runs = 1 if self.model.map_column_weights is None else 2
        coreset = runs * coreset_seconds(total_patches, max(1, bank // runs), projected) if bank < total_patches else 0.0
        # Leave-one-out calibration scores every training patch against the whole bank: one product. The mixed
        # stage weighting keeps each row's nearest index too (the bound of StageSplitSearch.leave_out_search), and
        # its exact searches of the score's distance are not counted (measured: the leave-one-out took 1.1-1.2 times
        # this product on bottle and KolektorSDD, 1.6 on magnetic tile).
        rows, columns = min(total_patches, 4096), min(bank, 4096)
        queries, vectors_t = torch.randn(rows, dim), torch.randn(dim, columns)

        def product():
            partial = torch.addmm(torch.zeros(columns), queries, vectors_t)
            return partial.amin(1) if self.model.map_column_weights is None else partial.min(1)

        product()
        started = time.perf_counter()
        product()
        calibration = (time.perf_counter() - started) * (total_patches / rows) * (bank / columns)
        # A held-out image is read, embedded and searched for as a new part is: once under the bank's distance,
        # and once more under the map's where the mixed rule weighs it differently (one image's share of the
        # product each time; magnetic tile: 104 ms an image, against 19 ms for its features alone).
        searches = 1 if self.model.map_column_weights is None else 2
        held_out = (image_seconds * count + searches * calibration) * HELD_OUT_PER_FITTED
        return (("features", image_seconds * count), ("coreset", coreset), ("calibrate", calibration + held_out))


def _column_weights(channels: list[int], weights: list[float], dim: int) -> torch.Tensor:
    """The square of each patch-vector column's stage weight, for vectors reduced to ``dim`` columns.

    Without reduction a stage's columns are its channels. ``adaptive_avg_pool1d`` averages column i over
    channels floor(i * n / dim) to ceil((i + 1) * n / dim); a column that straddles two stages goes to the
    stage of its middle channel.
    """
    per_channel = torch.cat([torch.full((count,), weight * weight) for count, weight in zip(channels, weights)])
    native = per_channel.shape[0]
    if native <= dim:
        return per_channel
    middles = [(i * native // dim + -(-(i + 1) * native // dim) - 1) // 2 for i in range(dim)]
    return per_channel[torch.tensor(middles)]
