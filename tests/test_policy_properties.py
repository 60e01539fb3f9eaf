"""Property tests of the pure policies over generated clusters (no Ray): invariants, not
examples."""
from __future__ import annotations

import contextlib
import threading
from collections import Counter

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from placement import (
    Affinity,
    AllOf,
    AntiAffinity,
    ClusterSnapshot,
    Fallback,
    LeastLoaded,
    Local,
    Locality,
    Packing,
    PlacementError,
    Policy,
    RoundRobin,
    errors,
)
from placement.naming import LABEL_KEY
from placement.policies.decision import AUTO, BACKENDS, LABEL, NODE_ID, RESOURCE

from .thoroughness import examples

settings.register_profile("placement", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("placement")


# One node: (labelled, zone, alive draw, has Ray label draw, CPUs).
_NODE = st.tuples(st.booleans(), st.integers(0, 4), st.integers(0, 9), st.integers(0, 9),
                  st.integers(0, 16))


@st.composite
def clusters(draw, min_nodes: int = 1, max_nodes: int = 200):
    """Snapshots of 1..200 nodes: random CPUs, some unlabelled, about 20% dead, zones,
    Ray labels."""
    raw = draw(st.lists(_NODE, min_size=min_nodes, max_size=max_nodes))
    label_ids = draw(st.permutations(range(len(raw))))
    nodes = []
    # Which nodes each backend may target, written down from the draws themselves (not from
    # the snapshot the code under test reads): an oracle that cannot copy the implementation.
    expected: dict[str, list[tuple[int, str]]] = {RESOURCE: [], LABEL: [], NODE_ID: []}
    for i, (labelled, zone, alive, ray_label, cpus) in enumerate(raw):
        node_id, has_label = f"{i:056x}", labelled or i == 0
        if alive > 1:
            expected[NODE_ID].append((i, node_id))
            if has_label:
                expected[RESOURCE].append((label_ids[i], node_id))
                if ray_label > 0:
                    expected[LABEL].append((label_ids[i], node_id))
        label = f"node{label_ids[i]}" if labelled or i == 0 else None
        labels = {"zone": f"z{zone}"}
        if label and ray_label > 0:
            labels[LABEL_KEY] = label
        nodes.append({
            "id": f"{i:056x}",
            "address": f"127.0.{i // 250}.{i % 250 + 2}",
            "label": label,
            "alive": alive > 1,
            "labels": labels,
            "resources": {"CPU": cpus},
        })
    # auto: the resource backend's nodes when every live node is labelled, else node ids
    everyone = expected[RESOURCE] and len(expected[RESOURCE]) == len(expected[NODE_ID])
    expected[AUTO] = expected[RESOURCE] if everyone else expected[NODE_ID]
    snap = ClusterSnapshot.from_dicts(nodes)
    _EXPECTED[snap.version] = {backend: [node_id for _, node_id in sorted(found)]
                               for backend, found in expected.items()}
    return snap


_EXPECTED: dict[int, dict[str, list[str]]] = {}


def candidates(snap: ClusterSnapshot, backend: str = AUTO):
    """The nodes ``backend`` may target in a generated snapshot, as the generator drew them
    (labelled ones in label-number order)."""
    return [snap.by_id[node_id] for node_id in _EXPECTED[snap.version][backend]]


def run(policy, snap, k, demand=None, **kw):
    return [policy.decide(snap, demand, **kw) for _ in range(k)]


# -- RoundRobin ----------------------------------------------------------------------------------


@given(clusters(), st.integers(1, 600), st.sampled_from(BACKENDS))
def test_round_robin_counts_differ_by_at_most_one(snap, k, backend):
    cands = candidates(snap, backend)
    assume(cands)
    decisions = run(RoundRobin(backend=backend), snap, k)
    counts = Counter(d.node.node_id for d in decisions)
    per_node = [counts.get(n.node_id, 0) for n in cands]
    assert max(per_node) - min(per_node) <= 1
    assert set(counts) <= {n.node_id for n in cands}
    assert all(d.node.alive for d in decisions)


@given(clusters(), st.integers(1, 300), st.integers(1, 16))
def test_round_robin_places_only_where_demand_fits_and_refuses_exactly_when_none_can(snap, k, cpus):
    cands = candidates(snap)
    assume(cands)
    fits = [n for n in cands if n.cpus >= cpus]
    policy = RoundRobin()
    if not fits:
        with pytest.raises(PlacementError) as refusal:
            policy.decide(snap, {"CPU": cpus})
        assert refusal.value.rule == errors.RESOURCES_EXCEED_NODES
        return
    counts = Counter(d.node.node_id for d in run(policy, snap, k, {"CPU": cpus}))
    assert set(counts) <= {n.node_id for n in fits}
    per_node = [counts.get(n.node_id, 0) for n in fits]
    assert max(per_node) - min(per_node) <= 1


@given(clusters(max_nodes=60), st.data())
def test_weighted_round_robin_keeps_every_node_within_one_of_its_share(snap, data):
    cands = candidates(snap, RESOURCE)  # labelled nodes
    assume(cands)
    chosen = data.draw(st.lists(st.sampled_from(cands), min_size=1, unique_by=lambda n: n.node_id))
    weights = {n.label: data.draw(st.floats(0.01, 100)) for n in chosen}
    total = sum(weights.values())
    policy = RoundRobin(weights=weights).clone()  # its own order, not the process's
    counts: Counter = Counter()
    for k in range(1, data.draw(st.integers(1, 400)) + 1):
        counts[policy.decide(snap).node_name] += 1
        for label, weight in weights.items():
            assert abs(counts[label] - k * weight / total) < 1 + 1e-9
    assert set(counts) <= set(weights)


@given(clusters(max_nodes=60), st.integers(1, 300))
def test_capacity_weights_follow_cpus(snap, k):
    with_cpus = [n for n in candidates(snap) if n.cpus > 0]
    assume(with_cpus)
    total = sum(n.cpus for n in with_cpus)
    policy = RoundRobin(weights="capacity").clone()  # its own order, not the process's
    counts = Counter(d.node.node_id for d in run(policy, snap, k))
    for node in with_cpus:
        assert abs(counts[node.node_id] - k * node.cpus / total) < 1 + 1e-9


@given(clusters(), st.integers(0, 10_000), st.integers(1, 50))
def test_same_seed_same_sequence(snap, seed, k):
    assume(candidates(snap))
    first = [d.node.node_id for d in run(RoundRobin(seed=seed), snap, k)]
    again = [d.node.node_id for d in run(RoundRobin(seed=seed), snap, k)]
    assert first == again


# -- AntiAffinity --------------------------------------------------------------------------------


@given(clusters(), st.integers(1, 3), st.sampled_from(BACKENDS))
def test_strict_anti_affinity_is_distinct_then_refuses_exactly_when_full(snap, per_node, backend):
    cands = candidates(snap, backend)
    assume(cands)
    policy = AntiAffinity(max_per_node=per_node, backend=backend)
    capacity = len(cands) * per_node
    decisions = run(policy, snap, capacity)
    counts = Counter(d.node.node_id for d in decisions)
    assert max(counts.values()) == per_node and len(counts) == len(cands)
    # The first len(cands) placements are on distinct nodes (least-used first).
    assert len({d.node.node_id for d in decisions[: len(cands)]}) == len(cands)
    with pytest.raises(PlacementError) as refusal:
        policy.decide(snap)
    assert refusal.value.rule == errors.SPREAD_EXHAUSTED
    assert f"scripts/start_cluster.sh {len(cands) + 1}" in refusal.value.fix


@given(clusters(), st.integers(1, 400))
def test_soft_anti_affinity_never_refuses_and_stays_even(snap, k):
    cands = candidates(snap)
    assume(cands)
    decisions = run(AntiAffinity(strict=False), snap, k)
    counts = Counter(d.node.node_id for d in decisions)
    per_node = [counts.get(n.node_id, 0) for n in cands]
    assert max(per_node) - min(per_node) <= 1
    assert [d.fallback for d in decisions] == [i >= len(cands) for i in range(k)]


@given(clusters())
def test_anti_affinity_across_topology_values(snap):
    zones = {n.labels["zone"] for n in candidates(snap)}
    assume(zones)
    policy = AntiAffinity(topology="zone")
    decisions = run(policy, snap, len(zones))
    assert {d.node.labels["zone"] for d in decisions} == zones
    with pytest.raises(PlacementError, match="values of 'zone'"):
        policy.decide(snap)


@settings(max_examples=examples(200), deadline=None)
@given(clusters(max_nodes=30), st.integers(1, 3), st.integers(1, 8), st.integers(0, 40),
       st.booleans())
def test_min_domains_caps_each_domain_at_max_skew_until_enough_domains_exist(snap, skew, k, n,
                                                                             by_zone):
    """Generated clusters (zones, dead nodes, CPUs), max_skew and min_domains: with fewer
    candidate domains than min_domains, each holds at most max_skew and the spread refuses
    exactly when all are at max_skew; with enough domains it decides exactly as the same spread
    without min_domains (the count of live domains is written down from the nodes, not read
    from the policy)."""
    topology = "zone" if by_zone else None
    live = [n for n in snap.live]
    domains = {n.labels["zone"] for n in live} if by_zone else {n.node_id for n in live}
    assume(live)
    bounded = AntiAffinity(topology=topology, max_skew=skew, min_domains=k)
    twin = AntiAffinity(topology=topology, max_skew=skew)
    placed: Counter = Counter()
    for i in range(n):
        try:
            decision = bounded.decide(snap)
        except PlacementError as refusal:
            assert refusal.rule == errors.SKEW_EXCEEDED and len(domains) < k
            assert i == skew * len(domains), (i, skew, domains)
            assert f"min_domains={k}" in refusal.detail
            return
        if len(domains) >= k:
            assert decision == twin.decide(snap)._replace(
                ticket=decision.ticket, policy=decision.policy)
        placed[decision.node.labels["zone"] if by_zone else decision.node.node_id] += 1
        assert len(domains) >= k or max(placed.values()) <= skew


@settings(max_examples=examples(200), deadline=None)
@given(clusters(max_nodes=30), st.integers(1, 2), st.integers(1, 3), st.integers(1, 60))
def test_all_of_places_only_where_every_member_allows(snap, skew, cap, n):
    """Generated clusters, a zone spread with max_skew and a cap per node, together: each
    placement, checked against counts kept here from the decisions, leaves its zone at most
    max_skew above the least-used live zone and its node at most at the cap; a refusal names
    the member that refused."""
    live = list(snap.live)
    assume(live)
    zones = {node.labels["zone"] for node in live}
    both = AntiAffinity(topology="zone", max_skew=skew) & AntiAffinity(max_per_node=cap)
    per_zone: Counter = Counter()
    per_node: Counter = Counter()
    for _ in range(n):
        try:
            decision = both.decide(snap)
        except PlacementError as refusal:
            assert refusal.rule in (errors.SPREAD_EXHAUSTED, errors.SKEW_EXCEEDED)
            assert "AntiAffinity(" in refusal.detail and "refused:" in refusal.detail
            return
        zone, node_id = decision.node.labels["zone"], decision.node.node_id
        floor = min(per_zone[z] for z in zones)
        assert per_zone[zone] + 1 - floor <= skew, (per_zone, zone)
        assert per_node[node_id] + 1 <= cap, (per_node, node_id)
        per_zone[zone] += 1
        per_node[node_id] += 1
    assert sum(per_node.values()) == n


def test_all_of_members_must_judge_and_compose_with_fallbacks():
    snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
                                       {"id": "b", "label": "node1"}])
    with pytest.raises(ValueError, match="can only come first"):
        AntiAffinity() & Locality()
    with pytest.raises(ValueError, match="twice"):
        apart = AntiAffinity()
        apart & apart
    with pytest.raises(TypeError):
        RoundRobin() & 3
    capped = (RoundRobin() & AntiAffinity(max_per_node=1)) | LeastLoaded()
    placed = [capped.decide(snap) for _ in range(3)]
    assert sorted(d.node_name for d in placed[:2]) == ["node0", "node1"]
    assert placed[2].fallback and "anti-affinity-exhausted" in placed[2].reason
    assert repr(capped) == "RoundRobin() & AntiAffinity() | LeastLoaded()"
    assert repr(capped.clone()) == repr(capped)
    first = placed[0]
    capped.release(first)  # its slot in the cap comes back
    assert capped.decide(snap).node_name == first.node_name


