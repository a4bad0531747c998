"""Time left in a long job, as a person wants to read it: close to the estimate made before the start, then
closer and closer to what the running phase measures, and never jumping.

A phase's own rate says little after its first few steps (warm-up, caches) and nothing about the phases
still to come, while the estimate made before the start (``training.estimate``) covers the whole job but
was measured on three images. So the raw figure blends the two by how far the phase has come, and the
shown figure follows the raw one with a time constant, counting down in real time in between.
"""

from __future__ import annotations

import math

#: Seconds for the shown figure to move about two thirds of the way to a new raw figure.
SMOOTHING_SECONDS = 8.0


class RemainingTime:
    """Feed ``update`` with each progress step and a clock reading; it returns the seconds to show (or None)."""

    def __init__(self, estimate_seconds: float | None, started: float):
        self.estimate_seconds = estimate_seconds if estimate_seconds and estimate_seconds > 0 else None
        self.started = started
        self._phase: tuple[str, float] | None = None
        self._shown: tuple[float, float] | None = None  # (seconds shown, clock reading)
        # True once the job has run longer than its estimate: the time left then stands for the running stage
        # only, since nothing says how much longer the stages still to come will take (a loaded machine).
        self.past_estimate = False

    def update(self, stage: str, step: int, total: int, now: float) -> float | None:
        if self._phase is None or self._phase[0] != stage:
            self._phase = (stage, now)
        phase_elapsed = now - self._phase[1]
        self.past_estimate = self.estimate_seconds is not None and now - self.started > self.estimate_seconds
        # Past the estimate, what it expected says nothing more (it would say 0): the running stage's pace alone.
        prior = None if self.estimate_seconds is None or self.past_estimate else (
            self.estimate_seconds - (now - self.started))
        measured = None
        if step > 0 and total and phase_elapsed > 0.5:
            measured = phase_elapsed / step * max(0, total - step)
        if measured is None:
            raw = prior
        elif prior is None:
            raw = measured
        else:
            # The phase's rate counts for as much as the share of the phase already measured; what the
            # estimate expects beyond this phase keeps its weight until the phase itself is well under way.
            weight = min(1.0, step / total)
            raw = weight * measured + (1.0 - weight) * prior
        if raw is None:
            return None
        if self._shown is None:
            self._shown = (raw, now)
            return raw
        shown, at = self._shown
        elapsed = max(0.0, now - at)
        counted_down = max(0.0, shown - elapsed)
        pull = 1.0 - math.exp(-elapsed / SMOOTHING_SECONDS)
        value = counted_down + pull * (raw - counted_down)
        self._shown = (value, now)
        return value


def describe_seconds(seconds: float) -> str:
    """'about 3 min 10 s left', rounded so that the figure does not flicker at every step."""
    seconds = max(0, round(seconds))
    if seconds >= 90:
        minutes, rest = divmod(round(seconds / 10) * 10, 60)
        return f"about {minutes} min {rest} s left" if rest else f"about {minutes} min left"
    return f"about {seconds} s left"
