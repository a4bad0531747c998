"""The calibrated threshold: a stated false-reject rate on new good parts, from scores the model did not see."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from anomalyapp.core.config import CalibrationConfig, PatchCoreConfig
from anomalyapp.core.types import drain
from anomalyapp.data.datasets import discover_dataset
from anomalyapp.data.images import load_image
from anomalyapp.engine.calibration import Calibration, FalseRejectModel, calibrate, describe_rate, screen_outliers
from anomalyapp.engine.detector import build_detector
from anomalyapp.engine.weights import resolve_weights
from anomalyapp.services.evaluation import recall_at_false_reject_rate
from anomalyapp.services.training import split_holdout


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_meets_the_target_on_an_exponential_tail_whose_quantile_is_known(seed):
    rng = np.random.default_rng(seed)
    good = 3.0 + rng.exponential(0.5, 300)  # P(S >= t) = exp(-(t - 3) / 0.5)
    calibration = calibrate(good, good, source="synthetic", target_false_reject_rate=0.01)
    true_quantile = 3.0 + 0.5 * math.log(100)
    assert calibration.image_threshold == pytest.approx(true_quantile, rel=0.12)
    # New good parts from the same line: the share judged NG is near the target.
    new_parts = 3.0 + rng.exponential(0.5, 200_000)
    rejected = float(np.mean(new_parts >= calibration.image_threshold))
    assert 0.004 <= rejected <= 0.025
    estimate, low, high = calibration.expected_false_rejects(0.5)
    assert estimate == pytest.approx(0.01, rel=1e-6)
    assert low < 0.01 < high
    # The interval contains the rate new parts really see at that threshold.
    assert low <= rejected <= high


@pytest.mark.parametrize("count", [20, 40])
def test_the_rates_interval_holds_the_true_rate_as_often_as_it_says_on_small_exponential_sets(count):
    """Many lines, each with ``count`` good scores from a tail whose rate is known: at each calibrated threshold
    the true rate lies above the interval's upper end about 5 % of the time. (A bootstrap of the scores, which
    cannot draw beyond their highest, left it above 20 % of the time on 40 scores.)"""
    rng = np.random.default_rng(11)
    above = below = 0
    sets = 300
    for _ in range(sets):
        good = 3.0 + rng.exponential(0.5, count)  # P(S >= t) = exp(-(t - 3) / 0.5)
        model = FalseRejectModel(good)
        threshold = model.threshold_for(0.01)
        true_rate = math.exp(-(threshold - 3.0) / 0.5)
        _, low, high = model.expected_rate(threshold)
        above += true_rate > high
        below += true_rate < low
    assert above / sets <= 0.09 and below / sets <= 0.09  # 5 % each side, give or take 300 sets' chance
    assert (above + below) / sets >= 0.04  # an interval wide enough to hold everything would not pass either


def test_what_more_good_images_would_promise_is_the_interval_of_that_many_scores():
    from anomalyapp.engine.calibration import interval_at_target, rate_percent
    from anomalyapp.services.training import more_images_text

    rng = np.random.default_rng(6)
    for count in (40, 200):
        model = FalseRejectModel(3.0 + rng.exponential(0.5, count))
        _, low, high = model.expected_rate(model.threshold_for(0.01))
        assert interval_at_target(count, 0.01) == pytest.approx((low, high), rel=0.15)  # other draws, same law
    few = calibrate(list(3.0 + rng.exponential(0.5, 40)), [1.0] * 40, source="synthetic")
    many_low, many_high = interval_at_target(200, 0.01)
    low, high = few.expected_false_reject_interval
    assert many_high < high and more_images_text(few) == (
        f"with 40 good images the interval is {rate_percent(low)}-{rate_percent(high)} %; 200 would narrow it to "
        f"{rate_percent(many_low)}-{rate_percent(many_high)} %")
    assert rate_percent(0.0008) == "0.08" and rate_percent(0.043) == "4.3"  # as the expected rate is written
    assert more_images_text(calibrate(list(3.0 + rng.exponential(0.5, 200)), [1.0] * 200, source="s")) is None
    assert more_images_text(calibrate([1.0, 1.1, 1.2], [1.0] * 3, source="too few for a tail")) is None
    with pytest.raises(ValueError):
        interval_at_target(40, 0.5)  # the empirical scores, not the tail, set such a threshold


@pytest.mark.parametrize("parts", [20, 80, 500])
def test_the_expected_count_of_a_batch_holds_its_own_chance_and_covers_simulated_batches(parts):
    rng = np.random.default_rng(3)
    good = 3.0 + rng.exponential(0.5, 200)  # P(S >= t) = exp(-(t - 3) / 0.5)
    model = FalseRejectModel(good)
    threshold = model.threshold_for(0.01)
    low, high = model.expected_count(threshold, parts)
    # Batches of new good parts from the same line: their count of false rejects lies in the interval about
    # 90 % of the time (the interval is of whole counts, so at least that).
    true_rate = math.exp(-(threshold - 3.0) / 0.5)
    counts = rng.binomial(parts, true_rate, 4000)
    assert np.mean((counts >= low) & (counts <= high)) >= 0.88
    # The mixture of each bootstrap replicate's binomial, drawn instead of summed, gives the same interval.
    rates = np.clip(model._replicate_rates(threshold), 0, 1)
    drawn = rng.binomial(parts, np.repeat(rates, 200))
    assert abs(np.quantile(drawn, 0.05) - low) <= 1 and abs(np.quantile(drawn, 0.95) - high) <= 1
    # A batch of 20 at a 1 % rate most likely shows none, so a measured 0 of 20 is expected, not a miss.
    if parts == 20:
        assert low == 0 and high >= 1
    # The rate's own interval, times the batch, is narrower than the batch's: chance is added, not ignored.
    _, rate_low, rate_high = model.expected_rate(threshold)
    assert low <= rate_low * parts and high >= rate_high * parts


def test_rate_below_one_over_n_is_extrapolated_from_the_tail():
    rng = np.random.default_rng(5)
    good = rng.gamma(4.0, 1.0, 60)  # 60 scores: the empirical rate cannot go below 1/60
    model = FalseRejectModel(good)
    threshold = model.threshold_for(0.002)
    assert threshold > good.max()
    estimate, low, high = model.expected_rate(threshold)
    assert estimate == pytest.approx(0.002, rel=1e-6)
    assert 0 < low < estimate < high < 0.05
    # Monotone: a higher threshold never expects more false rejects.
    rates = [model.expected_rate(t)[0] for t in np.linspace(good.min(), 2 * good.max(), 40)]
    assert all(b <= a + 1e-12 for a, b in zip(rates, rates[1:]))


def test_gamma_scores_threshold_is_close_to_the_true_quantile():
    rng = np.random.default_rng(11)
    good = rng.gamma(2.0, 1.0, 400)
    threshold = calibrate(good, good, source="synthetic", target_false_reject_rate=0.01).image_threshold
    true_rate = float(np.mean(rng.gamma(2.0, 1.0, 400_000) >= threshold))
    assert 0.004 <= true_rate <= 0.025


def test_the_default_uncertain_band_lies_below_the_threshold_and_is_normalised():
    rng = np.random.default_rng(3)
    good = rng.normal(10, 1, 120)
    calibration = calibrate(good, good, source="synthetic")
    assert calibration.target_false_reject_rate == CalibrationConfig().target_false_reject_rate
    assert calibration.uncertain_low < calibration.image_threshold
    assert 0 < calibration.uncertain_low_normalised < 0.5


def test_too_few_scores_fall_back_to_the_old_rule_and_say_so():
    calibration = calibrate([1.0, 1.2, 1.1], [2.0, 2.1, 2.2], source="tiny")
    assert calibration.rule.startswith("max(mean + 3 std")
    assert calibration.image_threshold >= 1.2
    assert calibration.expected_false_reject_rate is None


def test_a_calibration_written_before_the_target_loads_and_keeps_its_threshold():
    old = {  # the calibration block of a format-2 manifest, as the previous version wrote it
        "image_threshold": 1.7, "pixel_threshold": 2.3, "good_scores": [1.0, 1.1, 1.2],
        "good_map_maxima": [2.0, 2.1, 2.2], "source": "2 of 12 good images held out",
        "rule": "max(mean + 3 std, max) of held-out good scores", "defect_scores": [], "f1_threshold": None,
    }
    calibration = Calibration.from_dict(json.loads(json.dumps(old)))
    assert calibration.image_threshold == 1.7
    assert calibration.normalise_score(1.7) == 0.5
    assert calibration.target_false_reject_rate is None and calibration.uncertain_low is None
    assert calibration.expected_false_rejects(0.5) is None  # three scores: no tail to speak of
    again = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert again.image_threshold == 1.7


def test_describe_rate_reads_as_the_station_sees_it():
    assert describe_rate(0.012, 0.004, 0.03) == "expected false rejects 1.2 % (0.4-3.0 %) on new good parts"


def test_holdout_is_the_last_images_in_capture_order(tmp_path):
    paths = [tmp_path / f"img{i}.png" for i in (1, 2, 3, 9, 10, 11, 12, 20, 100, 4)]
    fit, held = split_holdout(paths, CalibrationConfig(holdout_fraction=0.2), seed=0)
    assert [p.name for p in held] == ["img20.png", "img100.png"]  # natural order: 100 after 20, not after 1
    assert len(fit) == 8


def test_recall_at_false_reject_rate_on_known_scores():
    labels = [0] * 20 + [1] * 4
    good = list(np.linspace(0.0, 1.9, 20))  # highest good 1.9, next 1.8
    scores = good + [1.85, 1.95, 3.0, 0.5]
    assert recall_at_false_reject_rate(labels, scores, 0.0) == 0.5  # above 1.9: 1.95 and 3.0
    assert recall_at_false_reject_rate(labels, scores, 0.05) == 0.75  # one good allowed: above 1.8


@pytest.fixture(scope="module")
def fitted_patchcore(demo_line):
    # The concatenated rule's leave-one-out; the mixed rule's has its own test (test_score_concatenated_map_balanced).
    config = PatchCoreConfig(image_size=128, stage_weighting="concatenated")
    detector, _ = build_detector("patchcore", config, resolve_weights(config.backbone), "cpu")
    images = [load_image(p).to_rgb() for p in discover_dataset(demo_line).train_good]
    drain(detector.fit(iter(images), len(images)))
    return detector, images


def test_patchcore_leave_one_out_scores_an_image_without_its_own_patches(fitted_patchcore, demo_line):
    detector, images = fitted_patchcore
    seen, _ = detector.raw_predict(images[:4])
    unseen, maxima = drain(detector.unseen_scores(iter(images), len(images)))
    assert len(unseen) == len(images) == len(maxima)
    # Against the full bank a fitted image finds its own patches; without them it scores like a new part.
    assert all(u > s for u, s in zip(unseen[:4], seen))
    new_good = [load_image(item.path).to_rgb() for item in discover_dataset(demo_line).test if not item.is_anomalous]
    new_scores, _ = detector.raw_predict(new_good)
    assert np.median(unseen) == pytest.approx(np.median(new_scores), rel=0.5)


class _NotToBeRead:
    """Stands for the fitted images passed again: the leave-one-out scores must come from the fit's table."""

    def __iter__(self):
        raise AssertionError("the fitted images were read again")


