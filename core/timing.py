"""Timing one call repeatedly: warm-up, then enough timed runs for stable percentiles (the benchmark's
latency and the quantizer's quick check).

The run count is set by a time budget rather than fixed: a 5 ms call and a 2 s call both get a
meaningful sample without the slow one taking minutes. ``min_runs`` run (so p90/p99 have something to
stand on), then runs continue until ``budget_s`` seconds of timed calls or ``max_runs``. A call so slow
that the minimum runs would take more than ``cap_factor * budget_s`` (a PyTorch eager encoder on one
thread, anything under emulation) stops there, after at least ``floor_runs``; the report shows the
run count of every measurement.
Warm-up calls are not timed: the first calls pay for lazy allocation, OpenVINO's shape-specific
compilation of a dynamic graph, and cold caches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np

DEFAULT_WARMUP = 2
DEFAULT_MIN_RUNS = 10
DEFAULT_BUDGET_S = 2.0
DEFAULT_MAX_RUNS = 500
CAP_FACTOR = 5.0
FLOOR_RUNS = 3
K = TypeVar("K")


@dataclass(frozen=True)
class TimingPolicy:
    """How long to time one call (see the module docstring)."""

    warmup: int = DEFAULT_WARMUP
    min_runs: int = DEFAULT_MIN_RUNS
    budget_s: float = DEFAULT_BUDGET_S
    max_runs: int = DEFAULT_MAX_RUNS
    cap_factor: float = CAP_FACTOR
    floor_runs: int = FLOOR_RUNS

    def enough(self, runs: int, spent: float) -> bool:
        """Whether ``runs`` timed calls that took ``spent`` seconds in all are enough."""
        if runs >= self.max_runs:
            return True
        if runs < min(self.floor_runs, max(1, self.min_runs)):
            return False
        if runs >= max(1, self.min_runs):
            return spent >= self.budget_s
        # budget 0 asks for exactly min_runs, so no cap then
        return self.budget_s > 0 and spent >= self.cap_factor * self.budget_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Stats:
    """Wall-clock statistics of the timed runs, in milliseconds."""

    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    std_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Stats:
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])  # linear interpolation between order statistics
        return cls(
            runs=len(ms),
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            mean_ms=float(ms.mean()),
            min_ms=float(ms.min()),
            max_ms=float(ms.max()),
            std_ms=float(ms.std()),
        )

    def to_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def measure(call: Callable[[], object], policy: TimingPolicy) -> Stats:
    """Time ``call()`` as ``policy`` says; returns the statistics of the timed runs."""
    return measure_in_turn({0: call}, policy)[0]


def measure_in_turn(
    calls: Mapping[K, Callable[[], object]],
    policy: TimingPolicy,
    pause_s: float = 0.0,
    own_policies: Mapping[K, TimingPolicy] | None = None,
) -> dict[K, Stats]:
    """Time several calls taking turns, one timed run of each per round, each until its policy has enough
    of it: a change in the machine's load (it may be shared) then falls on all of them alike, where calls
    timed one after the other would each see another moment. ``policy`` serves every call that has none
    in ``own_policies``. ``pause_s`` (untimed) before every timed run lets the threads of the previous
    call stop spinning, as they do between a user's clicks."""
    policies = {key: (own_policies or {}).get(key, policy) for key in calls}
    for warmup_round in range(max((p.warmup for p in policies.values()), default=0)):
        for key, call in calls.items():
            if warmup_round < policies[key].warmup:
                call()
    times: dict[K, list[float]] = {key: [] for key in calls}
    spent = dict.fromkeys(calls, 0.0)
    active = [key for key in calls if not policies[key].enough(0, 0.0)]
    while active:
        for key in list(active):
            if pause_s > 0:
                time.sleep(pause_s)
            start = time.perf_counter()
            calls[key]()
            elapsed = time.perf_counter() - start
            times[key].append(elapsed)
            spent[key] += elapsed
            if policies[key].enough(len(times[key]), spent[key]):
                active.remove(key)
    return {key: Stats.of(times[key]) for key in calls}
