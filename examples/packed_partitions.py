"""Partitions packed with their tasks: each partition is loaded and processed on one node, and
the partitions are spread over the nodes (group affinity)."""
from __future__ import annotations

import sys
from collections import defaultdict

import ray
from _support import connect, here, show, verdict

from placement import Packing

TASKS_PER_PARTITION = 3


@ray.remote(num_cpus=0)
def load(partition: int) -> tuple[str, list[int]]:
    return here(), list(range(partition * 3000, (partition + 1) * 3000))


@ray.remote(num_cpus=0)
def process(loaded: tuple[str, list[int]], part: int) -> tuple[str, str, int]:
    loaded_on, rows = loaded
    return here(), loaded_on, sum(rows[part::TASKS_PER_PARTITION])


def main() -> int:
    names = connect()
    pack = Packing()  # one node per partition while nodes remain
    results = defaultdict(list)
    for partition in range(len(names)):
        loaded = pack.place(load, group=partition).remote(partition)
        work = pack.place(process, group=partition)
        results[partition] = ray.get([work.remote(loaded, k) for k in range(TASKS_PER_PARTITION)])
    rows, together, homes = [], True, set()
    for partition, outcomes in results.items():
        loaded_on = outcomes[0][1]
        ran_on = {node for node, _, _ in outcomes}
        together &= ran_on == {loaded_on}
        homes.add(loaded_on)
        rows.append([partition, names[loaded_on], sorted(names[n] for n in ran_on),
                     sum(s for *_, s in outcomes)])
    show("partitions and their processing tasks", rows,
         ["partition", "loaded on", "processed on", "sum"])
    return verdict(together and len(homes) == len(results),
                   "each partition loaded and processed on one node, partitions on different nodes")


if __name__ == "__main__":
    sys.exit(main())
