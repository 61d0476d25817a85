"""Hold a latency target: each frame's merging chosen so that frames finish by a deadline.

ClustViT's compute can be turned per frame without reloading anything. `LatencyTarget` turns it:
the node asks it for the next frame's `MergeBudget`, runs the frame, and tells it what the frame
took (latency, received -> published) and cost (its GFLOPs). Like `InferenceThreads` it runs on
the inference thread, once per frame; `state` is an immutable snapshot any thread may read.

**The ladder.** Rung 0 is the user's own budget and bias: the least merging ever used. The rungs
above raise the budget to 1 in steps of `BUDGET_STEP`, then (at budget 1) the bias in steps of
`BIAS_STEP` up to the user's bias + `MAX_EXTRA_BIAS`. Every rung merges at least the tokens of the
rung below it (both knobs only add the tokens with the next-largest merge margins).

**Why the bias stops at + `MAX_EXTRA_BIAS`.** Past it there is nothing left to gain or only the
tokens the model is surest about to lose: the packaged model merges every token of its 48 sample
CamVid frames by +5.5, and a token that still stays at +6 is one whose keep logit beats its best
cluster by more than 6 (odds of e^6, about 400:1). A finite top also makes "saturated" quick to tell.

**The plant model.** latency = rate x (fixed + cost): the frame's cost (what the frame computes)
plus a fixed part in the same units (decoding, the label map, publishing), at a rate that the load
sets. The rate is measured on every frame: a jump beyond `JUMP` and the usual prediction error
(either way: a load that comes or goes) is taken at once, a smaller rise with weight `RISE`, a
smaller fall with time constant `FALL_S`. The fixed part is estimated from pairs of frames in a row
at rungs whose costs differ by `MIN_COST_CHANGE` or more, and used a little below that estimate (`FIXED_TRUST`). It may be negative
(latency that grows faster than the cost). Each rung's cost is the running cost
of the frames run there; a rung not run yet costs what the nearest run rung below it cost (so when
more merging is needed than any rung run so far, the top is tried first and the controller works
its way down), between run rungs costs are interpolated, and they never rise with the rung.

**The choice.** The next rung is the lowest whose predicted latency is at most the setpoint; the
controller goes to less merging only where that is predicted at least `HYSTERESIS` below the
setpoint, and at most halfway there per frame, so that each step down is measured before the
next (recovery from the top of the ladder takes about six frames). The setpoint is the target
divided by a margin: the (1 - `LATE_SHARE`) quantile of measured / predicted latency over the last
`ERROR_WINDOW` frames, so that about that share of frames would be late at a rung predicted exactly
at the setpoint. A load step enters that window at the smallest step's size: one now and then (the
load changed) stays above the quantile, while frequent ones (a heavy-tailed latency) raise the
margin until they are covered.

**Why it settles and does not cycle.** Say latency = s (a + cost) and the fixed part is estimated
as a' <= a. A frame at cost c measures the rate s (a + c) / (a' + c), so the cost chosen next is a
step of a fixed-point iteration whose fixed point meets the setpoint exactly and whose slope there
is (a - a') / (a + c*) < 1: the error shrinks by at least that factor each frame (a' = 0 still
converges). A rate measured at a rung applies a larger share of the fixed part to the rungs below
it than they really have, so their latency is overestimated: going down never picks a rung that
was too slow at the same load, and at a constant load no two rungs alternate. Noise below the
hysteresis does not move the rung either.
"""
from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

from ..model.budget import MergeBudget

BUDGET_STEP = 0.05
"""Budget rungs, from the user's budget to 1."""
BIAS_STEP = 0.25
"""Bias rungs [logit], at budget 1."""
MAX_EXTRA_BIAS = 6.0
"""The most the bias is raised above the user's [logit] (see the module docstring)."""
JUMP = math.log(1.25)
"""A latency this much (log) beyond its prediction and the margin is a load step, up or down: the
measured rate replaces the estimate at once."""
RISE = 0.3
"""Otherwise a higher measured rate moves the estimate this share of the way."""
FALL_S = 0.4
"""Time constant [s] at which the estimate follows a lower measured rate."""
HYSTERESIS = 0.05
"""Less merging only when it is predicted this share below the setpoint."""
COST_WEIGHT = 0.5
"""Weight of a frame's cost in its rung's running cost (scene content drifts)."""
LATE_SHARE = 0.03
"""The margin is the (1 - this) quantile of measured / predicted latency ..."""
ERROR_WINDOW = 100
"""... over this many recent frames."""
MAX_MARGIN = math.log(2.0)
"""The setpoint is never below half the target."""
FIXED_PAIRS = 9
"""The fixed part is the median of the estimates from this many recent rung changes."""
FIXED_TRUST = 0.8
"""The estimate used is that median minus (1 - this) of its size: an underestimate keeps the
predictions below the current rung pessimistic."""
MIN_COST_CHANGE = 0.25
"""A rung change estimates the fixed part only when the cost changed by this share: from smaller
changes, a noisy load's latency gives estimates far below the fixed part, which make every rung
below the current one look too slow and the way back down after a load slow."""


