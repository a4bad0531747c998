"""Deep feature reconstruction (Yang, Shi, Qi: "Unsupervised Anomaly Segmentation via Deep Feature
Reconstruction", Neurocomputing 2020).

Several backbone stages are average-pooled with a small window (each location then describes a region),
resized to the finest stage's grid and concatenated. A 1x1 convolutional autoencoder learns to rebuild
these regional features of good images; where it fails, the part looks unlike anything it was trained on.
The latent width follows DFR's rule: the number of principal components explaining a given share of the
features' variance.

``FeatureAutoencoder`` is the pure module; ``AutoencoderDetector`` adds training, scoring and the map.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anomalyapp.core.cancel import CancelToken, check
from anomalyapp.core.config import STAGE_WEIGHTING_PARTS, AutoencoderConfig
from anomalyapp.core.errors import ModelFileError, ModelNotFitted
from anomalyapp.core.types import Prediction, Progress
from anomalyapp.engine import anomaly_map
from anomalyapp.engine.calibration import Calibration
from anomalyapp.engine.cost import (
    HELD_OUT_PER_FITTED,
    TrainingCost,
    largest_first,
    peak_memory_mb,
    time_features,
    time_inspection,
)
from anomalyapp.engine.features import FeatureExtractor, stage_weights
from anomalyapp.engine.preprocessing import EMBED_BATCH, batched, input_shape, input_shape_key, preprocess

# Training vectors kept in memory at most; beyond it each image contributes a seeded random subset.
MAX_TRAINING_VECTORS = 2_000_000
# Fewer held-out images than this give too loose a median to rescale the fold scores with.
MIN_REFERENCE_IMAGES = 5
# Folds of the cross-validated scores that calibrate the threshold (unseen_scores).
CALIBRATION_FOLDS = 3
# Training steps timed by the estimate, after one warm-up step.
TIMED_STEPS = 3
# The false-positive loop rehearses what the network learnt: a seeded sample of the fitted (standardised) feature
# vectors is kept in the model, at most this many numbers (4,096 vectors of Lite0's 152 channels, 2.5 MB), and each
# fine-tune step rebuilds as many of them as of the new image's. Without them a fine-tune on one image pulls the
# whole network towards it, and every other part's score drifts up (docs/accuracy.md: the false-positive fix).
REHEARSAL_NUMBERS = 4096 * 152
REHEARSAL_MAX_VECTORS = 4096

# The training epoch whose progress carries the plan the fit's own timings give (_sending_plan).
PLAN_AFTER_EPOCHS = 3


def fold_stage(fold: int, folds: int) -> str:
    """The progress stage of the ``fold``-th (0-based) calibration fold's training: 'fold 1/3'."""
    return f"fold {fold + 1}/{folds}"


def _block(c_in: int, c_out: int, last: bool = False) -> list[nn.Module]:
    layer = nn.Linear(c_in, c_out)
    return [layer] if last else [layer, nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]


