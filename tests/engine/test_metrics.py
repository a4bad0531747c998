"""Tests for anomalyapp.engine.metrics against scikit-learn and brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from anomalyapp.engine import metrics
from anomalyapp.engine.metrics import aupro, auroc, f1_max, pixel_auroc, roc_curve, threshold_metrics


def _tied_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels correlated with scores that are rounded so that many ties occur, across classes too."""
    labels = rng.random(n) < 0.3
    scores = np.round(rng.normal(labels * 0.8, 1.0) * 4) / 4
    return labels, scores


def _random_masks_maps(rng: np.random.Generator, sizes, tied: bool = True):
    masks, maps = [], []
    for i, (h, w) in enumerate(sizes):
        mask = np.zeros((h, w), bool)
        if i % 3:  # every third image is good: empty mask
            for _ in range(rng.integers(1, 4)):
                y, x = rng.integers(0, h), rng.integers(0, w)
                mask[max(0, y - 3) : y + rng.integers(1, 6), max(0, x - 2) : x + rng.integers(1, 8)] = True
        amap = rng.random((h, w)) + 0.5 * mask
        if tied:
            amap = np.round(amap * 20) / 20
        masks.append(mask)
        maps.append(amap.astype(np.float32))
    return masks, maps


# --------------------------------------------------------------------------------------------------
# AUROC / ROC


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed):
    labels, scores = _tied_data(np.random.default_rng(seed), 500)
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_perfect_inverted_and_constant():
    labels = [0, 0, 0, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.8, 0.9]
    assert auroc(labels, scores) == 1.0
    assert auroc(labels, [-s for s in scores]) == 0.0
    assert auroc(labels, [0.5] * 5) == 0.5


def test_auroc_accepts_bool_and_rejects_other_labels():
    assert auroc([False, True], [0.0, 1.0]) == 1.0
    with pytest.raises(ValueError, match="0/1"):
        auroc([0, 2], [0.0, 1.0])
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        auroc([0, 1], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0, 1], [0.0, np.nan])


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1], []])
def test_one_class_raises(labels):
    scores = np.arange(len(labels), dtype=float)
    with pytest.raises(ValueError, match="one class|empty"):
        auroc(labels, scores)
    with pytest.raises(ValueError, match="one class|empty"):
        roc_curve(labels, scores)


def test_one_class_message_is_clear():
    with pytest.raises(ValueError, match=r"only one class is present \(all normal\)"):
        auroc([0, 0], [0.1, 0.2])


