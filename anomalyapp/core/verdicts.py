"""The judging rule: one definition of how a normalised score becomes a verdict, used by every layer.

Scores are normalised so that a model's calibrated threshold is ``NORMALISED_THRESHOLD`` (0.5) for every
model (``engine.calibration``). A score at or above the threshold is NG; with an uncertain band, a score in
``[review_from, threshold)`` is Review; anything lower is OK. A missing or NaN score (an unreadable image)
is Error. A band whose lower bound is at or above the threshold is empty.

``Verdict`` is a ``StrEnum``: its members compare equal to the strings stored in the records, written to
CSV and shown in the window ("OK", "Review", "NG", "Error").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

__all__ = ["NORMALISED_THRESHOLD", "RULE_DECIMALS", "Verdict", "Verdicts", "stated_rule", "verdict_for", "verdicts_for",
           "SEVERITY"]

#: Where every model's calibrated threshold sits on the normalised score scale (and the anomaly maps').
NORMALISED_THRESHOLD = 0.5
#: The decimal places a decision rule is stated to: what the threshold panel shows and edits, and what the records
#: keep and judge with. A calibrated band from 0.4601641 shown as 0.460 and kept as 0.4601641 differed from what
#: the panel held, and the panel "changed" it, audited as a person's change, as soon as a model was loaded.
RULE_DECIMALS = 3


def stated_rule(threshold: float, uncertain_low: float | None) -> tuple[float, float | None]:
    """A decision rule (threshold, the Review band's lower end or None) to ``RULE_DECIMALS`` places; a band that
    rounds up onto the threshold is empty (None)."""
    threshold = round(float(threshold), RULE_DECIMALS)
    if uncertain_low is not None:
        uncertain_low = round(float(uncertain_low), RULE_DECIMALS)
        if uncertain_low >= threshold:
            uncertain_low = None
    return threshold, uncertain_low


def rule_text(threshold: float, uncertain_low: float | None) -> str:
    """A decision rule as the audit log and the model versions state it: "0.470 (review from 0.420)"."""
    return f"{threshold:.{RULE_DECIMALS}f}" + (
        f" (review from {uncertain_low:.{RULE_DECIMALS}f})" if uncertain_low is not None else "")


class Verdict(StrEnum):
    """The verdicts, most severe first (``list(Verdict)`` is the display order)."""

    NG = "NG"
    REVIEW = "Review"
    OK = "OK"
    ERROR = "Error"


#: Sort key per verdict, most severe highest.
SEVERITY = {verdict: len(Verdict) - 1 - rank for rank, verdict in enumerate(Verdict)}


def verdict_for(
    normalised_score: float | None, threshold: float = NORMALISED_THRESHOLD, review_from: float | None = None
) -> Verdict:
    """The verdict of one normalised score under ``threshold`` and an optional uncertain band's lower bound."""
    if normalised_score is None or math.isnan(normalised_score):
        return Verdict.ERROR
    if normalised_score >= threshold:
        return Verdict.NG
    if review_from is not None and normalised_score >= review_from:
        return Verdict.REVIEW
    return Verdict.OK


def verdicts_for(
    normalised_scores: Sequence[float | None] | np.ndarray,
    threshold: float = NORMALISED_THRESHOLD,
    review_from: float | None = None,
) -> list[Verdict]:
    """``verdict_for`` over many scores at once (vectorised, for re-judging thousands of rows)."""
    values = np.array([np.nan if s is None else s for s in normalised_scores], dtype=np.float64)
    codes = np.zeros(values.shape, dtype=np.int8)  # indexes into _BY_CODE
    if review_from is not None:
        codes[values >= review_from] = 1
    codes[values >= threshold] = 2
    codes[np.isnan(values)] = 3
    return [_BY_CODE[c] for c in codes.tolist()]


_BY_CODE = (Verdict.OK, Verdict.REVIEW, Verdict.NG, Verdict.ERROR)


@dataclass(frozen=True)
class Verdicts:
    """A judging rule in force: the threshold and the uncertain band's lower bound (None: no band)."""

    threshold: float = NORMALISED_THRESHOLD
    uncertain_low: float | None = None

    def verdict(self, normalised_score: float | None) -> Verdict:
        return verdict_for(normalised_score, self.threshold, self.uncertain_low)

    def verdicts(self, normalised_scores: Sequence[float | None] | np.ndarray) -> list[Verdict]:
        return verdicts_for(normalised_scores, self.threshold, self.uncertain_low)
