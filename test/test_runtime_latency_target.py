"""The latency-target controller against a simulated plant: a frame's kept tokens follow from its
merge budget (per-token merge margins), its latency is load x (a + b x kept) with noise."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clustvit_ros.model.budget import MergeBudget
from clustvit_ros.runtime.latency_target import MAX_EXTRA_BIAS, LatencyTarget, ladder

CAMERA_PERIOD_S = 0.1  # a 10 Hz camera


class Plant:
    """A ClustViT frame on a CPU: kept tokens from the budget, latency = load (a + b kept) x noise.

    The margins are drawn once (the model's view of one scene) and jittered per frame (the scene
    moves); GFLOPs are affine in the kept tokens, as the model's analytic count is to first order.
    The defaults are the packaged model's figures on 2 cores (ms and ms per token).
    """

    def __init__(self, a: float = 22.0, b: float = 0.115, patches: int = 690, noise: float = 0.0,
                 jitter: float = 0.0, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        # The model merges about 43 % of the tokens by itself, and all of them at a bias of +5.5.
        self.margins = np.clip(self.rng.normal(-0.3, 1.6, patches), -5.5, None)
        self.a, self.b, self.patches, self.noise, self.jitter = a, b, patches, noise, jitter
        self.load = 1.0

    def kept(self, budget: MergeBudget, margins: np.ndarray | None = None) -> int:
        margins = self.margins if margins is None else margins
        merging = int(np.sum(margins + budget.merge_bias > 0))
        return self.patches - min(budget.cap(self.patches), merging)

    def latency(self, kept: int) -> float:
        return self.load * (self.a + self.b * kept)

    def run(self, budget: MergeBudget) -> tuple[float, float, int]:
        """(latency ms, GFLOPs, kept tokens) of one frame."""
        margins = self.margins + self.rng.normal(0, self.jitter, self.patches) if self.jitter else None
        kept = self.kept(budget, margins)
        noise = math.exp(self.rng.normal(0, self.noise)) if self.noise else 1.0
        return self.latency(kept) * noise, 0.99 + 0.0081 * kept, kept


@dataclass
class Frame:
    time: float
    load: float
    budget: MergeBudget
    latency: float
    mode: str


def simulate(plant: Plant, loads: list[float], target: float, floor: MergeBudget,
             controller: LatencyTarget | None = None, start: float = 0.0) -> list[Frame]:
    """One frame per entry of `loads` (the load it runs under), as the node runs them."""
    controller = controller or LatencyTarget()
    now, frames = start, []
    for load in loads:
        plant.load = load
        budget = controller.budget(target, floor)
        latency, gflops, kept = plant.run(budget)
        now += max(CAMERA_PERIOD_S, latency / 1e3)  # a slower frame delays the next
        controller.observe(now, latency, gflops, kept, plant.patches)
        frames.append(Frame(now, load, budget, latency, controller.state.mode))
    return frames


def idle_target(plant: Plant, floor: MergeBudget) -> float:
    """1.25x the floor's latency on an idle machine (what make bench uses)."""
    return 1.25 * plant.latency(plant.kept(floor))


FLOORS = [MergeBudget(1.0, 0.0), MergeBudget(0.2, 0.0), MergeBudget(0.0, 0.0), MergeBudget(1.0, -1.0)]
# The packaged model on 2 cores; latency barely above proportional to the kept tokens; mostly fixed.
PLANTS = [dict(a=22.0, b=0.115), dict(a=5.0, b=0.15), dict(a=40.0, b=0.2)]


def test_off_runs_the_users_budget_exactly():
    controller, floor = LatencyTarget(), MergeBudget(0.4, 0.5)
    assert controller.budget(0.0, floor) is floor
    assert controller.state.mode == "off" and controller.state.describe() == "off"


def test_the_ladder_merges_more_on_every_rung_within_its_bounds():
    plant = Plant()
    for floor in FLOORS:
        rungs = ladder(floor)
        assert rungs[0] == floor and rungs[-1] == MergeBudget(1.0, floor.merge_bias + MAX_EXTRA_BIAS)
        kept = [plant.kept(b) for b in rungs]
        assert kept == sorted(kept, reverse=True) and kept[-1] < kept[0]
        budgets = [b.merge_budget for b in rungs]
        assert budgets == sorted(budgets)  # the budget rises to 1 first, then the bias
        assert all(b.merge_bias == floor.merge_bias for b in rungs if b.merge_budget < 1.0)