def test_all_of_pins_as_its_strictest_member():
    """A hard member's rule holds only where the work runs: an & with one is pinned hard, not
    as the balance policy that leads it (soft="gone")."""
    snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
                                       {"id": "b", "label": "node1"}])
    assert (RoundRobin() & AntiAffinity()).decide(snap).soft is False
    assert (RoundRobin() & LeastLoaded()).decide(snap).soft == "gone"
    assert (RoundRobin(soft=True) & LeastLoaded(soft=True)).decide(snap).soft is True
    assert (RoundRobin(soft=True) & LeastLoaded()).decide(snap).soft == "gone"
    assert (RoundRobin() | AntiAffinity()).decide(snap).soft == "gone"  # its member decided


def test_all_of_distributes_over_a_fallback_and_shares_its_other_members():
    """(a | b) & c is (a & c) | (b & c) with one c: the cap counts placements either way,
    a release gives the slot back, a clone keeps c shared; a fallback first in an AllOf
    built directly is refused, naming &."""
    snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
                                       {"id": "b", "label": "node1"}])
    cap = AntiAffinity(max_per_node=1)
    both = (Locality() | RoundRobin()) & cap
    assert repr(both) == ("Locality() & AntiAffinity() | RoundRobin() & AntiAffinity()")
    for policy in (both.clone(), both):
        near = policy.decide(snap, data={"a": 5})  # Locality: beside the data
        other = policy.decide(snap, data={"a": 5})  # node0 is at the cap: RoundRobin's node1
        assert (near.node_name, near.fallback) == ("node0", False)
        assert (other.node_name, other.fallback) == ("node1", True)
        with pytest.raises(PlacementError) as refusal:
            policy.decide(snap, data={"a": 5})
        assert refusal.value.rule == errors.SPREAD_EXHAUSTED
        assert "AntiAffinity() refused" in refusal.value.detail
        policy.release(near)
        assert policy.decide(snap, data={"a": 5}).node_name == "node0"
    with pytest.raises(PlacementError):  # the one cap holds both nodes' placements
        cap.decide(snap)
    with pytest.raises(ValueError, match="distributes over"):
        AllOf(Locality() | RoundRobin(), AntiAffinity())
    with pytest.raises(ValueError, match="shared="):
        AntiAffinity(shared="web") & AntiAffinity(shared="api", max_per_node=2)
    with pytest.raises(ValueError, match="^Packing needs a group key"):
        (Packing() & AntiAffinity()).decide(snap)


