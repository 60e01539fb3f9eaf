"""What a ledger shared across drivers costs per placement, on a real cluster.

    python benchmarks/shared_ledger.py            # the running local cluster, or one it starts

The same spread (``AntiAffinity(max_per_node=...)``, a cap no round reaches) places and submits
one-CPU no-op tasks with and without ``shared=``: the difference is the claim, one call to the
holder actor per placement. The contenders take turns round by round; medians of the rounds.
"""
from __future__ import annotations

import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import ray

from placement import AntiAffinity
from placement.shared import remove_shared_ledger

SIZES = {"full": {"calls": 200, "rounds": 7}, "quick": {"calls": 20, "rounds": 2}}


@ray.remote(num_cpus=1)
def noop() -> None:
    return None


def per_call_us(policy: AntiAffinity, calls: int) -> float:
    handle = policy.place(noop)
    began = time.perf_counter()
    refs = [handle.remote() for _ in range(calls)]
    took = time.perf_counter() - began
    ray.get(refs, timeout=300)  # the next round starts with nothing queued
    return took / calls * 1e6


def run(quick: bool = False) -> list[dict[str, Any]]:
    size = SIZES["quick" if quick else "full"]
    name = f"bench-{uuid.uuid4().hex[:8]}"
    cap = size["calls"] * size["rounds"]  # never reached: every placement is claimed
    contenders = {"AntiAffinity()": AntiAffinity(max_per_node=cap),
                  f"AntiAffinity(shared={name!r})": AntiAffinity(max_per_node=cap, shared=name)}
    names = list(contenders)
    samples: dict[str, list[float]] = {n: [] for n in names}
    try:
        per_call_us(contenders[names[1]], 1)  # the holder is made once, before timing
        for round_index in range(size["rounds"]):
            for n in names[round_index % 2:] + names[:round_index % 2]:
                samples[n].append(per_call_us(contenders[n], size["calls"]))
    finally:
        remove_shared_ledger(name)
    note = f"one-CPU no-op tasks, {size['calls']} per round, median of {size['rounds']} rounds"
    rows = [{"benchmark": "shared ledger", "contender": f"{n}, .remote()",
             "value": round(statistics.median(samples[n]), 1), "unit": "us/call", "note": note}
            for n in names]
    plain, shared = (statistics.median(samples[n]) for n in names)
    rows.append({"benchmark": "shared ledger", "contender": "shared / not shared",
                 "value": round(shared / plain, 2), "unit": "ratio",
                 "note": "the claim: one call to the holder actor per placement"})
    return rows


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import main_alone  # run.py imports this module: not at the top
    return main_alone(__doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