@pytest.mark.parametrize("floor", FLOORS, ids=str)
@pytest.mark.parametrize("params", PLANTS, ids=str)
def test_settles_within_10_frames_of_a_load_step_and_then_holds_still(params, floor):
    plant = Plant(**params)
    target = idle_target(plant, floor)
    phases = [1.0, 2.0, 3.0, 1.5, 2.5, 1.0]
    frames = simulate(plant, [load for load in phases for _ in range(60)], target, floor)
    rungs = ladder(floor)
    for i, load in enumerate(phases):
        phase = frames[60 * i:60 * (i + 1)]
        assert plant.latency(0) * load < 0.9 * target  # fully merged frames fit: the target holds
        assert all(f.latency <= target for f in phase[10:]), [round(f.latency) for f in phase]
        # No limit cycle: the second half of a phase at most refines the level, one way, once or twice.
        levels = [rungs.index(f.budget) for f in phase[30:]]
        assert levels == sorted(levels) or levels == sorted(levels, reverse=True), levels
        assert len(set(levels)) <= 2, levels


def test_with_noise_at_most_5_percent_late_and_the_level_stays_put():
    plant = Plant(noise=0.05, jitter=0.1, seed=1)
    floor = MergeBudget()
    target = idle_target(plant, floor)
    frames = simulate(plant, [2.0] * 600, target, floor)[50:]
    assert sum(f.latency > target for f in frames) <= 0.05 * len(frames)
    rungs = [ladder(floor).index(f.budget) for f in frames]
    changes = sum(a != b for a, b in zip(rungs, rungs[1:]))
    assert changes <= 0.05 * len(rungs), f"{changes} changes in {len(rungs)} frames"
    assert max(rungs) - min(rungs) <= 3, sorted(set(rungs))


class SpikyPlant(Plant):
    """One frame in 12 takes 1.6x as long (the scheduler, page faults): heavy-tailed noise."""

    def run(self, budget: MergeBudget) -> tuple[float, float, int]:
        latency, gflops, kept = super().run(budget)
        return (latency * 1.6 if self.rng.random() < 1 / 12 else latency), gflops, kept


@pytest.mark.parametrize("seed", range(3))
def test_frequent_latency_spikes_widen_the_margin_to_keep_5_percent(seed):
    plant = SpikyPlant(noise=0.05, seed=seed)
    floor = MergeBudget()
    target = idle_target(plant, floor)
    frames = simulate(plant, [2.0] * 500, target, floor)[100:]
    assert sum(f.latency > target for f in frames) <= 0.05 * len(frames)


def floor_back_s(frames: list[Frame], last_loaded: int, floor: MergeBudget) -> float:
    """Seconds from the last loaded frame to the first frame back at the user's `floor`; the load
    must have needed more merging."""
    assert frames[last_loaded].budget != floor  # the load needed more merging
    gone = frames[last_loaded].time
    return next(f.time for f in frames[last_loaded + 1:] if f.budget == floor) - gone


@pytest.mark.parametrize("floor", FLOORS, ids=str)
def test_back_to_the_users_floor_within_2_s_after_the_load_goes(floor):
    plant = Plant(noise=0.05, seed=2)
    target = idle_target(plant, floor)
    frames = simulate(plant, [1.0] * 30 + [3.0] * 100 + [1.0] * 100, target, floor)
    back = floor_back_s(frames, 129, floor)
    assert back <= 2.0
    back_at = frames[129].time + back
    assert all(f.budget == floor for f in frames[130:] if f.time >= back_at), "left the floor again, idle"


class LoadNoisePlant(SpikyPlant):
    """Quiet when idle, heavy-tailed under load: beside other busy processes a frame waits for the
    scheduler now and then (spikes, and log-normal noise 5x the idle one)."""

    def run(self, budget: MergeBudget) -> tuple[float, float, int]:
        if self.load > 1.0:
            self.noise = 0.25
            return super().run(budget)
        self.noise = 0.05
        return Plant.run(self, budget)


@pytest.mark.parametrize("seed", range(3))
def test_the_noise_of_a_load_that_went_does_not_hold_the_merging_up(seed):
    plant = LoadNoisePlant(seed=seed)
    floor = MergeBudget()
    target = idle_target(plant, floor)
    frames = simulate(plant, [1.0] * 30 + [2.5] * 150 + [1.0] * 150, target, floor)
    assert floor_back_s(frames, 179, floor) <= 2.0