def _leave_one_out_by_embedding_again(detector, images):
    """Reference: embed each fitted image again and mask the bank vectors it contributed."""
    from anomalyapp.engine import anomaly_map
    from anomalyapp.engine.preprocessing import input_shape

    vectors = torch.from_numpy(detector.bank.vectors())
    scores, maxima = [], []
    for index, image in enumerate(images):
        grid = detector.embed([image])[0]
        h, w, d = grid.shape
        flat = grid.reshape(-1, d)
        squared = torch.cdist(flat.double(), vectors.double()) ** 2
        squared[:, detector._bank_owners == index] = float("inf")
        best, nearest = squared.min(dim=1)
        distances = best.sqrt().float()
        top = int(torch.argmax(distances))
        scores.append(float(distances[top]) * detector._reweight(flat[top], int(nearest[top])))
        shape = input_shape(image.shape[0], image.shape[1], detector.config.image_size, detector.config.keep_aspect)
        maxima.append(float(anomaly_map.gaussian_smooth(distances.reshape(h, w).numpy(), shape,
                                                        detector.config.sigma).max()))
    return scores, maxima


def test_patchcore_leave_one_out_comes_from_the_fit_table_without_embedding_again(demo_line):
    config = PatchCoreConfig(image_size=64, keep_aspect=True, stage_weighting="concatenated")  # as the reference
    detector, _ = build_detector("patchcore", config, resolve_weights(config.backbone), "cpu")
    full = [load_image(p).to_rgb() for p in discover_dataset(demo_line).train_good]
    # Two shapes (square, and a 2:1 strip), so the images have different grids.
    images = full[:4] + [image[:64] for image in full[4:8]] + full[8:10]
    drain(detector.fit(iter(images), len(images)))
    expected_scores, expected_maxima = _leave_one_out_by_embedding_again(detector, images)
    scores, maxima = drain(detector.unseen_scores(_NotToBeRead(), len(images)))
    assert scores == pytest.approx(expected_scores, rel=1e-3, abs=1e-4)
    assert maxima == pytest.approx(expected_maxima, rel=1e-3, abs=1e-4)
    assert detector._fit_patches is None  # the table is not kept once used


