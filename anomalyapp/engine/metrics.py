"""Evaluation metrics for anomaly detection: image-level and pixel-level.

Image level: ``auroc``, ``roc_curve``, ``f1_max`` and ``threshold_metrics`` take one label and one score
per image (label 1/True = anomalous). Pixel level: ``pixel_auroc`` and ``aupro`` take ground-truth masks
and anomaly maps, one pair per image; sizes may differ between images. Throughout, a sample is predicted
anomalous when its score is >= the threshold.

Only numpy and OpenCV are used, so the metrics run in the shipped application without the test stack.

Pixel metrics are exact, not binned (a histogram would have to be very fine to match to 1e-4, and
still be approximate). The maps are gathered once into float32 (the precision the detectors produce;
a float64 map is rounded to float32, which can only merge scores closer than about 6e-8 relative) and
split into normal and anomalous pixels. Each group is sorted once, with numpy's SIMD sort; everything
else is a ``searchsorted`` of one sorted group into the other plus cumulative sums. The cost is one
float32 copy of the pixels (about 270 MB for 67M pixels) and one to two seconds on two cores. Not an
argsort over all pixels: it would add an 8-byte index per pixel and is several times slower than a
plain sort; nor searching unsorted keys, which is an order of magnitude slower (cache misses).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import ArrayLike

__all__ = ["auroc", "roc_curve", "pixel_auroc", "aupro", "f1_max", "threshold_metrics"]

# Keys searched per searchsorted call: bounds the int64 index temporaries to a few tens of MB whatever
# the number of pixels.
_CHUNK = 1 << 22


# --------------------------------------------------------------------------------------------------
# input checks


def _as_labels(labels: ArrayLike) -> np.ndarray:
    """Labels as a flat bool array; only 0/1 or bool are accepted."""
    arr = np.asarray(labels).ravel()
    if arr.dtype == bool:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError("labels must be 0/1 or bool (1 = anomalous)")
    return arr.astype(bool)


def _as_scores(scores: ArrayLike, n: int) -> np.ndarray:
    """Scores as a flat float64 array of length n without NaN."""
    arr = np.asarray(scores, dtype=np.float64).ravel()
    if arr.size != n:
        raise ValueError(f"got {n} labels but {arr.size} scores")
    if np.isnan(arr).any():
        raise ValueError("scores contain NaN")
    return arr


def _labels_scores(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = _as_labels(labels)
    return y, _as_scores(scores, y.size)


def _require_both_classes(n_pos: int, n_neg: int, what: str) -> None:
    if n_pos == 0 and n_neg == 0:
        raise ValueError(f"{what} is undefined for empty input")
    if n_pos == 0 or n_neg == 0:
        present = "anomalous" if n_pos else "normal"
        raise ValueError(
            f"{what} is undefined when only one class is present (all {present}); "
            "it needs both normal and anomalous samples"
        )


def _as_masks(masks: Sequence[ArrayLike], maps: Sequence[ArrayLike]) -> list[np.ndarray]:
    """Masks as 2-D bool arrays (non-zero = anomalous), checked against the maps' count and shapes."""
    if len(masks) != len(maps):
        raise ValueError(f"got {len(masks)} masks but {len(maps)} anomaly maps")
    if len(masks) == 0:
        raise ValueError("no masks and anomaly maps given")
    out = []
    for i, (mask, amap) in enumerate(zip(masks, maps)):
        m = np.asarray(mask)
        m = m if m.dtype == bool else m != 0
        shape = np.shape(amap)
        if m.ndim != 2 or m.shape != shape:
            raise ValueError(
                f"image {i}: mask shape {m.shape} and anomaly map shape {shape} differ or are not 2-D"
            )
        out.append(m)
    return out


def _as_map(amap: ArrayLike, i: int) -> np.ndarray:
    arr = np.asarray(amap, dtype=np.float32)
    if np.isnan(arr).any():
        raise ValueError(f"image {i}: anomaly map contains NaN")
    return arr


def _region_labels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected ground-truth regions: a 0-based region index per anomalous pixel (in mask order), and
    each region's size."""
    n_labels, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    lab = lab[mask] - 1
    return lab, np.bincount(lab, minlength=n_labels - 1)