class NodePlant(LoadNoisePlant):
    """The packaged model end to end in the node on 2 cores (idle: 39.5 ms at the default budget,
    26.8 ms fully merged): mostly fixed latency, so the fixed part must be known to come back."""

    def __init__(self, **kwargs):
        super().__init__(a=27.0, b=0.045, **kwargs)

    def run(self, budget: MergeBudget) -> tuple[float, float, int]:
        if self.load > 1.0:
            self.noise = 0.35
            return SpikyPlant.run(self, budget)
        self.noise = 0.1
        return Plant.run(self, budget)


def test_a_noisy_load_that_went_with_mostly_fixed_latency_is_left_within_1_5_s():
    # The real node adds lag the simulation lacks (threads re-decided every 0.5 s), so the bound
    # here is stricter than the 2 s that `make bench` measures against.
    backs = []
    for seed in range(10):
        plant = NodePlant(seed=seed)
        floor = MergeBudget()
        frames = simulate(plant, [1.0] * 100 + [2.0] * 200 + [1.0] * 100, idle_target(plant, floor), floor)
        backs.append(floor_back_s(frames, 299, floor))
    assert max(backs) <= 1.5, [round(b, 1) for b in backs]


def test_a_target_it_cannot_reach_saturates_with_the_reason_and_recovers():
    plant = Plant()
    floor = MergeBudget()
    target = 0.8 * plant.latency(0) * 2.0  # under 2x load even fully merged frames take longer
    controller = LatencyTarget()
    frames = simulate(plant, [2.0] * 40, target, floor, controller)
    state = controller.state
    assert state.mode == "saturated" and state.budget == ladder(floor)[-1]
    assert state.reason == f"target {target:g} ms not reachable: fully merged frames take {2 * plant.a:.0f} ms"
    assert state.describe().startswith(f"saturated: target {target:g} ms not reachable")
    frames = simulate(plant, [1.0] * 40, target, floor, controller, start=frames[-1].time)
    assert controller.state.mode == "holding" and all(f.latency <= target for f in frames[10:])


def test_merging_bounded_by_the_bias_limit_says_so():
    plant = Plant()
    plant.margins -= 10.0  # a model that keeps tokens even at the highest bias
    floor = MergeBudget()
    controller = LatencyTarget()
    simulate(plant, [1.0] * 40, 1.0, floor, controller)
    assert controller.state.mode == "saturated"
    assert f"frames at the most merging allowed (merge_budget 1, merge_bias {MAX_EXTRA_BIAS:g})" in (
        controller.state.reason)


def test_a_new_user_floor_applies_at_once_and_bounds_the_merging():
    plant = Plant()
    floor = MergeBudget()
    controller = LatencyTarget()
    target = idle_target(plant, floor)
    frames = simulate(plant, [2.5] * 40, target, floor, controller)
    assert frames[-1].budget.merge_bias > 0
    higher = MergeBudget(1.0, 1.0)  # the user sets merge_bias 1 while the target is on
    frames = simulate(plant, [2.5] * 40 + [1.0] * 40, target, higher, controller, start=frames[-1].time)
    assert all(f.budget.merge_bias >= 1.0 for f in frames)
    assert frames[-1].budget == higher and all(f.latency <= target for f in frames[10:40])


@settings(max_examples=60, deadline=None)
@given(budget=st.floats(0.0, 1.0), bias=st.floats(-3.0, 3.0), target=st.floats(5.0, 300.0),
       loads=st.lists(st.floats(0.3, 8.0), min_size=1, max_size=8), noise=st.floats(0.0, 0.3),
       seed=st.integers(0, 1000))
def test_never_leaves_its_bounds(budget, bias, target, loads, noise, seed):
    floor = MergeBudget(budget, bias)
    plant = Plant(noise=noise, jitter=noise, seed=seed)
    for frame in simulate(plant, [load for load in loads for _ in range(15)], target, floor):
        b = frame.budget
        assert floor.merge_budget <= b.merge_budget <= 1.0
        assert floor.merge_bias <= b.merge_bias <= floor.merge_bias + MAX_EXTRA_BIAS + 1e-9
        assert b.merge_bias == floor.merge_bias or b.merge_budget == 1.0  # budget first, then bias
