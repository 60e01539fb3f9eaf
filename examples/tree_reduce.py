"""Tree reduce with local combiners, then one global reducer, beside a global-only reduce.

Bytes moved between nodes are counted from where each task really ran: an object crosses nodes
when its consumer runs on another node than its producer.
"""
from __future__ import annotations

import sys
import time
from array import array

import ray
from _support import connect, here, show, verdict

from placement import Affinity, RoundRobin

PARTITIONS_PER_NODE = 2
VECTOR = 50_000  # doubles: 400 kB per partition


def vector_sum(vectors: list[array]) -> array:
    total = array("d", bytes(8 * VECTOR))
    for vector in vectors:
        for i, value in enumerate(vector):
            total[i] += value
    return total


@ray.remote(num_cpus=0)
def make_partition(seed: int) -> tuple[str, array]:
    return here(), array("d", (float((seed * 7 + i) % 13) for i in range(VECTOR)))


@ray.remote(num_cpus=0)
def reduce(*parts: tuple[str, array]) -> tuple[str, list[str], array]:
    return here(), [node for node, _ in parts], vector_sum([vector for _, vector in parts])


def moved(consumer: str, producers: list[str]) -> int:
    return sum(8 * VECTOR for producer in producers if producer != consumer)


def measure(names: dict[str, str]) -> dict:
    """Both reduces over the same partitions: bytes moved between nodes, seconds, results equal.
    (benchmarks/run.py reports these too.)"""
    by_label = {label: node for node, label in names.items()}
    make = RoundRobin().place(make_partition)
    partitions = [make.remote(i) for i in range(PARTITIONS_PER_NODE * len(names))]
    homes = [node for node, _ in ray.get(partitions)]
    reducer = Affinity(sorted(by_label)[0]).place(reduce)

    began = time.perf_counter()
    node, inputs, global_only = ray.get(reducer.remote(*partitions))
    global_seconds, global_bytes = time.perf_counter() - began, moved(node, inputs)

    began = time.perf_counter()
    combiners = []
    for home in sorted(set(homes)):  # one local combiner per node, next to its partitions
        local_parts = [p for p, h in zip(partitions, homes, strict=True) if h == home]
        combiners.append(Affinity(home, backend="node_id").place(reduce).remote(*local_parts))
    combined = ray.get(combiners)
    final_node, partial_nodes, tree = ray.get(reducer.remote(*[(n, v) for n, _, v in combined]))
    tree_seconds = time.perf_counter() - began
    tree_bytes = sum(moved(n, ins) for n, ins, _ in combined) + moved(final_node, partial_nodes)
    return {"partitions": len(partitions),
            "global_bytes": global_bytes, "global_seconds": global_seconds,
            "tree_bytes": tree_bytes, "tree_seconds": tree_seconds,
            "same_result": list(tree) == list(global_only)}


def main() -> int:
    result = measure(connect())
    show("reduce of {} partitions of {} kB".format(result["partitions"], 8 * VECTOR // 1000),
         [["global only", result["global_bytes"] // 1000,
           f"{result['global_seconds']:.2f}"],
          ["local combiners + global", result["tree_bytes"] // 1000,
           f"{result['tree_seconds']:.2f}"]],
         ["strategy", "kB moved between nodes", "seconds"])
    return verdict(result["same_result"] and result["tree_bytes"] < result["global_bytes"],
                   "same result, fewer bytes moved with local combiners")


if __name__ == "__main__":
    sys.exit(main())