def _float_keys(a: np.ndarray) -> np.ndarray:
    """uint32 keys that sort like the float32 values (sign bit flipped; negatives fully inverted)."""
    bits = a.view(np.uint32)
    return np.where(bits & 0x80000000, ~bits, bits | 0x80000000).astype(np.uint32)


def _keys_to_floats(k: np.ndarray) -> np.ndarray:
    """Inverse of _float_keys."""
    return np.where(k & 0x80000000, k ^ 0x80000000, ~k).astype(np.uint32).view(np.float32)


def _split_pixels(
    masks: list[np.ndarray], maps: Sequence[ArrayLike], with_regions: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Scores of the normal pixels (float32) and of the anomalous ones, with region sizes for AUPRO.

    Without regions: returns (normal, anomalous float32, None). With regions, each anomalous pixel is
    packed into one uint64, score key in the high 32 bits and global region index in the low 32: a
    plain sort of these (SIMD, several times faster than an argsort plus two gathers) orders the scores
    and brings each pixel's region along. Returns (normal, packed, region sizes).
    """
    n_pos = sum(int(np.count_nonzero(m)) for m in masks)
    n_all = sum(m.size for m in masks)
    # Preallocated and filled image by image, so the peak is one copy of the pixels, not two.
    neg = np.empty(n_all - n_pos, np.float32)
    pos = np.empty(n_pos, np.uint64 if with_regions else np.float32)
    sizes: list[np.ndarray] = []
    regions = 0
    i_neg = i_pos = 0
    for i, (mask, amap) in enumerate(zip(masks, maps)):
        arr = _as_map(amap, i)
        k = int(np.count_nonzero(mask))
        neg[i_neg : i_neg + mask.size - k] = arr[~mask]
        i_neg += mask.size - k
        if k == 0:
            continue  # a good image only adds normal pixels
        if with_regions:
            lab, region_sizes = _region_labels(mask)
            keys = _float_keys(arr[mask]).astype(np.uint64) << np.uint64(32)
            pos[i_pos : i_pos + k] = keys | (lab + regions).astype(np.uint64)
            sizes.append(region_sizes)
            regions += region_sizes.size
        else:
            pos[i_pos : i_pos + k] = arr[mask]
        i_pos += k
    if not with_regions:
        return neg, pos, None
    return neg, pos, np.concatenate(sizes) if sizes else np.zeros(0, np.int64)


# --------------------------------------------------------------------------------------------------
# ROC


def _rank_auc(neg: np.ndarray, pos: np.ndarray) -> float:
    """AUC = P(pos > neg) + 0.5 P(pos == neg) from two sorted groups (Mann-Whitney U with ties).

    The smaller group is searched into the larger one, with sorted keys (fast), in chunks. Counts are
    kept in int64, so the result is exact up to the final division.
    """
    n_neg, n_pos = neg.size, pos.size
    keys, ref, keys_are_pos = (pos, neg, True) if n_pos <= n_neg else (neg, pos, False)
    # For each key: (#ref strictly below) + (#ref below or equal) = 2 * (#below) + (#tied).
    twice = 0
    for start in range(0, keys.size, _CHUNK):
        chunk = keys[start : start + _CHUNK]
        twice += int(np.searchsorted(ref, chunk, "left").sum(dtype=np.int64))
        twice += int(np.searchsorted(ref, chunk, "right").sum(dtype=np.int64))
    frac = twice / (2.0 * n_pos * n_neg)
    # Searching normals into anomalous scores counts anomalous pixels below each normal one: the complement.
    return float(frac if keys_are_pos else 1.0 - frac)


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Exact area under the ROC curve; tied scores count one half. Raises ValueError on one class."""
    y, s = _labels_scores(labels, scores)
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    _require_both_classes(pos.size, neg.size, "AUROC")
    return _rank_auc(neg, pos)


def _sweep(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (descending) with the true and false positives at each (score >= threshold)."""
    order = np.argsort(s, kind="stable")[::-1]
    s, y = s[order], y[order]
    # Last index of each run of equal scores: tied samples switch to positive together.
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]
    tp = np.cumsum(y, dtype=np.int64)[last]
    fp = last + 1 - tp
    return s[last], tp, fp


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), one point per distinct score plus (0, 0) at threshold +inf, for plotting."""
    y, s = _labels_scores(labels, scores)
    n_pos = int(y.sum())
    _require_both_classes(n_pos, y.size - n_pos, "the ROC curve")
    thr, tp, fp = _sweep(y, s)
    fpr = np.r_[0.0, fp / (y.size - n_pos)]
    tpr = np.r_[0.0, tp / n_pos]
    return fpr, tpr, np.r_[np.inf, thr]


def pixel_auroc(masks: Sequence[ArrayLike], maps: Sequence[ArrayLike]) -> float:
    """Exact pixel-level AUROC over all pixels of all images (masks: non-zero = anomalous)."""
    mask_list = _as_masks(masks, maps)
    neg, pos, _ = _split_pixels(mask_list, maps, with_regions=False)
    _require_both_classes(pos.size, neg.size, "pixel AUROC")
    neg.sort()
    pos.sort()
    return _rank_auc(neg, pos)


# --------------------------------------------------------------------------------------------------
# AUPRO


def _area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under y(x) for x in [x[0], limit]; x nondecreasing, y interpolated at the limit."""
    i = int(np.searchsorted(x, limit, side="right"))
    area = float(np.sum(np.diff(x[:i]) * (y[1:i] + y[: i - 1])) / 2.0)
    if i < x.size and x[i - 1] < limit:
        x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
        y_lim = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += float((limit - x0) * (y0 + y_lim) / 2.0)
    return area


def _aupro_exact(neg: np.ndarray, packed: np.ndarray, sizes: np.ndarray, fpr_limit: float) -> float:
    """Area under PRO(FPR) up to fpr_limit, over every distinct threshold, normalised by fpr_limit.

    Along the curve only steps in FPR add area, and each normal pixel is one FPR step of 1/n. A normal
    pixel scoring v spans, with its ties, the segment from PRO(> v) to PRO(>= v); summing
    (PRO(> v) + PRO(>= v)) / 2 / n over the normal pixels whose segment ends by the limit gives exactly
    the trapezoid area of those segments, ties included, without listing the distinct thresholds.
    Only the segment that crosses the limit is handled on its own, interpolating PRO at the limit.
    """
    n = neg.size
    neg.sort()
    packed.sort()
    pos = _keys_to_floats((packed >> np.uint64(32)).astype(np.uint32))
    # A pixel's weight 1 / (its region's size): summed over the pixels at or above a threshold it gives
    # the sum of per-region overlaps, so PRO becomes a cumulative sum like TPR.
    weights = (1.0 / sizes)[(packed & np.uint64(0xFFFFFFFF)).astype(np.intp)]
    del packed
    # cum[j] = summed weight of the j lowest-scoring anomalous pixels; weight at >= v is total - cum[left].
    cum = np.concatenate(([0.0], np.cumsum(weights)))
    del weights
    total = cum[-1]  # the number of regions, up to rounding; using it makes PRO reach exactly 1

    # The distinct normal score whose FPR step crosses the limit: the ceil(limit * n)-th largest.
    k = min(n, max(1, math.ceil(fpr_limit * n)))
    v_cross = neg[n - k]
    lo = int(np.searchsorted(neg, v_cross, "left"))
    hi = int(np.searchsorted(neg, v_cross, "right"))

    # Normal pixels strictly above v_cross: their whole segments lie below the limit.
    above = neg[hi:]
    acc = 0.0
    for start in range(0, above.size, _CHUNK):
        chunk = above[start : start + _CHUNK]
        acc += float(cum[np.searchsorted(pos, chunk, "left")].sum())
        acc += float(cum[np.searchsorted(pos, chunk, "right")].sum())
    area = (above.size * total - 0.5 * acc) / (n * total)

    # The crossing segment runs from (f0, p0) to (f1, p1); f1 >= limit by the choice of k.
    f0, f1 = (n - hi) / n, (n - lo) / n
    p0 = (total - cum[np.searchsorted(pos, v_cross, "right")]) / total
    p1 = (total - cum[np.searchsorted(pos, v_cross, "left")]) / total
    x = min(fpr_limit, f1)
    if x > f0:
        p_x = p0 + (p1 - p0) * (x - f0) / (f1 - f0)
        area += (x - f0) * (p0 + p_x) / 2.0
    return float(area / fpr_limit)


def _aupro_binned(
    masks: list[np.ndarray], maps: Sequence[ArrayLike], fpr_limit: float, num_thresholds: int
) -> float:
    """AUPRO on num_thresholds evenly spaced thresholds; streams image by image (histograms only)."""
    lo, hi = math.inf, -math.inf
    for i, amap in enumerate(maps):
        arr = _as_map(amap, i)
        lo, hi = min(lo, float(arr.min())), max(hi, float(arr.max()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("anomaly maps contain infinite scores; use num_thresholds=None")
    step = (hi - lo) / (num_thresholds - 1) if hi > lo else 1.0
    neg_hist = np.zeros(num_thresholds, np.int64)
    pro_hist = np.zeros(num_thresholds, np.float64)
    regions = 0
    for mask, amap in zip(masks, maps):
        # Bin j holds scores in [t_j, t_j+1): a pixel is above threshold t_j for every j <= its bin.
        arr = np.asarray(amap, dtype=np.float32)
        idx = np.clip(np.floor((arr - lo) / step), 0, num_thresholds - 1).astype(np.intp)
        neg_hist += np.bincount(idx[~mask], minlength=num_thresholds)
        if mask.any():
            lab, sizes = _region_labels(mask)
            pro_hist += np.bincount(idx[mask], weights=(1.0 / sizes)[lab], minlength=num_thresholds)
            regions += sizes.size
    _require_both_classes(regions, int(neg_hist.sum()), "AUPRO")
    # Highest threshold first, starting from (0, 0) where nothing is flagged.
    fpr = np.r_[0.0, np.cumsum(neg_hist[::-1]) / neg_hist.sum()]
    pro = np.r_[0.0, np.cumsum(pro_hist[::-1]) / pro_hist.sum()]
    return _area_up_to(fpr, pro, fpr_limit) / fpr_limit


def aupro(
    masks: Sequence[ArrayLike],
    maps: Sequence[ArrayLike],
    fpr_limit: float = 0.3,
    num_thresholds: int | None = None,
) -> float:
    """Normalised area under the per-region-overlap curve up to fpr_limit (MVTec AD, Bergmann et al.).

    PRO at a threshold is the mean, over all 8-connected ground-truth regions of all images, of the
    fraction of the region flagged; FPR is taken over the normal pixels of all images. The curve is
    integrated with the trapezoid rule up to fpr_limit (interpolating at the limit) and divided by
    fpr_limit, so a perfect detector scores 1.0 and an uninformative one about fpr_limit / 2.

    num_thresholds=None (default) is exact: every distinct score is a threshold. An integer evaluates
    that many evenly spaced thresholds instead, streaming the maps through histograms: approximate, but
    its memory does not grow with the number of images.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    if num_thresholds is not None and num_thresholds < 2:
        raise ValueError(f"num_thresholds must be at least 2 or None, got {num_thresholds}")
    mask_list = _as_masks(masks, maps)
    if num_thresholds is not None:
        return _aupro_binned(mask_list, maps, fpr_limit, int(num_thresholds))
    neg, packed, sizes = _split_pixels(mask_list, maps, with_regions=True)
    _require_both_classes(sizes.size, neg.size, "AUPRO")
    return _aupro_exact(neg, packed, sizes, fpr_limit)


# --------------------------------------------------------------------------------------------------
# thresholded


def f1_max(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """(best F1, its threshold) over every distinct score; the highest threshold wins a tie in F1."""
    y, s = _labels_scores(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("F1 needs at least one anomalous sample; all labels are normal")
    thr, tp, fp = _sweep(y, s)
    # F1 = 2 tp / (2 tp + fp + fn) and fn = n_pos - tp; the denominator is never 0 since n_pos > 0.
    f1 = 2.0 * tp / (tp + fp + n_pos)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thr[best])


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def threshold_metrics(labels: ArrayLike, scores: ArrayLike, threshold: float) -> dict:
    """Precision, recall, accuracy, F1 and confusion_matrix [[tn, fp], [fn, tp]] at score >= threshold.

    A ratio whose denominator is 0 is reported as 0.0.
    """
    y, s = _labels_scores(labels, scores)
    pred = s >= threshold
    tp = int(np.count_nonzero(pred & y))
    fp = int(np.count_nonzero(pred & ~y))
    fn = int(np.count_nonzero(~pred & y))
    tn = int(y.size - tp - fp - fn)
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "accuracy": _ratio(tp + tn, y.size),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }
