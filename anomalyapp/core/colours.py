"""The colours of the domain: one palette for the results table, the camera, the plots and the reports.

Plain ``#rrggbb`` strings, so ``core`` stays free of Qt; the GUI and the PDF renderer turn them into colours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anomalyapp.core.verdicts import NORMALISED_THRESHOLD, Verdict

__all__ = ["VerdictColour", "VERDICT_COLOURS", "THRESHOLD_COLOUR", "ANOMALY_COLOUR_MAP", "HEAT_FLOOR_FRACTION",
           "heat_alpha"]


@dataclass(frozen=True)
class VerdictColour:
    """``fill`` is the verdict's badge or bar, ``on_fill`` the text on it (mid-tone fills with explicit text
    colours read the same on light and dark palettes), ``ink`` the verdict as coloured text on white paper
    (the Review amber is too light for that, so its ink is darker)."""

    fill: str
    on_fill: str
    ink: str


VERDICT_COLOURS = {
    Verdict.OK: VerdictColour("#2e7d32", "#ffffff", "#2e7d32"),
    Verdict.NG: VerdictColour("#c62828", "#ffffff", "#c62828"),
    Verdict.REVIEW: VerdictColour("#f9a825", "#1a1a1a", "#b26a00"),
    Verdict.ERROR: VerdictColour("#616161", "#ffffff", "#616161"),
}

#: The threshold line on every plot.
THRESHOLD_COLOUR = "#1e88e5"

#: The anomaly map's colour map on the normalised scale, in the viewer (pyqtgraph) and in every written overlay and
#: report (OpenCV): the same name in both libraries, so a heat colour means the same score on screen and on paper.
ANOMALY_COLOUR_MAP = "turbo"

#: Below this share of the threshold the heat map is not drawn: a clean region keeps its true look.
HEAT_FLOOR_FRACTION = 0.25


def heat_alpha(scores, threshold: float = NORMALISED_THRESHOLD) -> np.ndarray:
    """The share of the overlay's opacity the heat map is drawn with at ``scores`` (normalised), on screen and on
    paper alike: none below ``HEAT_FLOOR_FRACTION`` of the threshold, rising to full at the threshold, so that good
    regions keep their true look, the eye goes to what crossed the line, and the overlay has no hard-edged holes
    where a good part's map dips under the floor. A threshold of 0 or below draws everything in full."""
    scores = np.asarray(scores, dtype=np.float32)
    if threshold <= 0:
        return np.ones_like(scores)
    floor = HEAT_FLOOR_FRACTION * threshold
    return np.clip((scores - floor) / (threshold - floor), 0.0, 1.0)