def test_round_robin_judging_in_an_all_of_moves_on_past_a_refused_turn():
    """RoundRobin first: when the cap refuses its turn, the cap's own node is taken and the
    rotation carries on after it (a freed slot is used, never refused for ever)."""
    snap = ClusterSnapshot.from_dicts([{"id": c, "label": f"node{i}"}
                                       for i, c in enumerate("abc")])
    policy = RoundRobin() & AntiAffinity()
    placed = [policy.decide(snap) for _ in range(3)]
    assert sorted(d.node_name for d in placed) == ["node0", "node1", "node2"]
    for freed in (placed[1], placed[0]):  # its turn, then one it passed long ago
        policy.release(freed)
        assert policy.decide(snap).node_name == freed.node_name
        with pytest.raises(PlacementError):
            policy.decide(snap)
    plain = AntiAffinity(max_per_node=2) & RoundRobin()  # RoundRobin judging: any node fits
    assert Counter(plain.decide(snap).node_name for _ in range(6)) == {
        "node0": 2, "node1": 2, "node2": 2}


def test_round_robin_leading_an_all_of_stays_even_over_the_nodes_it_places_on():
    """A turn another member refuses stays the turn: the rotation places evenly on z0's three
    nodes while the zone spread sends every other placement to z1's one node."""
    snap = ClusterSnapshot.from_dicts([
        {"id": f"n{i}", "label": f"node{i}", "labels": {"zone": "z0" if i < 3 else "z1"}}
        for i in range(4)])
    policy = RoundRobin(seed=0) & AntiAffinity(topology="zone", max_skew=1)
    placed = Counter(policy.decide(snap).node_name for _ in range(60))
    assert placed == {"node0": 10, "node1": 10, "node2": 10, "node3": 30}
    only = AntiAffinity() & RoundRobin(weights={"node0": 1})
    assert only.decide(snap).node_name == "node0"
    with pytest.raises(PlacementError, match="give node node1 no share"):
        only.decide(snap)


