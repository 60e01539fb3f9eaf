"""Global then local parallelism: parents spread over the nodes, each parent's children on the
parent's own node (Spark's combiners before the reducer). Sized for a 2-core machine."""
from __future__ import annotations

import sys

from _support import connect, here, show, verdict

from placement import LocalExecutor, PlacementExecutor, RoundRobin


def child(x: int) -> tuple[str, int]:
    return here(), x * x


def parent(chunk: list[int]) -> tuple[str, list[str], int]:
    with LocalExecutor(num_cpus=0) as local:  # children stay next to this parent's data
        results = list(local.map(child, chunk))
    return here(), [node for node, _ in results], sum(value for _, value in results)


def main() -> int:
    names = connect()
    chunks = [list(range(i * 25, (i + 1) * 25)) for i in range(len(names))]
    with PlacementExecutor(RoundRobin(), num_cpus=0) as spread:  # global: one parent per node
        results = list(spread.map(parent, chunks))
    rows = [[names[p], len(kids), sorted({names[k] for k in kids}), total]
            for p, kids, total in results]
    show("parents (global) and their children (local)", rows,
         ["parent node", "children", "children ran on", "sum"])
    local_ok = all(set(kids) == {p} for p, kids, _ in results)
    sums_ok = sum(total for *_, total in results) == sum(x * x for c in chunks for x in c)
    spread_ok = len({p for p, _, _ in results}) == len(names)
    return verdict(local_ok and sums_ok and spread_ok,
                   "parents on every node, every child on its parent's node, sums right")


if __name__ == "__main__":
    sys.exit(main())
