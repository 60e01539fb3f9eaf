"""Data locality: consumers run where their input already is, beside RoundRobin and Ray's DEFAULT.

Blocks of 4 MB are made on every node; four consumers read each one. The table shows the bytes
moved between nodes, read from Ray's object locations after the run (a copy of a block on a
second node is a transfer). The promise: every Locality consumer ran on its block's node (read
inside it) and Locality moved fewer bytes than RoundRobin.
"""
from __future__ import annotations

import sys

import ray
from _support import connect, here, show, verdict
from ray.experimental import get_object_locations

from placement import Locality, RoundRobin

MEGABYTES = 4
CONSUMERS_PER_BLOCK = 4


@ray.remote(num_cpus=0)
def make_block() -> tuple[str, bytes]:
    return here(), b"x" * (MEGABYTES * 2**20)


@ray.remote(num_cpus=0)
def consume(block: tuple[str, bytes]) -> tuple[str, str]:
    return block[0], here()


def run(submit, blocks_per_node: int, nodes: int) -> tuple[float, bool]:
    """MB moved between nodes, and whether every consumer ran where its block was made."""
    maker = RoundRobin().place(make_block)
    blocks = [maker.remote() for _ in range(blocks_per_node * nodes)]
    # fetch_local=False: by default ray.wait copies every object to this node (seen in
    # Ray's object locations), and that copy would be data moved before the run.
    ray.wait(blocks, num_returns=len(blocks), timeout=120, fetch_local=False)
    pairs = ray.get([submit(b) for b in blocks for _ in range(CONSUMERS_PER_BLOCK)], timeout=300)
    found = get_object_locations(blocks, timeout_ms=10_000)
    moved = sum(int(info.get("object_size") or 0) * max(0, len(info.get("node_ids") or ()) - 1)
                for info in found.values())
    return moved / 2**20, all(made == ran for made, ran in pairs)


def main() -> int:
    names = connect()
    contenders = {
        "Locality() | RoundRobin()": (Locality() | RoundRobin()).place(consume).remote,
        "RoundRobin()": RoundRobin().place(consume).remote,
        "Ray DEFAULT": consume.remote,
    }
    results = {name: run(submit, 2, len(names)) for name, submit in contenders.items()}
    show(f"{2 * len(names)} blocks of {MEGABYTES} MB, {CONSUMERS_PER_BLOCK} consumers each",
         [[name, f"{moved:.1f}", "yes" if local else "no"]
          for name, (moved, local) in results.items()],
         ["policy", "MB moved between nodes", "every consumer on its block's node"])
    moved, local = results["Locality() | RoundRobin()"]
    return verdict(local and moved < results["RoundRobin()"][0],
                   "Locality ran every consumer on its block's node and moved less than "
                   "RoundRobin")


if __name__ == "__main__":
    sys.exit(main())
