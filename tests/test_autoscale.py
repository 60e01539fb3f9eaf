"""Waiting for new nodes (``wait_for_nodes=``): what is asked of Ray's autoscaler for each refusal,
and the bounded wait around it. No Ray cluster: Ray's ``request_resources`` is replaced by a
recorder here; tests/plain_scenarios.py runs the real one against a real cluster."""
from __future__ import annotations

import pytest

import placement.autoscale as autoscale
from placement import errors
from placement.errors import PlacementError
from placement.policies import (
    Affinity,
    AntiAffinity,
    Demand,
    Local,
    Packing,
    Request,
    RoundRobin,
)
from placement.policies.growth import capacity_ask
from placement.snapshot import ClusterSnapshot


def _nodes(*cpus_zones: tuple[int, str]) -> ClusterSnapshot:
    return ClusterSnapshot.from_dicts([
        {"id": f"{i:056x}", "address": f"127.0.0.{20 + i}", "labels": {"zone": zone},
         "resources": {"CPU": cpus}} for i, (cpus, zone) in enumerate(cpus_zones)])


def _refusal(policy, snap, request) -> PlacementError:
    with pytest.raises(PlacementError) as refused:
        for _ in range(100):
            policy.commit(policy.propose(snap, request))
    return refused.value


def test_an_exhausted_spread_asks_for_more_capacity_than_its_nodes_have():
    """Bundles the size of the smallest node in use, as many as the nodes there hold, plus one:
    Ray's request is the capacity the cluster should have, so only a new node meets it."""
    snap, request = _nodes((2, "z1"), (8, "z1"), (4, "z2")), Request(Demand({"CPU": 1}))
    spread = AntiAffinity(wait_for_nodes=30)
    ask = capacity_ask(spread, snap, request, _refusal(spread, snap, request))
    assert ask is not None and ask.bundles == ({"CPU": 2.0},) * (1 + 4 + 2 + 1)
    assert ask.selectors == ({},) * 8
    within = Packing(where={"zone": "z1"})  # a filter: only its nodes count, and it is asked
    request = Request(Demand({"CPU": 1}), group=99)
    refusal = _refusal_groups(within, snap)
    ask = capacity_ask(within, snap, request, refusal)
    assert ask.bundles == ({"CPU": 2.0},) * (1 + 4 + 1)
    assert ask.selectors == ({"zone": "z1"},) * 6


def test_only_the_nodes_that_hold_the_demand_count():
    snap = ClusterSnapshot.from_dicts([
        {"id": "a", "label": "node0", "resources": {"CPU": 8, "accel": 1}},
        {"id": "b", "label": "node1", "resources": {"CPU": 8}},
        {"id": "c", "label": "node2", "resources": {"CPU": 64}}])
    request = Request(Demand({"CPU": 1, "accel": 1}))
    spread = AntiAffinity(wait_for_nodes=30)
    ask = capacity_ask(spread, snap, request, _refusal(spread, snap, request))
    assert ask.bundles == ({"CPU": 8.0, "accel": 1.0},) * 2  # one more accel node, no more


def _refusal_groups(policy, snap) -> PlacementError:
    with pytest.raises(PlacementError) as refused:
        for group in range(100):
            policy.commit(policy.propose(snap, Request(Demand({"CPU": 1}), group=group)))
    return refused.value


def test_a_spread_over_zones_asks_for_a_node_in_another_zone():
    snap, request = _nodes((2, "z1"), (2, "z2")), Request(Demand({"CPU": 1}))
    spread = AntiAffinity(topology="zone")
    ask = capacity_ask(spread, snap, request, _refusal(spread, snap, request))
    assert ask.bundles == ({"CPU": 1.0},) and ask.selectors == ({"zone": "!in(z1,z2)"},)
    allowed = Request(Demand({"CPU": 1}, labels={"zone": "in(z1,z2,z3)"}))  # what is left of it
    spread = AntiAffinity(topology="zone")
    ask = capacity_ask(spread, snap, allowed, _refusal(spread, snap, allowed))
    assert ask.selectors == ({"zone": "in(z3)"},)
    used_up = Request(Demand({"CPU": 1}, labels={"zone": "in(z1,z2)"}))
    spread = AntiAffinity(topology="zone")
    assert capacity_ask(spread, snap, used_up, _refusal(spread, snap, used_up)) is None
    nowhere = Request(Demand({"CPU": 1}, labels={"zone": "!z9"}))
    spread = AntiAffinity(topology="zone")
    ask = capacity_ask(spread, snap, nowhere, _refusal(spread, snap, nowhere))
    assert ask.selectors == ({"zone": "!in(z1,z2,z9)"},)


def test_placements_bound_to_a_node_never_wait():
    snap = _nodes((2, "z1"))
    request = Request(Demand({"CPU": 1}, labels={"zone": "z2"}))
    for bound in (Affinity(snap.live[0].node_id, wait_for_nodes=30),
                  Local(wait_for_nodes=30)):
        refusal = _refusal(bound, snap, request._replace(caller_node_id=snap.live[0].node_id))
        assert capacity_ask(bound, snap, request, refusal) is None
    packed = Packing(wait_for_nodes=30)
    packed.decide(snap, {"CPU": 1}, group="g")
    big = Request(Demand({"CPU": 16}), group="g")
    assert capacity_ask(packed, snap, big, _refusal(packed, snap, big)) is None
    new_group = Request(Demand({"CPU": 16}), group="h")
    assert capacity_ask(packed, snap, new_group, _refusal(packed, snap, new_group)) is not None