def test_all_of_members_decide_on_the_newest_snapshot_any_of_them_saw():
    old = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}, {"id": "b", "label": "node1"}])
    new = ClusterSnapshot.from_dicts([{"id": "b", "label": "node1"}, {"id": "c", "label": "node2"}],
                                     previous=old)
    cap = AntiAffinity(max_per_node=5)
    (RoundRobin() & cap).decide(new)  # the cap has seen node0 leave
    both = LeastLoaded(weights="equal") & cap
    assert {both.decide(old).node_name for _ in range(4)} == {"node1", "node2"}


def test_an_all_of_keeps_nothing_for_members_that_keep_nothing_and_commits_every_member():
    """RoundRobin's history is cut when a placement is committed, in an & too; an & of members
    that keep no placements holds none (nothing would release them)."""
    snap = ClusterSnapshot.from_dicts([{"id": c, "label": f"node{i}"}
                                       for i, c in enumerate("abc")])
    history = RoundRobin(seed=1)
    plain = history & RoundRobin()
    capped = AntiAffinity(max_per_node=10**9) & RoundRobin()
    for _ in range(300):
        plain.decide(snap)
        capped.release(capped.decide(snap))
    assert not plain.keeps and not plain._kept and not capped._kept
    [at] = history._at.values()
    assert at[6] is None  # committed: what it replaced is not kept (the chain stays short)


def test_all_of_sharing_members_in_another_order_takes_their_locks_in_one_order():
    x, y = AntiAffinity(max_skew=1), LeastLoaded()
    forth, back = x & y, y & x
    assert forth._locks == back._locks
    snap = ClusterSnapshot.from_dicts([{"id": c, "label": f"node{i}"}
                                       for i, c in enumerate("abcd")])

    def run(policy: Policy) -> None:
        for _ in range(3000):
            with contextlib.suppress(PlacementError):
                policy.release(policy.decide(snap))

    threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in (forth, back)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)  # a bound on the wait, not a timing: 6,000 decisions take < 1 s
    assert not any(t.is_alive() for t in threads), "x & y and y & x waited on each other"


def test_min_domains_needs_a_strict_max_skew():
    for bad in ({"min_domains": 2}, {"min_domains": 2, "max_skew": 1, "strict": False},
                {"min_domains": 0, "max_skew": 1}, {"min_domains": True, "max_skew": 1}):
        with pytest.raises(ValueError, match="min_domains"):
            AntiAffinity(**bad)


def _mixed_nodes() -> ClusterSnapshot:
    """a holds an accel, b an "x", c neither: some demands fit one domain only."""
    return ClusterSnapshot.from_dicts([
        {"id": "a", "label": "node0", "resources": {"CPU": 1, "accel": 1}},
        {"id": "b", "label": "node1", "resources": {"CPU": 1, "x": 1}},
        {"id": "c", "label": "node2", "resources": {"CPU": 1}}])


def test_max_skew_refuses_a_demand_that_fits_only_a_domain_already_ahead():
    snap, accel, x = _mixed_nodes(), {"accel": 1}, {"x": 1}
    even = AntiAffinity(max_skew=1)
    plain = [even.decide(snap) for _ in range(3)]  # a, b, c: 1 each
    assert [even.decide(snap, d).node_name for d in (accel, x)] == ["node0", "node1"]
    third = even.decide(snap)  # c, the least used: 2 each now
    assert third.node_name == "node2" and not third.fallback
    assert even.decide(snap, accel).node_name == "node0"  # 3 vs 2: within 1
    even.release(third)
    even.release(plain[2])  # c back to 0: b may not go to 3
    with pytest.raises(PlacementError) as refusal:
        even.decide(snap, x)
    assert refusal.value.rule == errors.SKEW_EXCEEDED
    assert "node1" in refusal.value.detail and "node2" in refusal.value.detail
    assert refusal.value.nodes == ("node2",)
    assert [even.decide(snap).node_name for _ in range(2)] == ["node2"] * 2  # c catches up
    assert even.decide(snap, x).node_name == "node1"  # 3 vs 2: b is allowed again


def test_soft_max_skew_places_on_the_fitting_domain_and_flags_it():
    snap = _mixed_nodes()
    even = AntiAffinity(max_skew=1, strict=False)
    placed = [even.decide(snap, {"accel": 1}) for _ in range(3)]
    assert [d.node_name for d in placed] == ["node0"] * 3
    assert [d.fallback for d in placed] == [False, True, True]
    assert even.decide(snap).node_name == "node1"  # the least used, not flagged
    assert "max_skew=1" in repr(even) and "max_per_node" not in repr(even)
    assert AntiAffinity(max_skew=2, max_per_node=3).clone().max_per_node == 3


def test_packing_by_topology_spreads_members_over_the_zone_and_frees_them():
    snap = ClusterSnapshot.from_dicts([
        {"id": "a", "label": "node0", "labels": {"zone": "z1"}},
        {"id": "b", "label": "node1", "labels": {"zone": "z1"}},
        {"id": "c", "label": "node2", "labels": {"zone": "z2"}}])
    pack = Packing(topology="zone")
    first, second = pack.decide(snap, group="g"), pack.decide(snap, group="g")
    assert (first.node_name, second.node_name) == ("node0", "node1")
    assert pack.decide(snap, group="h").node_name == "node2" and pack.node_of("g") == "z1"
    pack.release(second)
    assert pack.decide(snap, group="g").node_name == "node1"  # b holds none of g now
    with pytest.raises(PlacementError) as refusal:
        pack.decide(snap, group="k")
    assert refusal.value.rule == errors.GROUPS_EXHAUSTED and "values of 'zone'" in str(
        refusal.value)


def test_soft_packing_places_a_member_its_groups_node_cannot_hold_apart():
    snap = ClusterSnapshot.from_dicts([
        {"id": "a", "label": "node0", "resources": {"CPU": 1}},
        {"id": "b", "label": "node1", "resources": {"CPU": 8}}])
    for pack in (Packing(strict=False), Packing()):
        assert pack.decide(snap, {"CPU": 1}, group="g").node_name == "node0"
        if pack.strict:
            with pytest.raises(PlacementError) as refusal:
                pack.decide(snap, {"CPU": 4}, group="g")
            assert refusal.value.rule == errors.RESOURCES_EXCEED_NODES
            continue
        big = pack.decide(snap, {"CPU": 4}, group="g")
        assert big.node_name == "node1" and big.fallback
        assert pack.decide(snap, {"CPU": 1}, group="g").node_name == "node0"  # group stayed
        assert pack.node_of("g") == "a"


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.booleans()), min_size=1, max_size=6),
       st.lists(st.tuples(st.booleans(), st.integers(0, 10**6)), max_size=200))
def test_least_loaded_chooses_the_least_loaded_fitting_node_as_work_ends(nodes, steps):
    """Decisions (half of them for an accelerator some nodes have) and ends of work in any
    order: every decision goes to a fitting node with the fewest in flight per CPU."""
    snap = ClusterSnapshot.from_dicts([
        {"id": f"n{i}", "label": f"node{i}", "resources": {"CPU": cpus, **({"x": 1} if x else {})}}
        for i, (cpus, x) in enumerate(nodes)])
    policy, running = LeastLoaded(), []
    inflight: Counter = Counter()
    for decide, pick in steps:
        if not decide and running:
            ended = running.pop(pick % len(running))
            policy.release(ended)
            inflight[ended.node.node_id] -= 1
            continue
        demand = {"CPU": 1, "x": 1} if pick % 2 else {"CPU": 1}
        fitting = [n for n in snap.live if n.fits(demand.items())]
        if not fitting:
            continue
        decision = policy.decide(snap, demand)
        load = {n.node_id: inflight[n.node_id] / n.total["CPU"] for n in fitting}
        assert load[decision.node.node_id] == min(load.values())
        inflight[decision.node.node_id] += 1
        running.append(decision)


def test_least_loaded_sends_work_where_work_ended_whichever_demand_placed_it():
    snap = ClusterSnapshot.from_dicts([
        {"id": "a", "label": "node0", "resources": {"CPU": 2, "accel": 1}},
        {"id": "b", "label": "node1", "resources": {"CPU": 2, "accel": 1}},
        {"id": "c", "label": "node2", "resources": {"CPU": 4}}])
    balance = LeastLoaded()
    plain = [balance.decide(snap) for _ in range(4)]  # loads 0/2 0/2 0/4: a, b, c, c
    assert [d.node_name for d in plain] == ["node0", "node1", "node2", "node2"]
    accel = balance.decide(snap, {"accel": 1})  # a and b at 1/2: the first in order
    assert accel.node_name == "node0" and balance.load("a") == 2
    balance.release(plain[1])  # b's task ended: b is at 0 for both demands
    assert balance.decide(snap).node_name == "node1"
    balance.release(accel)
    balance.release(plain[0])  # a at 0 again, through the other demand's placements
    assert balance.decide(snap, {"accel": 1}).node_name == "node0"
    even = LeastLoaded()
    two = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0", "resources": {"CPU": 2}},
                                      {"id": "b", "label": "node1", "resources": {"CPU": 2}}])
    placed = [even.decide(two) for _ in range(4)]  # a, b, a, b: 2/2 each
    even.release(placed[3])  # b at 1/2, a at 2/2: b, though a comes first in order
    assert even.decide(two).node_name == "node1"
    assert "choices=2" in repr(LeastLoaded(choices=2)) and LeastLoaded().clone().weights == \
        "capacity"


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.booleans()), min_size=1,
                max_size=8),
       st.dictionaries(st.integers(0, 9), st.integers(0, 3), max_size=6), st.booleans())
