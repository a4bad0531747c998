"""The heat map's transparency: one rule for the viewer and for every written overlay."""

import numpy as np
import pytest

from anomalyapp.core.colours import HEAT_FLOOR_FRACTION, heat_alpha
from anomalyapp.core.verdicts import NORMALISED_THRESHOLD


def test_nothing_below_the_floor_full_from_the_threshold_and_a_ramp_between():
    floor = HEAT_FLOOR_FRACTION * NORMALISED_THRESHOLD
    scores = np.array([0.0, floor / 2, floor, (floor + NORMALISED_THRESHOLD) / 2, NORMALISED_THRESHOLD, 3.0])
    assert heat_alpha(scores).tolist() == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.0])
    ramp = heat_alpha(np.linspace(0, 1, 1001))
    assert (np.diff(ramp) >= 0).all() and np.abs(np.diff(ramp)).max() < 0.01  # no hard edge anywhere


def test_the_rule_follows_the_threshold_it_is_drawn_at():
    assert heat_alpha(0.2, threshold=0.8) == 0.0  # the floor moves with the threshold
    assert heat_alpha(0.8, threshold=0.8) == 1.0
    assert (heat_alpha(np.zeros(3), threshold=0.0) == 1.0).all()  # everything above: drawn in full