def test_autoencoder_fold_scores_are_put_on_the_final_models_scale(tmp_path):
    """Fold models see two thirds of the images, and on real sets score new parts higher than the final
    model does (docs/accuracy.md); each fold also scores the held-out images, which no model saw, and its
    scores are multiplied by the final model's median over theirs on them."""
    from anomalyapp.core.config import AutoencoderConfig
    from anomalyapp.data.demo import generate_demo

    data = generate_demo(tmp_path / "line", n_train=13, n_test_good=1, n_test_per_defect=1, size=64)
    images = [load_image(p).to_rgb() for p in discover_dataset(data).train_good]
    fitted, held_out = images[:8], images[8:]
    config = AutoencoderConfig(image_size=64, epochs=3)
    detector, _ = build_detector("autoencoder", config, resolve_weights(config.backbone), "cpu")
    drain(detector.fit(iter(fitted), len(fitted)))
    material = detector._fold_material  # the fold models are seeded: run them twice, with and without reference
    raw, raw_maxima = drain(detector.unseen_scores(iter(fitted), len(fitted)))
    assert detector.fold_score_factors == []  # nothing to rescale with
    detector._fold_material = material
    rescaled, maxima = drain(detector.unseen_scores(iter(fitted), len(fitted), reference=lambda: iter(held_out)))
    factors = detector.fold_score_factors
    assert len(factors) == 3 and all(f > 0 for f in factors)
    # Image i was scored by fold i % 3.
    assert rescaled == pytest.approx([s * factors[i % 3] for i, s in enumerate(raw)], rel=1e-4)


def test_autoencoder_fold_scores_read_each_fitted_image_once_and_keep_none(tmp_path):
    """A station's good images can be hundreds of 5 MP frames: the fold networks are trained first, then the
    fitted images are read in one pass, each scored by the fold that did not see it and let go before the next
    (they were all held in a list while the folds trained)."""
    import weakref

    from anomalyapp.core.config import AutoencoderConfig
    from anomalyapp.data.demo import generate_demo

    data = generate_demo(tmp_path / "line", n_train=8, n_test_good=1, n_test_per_defect=1, size=64)
    fitted = [load_image(p).to_rgb() for p in discover_dataset(data).train_good]
    config = AutoencoderConfig(image_size=64, epochs=2)
    detector, _ = build_detector("autoencoder", config, resolve_weights(config.backbone), "cpu")
    drain(detector.fit(iter(fitted), len(fitted)))
    material = detector._fold_material
    expected, expected_maxima = drain(detector.unseen_scores(list(fitted), len(fitted)))
    detector._fold_material = material
    alive, most_alive, reads = [0], [0], [0]

    def let_go():
        alive[0] -= 1

    def read_one_at_a_time():
        for image in fitted:
            most_alive[0] = max(most_alive[0], alive[0])  # images still held when the next is read
            copy = image.copy()
            alive[0] += 1
            weakref.finalize(copy, let_go)
            reads[0] += 1
            yield copy
            del copy

    scores, maxima = drain(detector.unseen_scores(read_one_at_a_time(), len(fitted)))
    assert reads[0] == len(fitted) and most_alive[0] <= 1
    assert scores == pytest.approx(expected) and maxima == pytest.approx(expected_maxima)