class FeatureAutoencoder(nn.Module):
    """DFR's 1x1 convolutional autoencoder: C -> (C+2c)/2 -> 2c -> c -> 2c -> (C+2c)/2 -> C.

    A 1x1 convolution applies the same linear map at every location, so the layers are written as Linear
    over (locations, channels): the same maths, and on a CPU several times faster to train than Conv2d on
    batches of 1x1 "images". Batch norm statistics are over locations, as in the convolutional form.
    """

    def __init__(self, channels: int, latent: int):
        super().__init__()
        mid = (channels + 2 * latent) // 2
        self.encoder = nn.Sequential(*_block(channels, mid), *_block(mid, 2 * latent), *_block(2 * latent, latent, True))
        self.decoder = nn.Sequential(
            *_block(latent, 2 * latent), *_block(2 * latent, mid), *_block(mid, channels, True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) vectors, or (B, C, H, W) feature maps reconstructed location by location."""
        if x.dim() == 2:
            return self.decoder(self.encoder(x))
        b, c, h, w = x.shape
        flat = x.permute(0, 2, 3, 1).reshape(-1, c)
        return self.decoder(self.encoder(flat)).reshape(b, h, w, c).permute(0, 3, 1, 2)


def latent_from_variance(vectors: torch.Tensor, share: float) -> int:
    """Smallest number of principal components whose eigenvalues reach ``share`` of the total variance."""
    centred = vectors - vectors.mean(0)
    covariance = centred.T @ centred / max(1, centred.shape[0] - 1)
    eigenvalues = torch.linalg.eigvalsh(covariance.double()).flip(0).clamp_min(0)
    cumulative = torch.cumsum(eigenvalues, 0) / eigenvalues.sum()
    return int(torch.searchsorted(cumulative, torch.tensor(share, dtype=torch.float64)).item()) + 1


class AutoencoderDetector:
    name = "autoencoder"
    # The files a saved model of this kind holds beside manifest.json; the model format fixes this list.
    data_files = ("tensors.safetensors",)
    config_class = AutoencoderConfig

    def __init__(self, config: AutoencoderConfig, extractor: FeatureExtractor):
        self.config = config
        self.extractor = extractor
        self.channels = sum(extractor.channels())
        stage_channels = [extractor.spec.channels[name] for name in config.layers]
        # The weighting of the image score's error and of the map's (the mixed rule weighs them differently).
        self.score_weighting, self.map_weighting = STAGE_WEIGHTING_PARTS[config.stage_weighting]
        # Each channel's share of the error (stage weight squared) per weighting; None: the plain mean over
        # channels. The features are standardised per channel, so a weight acts on the error, not on the features.
        self.error_weights = {}
        for weighting in {self.score_weighting, self.map_weighting}:
            weights = stage_weights(stage_channels, weighting)
            self.error_weights[weighting] = None if all(w == 1.0 for w in weights) else torch.cat(
                [torch.full((count,), weight * weight) for count, weight in zip(stage_channels, weights)])
        self.autoencoder: FeatureAutoencoder | None = None
        self.feature_mean = torch.zeros(self.channels)
        self.feature_std = torch.ones(self.channels)
        self.calibration: Calibration | None = None
        self.loss_history: list[float] = []
        self._fold_material: tuple[torch.Tensor, torch.Tensor, int] | None = None
        self.rehearsal: torch.Tensor | None = None  # fitted vectors the fine-tune rehearses; None in older models
        self.fold_score_factors: list[float] = []  # set by unseen_scores: what each fold's scores were multiplied by

    @property
    def device(self) -> torch.device:
        return next(self.extractor.network.parameters()).device

    # ---------------------------------------------------------------------------------------- features
    def regional_features(self, images: list[np.ndarray]) -> torch.Tensor:
        """Images -> (B, C, H, W) regional features on the finest stage's grid, on the model's device."""
        config = self.config
        batch = preprocess(images, config.image_size, self.extractor.spec, config.keep_aspect).to(self.device)
        stages = self.extractor(batch)
        k = self.config.region_kernel
        pooled = [F.avg_pool2d(stages[name], k, 1, k // 2) if k > 1 else stages[name] for name in self.config.layers]
        grid = stages[self.config.layers[0]].shape[-2:]
        pooled = [F.interpolate(p, size=grid, mode="bilinear", align_corners=False) for p in pooled]
        return torch.cat(pooled, dim=1).float().contiguous()

    def _normalised(self, features: torch.Tensor) -> torch.Tensor:
        mean = self.feature_mean.to(features.device).view(1, -1, 1, 1)
        std = self.feature_std.to(features.device).view(1, -1, 1, 1)
        return (features - mean) / std

    # -------------------------------------------------------------------------------------------- fit
    def fit(
        self, images: Iterable[np.ndarray], total: int, cancel: CancelToken | None = None
    ) -> Generator[Progress, None, None]:
        """Extract features of good images once, then train the autoencoder; yields progress per epoch."""
        config = self.config
        generator = torch.Generator().manual_seed(config.seed)
        chunks, owners, done = [], [], 0
        per_image_budget = None

        def add_features(batch):
            nonlocal per_image_budget
            features = self.regional_features(batch).cpu()
            b, c, h, w = features.shape
            vectors = features.permute(0, 2, 3, 1).reshape(b, h * w, c)
            if per_image_budget is None:
                per_image_budget = max(1, min(h * w, MAX_TRAINING_VECTORS // max(1, total)))
            if per_image_budget < h * w:
                picks = torch.stack([torch.randperm(h * w, generator=generator)[:per_image_budget] for _ in range(b)])
                vectors = torch.gather(vectors, 1, picks.unsqueeze(-1).expand(-1, -1, c))
            chunks.append(vectors.reshape(-1, c))
            owners.append(torch.arange(done, done + b).repeat_interleave(vectors.shape[1]))

        started = time.perf_counter()  # reading the images is in the loop: the features stage counts it
        for batch in batched(images, key=input_shape_key(config.image_size, config.keep_aspect)):
            check(cancel)
            add_features(batch)
            done += len(batch)
            yield Progress("features", done, total, f"features {done}/{total}")
        if not chunks:
            raise ValueError("no training images")
        image_seconds = (time.perf_counter() - started) / done
        vectors = torch.cat(chunks)
        chunks.clear()  # the table is held once from here; standardised in place for the same reason
        self.feature_mean = vectors.mean(0)
        self.feature_std = vectors.std(0).clamp_min(1e-6)
        vectors.sub_(self.feature_mean).div_(self.feature_std)
        latent = config.latent_dim or latent_from_variance(vectors, config.explained_variance)
        latent = max(1, min(latent, self.channels))
        # Kept until unseen_scores trains the fold models on them, then dropped.
        self._fold_material = (vectors, torch.cat(owners), latent)
        count = min(vectors.shape[0], REHEARSAL_MAX_VECTORS, max(1, REHEARSAL_NUMBERS // self.channels))
        self.rehearsal = vectors[torch.randperm(vectors.shape[0], generator=generator)[:count]].clone()
        self.loss_history = []
        training = self._train(vectors, latent, config.seed, "train", cancel)
        self.autoencoder = yield from self._sending_plan(training, image_seconds, done)

    def _sending_plan(self, training: Generator[Progress, None, FeatureAutoencoder], image_seconds: float,
                      count: int) -> Generator[Progress, None, FeatureAutoencoder]:
        """``training``'s progress, one epoch's carrying the stage plan (``stage_plan``) that this run's own
        timings give: a training started without an estimate still knows what its folds will take.

        The first epoch pays for the allocations and took about three times the others on KolektorSDD, so the
        pace is taken from the epochs after it, and the plan is sent with the third; the first's excess is
        counted for this training only (the fold networks' first epochs measured no such excess).
        """
        started = time.perf_counter()
        first_done = None  # the clock when the first epoch ended
        sent = False
        while True:
            try:
                progress = next(training)
            except StopIteration as stop:
                return stop.value
            now = time.perf_counter()
            if first_done is None:
                first_done = now
            total = progress.total or progress.step
            if not sent and progress.step >= min(PLAN_AFTER_EPOCHS, total):
                sent = True
                per_epoch = (now - first_done) / (progress.step - 1) if progress.step > 1 else now - started
                warm_up = max(0.0, first_done - started - per_epoch)  # the fold networks' epochs run warm
                plan = self.stage_plan(image_seconds, count, per_epoch * total, warm_up)
                progress = replace(progress, plan=plan)
            yield progress

    def _train(
        self, vectors: torch.Tensor, latent: int, seed: int, stage: str, cancel: CancelToken | None
    ) -> Generator[Progress, None, FeatureAutoencoder]:
        config = self.config
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        model = FeatureAutoencoder(self.channels, latent).to(self.device)
        optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        count = vectors.shape[0]
        size = self.batch_size(count)
        history = self.loss_history if stage == "train" else []
        for epoch in range(config.epochs):
            model.train()
            order = torch.randperm(count, generator=generator)
            epoch_loss, steps = 0.0, 0
            hard_share = config.hard_share if epoch >= config.hard_after_epochs else None
            for start in range(0, count, size):
                batch = vectors[order[start : start + size]]
                if batch.shape[0] < 2:
                    continue  # batch norm needs two samples
                epoch_loss += float(self._batch_step(model, optimiser, batch, generator, hard_share).detach())
                steps += 1
            check(cancel)
            history.append(epoch_loss / max(1, steps))
            yield Progress(
                stage,
                epoch + 1,
                config.epochs,
                f"epoch {epoch + 1}/{config.epochs} loss {history[-1]:.4f}",
                {"epoch": epoch + 1, "loss": history[-1], "latent": latent},
            )
        return model.eval()

    def batch_size(self, count: int) -> int:
        """Vectors per step when training on ``count`` of them: the config's batch size, or smaller where that
        would give fewer than ``min_steps_per_epoch`` steps an epoch."""
        return max(2, min(self.config.batch_size, math.ceil(count / self.config.min_steps_per_epoch)))

    def _noisy(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``batch`` with the config's training noise added; the noise is drawn from the seeded CPU ``generator``
        and added on the batch's device."""
        noise = self.config.training_noise
        if noise == 0:
            return batch
        return batch + (noise * torch.randn(batch.shape, generator=generator, dtype=batch.dtype)).to(batch.device)

    def _batch_step(self, model: FeatureAutoencoder, optimiser: torch.optim.Optimizer, batch: torch.Tensor,
                    generator: torch.Generator, hard_share: float | None = None) -> torch.Tensor:
        """One training step on ``batch`` (clean vectors): the noisy copy in, the clean one to rebuild; the loss.

        With ``hard_share`` the step learns from that share of the vectors it rebuilds worst (the config's hard
        examples); the loss returned is still the mean over the whole batch, so the loss curve stays comparable."""
        noisy, batch = self._noisy(batch, generator).to(self.device), batch.to(self.device)
        if hard_share is None:
            return self._step(model, optimiser, noisy, batch)
        per_vector = ((model(noisy) - batch) ** 2).mean(1)
        hardest = per_vector.topk(max(1, round(hard_share * per_vector.shape[0]))).values
        optimiser.zero_grad(set_to_none=True)
        hardest.mean().backward()
        optimiser.step()
        return per_vector.mean()

    @staticmethod
    def _step(model: FeatureAutoencoder, optimiser: torch.optim.Optimizer, inputs: torch.Tensor,
              targets: torch.Tensor) -> torch.Tensor:
        """One optimiser step towards rebuilding ``targets`` from ``inputs``; returns the loss."""
        loss = F.mse_loss(model(inputs), targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return loss

    def unseen_scores(
        self, images: Iterable[np.ndarray], total: int, cancel: CancelToken | None = None, folds: int = CALIBRATION_FOLDS,
        reference: Callable[[], Iterable[np.ndarray]] | None = None,
    ) -> Generator[Progress, None, tuple[list[float], list[float]]]:
        """Cross-validated raw scores and map maxima of the fitted images, right after ``fit``.

        ``images`` are the fitted images again, in the same order. The images are dealt into ``folds``
        interleaved folds (so each fold spans the whole capture period); an autoencoder with the same
        latent width, epochs and normalisation is trained on the other folds' vectors and scores the fold's
        images, which it has not seen. It sees (folds - 1) / folds of the data, so its errors lean high, and a
        threshold set from them alone sits too high for the final model (docs/accuracy.md).

        ``reference`` gives good images that neither the folds nor the final model saw (the held-out ones),
        afresh on each call. Each fold scores them too, and the fold's scores and map maxima are scaled by
        the ratio of the final model's median to the fold's median on them: the fold's scores put on the
        final model's scale, which is the one the threshold is applied to. With fewer than
        ``MIN_REFERENCE_IMAGES`` of them the fold scores are kept as they are.
        """
        material = getattr(self, "_fold_material", None)
        if material is None or self.autoencoder is None:
            raise ModelNotFitted("fold scores need the training vectors of a fit in this session")
        vectors, owners, latent = material
        fitted = int(owners.max()) + 1 if owners.numel() else 0
        final = self.autoencoder
        final_reference = self._medians(reference, cancel) if reference is not None else None
        if final_reference is not None and final_reference[2] < MIN_REFERENCE_IMAGES:
            final_reference = None
        factors: list[float] = []
        scores: list[float] = []
        maxima: list[float] = []
        try:
            # Every fold network first (each is small), so that the fitted images are then read once, in their
            # order, and none is kept: a station's set of 5 MP frames would not fit in memory.
            fold_models: list[FeatureAutoencoder | None] = []
            for fold in range(folds):
                if fold >= fitted:  # fewer images than folds: this fold has none to score
                    fold_models.append(None)
                    continue
                keep = (owners % folds) != fold
                fold_models.append((yield from self._train(
                    vectors[keep], latent, self.config.seed + 1 + fold, fold_stage(fold, folds), cancel)))
            scales = []
            for model in fold_models:
                score_factor = map_factor = 1.0
                if model is not None and final_reference is not None:
                    self.autoencoder = model
                    fold_score, fold_map, _ = self._medians(reference, cancel)
                    score_factor = final_reference[0] / fold_score if fold_score > 0 else 1.0
                    map_factor = final_reference[1] / fold_map if fold_map > 0 else 1.0
                    factors.append(score_factor)
                scales.append((score_factor, map_factor))
            for index, image in enumerate(images):
                check(cancel)
                fold = index % folds
                if fold_models[fold] is None:
                    raise ModelNotFitted(f"fold scores were asked for more images than the {fitted} fitted")
                self.autoencoder = fold_models[fold]
                raw, maps = self.raw_predict([image])
                scores.append(float(raw[0]) * scales[fold][0])
                maxima.append(float(maps[0].max()) * scales[fold][1])
                yield Progress("calibrate", index + 1, total, f"scored unseen {index + 1}/{total}")
        finally:
            self.autoencoder = final
        self._fold_material = None
        self.fold_score_factors = factors  # per fold, what its image scores were multiplied by (none: kept as is)
        if factors:
            yield Progress("calibrate", total, total, "fold scores scaled to the final model's by "
                           + ", ".join(f"{f:.2f}" for f in factors) + f" ({final_reference[2]} held-out images)")
        return scores, maxima

    def _medians(self, images: Callable[[], Iterable[np.ndarray]], cancel: CancelToken | None
                 ) -> tuple[float, float, int]:
        """Median raw score and median map maximum of ``images()`` under the current autoencoder, and their count."""
        scores, maxima = [], []
        for image in images():
            check(cancel)
            raw, maps = self.raw_predict([image])
            scores.append(float(raw[0]))
            maxima.append(float(maps[0].max()))
        if not scores:
            return 0.0, 0.0, 0
        return float(np.median(scores)), float(np.median(maxima)), len(scores)

    # ---------------------------------------------------------------------------------------- scoring
    def error_grids(self, images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-location squared reconstruction error (B, H, W), averaged over weighted channels: under the image
        score's weighting and under the map's (the same tensor when they are one)."""
        if self.autoencoder is None:
            raise ModelNotFitted("the autoencoder has not been trained")
        with torch.inference_mode():
            features = self._normalised(self.regional_features(images))
            reconstruction = self.autoencoder(features)
            squared = (reconstruction - features) ** 2

            def averaged(weighting: str) -> torch.Tensor:
                weights = self.error_weights[weighting]
                if weights is None:
                    return squared.mean(1).cpu()
                return (squared * weights.to(squared.device).view(1, -1, 1, 1)).mean(1).cpu()

            score_grids = averaged(self.score_weighting)
            map_grids = score_grids if self.map_weighting == self.score_weighting else averaged(self.map_weighting)
            return score_grids, map_grids

    def raw_predict(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        score_grids, map_grids = (grids.numpy() for grids in self.error_grids(images))
        config = self.config
        shape = input_shape(images[0].shape[0], images[0].shape[1], config.image_size, config.keep_aspect)
        maps = [anomaly_map.gaussian_smooth(grid, shape, config.sigma) for grid in map_grids]
        scores = np.empty(len(maps), dtype=np.float64)
        for index, grid in enumerate(score_grids):
            flat = grid.reshape(-1)
            k = self.score_cells(flat.size)
            top = np.partition(flat, flat.size - k)[-k:]
            scores[index] = float(top.mean())
        return scores, maps

    def score_cells(self, cells: int) -> int:
        """How many of a grid's ``cells`` the image score averages: ``score_top_share`` of them (at least one),
        or, for a model saved before the share, ``score_top_k``."""
        share = self.config.score_top_share
        count = self.config.score_top_k if share is None else round(share * cells)
        return min(cells, max(1, count))

    def predict(self, image: np.ndarray) -> Prediction:
        if self.calibration is None:
            raise ModelNotFitted("the model has no calibration")
        scores, maps = self.raw_predict([image])
        normalised = self.calibration.normalise_map(maps[0])
        return Prediction(
            score=self.calibration.normalise_score(scores[0]),
            raw_score=float(scores[0]),
            anomaly_map=anomaly_map.to_image_size(normalised, image.shape[0], image.shape[1]),
        )

    def fine_tune(
        self, images: list[np.ndarray], epochs: int = 5, cancel: CancelToken | None = None
    ) -> Generator[Progress, None, None]:
        """A short training on new good images (the false-positive loop), keeping normalisation fixed.

        With a rehearsal sample (models trained since it exists) each batch of the new vectors is joined by as
        many rehearsal vectors drawn at random, so the network learns the new images without forgetting the
        rest; a model without one trains on the new vectors alone, as it always did."""
        if self.autoencoder is None:
            raise ModelNotFitted("the autoencoder has not been trained")
        key = input_shape_key(self.config.image_size, self.config.keep_aspect)
        vectors = torch.cat([
            self._normalised(self.regional_features(batch)).permute(0, 2, 3, 1).reshape(-1, self.channels)
            for batch in batched(images, key=key)
        ])
        model = self.autoencoder
        optimiser = torch.optim.Adam(model.parameters(), lr=self.config.learning_rate * 0.3)
        generator = torch.Generator().manual_seed(self.config.seed + 1)
        # Batch norm stays in eval mode: statistics of a handful of images would overwrite those of the
        # whole training set.
        model.eval()
        rehearsal = None if self.rehearsal is None else self.rehearsal.to(vectors.device)
        size = self.config.batch_size if rehearsal is None else max(1, self.config.batch_size // 2)
        for epoch in range(epochs):
            order = torch.randperm(vectors.shape[0], generator=generator)
            for start in range(0, vectors.shape[0], size):
                batch = vectors[order[start : start + size]]
                if rehearsal is not None:
                    rows = torch.randint(0, rehearsal.shape[0], (batch.shape[0],), generator=generator)
                    batch = torch.cat([batch, rehearsal[rows]])
                if batch.shape[0] < 2:
                    continue
                self._batch_step(model, optimiser, batch, generator)
            check(cancel)
            yield Progress("fine_tune", epoch + 1, epochs, f"fine-tune {epoch + 1}/{epochs}")

    # Epochs of the short training on images marked good (the false-positive loop). Rehearsing, the network can
    # take more steps towards the new images without drifting elsewhere; 5 was the count without rehearsal, and
    # a model saved without a rehearsal sample keeps it.
    LEARN_EPOCHS = 20
    LEARN_EPOCHS_WITHOUT_REHEARSAL = 5

    def learn_from_good(
        self, images: list[np.ndarray], cancel: CancelToken | None = None
    ) -> Generator[Progress, None, str]:
        """The false-positive loop: a short fine-tune on the images (``fine_tune``)."""
        epochs = self.LEARN_EPOCHS_WITHOUT_REHEARSAL if self.rehearsal is None else self.LEARN_EPOCHS
        yield from self.fine_tune(images, epochs=epochs, cancel=cancel)
        done = f"autoencoder fine-tuned for {epochs} epochs"
        return done if self.rehearsal is None else f"{done}, rehearsing {self.rehearsal.shape[0]} training vectors"

    # --------------------------------------------------------------------------------------- saved state
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        """The autoencoder's weights and the feature normalisation; the manifest's state."""
        if self.autoencoder is None:
            raise ModelNotFitted("the autoencoder has not been trained")
        tensors = {f"autoencoder.{k}": v for k, v in self.autoencoder.state_dict().items()}
        tensors["feature_mean"] = self.feature_mean
        tensors["feature_std"] = self.feature_std
        if self.rehearsal is not None:
            tensors["rehearsal"] = self.rehearsal
        state = {"channels": self.channels, "latent_dim": self.autoencoder.encoder[-1].out_features,
                 "loss_history": self.loss_history}
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, state

    def write_file(self, name: str, path: Path) -> None:
        raise ValueError(f"no writer for a {self.name} model's {name}")  # its one file holds state_dict's tensors

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict, folder: Path) -> None:
        autoencoder = FeatureAutoencoder(state["channels"], state["latent_dim"])
        try:
            autoencoder.load_state_dict(
                {k.removeprefix("autoencoder."): v for k, v in tensors.items() if k.startswith("autoencoder.")}
            )
        except RuntimeError:
            raise ModelFileError(f"model {folder} is damaged: {self.data_files[0]} does not fit its manifest") from None
        self.autoencoder = autoencoder.to(self.device).eval()
        self.feature_mean = tensors["feature_mean"]
        self.feature_std = tensors["feature_std"]
        rehearsal = tensors.get("rehearsal")
        if rehearsal is not None and (rehearsal.dim() != 2 or rehearsal.shape[1] != state["channels"]):
            raise ModelFileError(f"model {folder} is damaged: its rehearsal vectors do not fit its manifest")
        self.rehearsal = rehearsal
        self.loss_history = list(state.get("loss_history", []))

    def summary(self) -> dict:
        return {"final_loss": self.loss_history[-1]} if self.loss_history else {}

    def training_cost(self, images: list[np.ndarray], count: int, read_seconds: float = 0.0) -> TrainingCost:
        """Features timed on ``images``; training steps of the network the fit would build, timed on their
        vectors; memory is this process's peak so far (the network, the libraries) plus the feature table, held
        twice while it is joined.

        The fit trains the final network and then ``CALIBRATION_FOLDS`` fold networks on (folds - 1) / folds of the
        vectors each: (folds - 1) more trainings of the whole. Every fitted image is read and scored once more by its
        fold network. The latent width is DFR's rule applied to the sample's vectors, so it can come out narrower
        than on the whole set, whose variety is larger.
        """
        config = self.config
        parts, per_image = time_features(self.regional_features, images, config.image_size, config.keep_aspect)
        vectors = int(sum(part.shape[0] * part.shape[2] * part.shape[3] for part in parts) / len(images) * count)
        vectors = min(vectors, MAX_TRAINING_VECTORS)
        channels = parts[0].shape[1]
        sample = torch.cat([part.permute(0, 2, 3, 1).reshape(-1, channels) for part in parts]).cpu()
        sample = (sample - sample.mean(0)) / sample.std(0).clamp_min(1e-6)
        latent = config.latent_dim or latent_from_variance(sample, config.explained_variance)
        size = self.batch_size(vectors)
        step = self._step_seconds(sample, max(1, min(latent, channels)), size)
        training = config.epochs * math.ceil(vectors / size) * step
        stages = self.stage_plan(per_image + read_seconds, count, training)
        # The fit embeds full batches of images that share an input shape, while the sample's batches are as small
        # as its shapes are varied (KolektorSDD's, one or two images): one full batch of the sample's largest input,
        # so that the peak holds its activations (KolektorSDD: about 200 MB, against 64 MB for the sample's batches).
        largest = images[largest_first(images)[0]]
        self.regional_features([largest] * min(EMBED_BATCH, count))
        memory_mb = (peak_memory_mb() or 0.0) + vectors * channels * 4 * 2 / 2**20
        return TrainingCost(sum(seconds for _, seconds in stages), memory_mb, per_image, stages=stages,
                            inspect_seconds=self._time_inspection(images, max(1, min(latent, channels)), read_seconds))

    def _time_inspection(self, images: list[np.ndarray], latent: int, read_seconds: float) -> float:
        """Seconds a part will take to read and score, timed on the real scoring path with a stand-in network of
        the width the fit will choose: untrained, since its weights do not change what it costs."""
        kept = self.autoencoder
        self.autoencoder = FeatureAutoencoder(self.channels, latent).to(self.device).eval()
        try:
            return time_inspection(self.raw_predict, images, read_seconds)
        finally:
            self.autoencoder = kept

    @staticmethod
    def stage_plan(image_seconds: float, count: int, training_seconds: float, warm_up_seconds: float = 0.0
                   ) -> tuple[tuple[str, float], ...]:
        """Seconds of each stage a training of ``count`` fitted images reports, from the seconds one image takes
        to read and embed and those the final network's epochs take (plus, for it alone, the first epoch's
        ``warm_up_seconds``): the estimate's split, and the plan the fit sends once its first epochs are timed.

        Each fold network trains on (folds - 1) / folds of the vectors, and is counted at that share of the final
        network's time: its share of the steps with full batches. Measured (AMD EPYC, 2 cores), a fold's epoch took
        0.55-0.8 of the final one's (the step time also follows the table's size and the batch's, unevenly); the
        time left corrects it by the pace the first fold keeps. Before the first fold the final network
        scores the held-out images; after the folds' training each fold network scores them ("calibrate"), then
        every fitted image is read and scored by its fold's network, and the training scores the held-out ones
        once more.
        """
        fold_training = training_seconds * (CALIBRATION_FOLDS - 1) / CALIBRATION_FOLDS
        held_out = image_seconds * count * HELD_OUT_PER_FITTED
        return (("features", image_seconds * count), ("train", training_seconds + warm_up_seconds),
                *((fold_stage(fold, CALIBRATION_FOLDS), fold_training + (held_out if fold == 0 else 0.0))
                  for fold in range(CALIBRATION_FOLDS)),
                ("calibrate", image_seconds * count + held_out * (CALIBRATION_FOLDS + 1)))

    def _step_seconds(self, sample: torch.Tensor, latent: int, size: int) -> float:
        """Seconds of one training step of ``size`` vectors drawn from ``sample``, as ``_train`` takes it (the
        batch gathered, its noise drawn, the loss read back), timed on the model's device."""
        model = FeatureAutoencoder(self.channels, latent).to(self.device)
        optimiser = torch.optim.Adam(model.parameters(), lr=self.config.learning_rate)
        generator = torch.Generator().manual_seed(self.config.seed)
        started = 0.0
        for index in range(TIMED_STEPS + 1):
            if index == 1:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                started = time.perf_counter()
            rows = torch.randint(0, sample.shape[0], (size,), generator=generator)
            float(self._batch_step(model, optimiser, sample[rows], generator, self.config.hard_share).detach())
        return (time.perf_counter() - started) / TIMED_STEPS
