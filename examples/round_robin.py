"""Round robin of 1000 tasks: RoundRobin beside Ray's DEFAULT and SPREAD.

    scripts/start_cluster.sh 4 && .venv/bin/python examples/round_robin.py
"""
from __future__ import annotations

import sys
from collections import Counter

import ray
from _support import connect, here, show, verdict

from placement import RoundRobin

TASKS = 1000


@ray.remote(num_cpus=0)
def io_bound() -> str:
    return here()


def spread_of(counts: Counter, nodes: list[str]) -> float:
    values = [counts.get(n, 0) for n in nodes]
    return (max(values) - min(values)) / (sum(values) / len(values))


def main() -> int:
    names = connect()
    nodes = sorted(names, key=lambda n: names[n])
    balanced = RoundRobin().place(io_bound)  # one policy, reused: it keeps balancing
    runs = {
        "RoundRobin": ray.get([balanced.remote() for _ in range(TASKS)]),
        "Ray DEFAULT": ray.get([io_bound.remote() for _ in range(TASKS)]),
        "Ray SPREAD": ray.get(
            [io_bound.options(scheduling_strategy="SPREAD").remote() for _ in range(TASKS)]
        ),
    }
    counts = {name: Counter(ran) for name, ran in runs.items()}
    rows = [[names[n]] + [counts[name].get(n, 0) for name in runs] for n in nodes]
    rows.append(["(max-min)/mean"] + [f"{spread_of(counts[name], nodes):.3f}" for name in runs])
    show(f"{TASKS} zero-CPU tasks per strategy: where they ran", rows, ["node", *runs])
    per_node = [counts["RoundRobin"].get(n, 0) for n in nodes]
    return verdict(max(per_node) - min(per_node) <= 1,
                   f"RoundRobin put {TASKS} tasks on {len(nodes)} nodes, "
                   "counts differing by at most 1")


if __name__ == "__main__":
    sys.exit(main())
