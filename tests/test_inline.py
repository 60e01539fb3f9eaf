"""Round robin written inline (``RoundRobin().place(f).remote(x)`` in a loop: a new policy per
call) still spreads, weighted too, from 8 threads at once, after any number of other demands.
No Ray: the decisions are what ``.remote()`` would submit."""
from __future__ import annotations

import itertools
import sys
import threading
from collections import Counter

import pytest

from placement.policies import Demand, Request, RoundRobin
from placement.policies.bounded import PROCESS_DEMANDS
from placement.snapshot import ClusterSnapshot

SNAP = ClusterSnapshot.from_dicts([{"id": f"n{i}", "label": f"node{i}",
                                    "resources": {"CPU": 1 + i % 4, "memory": 1e12}}
                                   for i in range(9)])
_fresh = itertools.count(1)


def fresh_demand() -> Demand:
    """A demand no policy of this process has placed yet (the process remembers positions)."""
    return Demand({"CPU": 1, "memory": 7_000_000 + next(_fresh)})


def inline(weights, demand: Demand) -> str:
    policy = RoundRobin(weights=weights)  # a new policy for every call
    decision = policy.propose(SNAP, Request(demand))
    policy.commit(decision)
    return decision.node_name


def assert_even(counts: Counter, weights, calls: int) -> None:
    if weights is None:
        per_node = [counts[n.label] for n in SNAP.live]
        assert max(per_node) - min(per_node) <= 1, counts
        return
    total = sum(n.cpus for n in SNAP.live)
    for node in SNAP.live:
        assert abs(counts[node.label] - calls * node.cpus / total) < 1 + 1e-9, counts


@pytest.mark.parametrize("weights", [None, "capacity"])
def test_inline_round_robin_spreads_from_8_threads(weights):
    demand, calls, counts, lock = fresh_demand(), 8 * 45, Counter(), threading.Lock()

    def work():
        for _ in range(45):
            name = inline(weights, demand)
            with lock:
                counts[name] += 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert sum(counts.values()) == calls
    assert_even(counts, weights, calls)


@pytest.mark.parametrize("weights", [None, "capacity"])
def test_inline_round_robin_spreads_ever_new_demands(weights):
    """memory= per chunk: every call asks a demand never seen, more than the process keeps."""
    calls = PROCESS_DEMANDS + 11
    counts = Counter(inline(weights, fresh_demand()) for _ in range(calls))
    assert_even(counts, weights, calls)


@pytest.mark.parametrize("weights", [None, "capacity"])
def test_a_recurring_demand_stays_balanced_among_any_number_of_others(weights):
    demand, counts = fresh_demand(), Counter()
    for call in range(3 * PROCESS_DEMANDS):
        if call % 100 == 0:
            counts[inline(weights, demand)] += 1
        else:
            inline(weights, fresh_demand())
    assert_even(counts, weights, sum(counts.values()))


def test_two_long_lived_round_robins_each_stay_balanced_when_interleaved():
    demand = fresh_demand()
    first, second = RoundRobin(weights="capacity"), RoundRobin(weights="capacity")
    counts = (Counter(), Counter())
    for which in [0, 1, 1, 0, 1, 0, 0, 1] * 30:
        policy = (first, second)[which]
        counts[which][policy.decide(SNAP, demand).node_name] += 1
    for own in counts:  # each continued the process's order once, then its own: within 2
        total = sum(n.cpus for n in SNAP.live)
        for node in SNAP.live:
            assert abs(own[node.label] - 120 * node.cpus / total) < 2