def test_screening_names_a_defective_part_among_good_scores_and_leaves_clean_sets_alone():
    rng = np.random.default_rng(21)
    good = list(rng.normal(1.0, 0.1, 40))
    assert screen_outliers(good) == []  # a clean set: nothing flagged
    with_defect = good[:17] + [1.9] + good[17:]  # a defective part in the good folder, at position 17
    assert screen_outliers(with_defect) == [17]
    names = [f"good/{i:03d}.png" for i in range(len(with_defect))]
    calibration = calibrate(with_defect, with_defect, source="synthetic", names=names)
    clean = calibrate(good, good, source="synthetic")
    assert [suspect["name"] for suspect in calibration.suspects] == ["good/017.png"]
    assert calibration.suspects[0]["score"] == 1.9 and len(calibration.good_scores) == 41
    assert calibration.suspects[0]["threshold_without"] == pytest.approx(clean.image_threshold)
    assert clean.suspects is None
    # 1 of 41 is more than the 1 % allowed: taken as defective, judged NG, and the threshold is the clean one.
    assert calibration.outliers_left_out and not calibration.outliers_apart
    assert "1 outlier(s) left out as defective" in calibration.rule
    assert calibration.image_threshold == pytest.approx(clean.image_threshold) and calibration.image_threshold < 1.9
    assert calibration.pixel_threshold == pytest.approx(clean.pixel_threshold)
    assert calibration.expected_false_rejects(0.5) == pytest.approx(clean.expected_false_rejects(0.5))
    new_parts = rng.normal(1.0, 0.1, 200_000)  # new good parts from the same line
    rejected = float(np.mean(new_parts >= calibration.image_threshold))
    estimate, low, high = calibration.expected_false_rejects(0.5)
    assert low <= rejected <= high and 0.002 <= rejected <= 0.03
    # Kept in the tail (the rule before), it stretched the threshold and still judged it NG: the target was met
    # neither if it is defective (the threshold passes more defects than it needs to) nor if it is good.
    stretched = FalseRejectModel(with_defect).threshold_for(0.01)
    assert 1.1 * clean.image_threshold < stretched < 1.9
    # Should it be a good part after all, the tail of every score says what the station then rejects.
    if_good = calibration.expected_false_rejects_if_suspects_good()
    assert if_good == pytest.approx(FalseRejectModel(with_defect).expected_rate(calibration.image_threshold))
    assert if_good[0] > 0.02 and clean.expected_false_rejects_if_suspects_good() is None
    assert calibration.describe_suspects() == (
        f"Look at good image good/017.png: unseen, it scores {calibration.normalise_score(1.9):.2f}, judged NG: the "
        f"expected rate holds if it is defective ({100 * if_good[0]:.1f} % if good)")
    # Loaded again, it is left out the same way.
    again = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert again.outliers_left_out and again.expected_false_rejects(0.5) == pytest.approx((estimate, low, high))


def test_a_calibration_saved_before_the_suspects_treatment_keeps_its_outlier_in_the_tail():
    rng = np.random.default_rng(21)
    with_defect = list(rng.normal(1.0, 0.1, 40)) + [1.9]
    saved = calibrate(with_defect, with_defect, source="synthetic").to_dict()
    stretched = FalseRejectModel(with_defect)
    # As an older version wrote it: no suspects_treatment, the threshold its tail-stretching rule gave.
    saved.pop("suspects_treatment")
    saved["image_threshold"] = stretched.threshold_for(0.01)
    old = Calibration.from_dict(saved)
    assert not old.outliers_left_out and not old.outliers_apart
    assert old.expected_false_rejects(0.5) == pytest.approx(stretched.expected_rate(saved["image_threshold"]))
    assert "holds the threshold up" in old.describe_suspects()


