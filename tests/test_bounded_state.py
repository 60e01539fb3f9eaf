"""Per-demand state stays under its cap however many distinct demands a driver asks (no Ray, no
timing): memory measured with tracemalloc while ever new demands (``memory=`` per chunk, label
demands among them) go through every policy, and the tables a refresh patches stay bounded."""
from __future__ import annotations

import gc
import tracemalloc

import pytest

from placement.policies import (
    AntiAffinity,
    Demand,
    LeastLoaded,
    Packing,
    Request,
    RoundRobin,
)
from placement.policies import round_robin as rr
from placement.policies.bounded import (
    DEMANDS_PER_CANDIDATES,
    DEMANDS_PER_POLICY,
    PROCESS_DEMANDS,
    Bounded,
)
from placement.snapshot import ClusterSnapshot

NODES = 60


def cluster(extra: int = 0, previous: ClusterSnapshot | None = None) -> ClusterSnapshot:
    return ClusterSnapshot.from_dicts(
        [{"id": f"n{i}", "label": f"node{i}", "labels": {"zone": f"z{i % 3}"},
          "resources": {"CPU": 1 + i % 4, "memory": 1e12}} for i in range(NODES + extra)],
        previous=previous)


def demand(j: int) -> Demand:
    """The j-th new demand: most fit every node, some only the nodes of one zone or size."""
    if j % 3 == 0:
        return Demand({"CPU": 1, "memory": 1000 + j}, labels={"zone": "z1"})
    if j % 3 == 1:
        return Demand({"CPU": 3, "memory": 1000 + j})
    return Demand({"CPU": 1, "memory": 1000 + j})


POLICIES = {
    "RoundRobin": RoundRobin,
    "RoundRobin(weights='capacity')": lambda: RoundRobin(weights="capacity"),
    "LeastLoaded": LeastLoaded,
    "LeastLoaded(choices=2)": lambda: LeastLoaded(choices=2, seed=1),
    "AntiAffinity(strict=False)": lambda: AntiAffinity(strict=False),
    "AntiAffinity(topology='zone', max_skew=1, strict=False)":
        lambda: AntiAffinity(topology="zone", max_skew=1, strict=False),
    "Packing(strict=False)": lambda: Packing(strict=False),
}


def place(policy, snap: ClusterSnapshot, first: int, count: int) -> None:
    for j in range(first, first + count):
        decision = policy.propose(snap, Request(demand(j), j % 50))
        policy.commit(decision)
        policy.release(decision)  # the work ended: only per-demand state may stay


@pytest.mark.slow  # 9,000 placements a policy under tracemalloc: about 20 s
@pytest.mark.parametrize("name", sorted(POLICIES))
def test_memory_is_flat_however_many_demands_were_asked(name):
    policy, snap = POLICIES[name](), cluster()
    gc.collect()
    tracemalloc.start()  # from the start: what the caps evict must be seen freed
    try:
        held = []
        for round_index in range(3):  # 3,000 new demands a round: past every cap in the first
            place(policy, snap, round_index * 3_000, 3_000)
            gc.collect()
            held.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    grown = held[2] - held[1]
    # Unbounded, each demand keeps its position, fitting nodes and indexes: about 2 MB a round
    # here (measured with the caps raised); bounded, next to nothing once the tables are full.
    assert grown < 100_000, f"{name}: {grown} bytes more after 3,000 more demands"


def test_the_tables_a_refresh_patches_stay_under_their_caps():
    policies = [factory() for factory in POLICIES.values()]
    snap = cluster()
    for policy in policies:
        place(policy, snap, 0, 3_000)
    newer = cluster(extra=1, previous=snap)
    for policy in policies:
        policy.follow(newer)
    cands = policies[0]._candidates
    assert cands.snapshot is newer and len(cands.fits) <= DEMANDS_PER_CANDIDATES
    assert len(rr.PROCESS_ROTATION.positions) <= PROCESS_DEMANDS
    assert len(policies[0]._at) <= DEMANDS_PER_POLICY


def test_a_demand_evicted_and_asked_again_continues_its_rotation():
    """Past the cap a round robin forgets a demand's position; the process's (a larger table)
    still has it, so the demand carries on after its last node."""
    snap = cluster()
    policy = RoundRobin().clone()
    first = [policy.decide(snap, demand(2)).node_name for _ in range(3)]
    for j in range(5, 5 + DEMANDS_PER_POLICY * 3, 3):  # enough demands to evict it
        policy.decide(snap, demand(j + 2))
    assert demand(2) not in policy._at
    again = policy.decide(snap, demand(2)).node_name
    assert again == f"node{int(first[-1][4:]) + 1}"


def test_a_bounded_table_drops_the_least_recently_used_key():
    table = Bounded(3)
    for key in "abc":
        table.put(key, key)
    table.move_to_end("a")  # a use
    table.put("d", "d")
    assert list(table) == ["c", "a", "d"] and table.evicted == 1
    with pytest.raises(ValueError, match="whole number >= 1"):
        Bounded(0)
