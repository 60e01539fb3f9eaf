"""A gang of workers, one per node, reserved all or nothing: the whole gang starts on distinct
nodes, and a second gang the cluster cannot hold gets nothing instead of part of it."""
from __future__ import annotations

import sys

import ray
from _support import connect, here, show, verdict

import placement
from placement import AntiAffinity, PlacementError, errors


@ray.remote(num_cpus=1)
class Worker:
    def __init__(self, rank: int) -> None:
        self.rank = rank

    def node(self) -> str:
        return here()


def main() -> int:
    names = connect()
    n = len(names)
    with AntiAffinity().reserve(n, num_cpus=1, timeout=30) as gang:  # one CPU on every node
        workers = [gang.place(Worker).remote(rank) for rank in range(n)]
        nodes = ray.get([w.node.remote() for w in workers])
        show("gang", [[rank, names[planned], names[ran]]
                      for rank, (planned, ran) in enumerate(zip(gang.nodes, nodes, strict=True))],
             ["rank", "reserved on", "ran on"])
        # A second gang that needs every CPU of every node: the first holds one on each, so it
        # cannot be reserved whole, and it is not reserved at all.
        cpus = int(min(node.cpus for node in placement.current_snapshot(refresh=True).live))
        try:
            AntiAffinity().reserve(n, num_cpus=cpus, timeout=3)
            second = "reserved"
        except PlacementError as error:
            print(f"\na second gang of {n} x {cpus} CPUs gets nothing:\n  {error}")
            second = error.rule
    groups = ray.util.placement_group_table()
    left = [g for g in groups.values() if g["state"] in ("PENDING", "CREATED")]
    return verdict(
        nodes == list(gang.nodes) and len(set(nodes)) == n
        and second == errors.RESERVATION_TIMEOUT and not left,
        "the gang ran whole on distinct nodes, where reserved; the second gang got nothing; "
        "no placement group is left")


if __name__ == "__main__":
    sys.exit(main())
