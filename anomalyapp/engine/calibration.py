"""Threshold and score normalisation, learned from good images only.

The threshold meets a stated false-reject rate on new good parts (``target_false_reject_rate``, default 1 %).
The evidence is the scores of good images that the model judging them did not see: leave-one-image-out
scores of the fitted images (PatchCore: against the bank with the image's own patches masked; the
autoencoder: fold models) and the scores of the images held out last in capture order, which stand in for
the next batch. A rate below 1/n cannot be read off n scores, so the upper tail is modelled: the ``k``
highest scores exceed the level ``u`` by amounts that are taken as exponential (peaks over threshold; the
generalised Pareto with shape 0, the light tail of distances and reconstruction errors), giving
``rate(t) = k/n * exp(-(t - u) / scale)`` above ``u`` and the empirical rate below it. The interval of the
rate above ``u`` comes from the tail's two pivots, whose laws do not depend on the unknown tail: the true share
of parts above the (k+1)-th highest of n scores is Beta(k + 1, n - k), and the fitted scale over the true one is
Gamma(k, 1) / k (the k excesses are independent exponentials). Drawn together, they give the true rate's law at
a threshold, so the 90 % interval holds 90 % of the time where the tail is exponential; a bootstrap of the
scores (which cannot draw beyond their highest) held the true rate under its upper end only 80 % of the time on
40 exponential scores. Below ``u``, and for the uncertain band (the spread of the thresholds a resampled set of
good images would have chosen), the bootstrap of the evidence refits ``u``, ``k`` and ``scale``.

Good scores too high for the tail of the others are named as suspects (``screen_outliers``): each is a
defective part in the good folder or a rare good one, which only a person can tell. Under the target's share
they are counted apart, so the target holds either way; at or above it they are taken as defective and left
out, the safe one of the two thresholds (``calibrate``).

Normalisation is linear and anchored at zero: ``normalised = 0.5 * raw / threshold``. The threshold maps to
0.5 for every model, and one colour in an anomaly map means the same evidence on every image of a model.

Models calibrated before the target existed (``rule`` "max(mean + 3 std, max) ...") keep their threshold:
it is stored, never recomputed on loading.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from anomalyapp.core.verdicts import NORMALISED_THRESHOLD

DEFAULT_TARGET_FALSE_REJECT_RATE = 0.01
# Below this many good scores there is no tail to fit; the conservative legacy rule is used instead.
MIN_TAIL_EVIDENCE = 8
BOOTSTRAP_SAMPLES = 1000
# Screening of the evidence: a good score that the tail fitted on the scores below it expects in fewer than one
# of this many sets of the same size is an outlier, named for someone to look at (it may be a defective part
# in the good folder). The fitted scale is taken as known, so this is about a 5 % test on exponential scores: on
# clean simulated sets of 40-100 scores, 0-2 % of the sets had one named with light tails (normal, gamma(4)),
# 4-5 % with exponential ones and up to 10 % with heavier ones (log-normal sigma 0.6, Student's t5); a test
# exact at 1 % would not have named KolektorSDD's white blob for PatchCore (docs/accuracy.md).
SUSPECT_EXPECTED_COUNT = 0.01
# Screening never names more than this share of the evidence (and at least one score).
MAX_SUSPECT_SHARE = 0.05
# What the threshold does with the outliers screening names (``Calibration.suspects_treatment``).
SUSPECTS_COUNTED_APART = "counted apart"
SUSPECTS_LEFT_OUT = "left out"
SUSPECTS_TREATMENTS = (SUSPECTS_COUNTED_APART, SUSPECTS_LEFT_OUT)
# Two-sided interval of the expected rate: 90 %, so each bound is a 95 % one-sided bound.
INTERVAL = (0.05, 0.95)


def threshold_from_good(scores, sigmas: float) -> float:
    """The legacy rule: ``max(mean + sigmas * std, highest score)``; kept for tiny evidence and old models."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("calibration needs at least one held-out good image")
    spread = values.std(ddof=1) if values.size > 1 else 0.0
    threshold = max(values.mean() + sigmas * spread, values.max())
    # A model so perfect that every good score is 0 still needs a positive scale.
    return float(threshold) if threshold > 0 else 1e-6


