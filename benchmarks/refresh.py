"""Snapshot refresh at scale, no Ray needed: a fake reader stands in for ``ray.nodes()``.

    python benchmarks/refresh.py             # 1,000 / 10,000 / 100,000 nodes
    python benchmarks/refresh.py --quick     # what CI runs so the benchmark keeps working

Every refresh changes 0.1% of the nodes (at least one): a third die, a third join, a third change
a label or a total. For each size it measures, as medians over refreshes with the two contenders
taking turns in each round:

- refresh: building the snapshot from the node records, from scratch vs by difference from the
  previous snapshot (``ClusterSnapshot.from_ray(..., previous=)``);
- candidate update: ``Candidates(snapshot)`` from scratch vs ``Candidates.follow(snapshot)``;
- policy update: ``policy.follow(snapshot)`` for a RoundRobin, an AntiAffinity and a Packing that
  have decided (what the background refresher does before it publishes a snapshot);
- the submit path across refreshes: one thread decides (``cache.get()`` then propose and commit,
  what ``.remote()`` runs before Ray) while the cache's background thread refreshes. Reported: the
  median decision, the first decision on each new snapshot (the one that would have paid for a
  refresh), and the slowest decision overall (which includes waiting for the interpreter lock
  while the refresher runs Python: reported, not hidden).
"""
from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from decide import reference_row, report  # benchmarks/ is on the path (script or run.py)

from placement.cluster import SnapshotCache
from placement.policies import (
    AntiAffinity,
    Candidates,
    Demand,
    LeastLoaded,
    Packing,
    Request,
    RoundRobin,
)
from placement.policies.decision import AUTO
from placement.snapshot import ClusterSnapshot

SIZES = (1_000, 10_000, 100_000)
CHANGED = 0.001
DEMAND = Demand({"CPU": 1})


class FakeCluster:
    """Node records as ``ray.nodes()`` returns them; ``churn()`` changes 0.1% of them."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.random = random.Random(seed)
        self.next_id = 0
        self.records: list[dict[str, Any]] = [self._record() for _ in range(n)]

    def _record(self) -> dict[str, Any]:
        i = self.next_id
        self.next_id += 1
        return {
            "NodeID": f"{i:056x}",
            "Alive": True,
            "NodeManagerAddress": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            "NodeManagerPort": 40000 + i % 20000,
            "Resources": {"CPU": float(1 + i % 8), f"node{i}": 1000.0, "memory": 8e9,
                          f"node:10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}": 1.0},
            "Labels": {"ray.io/node-id": f"{i:056x}", "placement.node": f"node{i}",
                       "zone": f"z{i % 4}"},
        }

    def churn(self) -> None:
        changes = max(1, int(len(self.records) * CHANGED))
        for k in range(changes):
            kind = k % 3
            if kind == 0:  # a node dies (it stays in the table, as in Ray's)
                record = self.random.choice(self.records)
                self.records[self.records.index(record)] = {**record, "Alive": False}
            elif kind == 1:
                self.records.append(self._record())
            else:  # a label or a total changes
                i = self.random.randrange(len(self.records))
                record = self.records[i]
                labels = {**record["Labels"], "zone": f"z{self.random.randrange(8)}"}
                self.records[i] = {**record, "Labels": labels}

    def read(self) -> list[dict[str, Any]]:
        # ray.nodes() returns new dicts on every call: copy, so nothing is shared by accident.
        return [{**r, "Resources": dict(r["Resources"]), "Labels": dict(r["Labels"])}
                for r in self.records]


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 2)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def candidates_from_scratch(snapshot: ClusterSnapshot) -> Candidates:
    cands = Candidates(snapshot, AUTO)
    cands.fitting(DEMAND)  # as the incremental contender updates it
    return cands


def follow_all(policies: list[Any], snapshot: ClusterSnapshot) -> None:
    for policy in policies:
        policy.follow(snapshot)


def bench_refresh(n: int, rounds: int) -> dict[str, Any]:
    fake = FakeCluster(n)
    records = fake.read()
    snap = ClusterSnapshot.from_ray(records)
    cands = Candidates(snap, AUTO)
    cands.fitting(DEMAND)
    policies = [RoundRobin(), AntiAffinity(max_per_node=10**9), Packing()]
    for policy in policies:
        policy.decide(snap, DEMAND, group="g" if isinstance(policy, Packing) else None)
    full_snap, incr_snap, full_cands, incr_cands, follow = [], [], [], [], []
    gc.disable()
    try:
        for r in range(rounds):
            fake.churn()
            records = fake.read()
            # Contenders take turns: which goes first alternates by round.
            order = ("full", "incremental") if r % 2 == 0 else ("incremental", "full")
            for contender in order:
                if contender == "full":
                    t, _ = timed(partial(ClusterSnapshot.from_ray, records))
                    full_snap.append(t)
                else:
                    t, new = timed(partial(ClusterSnapshot.from_ray, records, previous=snap))
                    incr_snap.append(t)
            for contender in order:
                if contender == "full":
                    t, _ = timed(partial(candidates_from_scratch, new))
                    full_cands.append(t)
                else:
                    t, newer = timed(partial(cands.follow, new))
                    incr_cands.append(t)
            t, _ = timed(partial(follow_all, policies, new))
            follow.append(t)
            snap, cands = new, newer
    finally:
        gc.enable()
    med = statistics.median
    return {
        "nodes": n,
        "changed per refresh": max(1, int(n * CHANGED)),
        "refresh full (ms)": ms(med(full_snap)),
        "refresh incremental (ms)": ms(med(incr_snap)),
        "candidates full (ms)": ms(med(full_cands)),
        "candidates incremental (ms)": ms(med(incr_cands)),
        "refresh + candidates incremental (ms)": ms(med(incr_snap) + med(incr_cands)),
        "3 policies follow (ms)": ms(med(follow)),
    }


def bench_first_decision(n: int, rounds: int) -> dict[str, Any]:
    """The first decision on each refreshed snapshot against the median decision, in one thread
    (no interpreter-lock waits): with the refresher's ``follow`` (the policy is brought up to the
    snapshot before it is published) and without it (the decision updates the policy itself).
    The control does the same reading work but publishes nothing: any first decision after
    milliseconds of other work runs with cold CPU caches, refresh or not."""
    fake = FakeCluster(n)

    def reader(previous: ClusterSnapshot | None) -> ClusterSnapshot:
        fake.churn()
        return ClusterSnapshot.from_ray(fake.read(), previous=previous)

    caches = {"followed by the refresher": SnapshotCache(ttl=3600, reader=reader),
              "decision updates the policy": SnapshotCache(ttl=3600, reader=reader),
              "control: a read, no new snapshot": SnapshotCache(ttl=3600, reader=reader)}
    policies = {name: RoundRobin() for name in caches}
    caches["followed by the refresher"].follow(policies["followed by the refresher"])
    request = Request(DEMAND)
    first: dict[str, list[float]] = {name: [] for name in caches}
    steady: dict[str, list[float]] = {name: [] for name in caches}
    perf = time.perf_counter
    gc.disable()
    try:
        for name, cache in caches.items():
            policies[name].commit(policies[name].propose(cache.get(), request))
        for r in range(rounds):
            for name in (list(caches) if r % 2 == 0 else list(reversed(caches))):
                cache, policy = caches[name], policies[name]
                if name.startswith("control"):  # the same work, thrown away: caches go cold
                    ClusterSnapshot.from_ray(fake.read(), previous=cache.get())
                else:
                    cache.refresh()
                for k in range(200):
                    start = perf()
                    policy.commit(policy.propose(cache.get(), request))
                    took = perf() - start
                    (first if k == 0 else steady)[name].append(took)
    finally:
        gc.enable()
    row: dict[str, Any] = {"nodes": n}
    for name in caches:
        median = statistics.median(steady[name])
        worst = max(first[name])
        row[f"{name}: median (us)"] = round(median * 1e6, 2)
        row[f"{name}: worst first (us)"] = round(worst * 1e6, 2)
        row[f"{name}: worst first / median"] = round(worst / median, 2)
    return row


def bench_submit_path(n: int, refreshes: int) -> dict[str, Any]:
    """Decisions in this thread while the cache's own thread refreshes: what the interpreter
    lock and the cyclic garbage collector add (neither is the toolkit's to remove)."""
    fake = FakeCluster(n)

    def reader(previous: ClusterSnapshot | None) -> ClusterSnapshot:
        fake.churn()
        return ClusterSnapshot.from_ray(fake.read(), previous=previous)

    first = ClusterSnapshot.from_ray(fake.read())
    refresh_seconds = timed(lambda: reader(first))[0]
    ttl = max(0.05, 3 * refresh_seconds)
    cache = SnapshotCache(ttl=ttl, reader=reader, background=True, stale_after=3600)
    policy = RoundRobin()
    cache.follow(policy)
    request = Request(DEMAND)
    latencies: list[float] = []
    perf = time.perf_counter
    try:
        policy.commit(policy.propose(cache.get(), request))  # starts the refresher
        while cache.reads < refreshes + 1:
            start = perf()
            policy.commit(policy.propose(cache.get(), request))
            latencies.append(perf() - start)
    finally:
        cache.stop()
    latencies.sort()
    return {
        "nodes": n,
        "refreshes": refreshes,
        "decisions": len(latencies),
        "median (us)": round(statistics.median(latencies) * 1e6, 2),
        "99.9th percentile (us)": round(latencies[int(len(latencies) * 0.999)] * 1e6, 2),
        "slowest (ms)": ms(latencies[-1]),
    }


MANY = {"RoundRobin()": RoundRobin, "RoundRobin(weights='capacity')":
        lambda: RoundRobin(weights="capacity"), "LeastLoaded()": LeastLoaded,
        "AntiAffinity(strict=False)": lambda: AntiAffinity(strict=False),
        "Packing(strict=False)": lambda: Packing(strict=False)}


def many_demand(j: int) -> Demand:
    """The j-th of ever new demands (memory= per chunk): a third only zone z1's nodes fit."""
    labels = {"zone": "z1"} if j % 3 == 0 else None
    return Demand({"CPU": 1, "memory": 1000 + j}, labels=labels)


def bench_many_demands(n: int, demands: int) -> list[tuple[str, float, str, str]]:
    """Per policy: the memory a driver holds after ``demands`` distinct demands on ``n`` nodes
    (tracemalloc, from before the policy was made), the refresher's ``follow`` of a refreshed
    snapshot, and the first decision after it (a demand asked before the refresh)."""
    rows = []
    for name, make in MANY.items():
        fake = FakeCluster(n)
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            snap = ClusterSnapshot.from_ray(fake.read())
            policy = make()
            for j in range(demands):
                decision = policy.propose(snap, Request(many_demand(j), j))
                policy.commit(decision)
                policy.release(decision)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        fake.churn()
        newer = ClusterSnapshot.from_ray(fake.read(), previous=snap)
        follow, _ = timed(partial(policy.follow, newer))
        request = Request(many_demand(demands - 1), 0)
        first, decision = timed(partial(policy.propose, newer, request))
        policy.commit(decision)
        steady, decision = timed(partial(policy.propose, newer, request))
        policy.commit(decision)
        rows += [(f"{name}: memory held after {demands:,} demands @ {n:,}",
                  round(held / 1e6, 2), "MB", "tracemalloc; bounded per-demand tables"),
                 (f"{name}: follow of a refreshed snapshot @ {n:,}", ms(follow), "ms",
                  f"after {demands:,} demands; the refresher's work, off the submit path"),
                 (f"{name}: first decision after the refresh @ {n:,}",
                  round(first * 1e6, 1), "us", f"the next one: {steady * 1e6:.1f} us")]
    return rows


def run(quick: bool = False, rounds: int = 9) -> list[dict[str, Any]]:
    """Every measurement as rows for benchmarks/run.py (benchmark, contender, value, unit, note)."""
    sizes = (1_000,) if quick else SIZES
    rounds = 3 if quick else rounds
    rows: list[dict[str, Any]] = []

    def add(contender: str, value: float, unit: str, note: str) -> None:
        rows.append({"benchmark": "refresh", "contender": contender, "value": value,
                     "unit": unit, "note": note})

    for n in sizes:
        r = bench_refresh(n, rounds)
        changed = f"{r['changed per refresh']} of {n:,} nodes changed; median of {rounds}"
        add(f"snapshot from scratch @ {n:,}", r["refresh full (ms)"], "ms", changed)
        add(f"snapshot by difference @ {n:,}", r["refresh incremental (ms)"], "ms", changed)
        add(f"candidates from scratch @ {n:,}", r["candidates full (ms)"], "ms", changed)
        add(f"candidates by difference @ {n:,}", r["candidates incremental (ms)"], "ms", changed)
        add(f"refresh + candidates by difference @ {n:,}",
            r["refresh + candidates incremental (ms)"], "ms",
            "target <= 20 at 10,000 and <= 200 at 100,000")
        add(f"3 policies follow @ {n:,}", r["3 policies follow (ms)"], "ms",
            "RoundRobin, AntiAffinity, Packing; the candidates already updated")
        f = bench_first_decision(n, rounds)
        for name in ("followed by the refresher", "decision updates the policy",
                     "control: a read, no new snapshot"):
            add(f"first decision after a refresh, {name} @ {n:,}",
                f[f"{name}: worst first / median"], "x median",
                f"worst {f[f'{name}: worst first (us)']} us, median {f[f'{name}: median (us)']} us")
        t = bench_submit_path(n, rounds)
        note = (f"{t['decisions']:,} decisions while the refresher ran {t['refreshes']} times "
                "(interpreter lock and garbage collector included)")
        add(f"decision beside the refresher, median @ {n:,}", t["median (us)"], "us", note)
        add(f"decision beside the refresher, 99.9th percentile @ {n:,}",
            t["99.9th percentile (us)"], "us", note)
        add(f"decision beside the refresher, slowest @ {n:,}", t["slowest (ms)"], "ms", note)
    for contender, value, unit, note in bench_many_demands(1_000, 2_000 if quick else 20_000):
        add(contender, value, unit, note)
    rows.append(reference_row("refresh"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds (CI)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    report(run(args.quick, args.rounds), "contender", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
