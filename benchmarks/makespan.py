"""Makespan of one-CPU tasks with heavy-tailed durations: LeastLoaded against RoundRobin and Ray's
own DEFAULT and SPREAD, on a real cluster.

    python benchmarks/makespan.py            # the running local cluster, or one it starts
    python benchmarks/makespan.py --quick
    python benchmarks/makespan.py --unequal  # starts 4 nodes of 1, 2, 3 and 4 CPUs

Durations are lognormal (seed fixed, the same list for every contender). The driver keeps a
window of tasks in flight, twice the cluster's CPUs, submitting the next as one finishes
(``ray.wait``), as a pipeline over a large input does. With every task submitted at once no
policy that decides at submission could know which tasks run long: LeastLoaded would then place
exactly as RoundRobin does. The contenders take turns round by round; the figure is the median
over rounds of each one's makespan over LeastLoaded's in the same round.
"""
from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

import placement
from placement import LeastLoaded, RoundRobin
from placement.local_cluster import ClusterSpec, start_cluster

SIZES = {"full": {"tasks": 400, "rounds": 5}, "quick": {"tasks": 60, "rounds": 1}}
# Median 20 ms, sigma 1.2: a mean of about 41 ms, one task in a hundred above 330 ms.
MEDIAN_SECONDS, SIGMA = 0.02, 1.2
SEED = 7
UNEQUAL_CPUS = (1, 2, 3, 4)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@ray.remote(num_cpus=1)
def busy_for(seconds: float) -> str:
    time.sleep(seconds)
    return ray.get_runtime_context().get_node_id()


def durations(n: int) -> list[float]:
    draw = random.Random(SEED)
    return [draw.lognormvariate(0.0, SIGMA) * MEDIAN_SECONDS for _ in range(n)]


def makespan(submit: Callable[[float], Any], work: list[float], window: int) -> float:
    """Seconds from the first submission to the last result, ``window`` tasks in flight."""
    began = time.perf_counter()
    pending: list[Any] = []
    for seconds in work:
        if len(pending) >= window:
            _, pending = ray.wait(pending, num_returns=1, timeout=300)
        pending.append(submit(seconds))
    ray.get(pending, timeout=300)
    return time.perf_counter() - began


def run(quick: bool = False) -> list[dict[str, Any]]:
    size = SIZES["quick" if quick else "full"]
    cpus = int(sum(n.total.get("CPU", 0) for n in placement.current_snapshot(refresh=True).live))
    window = 2 * max(cpus, 1)
    work = durations(size["tasks"])
    contenders: dict[str, Callable[[float], Any]] = {
        "LeastLoaded()": LeastLoaded().place(busy_for).remote,
        "RoundRobin()": RoundRobin().place(busy_for).remote,
        "Ray DEFAULT": busy_for.remote,
        "Ray SPREAD": busy_for.options(scheduling_strategy="SPREAD").remote,
    }
    names = list(contenders)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(size["rounds"]):
        for name in names[round_index % len(names):] + names[:round_index % len(names)]:
            seconds[name].append(makespan(contenders[name], work, window))
    ours = seconds["LeastLoaded()"]
    note = (f"{size['tasks']} tasks, lognormal median {MEDIAN_SECONDS * 1000:.0f} ms sigma "
            f"{SIGMA}, {window} in flight on {cpus} CPUs, median of {size['rounds']} rounds")
    rows = [{"benchmark": "makespan", "contender": f"{name}, seconds",
             "value": round(statistics.median(seconds[name]), 2), "unit": "s", "note": note}
            for name in names]
    rows += [{"benchmark": "makespan", "contender": f"LeastLoaded() / {name}",
              "value": round(statistics.median(a / b for a, b in zip(ours, seconds[name],
                                                                       strict=True)), 3),
              "unit": "x", "note": "per-round ratio, median; target <= 0.8 vs RoundRobin, "
              "<= 1.0 vs the better of DEFAULT and SPREAD"}
             for name in names[1:]]
    return rows


def main_with_cluster(description: str | None, run: Callable[[bool], list[dict[str, Any]]],
                      argv: list[str] | None = None) -> int:
    """The command line of a makespan benchmark: ``--quick``, ``--json``, and ``--unequal``,
    which starts (and then stops) a cluster of nodes of UNEQUAL_CPUS for the run."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small run (CI)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--unequal", action="store_true",
                        help=f"start a cluster of nodes with {UNEQUAL_CPUS} CPUs for the run")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import run_alone
    started = None
    if args.unequal:
        started = Path(tempfile.mkdtemp(prefix="plb-", dir="/tmp"))
        start_cluster(ClusterSpec(nodes=len(UNEQUAL_CPUS), state_dir=started, port=_free_port(),
                                  first_address="127.0.0.60", node_cpus=UNEQUAL_CPUS))
        placement.connect(state_dir=started)
    return run_alone(lambda: run(args.quick), args.json, started)


def main(argv: list[str] | None = None) -> int:
    return main_with_cluster(__doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
