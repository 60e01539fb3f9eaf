"""Bytes moved between nodes: Locality against RoundRobin and Ray's DEFAULT, on a real cluster.

    python benchmarks/data_locality.py            # the running local cluster, or one it starts

Each round makes 8 objects of 4 MB on different nodes (producers placed round robin), then 32
one-CPU consumers, 4 per object, placed by the contender. The bytes moved are read from Ray
after the run, never computed from decisions: every copy of an object beyond the one its
producer made is a transfer (``get_object_locations``: the nodes holding a copy, and its size).
The contenders take turns round by round, each on objects of its own.

A second set of rounds replicates the data first: an ordinary ``ray.wait(blocks)`` (Ray's
default ``fetch_local=True``) copies every object to the driver's node, so each has two holders;
its rows give the bytes moved after that and the most consumers that ran on one node (read
inside each consumer), where an even spread is consumers / nodes.
"""
from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray.experimental import get_object_locations

from placement import Locality, RoundRobin
from placement.locations import argument_data

SIZES = {"full": {"objects": 8, "per_object": 4, "megabytes": 4, "rounds": 5},
         "quick": {"objects": 4, "per_object": 2, "megabytes": 1, "rounds": 1}}


@ray.remote(num_cpus=0)
def produce(megabytes: int) -> bytes:
    return b"x" * (megabytes * 2**20)


@ray.remote(num_cpus=1)
def consume(block: bytes) -> str:
    time.sleep(0.05)  # long enough that the consumers of a round overlap
    return ray.get_runtime_context().get_node_id()


def moved_bytes(blocks: list[Any]) -> int:
    """Bytes copied between nodes: the copies of each block beyond its first."""
    found = get_object_locations(blocks, timeout_ms=10_000)
    return sum(int(info.get("object_size") or 0) * max(0, len(info.get("node_ids") or ()) - 1)
               for info in found.values())


def one_round(submit: Callable[[Any], Any], size: dict[str, int],
              replicated: bool) -> tuple[int, float, Counter[str]]:
    """(bytes moved by the consumers, seconds, consumers per node they ran on)."""
    producer = RoundRobin().place(produce)
    blocks = [producer.remote(size["megabytes"]) for _ in range(size["objects"])]
    # fetch_local=False: by default ray.wait copies every object to this node (seen in Ray's
    # object locations); the replicated rounds want exactly that copy, before the run.
    ray.wait(blocks, num_returns=len(blocks), timeout=120, fetch_local=replicated)
    before = moved_bytes(blocks)
    began = time.perf_counter()
    ran = ray.get([submit(block) for block in blocks for _ in range(size["per_object"])],
                  timeout=300)
    seconds = time.perf_counter() - began
    moved = moved_bytes(blocks) - before
    del blocks  # the next round starts with no copies around
    return moved, seconds, Counter(ran)


def run(quick: bool = False) -> list[dict[str, Any]]:
    size = SIZES["quick" if quick else "full"]
    contenders: dict[str, Callable[[Any], Any]] = {
        "Locality() | RoundRobin()": (Locality() | RoundRobin()).place(consume).remote,
        "RoundRobin()": RoundRobin().place(consume).remote,
        "Ray DEFAULT": consume.remote,
    }
    names = list(contenders)
    consumers = size["objects"] * size["per_object"]
    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    rows = []
    for replicated in (False, True):
        moved: dict[str, list[int]] = {name: [] for name in names}
        seconds: dict[str, list[float]] = {name: [] for name in names}
        most: dict[str, list[int]] = {name: [] for name in names}
        for round_index in range(size["rounds"]):
            for name in names[round_index % len(names):] + names[:round_index % len(names)]:
                bytes_moved, took, per_node = one_round(contenders[name], size, replicated)
                moved[name].append(bytes_moved)
                seconds[name].append(took)
                most[name].append(max(per_node.values()))
        prefix = "replicated data: " if replicated else ""
        note = (f"{size['objects']} objects of {size['megabytes']} MB, {size['per_object']} "
                f"consumers each; median of {size['rounds']} rounds")
        if replicated:
            note += "; each object also on the driver's node (ray.wait, fetch_local=True)"
        for name in names:
            rows.append({"benchmark": "data locality", "contender": f"{prefix}{name}, MB moved",
                         "value": round(statistics.median(moved[name]) / 2**20, 1),
                         "unit": "MB",
                         "note": note + "; read from Ray's object locations after the run"})
            rows.append({"benchmark": "data locality", "contender": f"{prefix}{name}, seconds",
                         "value": round(statistics.median(seconds[name]), 3), "unit": "s",
                         "note": note})
            if replicated:
                rows.append({
                    "benchmark": "data locality",
                    "contender": f"{prefix}{name}, most consumers on one node",
                    "value": statistics.median(most[name]), "unit": "consumers",
                    "note": f"{note}; {consumers} consumers on {nodes} nodes, read inside each"})
    rows.append(lookup_row(size["rounds"]))
    return rows


def lookup_row(rounds: int, calls: int = 200) -> dict[str, Any]:
    """What Locality adds to a ``.remote()``: the lookup of one argument's locations (an object
    this driver owns, in the object store), in microseconds, median of rounds."""
    block = produce.remote(1)
    ray.wait([block], timeout=60, fetch_local=False)
    samples = []
    for _ in range(max(rounds, 3)):
        began = time.perf_counter()
        for _ in range(calls):
            argument_data((block,), {})
        samples.append((time.perf_counter() - began) / calls * 1e6)
    return {"benchmark": "data locality", "contender": "argument location lookup, 1 ObjectRef",
            "value": round(statistics.median(samples), 1), "unit": "us/call",
            "note": f"median of {max(rounds, 3)} rounds of {calls}; own object, no RPC"}


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import main_alone  # run.py imports this module: not at the top
    return main_alone(__doc__, run, argv)

if __name__ == "__main__":
    raise SystemExit(main())
