"""A third detector joins through the contract and the registry alone: trained, saved, loaded, corrected, estimated.

``MeanImageDetector`` scores the distance to the mean good image. It is registered for the test only, keeps its
state in a file of its own kind (``mean.npy``) and learns from a corrected image by updating the mean; nothing
outside ``engine.detector.DETECTORS`` is told about it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from anomalyapp.core.errors import DataError
from anomalyapp.core.types import Prediction, Progress, drain
from anomalyapp.engine import anomaly_map
from anomalyapp.engine.cost import TrainingCost
from anomalyapp.engine.detector import DETECTORS
from anomalyapp.services.correction import learn_good_images
from anomalyapp.services.inference import InferenceSession
from anomalyapp.services.training import (
    TrainRequest,
    build_config,
    detector_options,
    estimate,
    part_time,
    train,
)


@dataclass(frozen=True)
class MeanImageConfig:
    backbone: str = "efficientnet_lite0"
    layers: tuple[str, ...] = ("layer1",)
    image_size: int = 32
    keep_aspect: bool = False
    seed: int = 0

    training_options: ClassVar[tuple[str, ...]] = ()

    def problem(self) -> str | None:
        return None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MeanImageConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


class MeanImageDetector:
    name = "mean_image"
    data_files = ("mean.npy",)
    config_class = MeanImageConfig

    def __init__(self, config: MeanImageConfig, extractor):
        self.config, self.extractor, self.calibration = config, extractor, None
        self.mean: np.ndarray | None = None
        self.count = 0

    def _small(self, image: np.ndarray) -> np.ndarray:
        side = self.config.image_size
        return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32).mean(axis=2)

    def fit(self, images, total, cancel=None):
        small = [self._small(image) for image in images]
        self.mean, self.count = np.mean(small, axis=0), len(small)
        yield Progress("fit", len(small), total, "mean image")

    def unseen_scores(self, images, total, cancel=None, reference=None):
        scores, maps = self.raw_predict(list(images))
        yield Progress("calibrate", total, total, "scored")
        return [float(s) for s in scores], [float(m.max()) for m in maps]

    def raw_predict(self, images):
        maps = [np.abs(self._small(image) - self.mean) for image in images]
        return np.array([float(m.mean()) for m in maps]), maps

    def predict(self, image):
        scores, maps = self.raw_predict([image])
        normalised = self.calibration.normalise_map(maps[0])
        return Prediction(score=self.calibration.normalise_score(scores[0]), raw_score=float(scores[0]),
                          anomaly_map=anomaly_map.to_image_size(normalised, image.shape[0], image.shape[1]))

    def state_dict(self):
        return {}, {"images": self.count}

    def write_file(self, name: str, path: Path) -> None:
        np.save(path, self.mean)

    def load_state(self, tensors, state, folder: Path) -> None:
        self.mean = np.load(folder / "mean.npy", allow_pickle=False)
        self.count = state["images"]

    def learn_from_good(self, images, cancel=None):
        small = [self._small(image) for image in images]
        self.mean = (self.mean * self.count + np.sum(small, axis=0)) / (self.count + len(small))
        self.count += len(small)
        yield Progress("learn", 1, 1, "mean updated")
        return f"mean image updated with {len(small)} images"

    def summary(self) -> dict:
        return {"images": self.count}

    def training_cost(self, images, count, read_seconds=0.0):
        return TrainingCost(seconds=0.01 * count, memory_mb=0.004, per_image_seconds=0.01)


@pytest.fixture
def mean_image_registered(monkeypatch):
    monkeypatch.setitem(DETECTORS, MeanImageDetector.name, MeanImageDetector)


def test_a_third_detector_trains_saves_loads_and_learns_through_the_contract(mean_image_registered, demo_line,
                                                                             tmp_path):
    request = TrainRequest(data=demo_line, detector="mean_image", out=tmp_path / "v1", weights="random",
                           image_size=32, device="cpu")
    result = drain(train(request))
    assert (result.model_path / "mean.npy").is_file() and result.summary["images"] == result.train_images

    session = InferenceSession(result.model_path, device="cpu")
    defects = sorted(p for p in (demo_line / "test").rglob("*.png") if p.parent.name != "good")
    scores = {p: session.predict_path(p).prediction.score for p in defects}
    flagged = max(scores, key=scores.get)
    correction = drain(learn_good_images(session, [flagged], tmp_path))
    assert "mean image updated with 1 images" in correction.change and correction.parent == "v1"
    assert (correction.folder / "mean.npy").is_file()
    reloaded = InferenceSession(correction.folder, device="cpu")
    assert reloaded.predict_path(flagged).prediction.score < scores[flagged]

    assert estimate(request).seconds == pytest.approx(0.01 * 12, rel=0.5)


def test_the_request_options_that_apply_come_from_the_detector(mean_image_registered, demo_line):
    assert detector_options("patchcore") == ("coreset_ratio", "max_bank_size", "index", "stage_weighting", "layers")
    assert detector_options("autoencoder") == ("epochs",)
    assert detector_options("mean_image") == ()
    # options of another detector are ignored, not an error: the window sends every field it shows
    config = build_config(TrainRequest(data=demo_line, detector="autoencoder", coreset_ratio=5.0, epochs=3,
                                       layers=("layer3", "layer4")))  # the stages PatchCore was last set to
    assert config.epochs == 3 and config.layers == ("layer2", "layer3")
    with pytest.raises(DataError, match="coreset ratio 5.0 must be in"):
        build_config(TrainRequest(data=demo_line, detector="patchcore", coreset_ratio=5.0, epochs=0))
    with pytest.raises(DataError, match="unknown detector 'nope'; choose one of patchcore, autoencoder, mean_image"):
        detector_options("nope")


def test_both_detectors_cost_their_own_training(demo_line):
    patchcore = estimate(TrainRequest(data=demo_line, detector="patchcore", image_size=128, device="cpu"))
    autoencoder = estimate(TrainRequest(data=demo_line, detector="autoencoder", image_size=128, device="cpu", epochs=2))
    assert patchcore.images == autoencoder.images == 12
    assert patchcore.bank_size and autoencoder.bank_size is None  # only PatchCore keeps a memory bank
    assert patchcore.seconds > 0 and autoencoder.seconds > 0 and patchcore.memory_mb > 0 and autoencoder.memory_mb > 0
    # Both say what a part will take to inspect with the model the training makes, before it is made.
    for cost in (patchcore, autoencoder):
        assert cost.inspect_ms > 0 and f"; then inspection about {part_time(cost.inspect_ms / 1000)} a part" in (
            cost.describe())
    # A tiled high-resolution part takes seconds: said in seconds.
    assert (part_time(0.0924), part_time(5.737), part_time(0.9996)) == ("92 ms", "5.7 s", "1.0 s")


@pytest.mark.parametrize("detector", ["patchcore", "autoencoder"])
def test_the_estimate_splits_its_time_by_the_stages_the_training_reports(demo_line, tmp_path, detector):
    """The window weighs the stages still to come with the estimate's split (core.remaining_time), so each stage
    it names must be one the training reports steps under, and the parts must make the whole."""
    request = TrainRequest(data=demo_line, detector=detector, image_size=64, device="cpu", epochs=2,
                           out=tmp_path / "model")
    cost = estimate(request)
    assert cost.stages and sum(seconds for _, seconds in cost.stages) == pytest.approx(cost.seconds)
    assert all(seconds >= 0 for _, seconds in cost.stages)
    reported = {progress.stage for progress in train(request) if progress.total}
    assert {stage for stage, _ in cost.stages} <= reported


def test_an_autoencoder_training_sends_its_own_stage_plan_once_its_epochs_are_timed(demo_line, tmp_path):
    """Without an estimate the window's time left knows only the running stage; the autoencoder's three
    calibration folds come after its training. The training sends the plan its own timings give, on its third
    epoch (the first pays for allocations), naming the stages it reports, a fold being (folds - 1) / folds of
    the training."""
    request = TrainRequest(data=demo_line, detector="autoencoder", image_size=64, device="cpu", epochs=4,
                           out=tmp_path / "model")
    steps = [progress for progress in train(request) if progress.total]
    sent = [(index, progress) for index, progress in enumerate(steps) if progress.plan]
    assert len(sent) == 1
    _, first_epoch = sent[0]
    assert (first_epoch.stage, first_epoch.step) == ("train", 3)
    plan = dict(first_epoch.plan)
    assert set(plan) == {progress.stage for progress in steps} - {"save"}  # the service's own last step
    assert all(seconds > 0 for seconds in plan.values())
    # A fold trains on two thirds of the vectors; the final training alone also pays its first epoch's warm-up.
    assert plan["fold 2/3"] == pytest.approx(plan["fold 3/3"]) and plan["fold 2/3"] <= plan["train"] * 2 / 3


def test_a_patchcore_training_sends_its_plan_after_its_features_and_counts_each_stage_as_one(demo_line, tmp_path):
    """PatchCore's features are the short part of its training (magnetic tile: 3 s of 30): without an estimate the
    window would show their time alone. The fit sends its plan with the coreset's first step; the default rule's
    two half coresets count as one progression, and the calibrate stage counts the held-out images scored after
    the leave-one-out, so no stage reads as done, or starts again, before it is."""
    request = TrainRequest(data=demo_line, detector="patchcore", image_size=64, device="cpu", out=tmp_path / "model")
    steps = [progress for progress in train(request) if progress.total]
    sent = [progress for progress in steps if progress.plan]
    assert len(sent) == 1 and (sent[0].stage, sent[0].step) == ("coreset", 0)
    assert steps[steps.index(sent[0]) - 1].stage == "features"
    plan = dict(sent[0].plan)
    assert set(plan) == {progress.stage for progress in steps} - {"bank", "save"}  # neither is counted
    assert all(seconds > 0 for seconds in plan.values())
    for stage in ("coreset", "calibrate"):
        reported = [(progress.step, progress.total) for progress in steps if progress.stage == stage]
        assert len({total for _, total in reported}) == 1, (stage, reported)
        assert [step for step, _ in reported] == sorted(step for step, _ in reported), (stage, reported)
        assert reported[-1][0] == reported[-1][1]
    held_out = [progress for progress in steps if progress.message.startswith("scored held-out")]
    assert held_out and held_out[-1].step == held_out[-1].total


@pytest.mark.parametrize("detector", ["patchcore", "autoencoder"])
def test_the_estimate_counts_reading_the_image_files(demo_line, monkeypatch, detector):
    """A 5 MP PNG takes several times what its features at 224 px take to compute; every stage that reads the files
    must count it. Here each read is made 0.2 s slower: the 10 fitted images' features stage grows by about 2.0 s (12 good
    images, the last 2 held out)."""
    import time as clock

    import anomalyapp.services.training as training

    request = TrainRequest(data=demo_line, detector=detector, image_size=64, device="cpu", epochs=2)
    quick = dict(estimate(request).stages)
    read = training.load_training_image

    def slow_read(path):
        clock.sleep(0.2)
        return read(path)

    monkeypatch.setattr(training, "load_training_image", slow_read)
    slow = dict(estimate(request).stages)
    assert slow["features"] - quick["features"] == pytest.approx(2.0, abs=0.4)
    # The held-out images are read too (calibrate, or the autoencoder's first fold): 2 of them, 0.4 s.
    others = sum(slow.values()) - slow["features"] - (sum(quick.values()) - quick["features"])
    assert others > 0.25