@dataclass(frozen=True)
class TargetState:
    """What the controller is doing, for diagnostics: off, holding or saturated."""

    mode: str = "off"
    target_ms: float = 0.0
    budget: MergeBudget = MergeBudget()
    rung: int = 0
    rungs: int = 1
    expected_ms: float = math.nan  # the chosen rung's predicted latency
    reason: str = ""               # why the target is not reachable (saturated)

    def describe(self) -> str:
        """One line for logs and diagnostics."""
        if self.mode == "off":
            return "off"
        level = (f"merge_budget {self.budget.merge_budget:g}, merge_bias {self.budget.merge_bias:g} "
                 f"(rung {self.rung} of {self.rungs - 1})")
        if self.mode == "saturated":
            return f"saturated: {self.reason}; {level}"
        expected = "" if math.isnan(self.expected_ms) else f", expected {self.expected_ms:.0f} ms"
        return f"holding {self.target_ms:g} ms: {level}{expected}"


def ladder(floor: MergeBudget) -> list[MergeBudget]:
    """The merge settings the controller chooses from, least merging first; rung 0 is `floor`."""
    rungs = [floor]
    steps = math.ceil((1.0 - floor.merge_budget) / BUDGET_STEP - 1e-9)
    rungs += [MergeBudget(min(1.0, round(floor.merge_budget + i * BUDGET_STEP, 6)), floor.merge_bias)
              for i in range(1, steps + 1)]
    rungs += [MergeBudget(1.0, floor.merge_bias + j * BIAS_STEP)
              for j in range(1, round(MAX_EXTRA_BIAS / BIAS_STEP) + 1)]
    return rungs


