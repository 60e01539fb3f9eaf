"""Decision cost of every policy against simulated clusters, no Ray needed.

    python benchmarks/decide.py            # 10 to 100,000 nodes, 15 rounds
    python benchmarks/decide.py --quick    # what CI runs so the benchmark keeps working

A decision here is what every ``.remote()`` runs: ``propose`` then ``commit`` (for Locality,
without the lookup of where the arguments are: data_locality.py times that on a cluster). Each
round times a batch of decisions on a fresh policy whose first decision (which builds the
candidate list for the snapshot) is not timed; the cases take turns within a round, and the
figure is the median over rounds of the mean cost per decision in a round. Policies that run out
of room (AntiAffinity with its default cap of 1, Packing opening a new group per decision) get
batches of at most one decision per node.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tabulate import tabulate

from placement.policies import (
    Affinity,
    AntiAffinity,
    Demand,
    LeastLoaded,
    Local,
    Locality,
    Packing,
    Policy,
    Request,
    RoundRobin,
)
from placement.snapshot import ClusterSnapshot

NODE_COUNTS = (10, 100, 1_000, 10_000, 100_000)
QUICK_NODE_COUNTS = (10, 1_000)
DEMAND = Demand({"CPU": 1})
IN_Z1_Z2 = Demand({"CPU": 1}, labels={"zone": "in(z1,z2)"})  # a user's label_selector

# The paths a refusal or a fallback takes: each must stay within 3x plain RoundRobin().
PATHS = ("AntiAffinity(strict=False), past its cap", "Packing(strict=False), a group on every node",
         "AntiAffinity(max_skew=1, strict=False), a demand one node fits",
         "AntiAffinity() | RoundRobin(), the spread used up", "LeastLoaded(), 32 demands in turn")
ONE_NODE = Demand({"CPU": 1, "accel": 1})  # only node 7 has an accel
REPLICATED = tuple((f"{i:056x}", 4_000_000) for i in range(8))  # one object on nodes 0-7


def _every(n: int) -> int:
    return n


def _none(n: int) -> int:
    return 0


# name -> (a fresh policy, the i-th request, decisions made untimed first (a function of the node
# count: to reach the path), whether it has room for one decision per node only)
CASES: dict[str, tuple[Callable[[], Policy], Callable[[int, str], Request],
                       Callable[[int], int], bool]] = {
    "RoundRobin()": (RoundRobin, lambda i, c: Request(DEMAND), _none, False),
    "RoundRobin(weights='capacity')": (lambda: RoundRobin(weights="capacity"),
                                       lambda i, c: Request(DEMAND), _none, False),
    "Affinity()": (Affinity, lambda i, c: Request(DEMAND), _none, False),
    "AntiAffinity() (cap 1)": (AntiAffinity, lambda i, c: Request(DEMAND), _none, True),
    "AntiAffinity(max_per_node=big)": (lambda: AntiAffinity(max_per_node=10**9),
                                       lambda i, c: Request(DEMAND), _none, False),
    "Packing() new group each": (Packing, lambda i, c: Request(DEMAND, i), _none, True),
    "Packing() existing group": (Packing, lambda i, c: Request(DEMAND, "g"), _none, False),
    "Local()": (Local, lambda i, c: Request(DEMAND, None, c), _none, False),
    "RoundRobin(where={'zone': 'in(z1,z2)'})": (
        lambda: RoundRobin(where={"zone": "in(z1,z2)"}), lambda i, c: Request(DEMAND), _none,
        False),
    "RoundRobin(), label_selector={'zone': 'in(z1,z2)'}": (
        RoundRobin, lambda i, c: Request(IN_Z1_Z2), _none, False),
    "AntiAffinity(topology='zone', max_skew=1)": (
        lambda: AntiAffinity(topology="zone", max_skew=1), lambda i, c: Request(DEMAND), _none,
        False),
    "LeastLoaded()": (LeastLoaded, lambda i, c: Request(DEMAND), _none, False),
    "LeastLoaded(choices=2)": (lambda: LeastLoaded(choices=2, seed=0),
                               lambda i, c: Request(DEMAND), _none, False),
    "Locality(), 3 nodes hold arguments": (
        Locality, lambda i, c: Request(DEMAND, data=((c, 4_000_000), (c[:-1] + "1", 1_000),
                                                     (c[:-1] + "2", 10))), _none, False),
    "Locality(), 8 nodes hold the same bytes": (
        Locality, lambda i, c: Request(DEMAND, data=REPLICATED), _none, False),
    "AntiAffinity(topology='zone', max_skew=1, min_domains=4)": (
        lambda: AntiAffinity(topology="zone", max_skew=1, min_domains=4),
        lambda i, c: Request(DEMAND), _none, False),
    "AntiAffinity(topology='zone', max_skew=big, min_domains=8), 4 zones": (
        lambda: AntiAffinity(topology="zone", max_skew=10**9, min_domains=8),
        lambda i, c: Request(DEMAND), _none, False),
    "AntiAffinity(topology='zone', max_skew=1) & AntiAffinity(max_per_node=big)": (
        lambda: AntiAffinity(topology="zone", max_skew=1) & AntiAffinity(max_per_node=10**9),
        lambda i, c: Request(DEMAND), _none, False),
    "LeastLoaded() & AntiAffinity(max_per_node=big)": (
        lambda: LeastLoaded() & AntiAffinity(max_per_node=10**9),
        lambda i, c: Request(DEMAND), _none, False),
    "Packing(topology='zone') existing group": (
        lambda: Packing(topology="zone"), lambda i, c: Request(DEMAND, "g"), _none, False),
    PATHS[0]: (lambda: AntiAffinity(strict=False), lambda i, c: Request(DEMAND), _every, False),
    PATHS[1]: (lambda: Packing(strict=False), lambda i, c: Request(DEMAND, i), _every, False),
    PATHS[2]: (lambda: AntiAffinity(max_skew=1, strict=False), lambda i, c: Request(ONE_NODE),
               _none, False),
    PATHS[3]: (lambda: AntiAffinity() | RoundRobin(), lambda i, c: Request(DEMAND), _every,
               False),
    PATHS[4]: (LeastLoaded, lambda i, c: Request(Demand({"CPU": 1, "memory": 1000 + i % 32})),
               _none, False),
}


def cluster(n: int) -> ClusterSnapshot:
    return ClusterSnapshot.from_dicts(
        [{"id": f"{i:056x}", "label": f"node{i}",
          "resources": {"CPU": 1 + i % 8, "memory": 1e12, **({"accel": 1} if i == 7 else {})},
          "labels": {"zone": f"z{i % 4}"}} for i in range(n)])


def time_batch(snap: ClusterSnapshot, case: str, batch: int) -> float:
    """Mean microseconds per decision over one batch on a fresh policy (propose and commit, as
    the submit layer runs them)."""
    make, request_of, warm, one_per_node = CASES[case]
    caller = snap.nodes[0].node_id
    count = min(batch, len(snap.nodes) - 1) if one_per_node else batch
    policy = make()
    first = max(1, warm(len(snap.nodes)))  # the first builds the candidates
    for i in range(first):
        policy.commit(policy.propose(snap, request_of(i, caller)))
    requests = [request_of(first + i, caller) for i in range(count)]
    propose, commit = policy.propose, policy.commit
    gc.disable()
    try:
        began = time.perf_counter()
        for request in requests:
            commit(propose(snap, request))
        elapsed = time.perf_counter() - began
    finally:
        gc.enable()
    return elapsed / count * 1e6


def _nothing() -> None:
    return None


def reference_ns(rounds: int = 15, calls: int = 200_000) -> float:
    """Nanoseconds per empty Python function call, median of rounds: this machine's speed at
    the time of the run (it moved by up to 1.6x within an hour here), to read the figures by."""
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(calls):
            _nothing()
        samples.append((time.perf_counter() - began) / calls * 1e9)
    return statistics.median(samples)


def reference_row(benchmark: str) -> dict[str, Any]:
    """The reference figure every benchmark table ends with (read the others by it)."""
    return {"benchmark": benchmark, "contender": "reference: an empty Python function call",
            "value": round(reference_ns(), 1), "unit": "ns",
            "note": "this machine's speed during the run"}


def report(rows: list[dict[str, Any]], first_header: str, json_path: Path | None) -> None:
    """Print ``rows`` as a table and, with ``json_path``, write them there as JSON."""
    print(tabulate([[r["contender"], r["value"], r["unit"], r["note"]] for r in rows],
                   headers=[first_header, "value", "unit", "note"]))
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2))


def run(quick: bool = False, sizes: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
    """Every case at every size; within a size the cases take turns round by round, so a burst
    of machine noise hits them alike."""
    batch, rounds = (2_000, 3) if quick else (5_000, 15)
    rows = []
    names = list(CASES)
    for n in sizes or (QUICK_NODE_COUNTS if quick else NODE_COUNTS):
        snap = cluster(n)
        samples: dict[str, list[float]] = {case: [] for case in names}
        for round_index in range(rounds):
            for case in names[round_index % len(names):] + names[:round_index % len(names)]:
                samples[case].append(time_batch(snap, case, batch))
        plain = statistics.median(samples["RoundRobin()"])
        for case in names:
            median = statistics.median(samples[case])
            note = (f"median of {rounds} rounds; {median / plain:.2f}x RoundRobin() "
                    f"(target <= 3x{' for this path' if case in PATHS else ''})"
                    if case != "RoundRobin()" else
                    f"median of {rounds} rounds; the reference (target <= 2 us at 10,000)")
            rows.append({"benchmark": "decide", "contender": f"{case} @ {n:,} nodes",
                         "value": round(median, 2), "unit": "us/decision", "note": note})
    rows.append(reference_row("decide"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small batches (CI)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--nodes", type=int, nargs="+", metavar="N",
                        help=f"cluster sizes (default {', '.join(map(str, NODE_COUNTS))})")
    args = parser.parse_args(argv)
    report(run(args.quick, tuple(args.nodes or ())), "policy @ nodes", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