def test_outliers_under_the_target_share_are_counted_apart_and_the_rate_still_holds():
    rng = np.random.default_rng(8)
    good = list(3.0 + rng.exponential(0.5, 400))
    evidence = good + [12.0]  # one good part in 401 far out: a quarter of the 1 % allowed
    calibration = calibrate(evidence, evidence, source="synthetic", names=[f"{i}.png" for i in range(401)])
    assert [suspect["name"] for suspect in calibration.suspects] == ["400.png"]
    assert calibration.outliers_apart and "1 outlier(s) counted apart" in calibration.rule
    # New good parts from the same line: the usual ones, and that kind of part in its share.
    new_parts = np.concatenate([3.0 + rng.exponential(0.5, 200_000), np.full(500, 12.0)])
    rejected = float(np.mean(new_parts >= calibration.image_threshold))
    assert 0.005 <= rejected <= 0.02
    estimate, low, high = calibration.expected_false_rejects(0.5)
    assert estimate == pytest.approx(0.01, rel=1e-6) and low <= rejected <= high
    assert calibration.uncertain_low < calibration.image_threshold
    # Kept in the tail instead, it stretches the threshold: fewer rejects than the target allows.
    stretched = FalseRejectModel(evidence).threshold_for(0.01)
    assert stretched > calibration.image_threshold and float(np.mean(new_parts >= stretched)) < 0.7 * rejected
    # Loaded again, the calibration counts it apart the same way.
    again = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert again.expected_false_rejects(0.5) == pytest.approx((estimate, low, high))
    assert again.describe_suspects() == "Look at good image 400.png: unseen, it scores " \
        f"{again.normalise_score(12.0):.2f}, counted apart as a part to reject"


def test_two_alike_outliers_do_not_hide_each_other_and_screening_stays_bounded():
    rng = np.random.default_rng(4)
    good = list(rng.gamma(4.0, 1.0, 60))
    twins = good + [30.0, 30.5]  # tested one at a time, each would look ordinary beside the other
    assert sorted(screen_outliers(twins)) == [60, 61]
    many = good + [30.0 + i for i in range(10)]  # more than 5 % of the evidence far out: at most 3 of 70 go
    assert len(screen_outliers(many)) <= 3


@pytest.mark.parametrize("draw", [
    lambda rng: rng.normal(5.0, 0.5, 120), lambda rng: rng.gamma(2.0, 1.0, 200), lambda rng: rng.uniform(0, 1, 60),
])
def test_screening_leaves_clean_sets_of_known_distributions_alone(draw):
    flagged = sum(bool(screen_outliers(draw(np.random.default_rng(seed)))) for seed in range(20))
    assert flagged <= 2  # under 3 % of clean sets in simulation (engine/calibration.py)


def test_training_names_a_defective_image_in_the_good_folder(line_with_a_defect_among_good, tmp_path):
    from anomalyapp.engine.bundle import load_model, read_manifest
    from anomalyapp.services.training import TrainRequest, train

    data, defective = line_with_a_defect_among_good
    progress = []
    generator = train(TrainRequest(data=data, detector="patchcore", out=tmp_path / "model", image_size=128,
                                   device="cpu"))
    try:
        while True:
            progress.append(next(generator))
    except StopIteration as stop:
        result = stop.value
    warnings = [p.message for p in progress if p.stage == "warning"]
    assert any(f"good image {defective} scores like a defect" in w and "it is taken as defective: judged NG" in w
               and "if it is a good part, add more good images" in w for w in warnings), warnings
    suspects = read_manifest(result.model_path)["calibration"]["suspects"]
    assert [s["name"] for s in suspects] == [defective]
    assert result.summary["suspect_good_images"] == [defective]
    calibration = load_model(result.model_path)[0].calibration  # the manifest's check accepts the field
    assert calibration.suspects == suspects
    assert calibration.describe_suspects().startswith(f"Look at good image {defective}: unseen, it scores ")
    assert calibration.outliers_left_out and calibration.normalise_score(suspects[0]["score"]) > 0.5