def test_roc_curve_matches_sklearn_and_integrates_to_auroc():
    labels, scores = _tied_data(np.random.default_rng(5), 300)
    fpr, tpr, thr = roc_curve(labels, scores)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_array_equal(thr[1:], sk_thr[1:])
    assert thr[0] == np.inf and fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    trapezoid = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2
    assert trapezoid == pytest.approx(auroc(labels, scores), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# pixel AUROC


def _sklearn_pixel_auroc(masks, maps):
    labels = np.concatenate([m.ravel() for m in masks])
    return roc_auc_score(labels, np.concatenate([a.ravel() for a in maps]))


@pytest.mark.parametrize("seed", [0, 1])
def test_pixel_auroc_matches_sklearn_on_varied_sizes(seed):
    rng = np.random.default_rng(seed)
    masks, maps = _random_masks_maps(rng, [(40, 50), (32, 32), (25, 60), (50, 40), (16, 16), (40, 40)])
    assert pixel_auroc(masks, maps) == pytest.approx(_sklearn_pixel_auroc(masks, maps), abs=1e-12)
    # 0/255 uint8 masks (as read from PNG files) and float64 maps give the same value.
    masks_u8 = [m.astype(np.uint8) * 255 for m in masks]
    assert pixel_auroc(masks_u8, [a.astype(np.float64) for a in maps]) == pixel_auroc(masks, maps)


def test_pixel_auroc_when_anomalous_pixels_outnumber_normal_ones():
    # Exercises the branch that searches the normal pixels into the anomalous ones.
    rng = np.random.default_rng(3)
    masks = [rng.random((30, 30)) < 0.8, rng.random((20, 10)) < 0.7]
    maps = [np.round(rng.random(m.shape) + 0.3 * m, 1).astype(np.float32) for m in masks]
    assert pixel_auroc(masks, maps) == pytest.approx(_sklearn_pixel_auroc(masks, maps), abs=1e-12)


def test_pixel_auroc_perfect_and_inverted():
    mask = np.zeros((8, 8), bool)
    mask[2:4, 3:6] = True
    good = np.zeros((5, 7), bool)
    perfect = [mask.astype(np.float32), np.zeros(good.shape, np.float32)]
    assert pixel_auroc([mask, good], perfect) == 1.0
    assert pixel_auroc([mask, good], [-m for m in perfect]) == 0.0


def test_pixel_auroc_errors():
    with pytest.raises(ValueError, match="one class"):
        pixel_auroc([np.zeros((4, 4), bool)], [np.zeros((4, 4))])
    with pytest.raises(ValueError, match="shape"):
        pixel_auroc([np.zeros((4, 4), bool)], [np.zeros((4, 5))])
    with pytest.raises(ValueError, match="2 masks but 1"):
        pixel_auroc([np.zeros((4, 4), bool)] * 2, [np.zeros((4, 4))])


# --------------------------------------------------------------------------------------------------
# AUPRO


def _aupro_reference(masks, maps, fpr_limit):
    """Brute force: loop over every distinct threshold, scipy labelling, trapezoid with interpolation."""
    structure = np.ones((3, 3), int)
    regions, normal_scores = [], []
    for mask, amap in zip(masks, maps):
        lab, n = ndimage.label(mask, structure)
        regions += [amap[lab == k] for k in range(1, n + 1)]
        normal_scores.append(amap[~mask])
    normal_scores = np.concatenate(normal_scores)
    thresholds = np.unique(np.concatenate([a.ravel() for a in maps]))[::-1]
    fpr = [0.0] + [np.mean(normal_scores >= t) for t in thresholds]
    pro = [0.0] + [np.mean([np.mean(r >= t) for r in regions]) for t in thresholds]
    fpr, pro = np.array(fpr), np.array(pro)
    area = 0.0
    for x0, x1, y0, y1 in zip(fpr[:-1], fpr[1:], pro[:-1], pro[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def _two_region_case(tie: bool):
    """Image 1 (3x4): region A = two diagonal pixels (one 8-connected region), region B = one pixel,
    nine normal pixels (one at 0.8, eight at 0.0). Image 2 (1x1): good, one normal pixel at 0.5,
    or at 0.6 to tie with region B."""
    mask = np.zeros((3, 4), bool)
    mask[0, 0] = mask[1, 1] = mask[0, 3] = True
    amap = np.zeros((3, 4), np.float32)
    amap[0, 0], amap[1, 1], amap[0, 3] = 0.9, 0.3, 0.6
    amap[2, 0] = 0.8
    good = np.array([[0.6 if tie else 0.5]], np.float32)
    return [mask, np.zeros((1, 1), bool)], [amap, good]


@pytest.mark.parametrize(
    ("tie", "limit", "expected"),
    [
        # Curve (FPR, PRO): (0,0) (0,.25) (.1,.25) (.1,.75) (.2,.75) (.2,1) (1,1).
        (False, 0.3, (0.1 * 0.25 + 0.1 * 0.75 + 0.1 * 1.0) / 0.3),  # 2/3
        (False, 0.15, (0.1 * 0.25 + 0.05 * 0.75) / 0.15),  # 5/12
        # Tie between B and a normal pixel: diagonal segment (.1,.25) -> (.2,.75), interpolated at .15.
        (True, 0.3, (0.1 * 0.25 + 0.1 * (0.25 + 0.75) / 2 + 0.1 * 1.0) / 0.3),  # 7/12
        (True, 0.15, (0.1 * 0.25 + 0.05 * (0.25 + 0.5) / 2) / 0.15),  # 7/24
        (False, 1.0, 0.1 * 0.25 + 0.1 * 0.75 + 0.8 * 1.0),
    ],
)
def test_aupro_hand_computed_two_regions(tie, limit, expected):
    masks, maps = _two_region_case(tie)
    assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(expected, abs=1e-12)
    assert _aupro_reference(masks, maps, limit) == pytest.approx(expected, abs=1e-12)


def test_aupro_uses_8_connectivity():
    # With 4-connectivity region A would be two regions and the value 4/9 instead of 5/12.
    masks, maps = _two_region_case(tie=False)
    assert aupro(masks, maps, fpr_limit=0.15) != pytest.approx(4 / 9, abs=1e-3)


def test_aupro_perfect_and_inverted():
    rng = np.random.default_rng(0)
    masks, _ = _random_masks_maps(rng, [(30, 40)] * 6)
    perfect = [m.astype(np.float32) + 0.01 * rng.random(m.shape) for m in masks]
    assert aupro(masks, perfect) == pytest.approx(1.0, abs=1e-12)
    assert aupro(masks, [-p for p in perfect]) == pytest.approx(0.0, abs=1e-12)
    binary = [m.astype(np.float32) for m in masks]
    assert aupro(masks, binary) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("limit", [0.3, 0.05, 1.0])
def test_aupro_random_map_is_about_half_the_limit(limit):
    # Scores independent of the masks: every region's overlap tracks the FPR, so the curve is close to
    # the diagonal and its normalised area up to the limit is about limit / 2.
    # Big regions keep the sampling noise small: the spread over seeds is about 0.002 or less.
    rng = np.random.default_rng(7)
    mask = np.zeros((100, 100), bool)
    mask[10:30, 10:30] = mask[60:90, 50:70] = True
    masks = [mask] * 30 + [np.zeros((80, 120), bool)] * 10
    maps = [rng.random(m.shape).astype(np.float32) for m in masks]
    assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(limit / 2, abs=0.006)


def test_aupro_constant_map_is_the_diagonal():
    masks, _ = _random_masks_maps(np.random.default_rng(1), [(20, 20)] * 4)
    maps = [np.zeros(m.shape, np.float32) for m in masks]
    assert aupro(masks, maps, fpr_limit=0.3) == pytest.approx(0.15, abs=1e-12)


@pytest.mark.parametrize(("seed", "offset"), [(0, 0.0), (1, 0.0), (2, -0.75)])
def test_aupro_matches_brute_force(seed, offset):
    # The offset makes scores negative, positive and +-0.0 mixed, which the packed sort must order.
    rng = np.random.default_rng(seed)
    masks, maps = _random_masks_maps(rng, [(24, 30), (20, 20), (16, 40), (30, 24), (12, 12)])
    maps = [a + np.float32(offset) for a in maps]
    if offset:
        maps[0][0, :3] = [-0.0, 0.0, -0.0]
    for limit in (0.3, 0.1, 0.01):
        expected = _aupro_reference(masks, maps, limit)
        assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(expected, abs=1e-9)


def test_chunked_searches_give_the_same_results(monkeypatch):
    # Large inputs are searched in chunks; a tiny chunk size makes these small inputs cross many of them.
    rng = np.random.default_rng(9)
    masks, maps = _random_masks_maps(rng, [(24, 30), (20, 20), (16, 40)])
    expected_auroc, expected_aupro = _sklearn_pixel_auroc(masks, maps), _aupro_reference(masks, maps, 0.3)
    monkeypatch.setattr(metrics, "_CHUNK", 7)
    assert pixel_auroc(masks, maps) == pytest.approx(expected_auroc, abs=1e-12)
    assert aupro(masks, maps) == pytest.approx(expected_aupro, abs=1e-9)


def test_aupro_binned_approximates_exact():
    rng = np.random.default_rng(4)
    masks, maps = _random_masks_maps(rng, [(40, 40)] * 8, tied=False)
    exact = aupro(masks, maps)
    assert aupro(masks, maps, num_thresholds=5000) == pytest.approx(exact, abs=2e-3)
    assert aupro(masks, [m.astype(np.float32) for m in masks], num_thresholds=10) == pytest.approx(1.0)


def test_aupro_errors():
    good = [np.zeros((4, 4), bool)]
    with pytest.raises(ValueError, match="one class"):
        aupro(good, [np.zeros((4, 4))])
    with pytest.raises(ValueError, match="one class"):
        aupro(good, [np.zeros((4, 4))], num_thresholds=10)
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(good, [np.zeros((4, 4))], fpr_limit=0.0)
    with pytest.raises(ValueError, match="num_thresholds"):
        aupro(good, [np.zeros((4, 4))], num_thresholds=1)


# --------------------------------------------------------------------------------------------------
# thresholded metrics


def test_threshold_metrics_hand_example():
    labels = [0, 0, 0, 1, 1, 1, 0]
    scores = [0.1, 0.5, 0.7, 0.7, 0.4, 0.9, 0.2]
    # >= 0.5 flags indices 1, 2, 3, 5: tp = 2 (3, 5), fp = 2 (1, 2), fn = 1 (4), tn = 2 (0, 6).
    result = threshold_metrics(labels, scores, 0.5)
    assert result["confusion_matrix"] == [[2, 2], [1, 2]]
    assert all(type(v) is int for row in result["confusion_matrix"] for v in row)
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(4 / 7)
    assert result["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_threshold_metrics_zero_denominators():
    # Nothing flagged and nothing anomalous: precision, recall and f1 are 0/0 -> 0.0.
    result = threshold_metrics([0, 0], [0.1, 0.2], 1.0)
    assert result == {
        "precision": 0.0,
        "recall": 0.0,
        "accuracy": 1.0,
        "f1": 0.0,
        "confusion_matrix": [[2, 0], [0, 0]],
    }
    assert threshold_metrics([], [], 0.5)["accuracy"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_f1_max_matches_brute_force(seed):
    labels, scores = _tied_data(np.random.default_rng(seed), 200)
    best = max(threshold_metrics(labels, scores, t)["f1"] for t in np.unique(scores))
    f1, threshold = f1_max(labels, scores)
    assert f1 == pytest.approx(best, abs=1e-12)
    assert threshold_metrics(labels, scores, threshold)["f1"] == pytest.approx(f1, abs=1e-12)


def test_f1_max_perfect_and_no_positives():
    assert f1_max([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == (1.0, 0.8)
    with pytest.raises(ValueError, match="anomalous"):
        f1_max([0, 0], [0.1, 0.2])