def test_locality_takes_the_fitting_node_with_the_most_bytes_of_its_arguments(nodes, data,
                                                                             accel):
    """Generated clusters (dead nodes, nodes without the asked resource) and argument bytes on
    any node ids, known or not: the most bytes among live fitting nodes win, ties to the first
    label; with none, the refusal a fallback takes over from."""
    snap = ClusterSnapshot.from_dicts([
        {"id": f"n{i}", "label": f"node{i}", "alive": alive,
         "resources": {"CPU": cpus, **({"accel": 1} if has else {})}}
        for i, (cpus, has, alive) in enumerate(nodes)])
    demand = {"accel": 1} if accel else {}
    sizes = {f"n{i}": size * 1_000_000 for i, size in data.items()}
    eligible = {n.node_id: sizes[n.node_id] for n in snap.live
                if sizes.get(n.node_id) and (not accel or n.total.get("accel"))}
    try:
        decision = Locality().decide(snap, demand, data=sizes)
    except PlacementError as refusal:
        fits_some = any(not accel or n.total.get("accel") for n in snap.live)
        assert not eligible
        assert refusal.rule == errors.NO_DATA_LOCATIONS or not fits_some, refusal
        return
    most = max(eligible.values())
    first = min((i for i, size in eligible.items() if size == most), key=lambda i: int(i[1:]))
    assert decision.node.node_id == first and decision.local_bytes == most
    assert (Locality() | RoundRobin()).decide(snap, demand, data=sizes).node.node_id == first


@settings(max_examples=examples(300), deadline=None)
@given(st.integers(1, 12), st.dictionaries(st.integers(0, 14), st.integers(1, 20), min_size=1,
                                         max_size=8),
       st.sampled_from([0.0, 0.05, 0.1, 0.5, 0.99]), st.integers(1, 40), st.booleans())
def test_locality_spreads_over_the_nodes_holding_about_the_same_bytes(nodes, data, margin, k,
                                                                      release):
    """Generated argument bytes (some on node ids the cluster lacks), margins and k placements
    of one request: every placement lands on a node holding at least 1 - margin of the most
    bytes; among those nodes the counts differ by at most one; none of those nodes is passed
    over for a node further away; work that ended counts no more."""
    snap = ClusterSnapshot.from_dicts([{"id": f"n{i}", "label": f"node{i}"}
                                       for i in range(nodes)])
    sizes = {f"n{i}": size * 1_000 for i, size in data.items()}
    present = {i: size for i, size in sizes.items() if int(i[1:]) < nodes}
    assume(present)
    most = max(present.values())
    near = {i for i, size in present.items() if size >= most * (1 - margin)}
    policy = Locality(margin=margin)
    decisions = [policy.decide(snap, data=sizes) for _ in range(k)]
    # Nothing in flight yet: the most bytes, ties to natural order (n10 comes after n9).
    first = min((i for i, size in present.items() if size == most), key=lambda i: int(i[1:]))
    assert decisions[0].node.node_id == first
    placed = Counter(d.node.node_id for d in decisions)
    assert set(placed) <= near, (placed, near)
    counts = [placed.get(i, 0) for i in near]
    assert max(counts) - min(counts) <= 1, (placed, near)
    assert all(d.local_bytes == sizes[d.node.node_id] for d in decisions)
    assert all(policy.load(i) == placed[i] for i in near)
    if release:
        for decision in decisions:
            policy.release(decision)
        assert not policy._inflight.counts  # nothing held once every placement ended
        again = policy.decide(snap, data=sizes).node.node_id
        assert present[again] == most  # the most bytes once nothing is in flight


def test_anti_affinity_release_frees_a_slot():
    snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
                                       {"id": "b", "label": "node1"}])
    policy = AntiAffinity()
    first, _ = run(policy, snap, 2)
    policy.release(first)
    assert policy.decide(snap).node.node_id == first.node.node_id


# -- Packing -------------------------------------------------------------------------------------


@given(clusters(), st.lists(st.integers(0, 40), min_size=1, max_size=300))
def test_packing_colocates_groups_and_separates_them_while_nodes_remain(snap, groups):
    cands = candidates(snap)
    assume(cands)
    policy = Packing()
    node_of: dict[int, str] = {}
    for group in groups:
        if group not in node_of and len(node_of) == len(cands):
            with pytest.raises(PlacementError) as refusal:
                policy.decide(snap, group=group)
            assert refusal.value.rule == errors.GROUPS_EXHAUSTED
            continue
        decision = policy.decide(snap, group=group)
        assert node_of.setdefault(group, decision.node.node_id) == decision.node.node_id
    assert len(set(node_of.values())) == len(node_of)  # one group per node


