"""Replicas on distinct nodes, and a clear refusal when there are more replicas than nodes."""
from __future__ import annotations

import sys

import ray
from _support import connect, here, show, verdict

from placement import AntiAffinity, PlacementError


@ray.remote(num_cpus=0)
class Replica:
    def node(self) -> str:
        return here()


def main() -> int:
    names = connect()
    apart = AntiAffinity()
    replicas = [apart.place(Replica).remote() for _ in range(len(names))]
    try:
        nodes = ray.get([r.node.remote() for r in replicas])
        show("replicas", [[i, names[n]] for i, n in enumerate(nodes)], ["replica", "node"])
        try:
            apart.place(Replica).remote()
            refused = False
        except PlacementError as error:  # raised before anything is submitted
            print(f"\none replica too many is refused:\n  {error}")
            refused = True
        return verdict(len(set(nodes)) == len(names) and refused,
                       "every replica on its own node; one too many refused before submitting")
    finally:
        for replica in replicas:
            ray.kill(replica)


if __name__ == "__main__":
    sys.exit(main())
