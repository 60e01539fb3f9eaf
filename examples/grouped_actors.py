"""Groups of worker actors sharing one accelerator actor per group, groups spread over nodes
(the Monte Carlo tree search layout). The custom resource "accel" stands in for a GPU:

    scripts/start_cluster.sh 4 --resources '{"accel": 1}'
"""
from __future__ import annotations

import sys

import ray
from _support import connect, here, show, verdict

import placement
from placement import Packing

WORKERS_PER_GROUP = 2


@ray.remote(num_cpus=0, resources={"accel": 1})
class Accelerator:
    def evaluate(self, position: int) -> tuple[str, float]:
        return here(), position / 100


@ray.remote(num_cpus=0)
class Worker:
    def __init__(self, accelerator) -> None:
        self.accelerator = accelerator

    def search(self, position: int) -> tuple[str, str, float]:
        accel_node, value = ray.get(self.accelerator.evaluate.remote(position))
        return here(), accel_node, value


def main() -> int:
    names = connect()
    groups = sum(1 for n in placement.current_snapshot().live if n.total.get("accel", 0) >= 1)
    if groups == 0:
        print("no node has an 'accel' resource: start the cluster with "
              "scripts/start_cluster.sh 4 --resources '{\"accel\": 1}'")
        return verdict(False, "groups of workers next to their accelerator")
    pack = Packing()
    actors, rows, ok, homes = [], [], True, set()
    try:
        for group in range(groups):
            accelerator = pack.place(Accelerator, group=group).remote()
            workers = [pack.place(Worker, group=group).remote(accelerator)
                       for _ in range(WORKERS_PER_GROUP)]
            actors += [accelerator, *workers]
            results = ray.get([w.search.remote(group * 10 + i) for i, w in enumerate(workers)])
            worker_nodes = {node for node, _, _ in results}
            accel_node = results[0][1]
            ok &= worker_nodes == {accel_node}
            homes.add(accel_node)
            rows.append([group, names[accel_node], sorted(names[n] for n in worker_nodes)])
        show("groups", rows, ["group", "accelerator on", "workers on"])
        return verdict(ok and len(homes) == groups,
                       "every group's workers beside its accelerator, groups apart")
    finally:
        for actor in actors:
            ray.kill(actor)


if __name__ == "__main__":
    sys.exit(main())