@given(clusters(), st.lists(st.integers(0, 40), min_size=1, max_size=300))
def test_soft_packing_never_refuses_and_keeps_groups_together(snap, groups):
    cands = candidates(snap)
    assume(cands)
    policy = Packing(strict=False)
    node_of: dict[int, str] = {}
    for group in groups:
        decision = policy.decide(snap, group=group)
        assert node_of.setdefault(group, decision.node.node_id) == decision.node.node_id
    per_node = Counter(node_of.values())
    if len(node_of) >= len(cands):
        assert max(per_node.values()) - min(per_node.get(n.node_id, 0) for n in cands) <= 1


def test_packing_needs_a_group():
    snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}])
    with pytest.raises(ValueError, match="group="):
        Packing().decide(snap)


# -- Affinity and Local --------------------------------------------------------------------------


@given(clusters(), st.integers(1, 50), st.sampled_from(BACKENDS))
def test_affinity_without_target_follows_its_first_choice(snap, k, backend):
    assume(candidates(snap, backend))
    decisions = run(Affinity(backend=backend), snap, k)
    assert len({d.node.node_id for d in decisions}) == 1
    assert decisions[0].node.alive


@given(clusters(), st.data())
def test_affinity_to_a_label_or_id(snap, data):
    cands = candidates(snap, RESOURCE)  # labelled nodes
    assume(cands)
    node = data.draw(st.sampled_from(cands))
    assert {d.node.node_id for d in run(Affinity(node.label), snap, 5)} == {node.node_id}
    assert {d.node.node_id for d in run(Affinity(node.node_id), snap, 5)} == {node.node_id}


@given(clusters())
def test_affinity_refuses_unknown_and_dead_targets(snap):
    with pytest.raises(PlacementError) as unknown:
        Affinity("node99999").decide(snap)
    if not snap.live:
        assert unknown.value.rule == errors.NO_CLUSTER_NODES
        return
    assert unknown.value.rule in (errors.UNKNOWN_LABEL, errors.NO_LABELLED_NODES)
    for dead in snap.dead:
        with pytest.raises(PlacementError) as refusal:
            Affinity(dead.node_id, backend=NODE_ID).decide(snap)
        assert refusal.value.rule == errors.DEAD_NODE
        if snap.live:
            moved = Affinity(dead.node_id, soft=True, backend=NODE_ID).decide(snap)
            assert moved.fallback and moved.node.alive


@given(clusters())
def test_local_pins_to_the_callers_node(snap):
    for node in snap.live:
        assert Local().decide(snap, caller_node_id=node.node_id).node is node
    for node in snap.dead:
        with pytest.raises(PlacementError):
            Local().decide(snap, caller_node_id=node.node_id)


# -- every policy --------------------------------------------------------------------------------

ALL_POLICIES = [RoundRobin, Affinity, AntiAffinity, Packing, Local]


@given(clusters(), st.sampled_from(ALL_POLICIES), st.sampled_from(BACKENDS))
def test_refusal_when_no_candidate_node(snap, policy_type, backend):
    no_labels = ClusterSnapshot.from_dicts([
        {"id": n.node_id, "alive": n.alive, "resources": {"CPU": 1}} for n in snap.nodes])
    policy = policy_type(backend=backend)
    kwargs = {"group": "g"} if policy.needs.group else {}
    caller = no_labels.live[0].node_id if no_labels.live else "x" * 56
    if backend in (NODE_ID, AUTO) and no_labels.live:  # auto: node ids on such a cluster
        assert policy.decide(no_labels, caller_node_id=caller, **kwargs).node.alive
        return
    with pytest.raises(PlacementError) as refusal:
        policy.decide(no_labels, caller_node_id=caller, **kwargs)
    expected = errors.NO_LABELLED_NODES if no_labels.live else errors.NO_CLUSTER_NODES
    assert refusal.value.rule == expected
    assert "start_cluster.sh" in refusal.value.fix


@given(clusters(max_nodes=30), st.sampled_from(ALL_POLICIES), st.integers(1, 60))
def test_dead_nodes_never_chosen_and_plans_are_deterministic(snap, policy_type, k):
    assume(candidates(snap))
    policy = policy_type(soft=True) if policy_type in (RoundRobin, Affinity) else (
        policy_type(strict=False) if policy_type in (AntiAffinity, Packing) else policy_type())
    groups = [i % 7 for i in range(k)]
    caller = candidates(snap)[0].node_id
    first = policy.plan(snap, k, groups=groups, caller_node_id=caller)
    again = policy.plan(snap, k, groups=groups, caller_node_id=caller)
    assert first.refused is None
    assert [d.node.node_id for d in first.decisions] == [d.node.node_id for d in again.decisions]
    assert all(d.node.alive for d in first.decisions)
    assert "why" in first.table()


def test_fallback_composition_marks_fallbacks():
    snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
                                       {"id": "b", "label": "node1"}])
    policy = AntiAffinity() | RoundRobin()
    decisions = run(policy, snap, 4)
    assert [d.fallback for d in decisions] == [False, False, True, True]
    assert "fell back to RoundRobin()" in decisions[2].reason
    assert isinstance(policy, Fallback) and repr(policy) == "AntiAffinity() | RoundRobin()"


