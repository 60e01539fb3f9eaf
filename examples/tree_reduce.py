"""Tree reduce with local combiners, then one global reducer, beside a global-only reduce.

Bytes moved between nodes are counted from where each task really ran (read inside it) and the
size Ray reports for each object it stored: an object crosses nodes when its consumer runs on
another node than its producer.
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
def reduce(*parts: tuple[str, array]) -> tuple[str, array]:
    """Sums partitions, or partial sums (a combiner's output has the same shape)."""
    return here(), vector_sum([vector for _, vector in parts])


def sizes_of(refs: list) -> list[int]:
    """The size Ray stored for each object (its serialized bytes)."""
    found = ray.experimental.get_object_locations(refs)
    return [int(found[ref]["object_size"]) for ref in refs]


def moved(consumer: str, producers: list[str], sizes: list[int]) -> int:
    return sum(size for producer, size in zip(producers, sizes, strict=True)
               if producer != consumer)


def measure(names: dict[str, str]) -> dict:
    """Both reduces over the same partitions: bytes moved between nodes, seconds, results equal.
    (benchmarks/run.py reports these too.)"""
    by_label = {label: node for node, label in names.items()}
    make = RoundRobin().place(make_partition)
    partitions = [make.remote(i) for i in range(PARTITIONS_PER_NODE * len(names))]
    homes = [node for node, _ in ray.get(partitions)]
    sizes = sizes_of(partitions)
    reducer = Affinity(sorted(by_label)[0]).place(reduce)

    began = time.perf_counter()
    node, global_only = ray.get(reducer.remote(*partitions))
    global_seconds, global_bytes = time.perf_counter() - began, moved(node, homes, sizes)

    began = time.perf_counter()
    combiners, tree_bytes = [], 0
    for home in sorted(set(homes)):  # one local combiner per node, next to its partitions
        mine = [i for i, h in enumerate(homes) if h == home]
        combiners.append(Affinity(home, backend="node_id").place(reduce).remote(
            *[partitions[i] for i in mine]))
    # The combiners' results go to the final reducer as Ray objects, straight from their nodes.
    final_node, tree = ray.get(reducer.remote(*combiners))
    tree_seconds = time.perf_counter() - began
    combined = ray.get(combiners)
    for (combiner_node, _), home in zip(combined, sorted(set(homes)), strict=True):
        mine = [i for i, h in enumerate(homes) if h == home]
        tree_bytes += moved(combiner_node, [homes[i] for i in mine], [sizes[i] for i in mine])
    tree_bytes += moved(final_node, [n for n, _ in combined], sizes_of(combiners))
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