def tail_size(n: int) -> int:
    """How many top scores form the tail: about 2 sqrt(n), at least 5, leaving one score below the level."""
    return int(min(n - 1, max(5, math.ceil(2 * math.sqrt(n)))))


@dataclass(frozen=True)
class TailFit:
    """Exponential peaks-over-threshold fit of the highest good scores."""

    level: float  # u: the (k+1)-th highest score
    scale: float  # mean excess of the k highest scores over u
    exceedances: int  # k
    count: int  # n

    def rate(self, threshold, sorted_scores: np.ndarray) -> np.ndarray:
        """Expected share of good scores at or above ``threshold`` (array-friendly)."""
        t = np.asarray(threshold, dtype=np.float64)
        tail = self.exceedances / self.count * np.exp(-(t - self.level) / self.scale)
        below = (self.count - np.searchsorted(sorted_scores, t, side="left")) / self.count
        return np.where(t >= self.level, tail, np.minimum(below, 1.0))

    def threshold_for(self, rate: float, sorted_scores: np.ndarray) -> float:
        share = self.exceedances / self.count
        if rate < share:
            return float(self.level + self.scale * math.log(share / rate))
        return float(np.quantile(sorted_scores, 1.0 - rate))


def tail_pivots(k: int, n: int, samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draws of the tail's two pivots (module docstring), whose laws do not depend on the unknown tail: the true
    share of parts above the (k+1)-th highest of n scores, Beta(k + 1, n - k), and the true scale over the fitted
    one, k / Gamma(k, 1)."""
    return rng.beta(k + 1, n - k, samples), k / rng.gamma(k, 1.0, samples)


def fit_tail(scores) -> TailFit:
    values = np.sort(np.asarray(scores, dtype=np.float64))
    n = values.size
    if n < 2:
        raise ValueError("a tail needs at least two scores")
    k = tail_size(n)
    level = float(values[n - k - 1])
    excess = values[n - k :] - level
    # A degenerate tail (ties) still needs a positive scale: a tiny share of the level, or an absolute floor.
    scale = max(float(excess.mean()), 1e-6 * max(abs(level), 1.0))
    return TailFit(level, scale, k, n)


def screen_outliers(scores) -> list[int]:
    """Indices of good scores too high for the tail of the others, highest first (often none).

    The j-th highest score is tested against the exponential tail fitted on the scores below it: it is an
    outlier when the expected number of scores at least as high, in a set of this size, is under
    ``SUSPECT_EXPECTED_COUNT``. The largest j that fails takes the j highest with it, so that two alike
    outliers cannot hide each other (the generalised ESD idea, on the tail model the threshold uses).
    """
    values = np.asarray(scores, dtype=np.float64)
    n = values.size
    order = np.argsort(values, kind="stable")[::-1]
    descending = values[order]
    outliers = 0
    for j in range(1, max(1, int(MAX_SUSPECT_SHARE * n)) + 1):
        below = descending[j:][::-1]
        if below.size < MIN_TAIL_EVIDENCE:
            break
        if float(fit_tail(below).rate(descending[j - 1], below)) * n < SUSPECT_EXPECTED_COUNT:
            outliers = j
    return [int(i) for i in order[:outliers]]


class FalseRejectModel:
    """The fitted tail, its pivots and bootstrap refits: expected false-reject rate, with its interval, at any
    threshold.

    ``outliers`` (scores among ``scores`` that screening named) can be counted apart: a new part like them is
    rejected at any threshold below them, so they spend their share of the rate (m of n) and the tail is
    fitted on the other scores, which they would otherwise stretch. The draws then cover the other scores and
    draw the outliers' count from the binomial of their share.
    """

    def __init__(self, scores, *, outliers=(), samples: int = BOOTSTRAP_SAMPLES, seed: int = 0):
        everything = np.sort(np.asarray(scores, dtype=np.float64))
        rest, apart = list(everything), []
        for value in np.asarray(outliers, dtype=np.float64):
            if value in rest:  # each outlier is one of the scores (a value that is not is ignored)
                rest.remove(value)
                apart.append(value)
        self.outliers = np.sort(np.asarray(apart, dtype=np.float64))
        self.count = everything.size
        self.scores = np.asarray(rest)
        self.fit = fit_tail(self.scores)
        n = self.scores.size
        rng = np.random.default_rng(seed)
        self.resamples = np.sort(self.scores[rng.integers(0, n, size=(samples, n))], axis=1)
        k = self.fit.exceedances
        self.levels = self.resamples[:, n - k - 1]
        self.scales = np.maximum((self.resamples[:, n - k :] - self.levels[:, None]).mean(1), self.fit.scale * 1e-3)
        self.outlier_counts = rng.binomial(self.count, self.outliers.size / self.count, samples)
        self.tail_shares, scale_ratios = tail_pivots(k, n, samples, rng)
        self.tail_scales = self.fit.scale * scale_ratios

    def _outlier_share(self, threshold: float, counts):
        """The outliers' part of the rate at ``threshold``: those at or above it, of all the scores."""
        if not self.outliers.size:
            return 0.0
        above = self.outliers.size - np.searchsorted(self.outliers, threshold, side="left")
        return counts * (above / self.outliers.size) / self.count

    def _replicate_rates(self, threshold: float) -> np.ndarray:
        """Draws of the true rate at ``threshold``: the tail's pivots above the fitted level, the bootstrap below."""
        n = self.scores.size
        if threshold >= self.fit.level:
            rest = self.tail_shares * np.exp(-(threshold - self.fit.level) / self.tail_scales)
        else:
            rest = (self.resamples >= threshold).mean(1)
        return rest * (n / self.count) + self._outlier_share(threshold, self.outlier_counts)

    def rate(self, threshold: float) -> float:
        """The expected share of new good parts scoring at or above ``threshold``."""
        rest = float(self.fit.rate(threshold, self.scores)) * self.scores.size / self.count
        return rest + float(self._outlier_share(threshold, self.outliers.size))

    def expected_rate(self, threshold: float) -> tuple[float, float, float]:
        """(estimate, low, high) of the share of new good parts scoring at or above ``threshold``."""
        estimate = self.rate(threshold)
        low, high = np.quantile(self._replicate_rates(float(threshold)), INTERVAL)
        return estimate, float(min(low, estimate)), float(max(high, estimate))

    def expected_count(self, threshold: float, parts: int) -> tuple[int, int]:
        """The 90 % interval of how many of ``parts`` new good parts score at or above ``threshold``.

        The rate a batch shows differs from the expected rate by the batch's own chance (one part in 20 is
        5 %), so a measured rate is compared with this interval, not with the rate's: each drawn rate gives a
        binomial count, and the interval is taken from their mixture.
        """
        if parts < 1:
            raise ValueError(f"a batch needs at least one part, not {parts}")
        rates = np.clip(self._replicate_rates(float(threshold)), 1e-12, 1 - 1e-12)
        counts = np.arange(parts + 1)
        log_choose = (math.lgamma(parts + 1) - np.array([math.lgamma(k + 1) + math.lgamma(parts - k + 1)
                                                          for k in counts]))
        log_pmf = log_choose[None, :] + counts[None, :] * np.log(rates)[:, None] + (
            (parts - counts)[None, :] * np.log1p(-rates)[:, None])
        cumulative = np.cumsum(np.exp(log_pmf).mean(0))
        low, high = (int(np.searchsorted(cumulative, level - 1e-12)) for level in INTERVAL)
        return min(low, parts), min(high, parts)

    def _rest_rate(self, rate: float, outlier_count) -> object:
        """The rate left to the other scores' tail once the outliers have spent theirs (<= 0: none left)."""
        return (rate - outlier_count / self.count) * self.count / self.scores.size

    def threshold_for(self, rate: float) -> float:
        rest = float(self._rest_rate(rate, self.outliers.size))
        if rest <= 0:  # the outliers alone spend the rate: only a threshold above them meets it
            return float(np.nextafter(self.outliers.max(), np.inf))
        return min(self.fit.threshold_for(rest, self.scores), float(np.nextafter(self.outliers.min(), -np.inf))
                   if self.outliers.size else np.inf)

    def threshold_spread(self, rate: float) -> tuple[float, float]:
        """The range of thresholds the bootstrap refits would have chosen for ``rate``."""
        n, k = self.scores.size, self.fit.exceedances
        share = k / n
        rest = np.broadcast_to(np.asarray(self._rest_rate(rate, self.outlier_counts), dtype=np.float64),
                               self.levels.shape)
        highest = self.outliers.max() if self.outliers.size else np.inf
        chosen = np.full(self.levels.shape, highest)  # where the outliers spend the whole rate
        in_tail = (rest > 0) & (rest < share)
        chosen[in_tail] = self.levels[in_tail] + self.scales[in_tail] * np.log(share / rest[in_tail])
        for index in np.flatnonzero(rest >= share):  # a rate the empirical scores reach: their quantile
            chosen[index] = np.quantile(self.resamples[index], 1.0 - min(float(rest[index]), 1.0))
        if self.outliers.size:
            chosen = np.where(rest > 0, np.minimum(chosen, self.outliers.min()), chosen)
        low, high = np.quantile(chosen, INTERVAL)
        return float(low), float(high)


def interval_at_target(count: int, rate: float, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
                       ) -> tuple[float, float]:
    """The 90 % interval of the true rate at the threshold the exponential tail of ``count`` good scores sets for
    ``rate``. The pivots make it the same for every set of that many scores, so it says what so many good images
    can promise before any are scored (``FalseRejectModel.expected_rate`` at its ``threshold_for``)."""
    k = tail_size(count)
    if count < MIN_TAIL_EVIDENCE or rate >= k / count:
        raise ValueError(f"no tail interval for a rate of {rate} from {count} scores")
    shares, scale_ratios = tail_pivots(k, count, samples, np.random.default_rng(seed))
    # At t = u + scale * ln(k / (count * rate)) a draw's rate is share * (count * rate / k) ** (scale / true scale).
    rates = shares * (count * rate / k) ** (1.0 / scale_ratios)
    low, high = np.quantile(rates, INTERVAL)
    return float(low), float(high)


def rate_percent(value: float) -> str:
    """A rate as its figure in percent: '1.2', or '0.08' below 0.1 % (where one decimal would show 0.0)."""
    value *= 100
    return f"{value:.2f}" if value < 0.1 else f"{value:.1f}"


def describe_rate(estimate: float, low: float, high: float) -> str:
    """'expected false rejects 1.2 % (0.4-3.0 %) on new good parts'."""
    return (f"expected false rejects {rate_percent(estimate)} % ({rate_percent(low)}-{rate_percent(high)} %) on new "
            "good parts")


@dataclass
class Calibration:
    image_threshold: float
    pixel_threshold: float
    good_scores: list[float]
    good_map_maxima: list[float]
    source: str
    rule: str
    defect_scores: list[float] = field(default_factory=list)
    f1_threshold: float | None = None
    # Added with the stated target; absent from older manifests (their threshold is kept as stored).
    target_false_reject_rate: float | None = None
    expected_false_reject_rate: float | None = None
    expected_false_reject_interval: list[float] | None = None  # [low, high], 90 % interval
    uncertain_low: float | None = None  # raw score where the default Review band starts
    evidence: dict | None = None  # counts of each kind of good score behind the threshold
    # Good images whose unseen score is an outlier (``screen_outliers``):
    # [{"name": file name, "score": raw score, "threshold_without": raw threshold without the outliers}, ...]
    suspects: list[dict] | None = None
    # What the threshold did with the suspects: SUSPECTS_COUNTED_APART or SUSPECTS_LEFT_OUT. Absent from
    # manifests written before it existed, whose suspects were counted apart under the target's share and kept in
    # the tail otherwise (``outliers_apart``); their threshold and expected rates are read that way still.
    suspects_treatment: str | None = None

    def normalise_score(self, raw: float) -> float:
        return NORMALISED_THRESHOLD * float(raw) / self.image_threshold

    def normalise_map(self, raw_map: np.ndarray) -> np.ndarray:
        return raw_map * np.float32(NORMALISED_THRESHOLD / self.pixel_threshold)

    @property
    def suspects_share(self) -> float:
        """The named outliers' share of the good scores (0 without any)."""
        return len(self.suspects or ()) / len(self.good_scores)

    @property
    def outliers_apart(self) -> bool:
        """Whether the named outliers are counted apart: they spend their share of the target rate, and the tail
        is fitted on the other scores for the remainder (``suspects_treatment``)."""
        if not self.suspects:
            return False
        if self.suspects_treatment is not None:
            return self.suspects_treatment == SUSPECTS_COUNTED_APART
        return self.target_false_reject_rate is not None and self.suspects_share < self.target_false_reject_rate

    @property
    def outliers_left_out(self) -> bool:
        """Whether the named outliers are left out of the evidence, judged NG: their share of the good scores was
        at or above the target, so no threshold could meet it both if they are good and if they are defective,
        and the threshold meets it over the other good images (``suspects_treatment``)."""
        return bool(self.suspects) and self.suspects_treatment == SUSPECTS_LEFT_OUT

    def _evidence(self, values: list[float], suspect_values: list[float]) -> FalseRejectModel:
        """The tail model of ``values`` (image scores or map maxima), the suspects' ``suspect_values`` among them
        counted apart, left out or kept in the tail as this calibration treats them."""
        if self.outliers_left_out:
            rest = list(values)
            for value in suspect_values:
                rest.remove(value)
            return FalseRejectModel(rest)
        return FalseRejectModel(values, outliers=suspect_values if self.outliers_apart else ())

    def false_reject_model(self) -> FalseRejectModel | None:
        """The tail model over this calibration's good scores; None when there are too few of them."""
        cached = self.__dict__.get("_false_reject_model")
        if cached is None and len(self.good_scores) >= MIN_TAIL_EVIDENCE:
            cached = self._evidence(self.good_scores, [suspect["score"] for suspect in self.suspects or ()])
            self.__dict__["_false_reject_model"] = cached
        return cached

    def expected_false_rejects_if_suspects_good(self, normalised_threshold: float = NORMALISED_THRESHOLD
                                                ) -> tuple[float, float, float] | None:
        """(estimate, low, high) expected false-reject rate at a normalised threshold should the suspects left out
        be good parts after all: the tail of every good score, theirs with them (None unless they were left out).
        On clean simulated sets where screening named a good score, this predicted the rate new parts then saw
        (docs/accuracy.md); the suspects' own share alone understated it."""
        if not self.outliers_left_out:
            return None
        cached = self.__dict__.get("_if_good_model")
        if cached is None:
            cached = self.__dict__["_if_good_model"] = FalseRejectModel(self.good_scores)
        return cached.expected_rate(float(normalised_threshold) * self.image_threshold / NORMALISED_THRESHOLD)

    def expected_false_rejects(self, normalised_threshold: float) -> tuple[float, float, float] | None:
        """(estimate, low, high) expected false-reject rate at a threshold on the normalised scale."""
        model = self.false_reject_model()
        if model is None:
            return None
        return model.expected_rate(float(normalised_threshold) * self.image_threshold / NORMALISED_THRESHOLD)

    def expected_false_reject_count(self, normalised_threshold: float, parts: int) -> tuple[int, int] | None:
        """The 90 % interval of how many of ``parts`` new good parts a normalised threshold judges NG (None: no
        tail model): what a batch of that size, a test set's good images for one, is expected to show."""
        model = self.false_reject_model()
        if model is None:
            return None
        return model.expected_count(float(normalised_threshold) * self.image_threshold / NORMALISED_THRESHOLD, parts)

    def describe_expected_false_rejects(self, normalised_threshold: float) -> str | None:
        """'expected false rejects 1.2 % (0.4-3.0 %) on new good parts' at a normalised threshold, or None."""
        expected = self.expected_false_rejects(normalised_threshold)
        return None if expected is None else describe_rate(*expected)

    def describe_suspects(self) -> str | None:
        """'Look at good image train/good/a.png: unseen, it scores 0.60, holds the threshold up (0.43 without
        it)' (or '..., counted apart as a part to reject'), or None: what the threshold panel shows of ``suspects``."""
        if not self.suspects:
            return None
        names = ", ".join(suspect["name"] for suspect in self.suspects)
        highest = max(self.normalise_score(suspect["score"]) for suspect in self.suspects)
        one = len(self.suspects) == 1
        if self.outliers_apart:
            effect = f"counted apart as {'a part' if one else 'parts'} to reject"
        elif self.outliers_left_out:
            if_good = self.expected_false_rejects_if_suspects_good()[0]
            effect = (f"judged NG: the expected rate holds if {'it is' if one else 'they are'} defective "
                      f"({rate_percent(if_good)} % if good)")
        else:
            without = self.normalise_score(self.suspects[0]["threshold_without"])
            effect = f"hold{'s' if one else ''} the threshold up ({without:.2f} without {'it' if one else 'them'})"
        return (f"Look at good image{'' if one else 's'} {names}: unseen, {'it scores' if one else 'they score up to'} "
                f"{highest:.2f}, {effect}")

    @property
    def uncertain_low_normalised(self) -> float | None:
        return None if self.uncertain_low is None else self.normalise_score(self.uncertain_low)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(**data)


def calibrate(
    good_scores,
    good_map_maxima,
    *,
    source: str,
    target_false_reject_rate: float | None = DEFAULT_TARGET_FALSE_REJECT_RATE,
    sigmas: float = 3.0,
    defect_scores=None,
    evidence: dict | None = None,
    names=None,
) -> Calibration:
    """Threshold meeting ``target_false_reject_rate`` on new good parts, from good scores the model did not see.

    With a target, outliers among the good scores (``screen_outliers``) are listed in ``suspects`` under
    their ``names`` (one per score) with the threshold the other scores would give, for the training output.
    With fewer than ``MIN_TAIL_EVIDENCE`` scores (or no target) the legacy rule ``max(mean + sigmas std, max)``
    is used, and said so in ``rule``.
    """
    scores = [float(s) for s in good_scores]
    maxima = [float(s) for s in good_map_maxima]
    if not scores:
        raise ValueError("calibration needs at least one good image the model did not see")
    calibration = Calibration(
        image_threshold=0.0, pixel_threshold=0.0, good_scores=scores, good_map_maxima=maxima, source=source,
        rule="", evidence=evidence,
    )
    if target_false_reject_rate is None or len(scores) < MIN_TAIL_EVIDENCE:
        calibration.image_threshold = threshold_from_good(scores, sigmas)
        calibration.pixel_threshold = threshold_from_good(maxima, sigmas)
        calibration.rule = f"max(mean + {sigmas:g} std, max) of held-out good scores"
    else:
        if not 0 < target_false_reject_rate < 1:
            raise ValueError(f"target false-reject rate {target_false_reject_rate} must be between 0 and 1")
        calibration.target_false_reject_rate = float(target_false_reject_rate)
        # Outliers are named, with the threshold the other scores alone would give, so that someone looks at
        # them: each is a defective part in the good folder (KolektorSDD's white blob) or a rare good one
        # (magnetic tile's glare), and only a person can tell. Where their share is below the target, the
        # threshold meets it either way: they are counted apart, spending their share, and the tail is fitted on
        # the others. Where it is not, the target can be met only for one of the two: a threshold above them
        # would pass every defect that scores as they do, so the safe one is taken, and they are judged NG and
        # left out (kept in the tail, they stretched it to a threshold that met the target for neither).
        outliers = screen_outliers(scores)
        if outliers:
            rest = np.sort([value for index, value in enumerate(scores) if index not in outliers])
            without = max(fit_tail(rest).threshold_for(target_false_reject_rate, rest), 1e-6)
            calibration.suspects = [
                {"name": str(names[i]) if names is not None else f"good score {i + 1}", "score": scores[i],
                 "threshold_without": without}
                for i in outliers
            ]
            calibration.suspects_treatment = (SUSPECTS_COUNTED_APART if calibration.suspects_share
                                              < target_false_reject_rate else SUSPECTS_LEFT_OUT)
        model = calibration.false_reject_model()
        calibration.image_threshold = max(model.threshold_for(target_false_reject_rate), 1e-6)
        # The same images' map maxima are treated likewise (the map's colours follow the same evidence).
        pixel_model = calibration._evidence(maxima, [maxima[i] for i in outliers])
        calibration.pixel_threshold = max(pixel_model.threshold_for(target_false_reject_rate), 1e-6)
        estimate, low, high = model.expected_rate(calibration.image_threshold)
        calibration.expected_false_reject_rate = estimate
        calibration.expected_false_reject_interval = [low, high]
        band_low, _ = model.threshold_spread(target_false_reject_rate)
        calibration.uncertain_low = float(min(band_low, calibration.image_threshold))
        calibration.rule = (
            f"false-reject rate {target_false_reject_rate:g} on new good parts: exponential tail over the "
            f"{model.fit.exceedances} highest of {model.scores.size} unseen good scores"
            + (f", {model.outliers.size} outlier(s) counted apart" if model.outliers.size else "")
            + (f", {len(outliers)} outlier(s) left out as defective" if calibration.outliers_left_out else "")
        )
    if defect_scores:
        from anomalyapp.engine.metrics import f1_max

        labels = [0] * len(scores) + [1] * len(defect_scores)
        _, best = f1_max(np.asarray(labels), np.asarray(scores + list(defect_scores), dtype=np.float64))
        calibration.defect_scores = [float(s) for s in defect_scores]
        calibration.f1_threshold = float(best)
    return calibration


def calibration_fields() -> list[str]:
    return [f.name for f in fields(Calibration)]


def threshold_from_labelled(good_scores, defect_scores, rate: float, current: float) -> float | None:
    """The threshold that judges at most ``rate`` of the labelled good parts NG and catches the most defects.

    Every threshold above the (m+1)-th highest good score (m = floor(rate * good parts)) and at or below the
    next higher labelled score separates the labels the same way; ``current`` is kept when it lies there
    (nothing to change), else the midpoint, the widest margin. With no labelled score above, 5 % above that
    good score. None without a labelled good part.
    """
    good = np.sort(np.asarray(good_scores, dtype=np.float64))[::-1]
    if good.size == 0:
        return None
    allowed = int(np.floor(rate * good.size + 1e-9))
    if allowed >= good.size:
        return None
    stays_ok = float(good[allowed])  # the highest good score that must stay OK (ties with it stay OK too)
    every = np.concatenate([good, np.asarray(defect_scores, dtype=np.float64)])
    above = every[every > stays_ok]
    upper = float(above.min()) if above.size else None
    if current > stays_ok and (upper is None or current <= upper):
        return float(current)
    return (stays_ok + upper) / 2.0 if upper is not None else stays_ok * 1.05 + 1e-9