def test_plan_explains_each_choice_and_the_refusal():
    snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
                                       {"id": "b", "label": "node1"}])
    plan = AntiAffinity().plan(snap, 3)
    assert plan.counts() == {"node0": 1, "node1": 1}
    assert isinstance(plan.refused, PlacementError)
    assert "holds the fewest" in plan.table() and "refused" in plan.table()


# -- concurrency ---------------------------------------------------------------------------------


def _hammer(policy, snap, threads=8, each=1000, **kw):
    results: list = []
    lock = threading.Lock()

    def work():
        mine = [policy.decide(snap, **kw) for _ in range(each)]
        with lock:
            results.extend(mine)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def test_round_robin_from_8_threads_stays_exactly_balanced():
    snap = ClusterSnapshot.from_dicts([{"id": str(i), "label": f"node{i}"} for i in range(7)])
    counts = Counter(d.node_name for d in _hammer(RoundRobin(), snap))
    assert sum(counts.values()) == 8000
    assert max(counts.values()) - min(counts.values()) <= 1


def test_anti_affinity_from_8_threads_stays_distinct():
    snap = ClusterSnapshot.from_dicts([{"id": str(i), "label": f"node{i}"} for i in range(100)])
    policy = AntiAffinity(max_per_node=80)
    counts = Counter(d.node_name for d in _hammer(policy, snap))
    assert sum(counts.values()) == 8000 and set(counts.values()) == {80}


@settings(max_examples=examples(200), deadline=None)
@given(st.integers(1, 8), st.integers(0, 6), st.integers(0, 30), st.sampled_from([None, 2, 4]),
       st.sampled_from([None, 1, 2]), st.booleans(), st.data())
def test_a_rebalance_plan_restores_the_spread_and_the_ledger_follows_the_moves(
        before, joined, k, cap, skew, by_zone, data):
    """Generated clusters that lose nodes and gain new ones between placing and planning: after
    every move of the plan is recorded, each placement not stranded is on a live node, no slot
    is above the cap, the most- and least-used slots differ by at most max_skew (1 without it)
    unless the cap stops it, and releasing every decision empties the ledger. Where each
    placement is now is kept here from the decisions and the moves, not read from the policy."""
    zone_of = {i: f"z{i % 3}" for i in range(before + joined)}
    first = ClusterSnapshot.from_dicts([
        {"id": f"n{i}", "label": f"node{i}", "labels": {"zone": zone_of[i]}}
        for i in range(before)])
    topology = "zone" if by_zone else None
    policy = AntiAffinity(max_per_node=cap, max_skew=skew, topology=topology)
    decisions = []
    for _ in range(k):
        try:
            decisions.append(policy.decide(first))
        except PlacementError:
            break
    alive = data.draw(st.lists(st.booleans(), min_size=before, max_size=before))
    second = ClusterSnapshot.from_dicts([
        {"id": f"n{i}", "label": f"node{i}", "labels": {"zone": zone_of[i]},
         "alive": i >= before or alive[i]} for i in range(before + joined)], previous=first)
    slot_of = {n.node_id: (n.labels["zone"] if by_zone else n.node_id) for n in second.live}
    where = {d.ticket: d.node.node_id for d in decisions}
    plan = policy.rebalance_plan(second)
    assert len({m.ticket for m in plan.moves}) == len(plan.moves)  # each moves once
    for move in plan.moves:
        assert where[move.ticket] == move.from_node
        policy.record_move(move)
        where[move.ticket] = move.to.node_id
    kept = [t for t in where if t not in plan.stranded]
    assert all(where[t] in slot_of for t in kept)
    per_slot = Counter(slot_of[where[t]] for t in kept)
    counts = [per_slot.get(slot, 0) for slot in set(slot_of.values())]
    limit = cap if (cap is not None) else (None if skew is not None else 1)
    if counts:
        assert limit is None or max(counts) <= limit
        if limit is None or min(counts) < limit:
            assert max(counts) - min(counts) <= (skew or 1), (per_slot, plan.table())
    # stranded only when no live slot has room
    assert not plan.stranded or not counts or (limit is not None and min(counts) >= limit)
    for decision in decisions:
        policy.release(decision)
    assert not policy._used.counts


def test_record_move_refuses_a_stale_or_foreign_move_and_live_ledgers():
    snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}])
    apart = AntiAffinity(max_per_node=2)
    first, second = apart.decide(snap), apart.decide(snap)
    grown = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
                                        {"id": "b", "label": "node1"}], previous=snap)
    plan = apart.rebalance_plan(grown)
    assert "node1" in plan.table() and "restores the spread" in plan.table()
    move = plan.moves[0]
    apart.record_move(move)
    with pytest.raises(ValueError, match="no longer on node"):
        apart.record_move(move)  # already moved
    with pytest.raises(ValueError, match="not held"):
        AntiAffinity().record_move(move)
    with pytest.raises(TypeError, match="Move"):
        apart.record_move((move.ticket, "a"))
    with pytest.raises(ValueError, match="live=True"):
        AntiAffinity(live=True).rebalance_plan(grown)
    with pytest.raises(TypeError, match="ClusterSnapshot"):
        apart.rebalance_plan(None)
    assert not apart.rebalance_plan(grown).moves  # 1 and 1: nothing left to move
    apart.release(first)
    apart.release(second)
    assert not apart._used.counts
