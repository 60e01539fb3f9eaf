"""Late binding and cost order: the executor against Ray's DEFAULT and SPREAD, every task given
at once, on a real cluster.

    python benchmarks/late_binding.py            # the running local cluster, or one it starts
    python benchmarks/late_binding.py --unequal  # starts 4 nodes of 1, 2, 3 and 4 CPUs
    python benchmarks/late_binding.py --quick

160 one-CPU sleeps with heavy-tailed durations (lognormal, seed fixed, at most 3 s) are given at
once to each contender: the executor with LeastLoaded, without hints, with ``cost=`` the true
durations and with hints off by up to 30% (each multiplied by a factor drawn from 0.7-1.3);
the executor with RoundRobin; ``LeastLoaded().place(f).remote()`` for every task; Ray's DEFAULT
and SPREAD. Each makespan (first submission to last result) is also given as a ratio to the
ideal, max(total work / slots, longest task), and to greedy list scheduling of the same
durations in the given order (each task to the first free slot, simulated): what late binding
can reach without knowing durations. Contenders take turns round by round; medians of the
per-round figures.
"""
from __future__ import annotations

import heapq
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

import placement
from placement import LeastLoaded, PlacementExecutor, RoundRobin

SIZES = {"full": {"tasks": 160, "rounds": 3}, "quick": {"tasks": 40, "rounds": 1}}
MEDIAN_SECONDS, SIGMA, LONGEST = 0.15, 1.0, 3.0
SEED, HINT_SEED, HINT_ERROR = 11, 12, 0.3


@ray.remote(num_cpus=1)
def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    return ray.get_runtime_context().get_node_id()


def plain_sleep(seconds: float) -> str:
    time.sleep(seconds)
    return ray.get_runtime_context().get_node_id()


def durations(n: int) -> list[float]:
    draw = random.Random(SEED)
    return [min(LONGEST, draw.lognormvariate(0.0, SIGMA) * MEDIAN_SECONDS) for _ in range(n)]


def noisy(work: list[float]) -> list[float]:
    draw = random.Random(HINT_SEED)
    return [w * draw.uniform(1 - HINT_ERROR, 1 + HINT_ERROR) for w in work]


def greedy(work: list[float], slots: int) -> float:
    """Makespan of handing each task, in order, to the first free slot."""
    free = [0.0] * slots
    for seconds in work:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free)


def ideal(work: list[float], slots: int) -> float:
    return max(sum(work) / slots, max(work))


def executor_run(policy: Callable[[], Any], work: list[float],
                 hints: list[float] | None) -> Callable[[], Any]:
    """Every task through a fresh executor's ``map``, with ``cost=`` the hint of each duration
    when hints are given (durations capped at the same value share one hint)."""
    hint_of = None if hints is None else dict(zip(work, hints, strict=True))

    def go() -> Any:
        with PlacementExecutor(policy()) as pool:
            cost = None if hint_of is None else hint_of.__getitem__
            return list(pool.map(plain_sleep, work, cost=cost))
    return go


def all_at_once(submit: Callable[[float], Any], work: list[float]) -> Callable[[], Any]:
    return lambda: ray.get([submit(w) for w in work], timeout=600)


def run(quick: bool = False) -> list[dict[str, Any]]:
    size = SIZES["quick" if quick else "full"]
    live = placement.current_snapshot(refresh=True).live
    slots = int(sum(int(n.cpus) for n in live))
    cpus = sorted(int(n.cpus) for n in live)
    work = durations(size["tasks"])
    contenders: dict[str, Callable[[], Any]] = {
        "executor, LeastLoaded(), no hints": executor_run(LeastLoaded, work, None),
        "executor, LeastLoaded(), cost= exact": executor_run(LeastLoaded, work, work),
        "executor, LeastLoaded(), cost= off by up to 30%": executor_run(
            LeastLoaded, work, noisy(work)),
        "executor, RoundRobin(), no hints": executor_run(RoundRobin, work, None),
        "LeastLoaded().place(f).remote(), all at once": all_at_once(
            LeastLoaded().place(sleep_for).remote, work),
        "Ray DEFAULT": all_at_once(sleep_for.remote, work),
        "Ray SPREAD": all_at_once(sleep_for.options(scheduling_strategy="SPREAD").remote, work),
    }
    names = list(contenders)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(size["rounds"]):
        for name in names[round_index % len(names):] + names[:round_index % len(names)]:
            began = time.perf_counter()
            contenders[name]()
            seconds[name].append(time.perf_counter() - began)
    best, in_order = ideal(work, slots), greedy(work, slots)
    longest_first = greedy(sorted(work, reverse=True), slots)
    note = (f"{size['tasks']} one-CPU tasks given at once, lognormal median "
            f"{MEDIAN_SECONDS * 1000:.0f} ms sigma {SIGMA} (at most {LONGEST:g} s, total "
            f"{sum(work):.1f} s), nodes of {cpus} CPUs; median of {size['rounds']} rounds")
    rows: list[dict[str, Any]] = [
        {"benchmark": "late binding", "contender": "ideal: max(total / slots, longest)",
         "value": round(best, 2), "unit": "s", "note": note},
        {"benchmark": "late binding", "contender": "greedy list scheduling, given order",
         "value": round(in_order, 2), "unit": "s",
         "note": f"simulated; {in_order / best:.3f}x the ideal"},
        {"benchmark": "late binding", "contender": "greedy list scheduling, longest first",
         "value": round(longest_first, 2), "unit": "s",
         "note": f"simulated; {longest_first / best:.3f}x the ideal"},
    ]
    targets = {"executor, LeastLoaded(), no hints": "target <= 1.05x greedy",
               "executor, LeastLoaded(), cost= exact": "target <= 1.15x ideal, <= 0.85x DEFAULT",
               "executor, LeastLoaded(), cost= off by up to 30%": "target <= 1.25x ideal"}
    default = seconds["Ray DEFAULT"]
    for name in names:
        ours = seconds[name]
        vs_default = statistics.median(a / b for a, b in zip(ours, default, strict=True))
        rows.append({
            "benchmark": "late binding", "contender": f"{name}, seconds",
            "value": round(statistics.median(ours), 2), "unit": "s",
            "note": (f"{statistics.median(ours) / best:.3f}x ideal, "
                     f"{statistics.median(ours) / in_order:.3f}x greedy, {vs_default:.3f}x "
                     f"DEFAULT (per round); {targets.get(name, 'no target')}")})
    return rows


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from makespan import main_with_cluster  # run.py's module layout: not at the top
    return main_with_cluster(__doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