def test_a_demand_no_node_holds_asks_for_it_with_its_labels():
    snap = _nodes((2, "z1"))
    request = Request(Demand({"CPU": 16, "accel": 1}, labels={"zone": "z2"}))
    policy = RoundRobin(where={"zone": "in(z1,z2)"})
    refusal = _refusal(policy, snap, request)
    assert refusal.rule == errors.NO_MATCHING_NODES
    ask = capacity_ask(policy, snap, request, refusal)
    assert ask.bundles == ({"CPU": 16.0, "accel": 1.0},)
    assert ask.selectors == ({"zone": "z2"},)  # the demand's own condition on zone wins
    assert "no node can hold it" in ask.describe()


def test_refusals_a_new_node_cannot_end_ask_for_nothing():
    snap = _nodes((1, "z1"), (1, "z2"))
    skewed = AntiAffinity(max_skew=1, wait_for_nodes=5)
    for _ in range(2):
        skewed.decide(snap)
    request = Request(Demand({"CPU": 1}, labels={"zone": "z1"}))
    skewed.decide(snap, request.demand)
    refusal = _refusal(skewed, snap, request)
    assert refusal.rule == errors.SKEW_EXCEEDED
    assert capacity_ask(skewed, snap, request, refusal) is None
    with pytest.raises(PlacementError) as at_once:  # and the wait does not start
        autoscale.wait_for_nodes(skewed, request, snap, refusal, lambda: snap)
    assert at_once.value is refusal


@pytest.fixture
def asked(monkeypatch):
    sent: list[tuple[list, list | None]] = []
    monkeypatch.setattr(autoscale, "request_resources",
                        lambda bundles, bundle_label_selectors: sent.append(
                            (bundles, bundle_label_selectors)))
    monkeypatch.setattr(autoscale, "POLL_SECONDS", 0.001)
    return sent


def test_the_wait_ends_when_a_node_joins_and_clears_the_ask(asked):
    one, two = _nodes((1, "z1")), _nodes((1, "z1"), (1, "z2"))
    spread, request = AntiAffinity(wait_for_nodes=60), Request(Demand({"CPU": 1}))
    spread.commit(spread.propose(one, request))
    refusal = _refusal(spread, one, request)
    reads = iter([one, one, two])
    decision = autoscale.wait_for_nodes(spread, request, one, refusal, lambda: next(reads))
    assert decision.node.node_id == two.live[1].node_id  # the node that joined
    assert asked == [([{"CPU": 1.0}] * 2, None), ([], None)]  # asked, then cleared


def test_the_wait_is_bounded_and_says_what_it_asked_for(asked):
    snap = _nodes((1, "z1"))
    spread, request = AntiAffinity(wait_for_nodes=0.05), Request(Demand({"CPU": 1}))
    spread.commit(spread.propose(snap, request))
    refusal = _refusal(spread, snap, request)
    with pytest.raises(PlacementError) as timed_out:
        autoscale.wait_for_nodes(spread, request, snap, refusal, lambda: snap)
    assert timed_out.value.rule == errors.SPREAD_EXHAUSTED
    assert "asked Ray's autoscaler for 2 bundles of {'CPU': 1.0}" in timed_out.value.detail
    assert "waited 0.05 s" in timed_out.value.detail and "ray status" in timed_out.value.fix
    assert asked[-1] == ([], None)


def test_waiting_placements_send_the_union_of_their_asks(asked):
    from placement.policies.growth import CapacityAsk
    first = CapacityAsk(({"CPU": 1.0},), ({"zone": "z1"},), "x")
    second = CapacityAsk(({"CPU": 2.0},), ({},), "y")
    autoscale._publish(1, first)
    autoscale._publish(2, second)
    autoscale._publish(1, None)
    autoscale._publish(2, None)
    assert not autoscale._asks
    assert asked == [([{"CPU": 1.0}], [{"zone": "z1"}]),
                     ([{"CPU": 1.0}, {"CPU": 2.0}], [{"zone": "z1"}, {}]),
                     ([{"CPU": 2.0}], None), ([], None)]


def test_an_interrupt_while_asking_leaves_no_ask_behind(asked, monkeypatch):
    def interrupted(bundles, bundle_label_selectors):
        if bundles:
            raise KeyboardInterrupt
        asked.append((bundles, bundle_label_selectors))
    monkeypatch.setattr(autoscale, "request_resources", interrupted)
    snap = _nodes((1, "z1"))
    spread, request = AntiAffinity(wait_for_nodes=30), Request(Demand({"CPU": 1}))
    spread.commit(spread.propose(snap, request))
    with pytest.raises(KeyboardInterrupt):
        autoscale.wait_for_nodes(spread, request, snap, _refusal(spread, snap, request),
                                 lambda: snap)
    assert not autoscale._asks and asked == [([], None)]
