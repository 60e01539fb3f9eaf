"""Placement as a transaction, case by case: each test is a reproduction that once failed (most
found by an adversarial review of the pure policies), so each can fail again if the bug returns.
No Ray."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from placement import errors
from placement.errors import PlacementError
from placement.policies import (
    Affinity,
    AntiAffinity,
    Demand,
    LeastLoaded,
    Locality,
    Packing,
    Request,
    RoundRobin,
)
from placement.snapshot import ClusterSnapshot

from .thoroughness import examples


def snap_of(*nodes: dict) -> ClusterSnapshot:
    return ClusterSnapshot.from_dicts(list(nodes))


TWO = ({"id": "a", "label": "node0"}, {"id": "b", "label": "node1"})


def test_a_fallback_never_goes_back_to_an_older_snapshot():
    old = snap_of(*TWO)
    new = snap_of(TWO[0], {**TWO[1], "alive": False})
    policy = AntiAffinity() | RoundRobin()
    policy.decide(new)
    assert {policy.decide(old).node_name for _ in range(2)} == {"node0"}


@pytest.mark.parametrize("weights", [{"node0": 1e308, "node1": 1.5e308}, "capacity"])
def test_huge_weights_still_place(weights):
    cpus = {"CPU": 1e308} if weights == "capacity" else {}
    snap = snap_of({**TWO[0], "resources": cpus}, {**TWO[1], "resources": cpus})
    policy = RoundRobin(weights=weights)
    assert Counter(policy.decide(snap).node_name for _ in range(4)).keys() == {"node0", "node1"}


def test_a_rolled_back_seeded_start_is_drawn_again():
    snap = snap_of(*({"id": f"n{i}", "label": f"node{i}"} for i in range(3)))
    policy = RoundRobin(seed=3)
    policy.rollback(policy.propose(snap))
    assert policy.decide(snap).node_name == RoundRobin(seed=3).decide(snap).node_name


def test_affinity_refused_proposals_and_rollbacks_leave_no_binding():
    small, big = {**TWO[0], "resources": {"CPU": 1}}, {**TWO[1], "resources": {"CPU": 8}}
    busy = snap_of(small, {**big, "available": {"CPU": 0}})
    free = snap_of(small, big)
    together = Affinity()
    first = together.propose(busy)  # binds node0, which has the most free CPUs
    with pytest.raises(PlacementError):
        together.propose(busy, Request(Demand({"CPU": 4})))
    second = together.propose(busy)
    together.rollback(first)
    together.rollback(second)
    # Nothing was placed: it chooses afresh, as a new Affinity() would.
    assert together.decide(free, {"CPU": 4}).node_name == "node1"


def test_affinity_to_a_label_returns_to_its_target_after_a_rolled_back_move():
    snap = snap_of({**TWO[0], "alive": False}, TWO[1])
    policy = Affinity("node0", soft=True)
    moved = policy.propose(snap)
    assert moved.fallback and moved.node_name == "node1"
    policy.rollback(moved)
    again = policy.decide(snap)
    assert again.fallback and "node0 is gone" in again.reason


def test_a_fallback_releases_only_what_was_committed():
    snap = snap_of(TWO[0])
    policy = AntiAffinity() | RoundRobin()
    decision = policy.propose(snap)
    policy.release(decision)  # not committed: nothing to release
    policy.rollback(decision)  # so the rollback still reaches AntiAffinity
    assert not policy.decide(snap).fallback
    policy.rollback(policy.decide(snap))  # committed: a rollback does nothing
    assert policy.decide(snap).fallback


def test_inline_round_robin_spreads_each_of_interleaved_demands():
    snap = snap_of({"id": "a", "label": "node0", "resources": {"CPU": 1, "accel": 1}},
                   {"id": "b", "label": "node1", "resources": {"CPU": 1}},
                   {"id": "c", "label": "node2", "resources": {"CPU": 1}})
    cpu: Counter = Counter()
    for _ in range(6):
        cpu[RoundRobin().decide(snap, {"CPU": 1}).node_name] += 1
        RoundRobin().decide(snap, {"accel": 1})
    assert cpu == {"node0": 2, "node1": 2, "node2": 2}


def test_a_weight_for_a_node_that_left_later_does_not_stop_the_others():
    snap = snap_of(*TWO)
    policy = RoundRobin(weights={"node0": 1, "node1": 1})
    policy.decide(snap)
    gone = snap_of(TWO[0])  # node1 is no longer in the cluster's records at all
    assert policy.decide(gone).node_name == "node0"
    with pytest.raises(PlacementError) as typo:  # but a name no node ever had is refused
        RoundRobin(weights={"node0": 1, "Node1": 1}).decide(snap)
    assert typo.value.rule == errors.UNKNOWN_LABEL


def test_a_caller_node_id_must_be_a_string():
    with pytest.raises(TypeError, match="node id string"):
        RoundRobin().decide(snap_of(*TWO), caller_node_id=123)


def test_packing_frees_a_group_when_its_last_member_is_released():
    snap = snap_of(TWO[0])
    pack = Packing()
    members = [pack.decide(snap, group="g") for _ in range(2)]
    with pytest.raises(PlacementError):
        pack.decide(snap, group="h")
    for member in members:
        pack.release(member)
        pack.release(member)  # idempotent
    assert pack.decide(snap, group="h").node_name == "node0"
    pack.release_group("h")
    assert pack.node_of("h") is None


def test_a_rolled_back_move_of_a_soft_group_leaves_no_trace():
    """A soft Packing group whose node died moves with its next member; when that member's
    submission fails, the group and the ledger are as before (found by an adversarial review)."""
    def node(i, alive=True):
        return {"id": "abc"[i], "label": f"node{i}", "alive": alive}

    before = ClusterSnapshot.from_dicts([node(0), node(1), node(2)])
    after = ClusterSnapshot.from_dicts([node(0, alive=False), node(1), node(2)])

    def run(fail):
        policy = Packing(strict=False)
        policy.decide(before, group="g")
        if fail:
            policy.rollback(policy.propose(after, Request(group="g")))
        return policy.node_of("g"), [policy.decide(after, group=g).node_name for g in "hig"]

    assert run(fail=True) == run(fail=False)


_ZONED_CASES = {
    "anti": lambda: AntiAffinity(max_per_node=3, strict=False),
    "anti zone": lambda: AntiAffinity(topology="zone", max_per_node=50),
    "anti zone skew": lambda: AntiAffinity(topology="zone", max_skew=1, strict=False),
    "pack": lambda: Packing(strict=False),
    "pack zone": lambda: Packing(topology="zone", strict=False),
    "round robin": lambda: RoundRobin(seed=0),  # unseeded, each starts after the other
    "least loaded": LeastLoaded,
    "least loaded, 2 choices": lambda: LeastLoaded(choices=2, seed=1),
}


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(st.integers(0, 2), min_size=1, max_size=8), st.sampled_from(sorted(_ZONED_CASES)),
       st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=40))
def test_a_rolled_back_proposal_changes_no_later_choice(zones, case, steps):
    """The transaction's promise, side by side: the same requests with and without a proposal
    rolled back before some of them give the same nodes, topology or not."""
    snap = snap_of(*({"id": f"n{i}", "label": f"node{i}", "labels": {"zone": f"z{z}"},
                      "resources": {"CPU": 4}} for i, z in enumerate(zones)))
    plain, tried = _ZONED_CASES[case](), _ZONED_CASES[case]()
    for group, roll_back_first in steps:
        request = Request(Demand({"CPU": 1}), group)
        if roll_back_first:
            tried.rollback(tried.propose(snap, request))
        expected = plain.propose(snap, request)
        got = tried.propose(snap, request)
        plain.commit(expected)
        tried.commit(got)
        assert got.node.node_id == expected.node.node_id


def test_released_groups_give_their_zone_nodes_back():
    snap = snap_of({"id": "a", "label": "node0", "labels": {"zone": "z1"},
                    "resources": {"CPU": 4, "accel": 1}},
                   {"id": "b", "label": "node1", "labels": {"zone": "z1"}, "resources": {"CPU": 4}})
    fresh = Packing(topology="zone")
    expected = [fresh.decide(snap, {"CPU": 1}, group="h").node_name for _ in range(4)]
    used = Packing(topology="zone")
    for _ in range(3):
        used.decide(snap, {"CPU": 1, "accel": 1}, group="g")  # all on node0
    used.release_group("g")
    assert [used.decide(snap, {"CPU": 1}, group="h").node_name for _ in range(4)] == expected


def test_a_fallback_is_live_only_where_its_live_member_decided():
    snap = snap_of(*TWO)
    policy = AntiAffinity() | LeastLoaded()
    spread = [policy.decide(snap) for _ in range(2)]
    balanced = policy.decide(snap)  # AntiAffinity is full: LeastLoaded decides
    assert [d.tracked for d in (*spread, balanced)] == [False, False, True]


def test_least_loaded_keeps_a_bounded_number_of_demand_heaps_and_stays_exact():
    snap = snap_of(*({"id": f"n{i}", "label": f"node{i}", "resources": {"CPU": 2, "memory": 1e9}}
                     for i in range(5)))
    balance, inflight, running = LeastLoaded(), Counter(), []
    for j in range(200):  # ever new demands (memory= per chunk), half of them still running
        demand = {"CPU": 1, "memory": 1000 + j}
        decision = balance.decide(snap, demand)
        loads = {n.node_id: inflight[n.node_id] / 2 for n in snap.live}
        assert loads[decision.node.node_id] == min(loads.values())
        inflight[decision.node.node_id] += 1
        running.append(decision)
        if j % 2:
            ended = running.pop(0)
            balance.release(ended)
            inflight[ended.node.node_id] -= 1
    # 200 demands, one node set: one index, one weight list
    assert len(balance._inflight.indexes) == len(balance._weights) == 1


def test_least_loaded_weights_name_real_nodes_and_may_be_zero():
    snap = snap_of({**TWO[0], "resources": {"CPU": 2}}, {**TWO[1], "resources": {"CPU": 2}})
    last_resort = LeastLoaded(weights={"node0": 1, "node1": 0})
    assert {last_resort.decide(snap).node_name for _ in range(3)} == {"node0"}
    with pytest.raises(PlacementError) as typo:
        LeastLoaded(weights={"node0": 1, "nod1": 8}).decide(snap)
    assert typo.value.rule == errors.UNKNOWN_LABEL and "'nod1'" in typo.value.detail
    with pytest.raises(ValueError, match="finite number >= 0"):
        LeastLoaded(weights={"node0": -1})
    assert repr(LeastLoaded("equal", choices=2, seed=1)) == \
        "LeastLoaded(weights='equal', choices=2, seed=1)"


def test_locality_refuses_what_no_node_can_hold_as_such():
    snap = snap_of({**TWO[0], "resources": {"CPU": 4}})
    for demand in ({"CPU": 64}, Demand({"CPU": 1}, labels={"zone": "nowhere"})):
        with pytest.raises(PlacementError) as refusal:
            Locality(wait_for_nodes=60).decide(snap, demand, data={"a": 10_000_000})
        assert refusal.value.rule in (errors.RESOURCES_EXCEED_NODES, errors.NO_MATCHING_NODES)


def test_decisions_pickle_with_their_node():
    import pickle
    snap = snap_of({**TWO[0], "labels": {"zone": "z1"}})
    decision = Locality(where={"zone": "z1"}).decide(snap, data={"a": 5})
    again = pickle.loads(pickle.dumps(decision))
    assert again == decision and again.node.labels == {"zone": "z1"} and again.local_bytes == 5
    with pytest.raises(TypeError, match="data must map node ids"):
        Locality().decide(snap, data=[("a", 5)])
    for bad in (-5, 2**63, 2**1024, -10**5000):
        with pytest.raises(ValueError, match="bytes >= 0 and below 2\\*\\*63"):
            Locality().decide(snap, data={"a": bad})