class LatencyTarget:
    """Chooses each frame's merge budget so that frame latency stays at or under a target.

    Call `budget` before a frame and `observe` after it, on one thread. A target of 0 is off: the
    floor (the user's budget) is used as it is.
    """

    def __init__(self) -> None:
        self._target = 0.0
        self._floor: MergeBudget | None = None
        self._rungs: list[MergeBudget] = []
        self._costs: list[float | None] = []
        self._rung = 0
        self._rate: float | None = None     # ms per unit of (fixed part + cost)
        self._fixed = 0.0                    # the cost-independent part of latency, in units of cost
        self._fixed_estimates: deque[float] = deque(maxlen=FIXED_PAIRS)
        self._previous: tuple[float, int, float, float] | None = None  # time, rung, latency, cost
        self._log_margin = 0.0
        self._errors: deque[float] = deque(maxlen=ERROR_WINDOW)  # log(measured / predicted)
        self._predicted: float | None = None  # the running frame's predicted latency
        self._last_time: float | None = None
        self._top_latency: float | None = None
        self._top_kept: int | None = None
        self.state = TargetState()

    def budget(self, target_ms: float, floor: MergeBudget) -> MergeBudget:
        """The merge budget of the next frame, for a target (0 = off) and the user's least merging."""
        if target_ms <= 0:
            if self._target > 0:
                self._target, self._predicted = 0.0, None
                self.state = TargetState()
            return floor
        if floor != self._floor:  # a new ladder: start again from the user's floor
            self._floor, self._rungs = floor, ladder(floor)
            self._costs = [None] * len(self._rungs)
            self._rung, self._predicted, self._previous = 0, None, None
            self._top_latency = self._top_kept = None
        if self._target <= 0:  # just switched on: from the floor, the load measured afresh
            self._rung, self._rate, self._predicted = 0, None, None
        self._target = target_ms
        self._publish_state()
        return self._rungs[self._rung]

    def observe(self, now: float, latency_ms: float, cost: float, kept: int, patches: int) -> None:
        """What the frame run with the last `budget` took: its latency [ms] at monotonic time `now`
        [s], its cost (> 0, e.g. GFLOPs) and its kept tokens of `patches`."""
        if self._target <= 0 or not (latency_ms > 0 and cost > 0):
            return
        rung = self._rung
        self._learn_cost(rung, cost, kept, patches)
        step = False
        if self._predicted is not None:
            error = math.log(latency_ms / self._predicted)
            step = abs(error) > self._log_margin + JUMP
            if step and error < 0:
                # The load went: errors measured under it no longer describe the frames to come,
                # and a margin kept from them would hold the merging up for a whole window.
                self._errors.clear()
            # A step counts at the size of the smallest step: a rare one (a load that changed) stays
            # above the quantile, frequent ones (heavy-tailed noise) raise the margin.
            self._errors.append(min(error, self._log_margin + JUMP))
            ranked = sorted(self._errors)
            self._log_margin = min(MAX_MARGIN, max(0.0, ranked[int((1.0 - LATE_SHARE) * (len(ranked) - 1))]))
        self._learn_fixed(now, rung, latency_ms, cost)
        curve = self._cost_curve()
        fixed = max(self._fixed, -0.9 * min(cost, curve[-1]))  # positive latency at the cheapest rung
        self._learn_rate(now, latency_ms / (fixed + cost), step or self._rate is None)
        if rung == len(self._rungs) - 1:
            self._top_kept = kept
            self._top_latency = latency_ms if self._top_latency is None else (
                self._top_latency + COST_WEIGHT * (latency_ms - self._top_latency))
        predicted = [self._rate * (fixed + c) for c in curve]
        self._rung = self._choose(rung, predicted)
        self._predicted = predicted[self._rung]
        self._publish_state()

    # ------------------------------------------------------------------------------------------

    def _learn_cost(self, rung: int, cost: float, kept: int, patches: int) -> None:
        old = self._costs[rung]
        self._costs[rung] = cost if old is None else old + COST_WEIGHT * (cost - old)
        budget = self._rungs[rung]
        if kept == 0:  # nothing left to merge: no rung above costs less
            for j in range(rung + 1, len(self._rungs)):
                self._costs[j] = cost
        elif budget.merge_budget < 1.0 and patches - kept < budget.cap(patches):
            # The budget did not cap the merging: the budget rungs above merge the same tokens.
            for j in range(rung + 1, len(self._rungs)):
                if self._rungs[j].merge_bias != budget.merge_bias:
                    break
                self._costs[j] = cost

    def _learn_fixed(self, now: float, rung: int, latency: float, cost: float) -> None:
        """Two frames in a row at different rungs (one load) tell the fixed part a of latency =
        s (a + cost): a = (y2 c1 - y1 c2) / (y1 - y2)."""
        previous, self._previous = self._previous, (now, rung, latency, cost)
        if previous is None or previous[1] == rung or now - previous[0] > 1.0:
            return
        _, _, y1, c1 = previous
        if abs(c1 - cost) < MIN_COST_CHANGE * max(c1, cost) or (y1 - latency) * (c1 - cost) <= 0:
            return  # too close to tell, or noise larger than the change
        self._fixed_estimates.append(min(max(-0.9 * min(c1, cost), (latency * c1 - y1 * cost) / (y1 - latency)),
                                         4.0 * max(c1, cost)))  # positive latency; not all fixed
        median = statistics.median(self._fixed_estimates)
        self._fixed = median - (1.0 - FIXED_TRUST) * abs(median)

    def _learn_rate(self, now: float, rate: float, step: bool) -> None:
        if step:
            self._rate = rate
        elif rate > self._rate:
            self._rate += RISE * (rate - self._rate)
        else:
            elapsed = max(0.0, now - self._last_time) if self._last_time is not None else 0.0
            self._rate += (1.0 - math.exp(-elapsed / FALL_S)) * (rate - self._rate)
        self._last_time = now

    def _cost_curve(self) -> list[float]:
        """Every rung's predicted cost: run rungs their own, others interpolated between run rungs,
        above the last run rung that rung's (below the first, the first's); never rising with the rung."""
        costs = self._costs
        known = [j for j, c in enumerate(costs) if c is not None]
        curve = [costs[known[0]]] * known[0]
        for below, above in zip(known, known[1:]):
            span = above - below
            curve += [costs[below] + (costs[above] - costs[below]) * i / span for i in range(span)]
        curve += [costs[known[-1]]] * (len(costs) - known[-1])
        for j in range(1, len(curve)):
            curve[j] = min(curve[j], curve[j - 1])
        return curve

    def _setpoint(self) -> float:
        return self._target * math.exp(-self._log_margin)

    def _choose(self, rung: int, predicted: list[float]) -> int:
        """The next rung, from every rung's predicted latency."""
        setpoint = self._setpoint()
        if predicted[rung] > setpoint:  # more merging: the least that is expected to hold
            return next((j for j in range(rung + 1, len(predicted)) if predicted[j] <= setpoint),
                        len(predicted) - 1)
        lower = next((j for j in range(rung) if predicted[j] <= setpoint * (1.0 - HYSTERESIS)), rung)
        return rung - (rung - lower + 1) // 2  # halfway there: each step is measured before the next

    def _publish_state(self) -> None:
        top = len(self._rungs) - 1
        expected = self._predicted if self._predicted is not None else math.nan
        mode, reason = "holding", ""
        if self._rung == top and self._top_latency is not None and self._top_latency > self._target:
            mode = "saturated"
            what = ("fully merged frames" if self._top_kept == 0 else
                    f"frames at the most merging allowed (merge_budget 1, merge_bias "
                    f"{self._rungs[top].merge_bias:g})")
            reason = f"target {self._target:g} ms not reachable: {what} take {self._top_latency:.0f} ms"
        self.state = TargetState(mode, self._target, self._rungs[self._rung], self._rung, len(self._rungs),
                                 expected, reason)
