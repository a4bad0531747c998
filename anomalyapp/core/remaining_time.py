"""Time left in a long job, as a person wants to read it: close to the estimate made before the start, then
closer and closer to what the running phase measures, and never jumping.

A phase's own rate says little after its first few steps (warm-up, caches) and nothing about the phases
still to come, while the estimate made before the start (``training.estimate``) covers the whole job but
was measured on a few images. So the raw figure blends the two by how far the phase has come, and the
shown figure follows the raw one with a time constant, counting down in real time in between.

An estimate split by stage (``plan``) also says what the stages still to come will take, scaled by the pace
the finished stages kept against it: a machine that ran the training at half the estimated speed will run
the autoencoder's three calibration folds after it at half speed too. A job started without an estimate can
send its own plan once it has timed enough of itself (``adopt_plan``). Without a plan the stages to come are
known only through the whole estimate, and once the job has outlived it, not at all.
"""

from __future__ import annotations

import math

#: Seconds for the shown figure to move about two thirds of the way to a new raw figure.
SMOOTHING_SECONDS = 8.0
#: The pace the finished stages set (seconds taken per second planned) is kept within these bounds: one stage
#: that a cold cache slowed tenfold should not make the rest of the job look ten times as long.
PACE_BOUNDS = (0.25, 4.0)


class RemainingTime:
    """Feed ``update`` with each progress step and a clock reading; it returns the seconds to show (or None)."""

    def __init__(self, estimate_seconds: float | None, started: float, plan=()):
        self.estimate_seconds = estimate_seconds if estimate_seconds and estimate_seconds > 0 else None
        self.started = started
        # Estimated seconds per stage, as the job reports its stages (``TrainingCost.stages``); empty: none.
        self.plan: dict[str, float] = {stage: max(0.0, float(seconds)) for stage, seconds in plan}
        self._phase: tuple[str, float] | None = None
        self._shown: tuple[float, float] | None = None  # (seconds shown, clock reading)
        self._last_update = started
        self._spent: dict[str, float] = {}  # seconds spent in each stage so far (a stage can come back)
        self._finished: set[str] = set()  # stages whose last report was their last step
        # True once the job has run longer than its estimate. Without a plan the time left then stands for the
        # running stage only, since nothing says how much longer the stages still to come will take.
        self.past_estimate = False

    @property
    def covers_whole_job(self) -> bool:
        """Whether the figure stands for the whole job: with a plan by stage, or within a whole estimate. Otherwise
        it is the running stage's own pace, not the stages after it (an autoencoder's folds follow its training)."""
        return bool(self.plan) or (self.estimate_seconds is not None and not self.past_estimate)

    def adopt_plan(self, plan) -> None:
        """A plan the job sent (``Progress.plan``, from its own timings), used when there is none: an estimate
        made before the start, if any, has one already. Without an estimate its total stands for one from here on.

        The job measured its stages as it ran them, so the finished ones count as planned by what they took here
        (which holds the start-up before the first step: loading the backbone); they set no pace of their own.
        The figure shown so far was the running stage's alone, a different quantity, so the next one is not
        smoothed towards it.
        """
        if self.plan or not plan:
            return
        self.plan = {stage: max(0.0, float(seconds)) for stage, seconds in plan}
        for stage in self._finished & self.plan.keys():
            self.plan[stage] = self._spent.get(stage, 0.0)
        self._shown = None
        if self.estimate_seconds is None:
            self.estimate_seconds = sum(self.plan.values()) or None

    def update(self, stage: str, step: int, total: int, now: float) -> float | None:
        if self._phase is None or self._phase[0] != stage:
            self._phase = (stage, now)
        phase_elapsed = now - self._phase[1]
        # A stage reports a step when it has done it, so the time since the last report went into this one.
        self._spent[stage] = self._spent.get(stage, 0.0) + max(0.0, now - self._last_update)
        self._last_update = now
        if total and step >= total:
            self._finished.add(stage)
        else:
            self._finished.discard(stage)
        self.past_estimate = self.estimate_seconds is not None and now - self.started > self.estimate_seconds
        measured = None
        if step > 0 and total and phase_elapsed > 0.5:
            measured = phase_elapsed / step * max(0, total - step)
        if self.plan:
            raw = self._planned_left(stage, step, total, measured)
        else:
            # Past the estimate, what it expected says nothing more (it would say 0): the running stage's pace.
            prior = None if self.estimate_seconds is None or self.past_estimate else (
                self.estimate_seconds - (now - self.started))
            raw = self._blend(measured, prior, step, total)
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

    @staticmethod
    def _blend(measured: float | None, prior: float | None, step: int, total: int) -> float | None:
        """The phase's rate counts for as much as the share of the phase already measured; what the estimate
        expects keeps its weight until the phase itself is well under way."""
        if measured is None or prior is None:
            return prior if measured is None else measured
        weight = min(1.0, step / total)
        return weight * measured + (1.0 - weight) * prior

    def pace(self, running: str, running_left: float | None = None, done: float = 0.0) -> float:
        """Seconds taken per second planned, over the finished stages of the plan and the running one, which
        counts by its projected length (spent plus ``running_left``, its own rate's figure) in proportion to the
        share ``done`` of it measured; 1 before there is any evidence."""
        taken = planned = 0.0
        for stage, seconds in self.plan.items():
            spent = self._spent.get(stage, 0.0)
            if seconds <= 0:
                continue
            if stage in self._finished and stage != running:
                taken, planned = taken + spent, planned + seconds
            elif stage == running and running_left is not None:
                taken, planned = taken + done * (spent + running_left), planned + done * seconds
        low, high = PACE_BOUNDS
        return min(high, max(low, taken / planned)) if planned > 0 else 1.0

    def _planned_left(self, running: str, step: int, total: int, measured: float | None) -> float:
        """The running stage's time left (its own rate blended with its planned rest) plus the planned rest of
        every other stage not finished, all at the pace kept so far."""
        pace = self.pace(running, measured, min(1.0, step / total) if total else 0.0)

        def rest(stage: str) -> float:
            return max(0.0, self.plan[stage] * pace - self._spent.get(stage, 0.0))

        running_left = self._blend(measured, rest(running), step, total) if running in self.plan else measured
        others = sum(rest(stage) for stage in self.plan if stage != running and stage not in self._finished)
        return (running_left or 0.0) + others


def describe_seconds(seconds: float) -> str:
    """'about 3 min 10 s left', rounded so that the figure does not flicker at every step."""
    seconds = max(0, round(seconds))
    if seconds >= 90:
        minutes, rest = divmod(round(seconds / 10) * 10, 60)
        return f"about {minutes} min {rest} s left" if rest else f"about {minutes} min left"
    return f"about {seconds} s left"
