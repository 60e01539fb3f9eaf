"""Reservations without Ray: bundles from a plan (pinning per node, demand shapes, zero CPU),
what a timed-out group names, the bundle hand-out, and bad input refused before anything is
created (the real cluster tests are in test_reserve.py)."""
from __future__ import annotations

import math
from collections import Counter

import pytest
import ray

from placement import AntiAffinity, Demand, Packing, PlacementError, RoundRobin, errors
from placement.policies.bundles import (
    NODE_ID_LABEL,
    ZERO_DEMAND_BUNDLE,
    bundle_resources,
    bundles_of,
    check_reservation,
    missing,
    timeout_error,
)
from placement.reserve import Reservation
from placement.snapshot import ClusterSnapshot

IDS = [c * 56 for c in "abcd"]


def snapshot(free=None):
    free = free or {}
    return ClusterSnapshot.from_dicts([
        {"id": IDS[i], "label": f"node{i}", "labels": {"placement.node": f"node{i}"},
         "resources": {"CPU": 2, "accel": 1, "memory": 1e9},
         **({"available": free[i]} if i in free else {})} for i in range(4)])


SNAP = snapshot()


def test_each_bundle_is_pinned_to_its_planned_node_by_node_id_label():
    plan = AntiAffinity().plan(SNAP, 4, {"CPU": 1})
    resources, selectors = bundles_of(plan, Demand({"CPU": 1}))
    assert resources == [{"CPU": 1.0}] * 4
    assert selectors == [{NODE_ID_LABEL: d.node.node_id} for d in plan.decisions]
    assert sorted(s[NODE_ID_LABEL] for s in selectors) == IDS  # four distinct nodes


def test_bundles_follow_the_plan_order_for_packing_and_round_robin():
    groups = ["a", "a", "b", "b"]
    plan = Packing().plan(SNAP, 4, {"CPU": 0.5}, groups=groups)
    _, selectors = bundles_of(plan, Demand({"CPU": 0.5}))
    nodes = [s[NODE_ID_LABEL] for s in selectors]
    assert nodes[0] == nodes[1] and nodes[2] == nodes[3] and nodes[0] != nodes[2]
    plan = RoundRobin(seed=2).plan(SNAP, 8, {"CPU": 0.5})
    _, selectors = bundles_of(plan, Demand({"CPU": 0.5}))
    assert [s[NODE_ID_LABEL] for s in selectors] == [d.node.node_id for d in plan.decisions]
    assert Counter(s[NODE_ID_LABEL] for s in selectors) == {i: 2 for i in IDS}


@pytest.mark.parametrize(("demand", "bundle"), [
    (Demand({"CPU": 2}), {"CPU": 2.0}),
    (Demand({"CPU": 1, "accel": 1}), {"CPU": 1.0, "accel": 1.0}),
    (Demand({"CPU": 0.5, "GPU": 1, "memory": 2**20}), {"CPU": 0.5, "GPU": 1.0, "memory": 2.0**20}),
    (Demand({"accel": 1}), {"accel": 1.0}),  # num_cpus=0 with a custom resource: that alone
    (Demand({"CPU": 1}, labels={"zone": "z1"}), {"CPU": 1.0}),  # labels plan; they hold nothing
])
def test_a_bundle_holds_what_one_placement_needs(demand, bundle):
    assert bundle_resources(demand) == bundle


def test_a_zero_cpu_demand_reserves_one_byte_of_memory():
    """Ray refuses a bundle of no resources; the zero demand holds the least anyone would miss."""
    assert bundle_resources(Demand({"CPU": 0})) == {"memory": 1.0} == dict(ZERO_DEMAND_BUNDLE)
    assert bundle_resources(Demand()) == {"memory": 1.0}
    plan = AntiAffinity().plan(SNAP, 2, {"CPU": 0})
    assert bundles_of(plan, Demand({"CPU": 0}))[0] == [{"memory": 1.0}] * 2


def test_a_refused_plan_has_no_bundles_it_raises_its_refusal():
    plan = AntiAffinity().plan(SNAP, 5)
    with pytest.raises(PlacementError) as refused:
        bundles_of(plan, Demand({"CPU": 1}))
    assert refused.value.rule == errors.SPREAD_EXHAUSTED


def test_a_timed_out_group_names_each_short_node_what_it_asked_and_has_free():
    snap = snapshot(free={1: {"CPU": 1.0}, 2: {"CPU": 0.0}})
    nodes = [snap.by_id[i] for i in IDS]
    error = timeout_error(3.0, nodes, [{"CPU": 2.0}] * 4, snap)
    assert error.rule == errors.RESERVATION_TIMEOUT
    assert error.nodes == ("node1", "node2")
    assert "not ready after 3 s" in error.detail
    assert "node1 (bundle 1) asks {'CPU': 2.0} and has {'CPU': 1.0} free" in error.detail
    assert "node2 (bundle 2) asks {'CPU': 2.0} and has {'CPU': 0.0} free" in error.detail
    assert "node0 (" not in error.detail and "node3 (" not in error.detail  # they had room
    assert "timeout=" in error.fix


def test_bundles_on_one_node_are_counted_together_and_a_gone_node_is_named():
    snap = snapshot()
    node0 = snap.by_id[IDS[0]]
    lines, names = missing([node0, node0], [{"CPU": 1.5}, {"CPU": 1.5}], snap)
    assert lines == ["node0 (bundles 0, 1) asks {'CPU': 3.0} and has {'CPU': 2.0} free"]
    assert names == ["node0"]
    later = ClusterSnapshot.from_dicts([{"id": IDS[1], "label": "node1"}])
    assert missing([node0], [{"CPU": 1}], later) == (["node0 (bundle 0) is gone"], ["node0"])


def test_a_timeout_with_room_everywhere_says_so():
    error = timeout_error(2.0, [SNAP.by_id[IDS[0]]], [{"CPU": 1.0}], SNAP)
    assert "every planned node has the room now" in error.detail
    assert error.nodes == ("node0",)


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "4", None])
def test_n_must_be_a_positive_whole_number(n):
    with pytest.raises(ValueError, match="n must be a whole number of bundles >= 1"):
        check_reservation(n, 30)


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, True, "3", None, 86_401])
def test_timeout_must_be_positive_seconds(timeout):
    with pytest.raises(ValueError, match="timeout must be seconds more than 0"):
        check_reservation(2, timeout)


def test_groups_must_give_one_key_per_bundle():
    with pytest.raises(ValueError, match="one key per bundle"):
        check_reservation(3, 30, ["a", "b"])
    with pytest.raises(TypeError, match="groups must be a list"):
        check_reservation(2, 30, "ab")


@pytest.mark.parametrize(("call", "error", "text"), [
    (lambda: AntiAffinity().reserve(0), ValueError, "n must be"),
    (lambda: AntiAffinity().reserve(2, timeout=0), ValueError, "timeout must be"),
    (lambda: AntiAffinity().reserve(2, scheduling_strategy="SPREAD"), PlacementError,
     "drop scheduling_strategy="),
    (lambda: AntiAffinity().reserve(2, placement_group=object()), PlacementError,
     "drop placement_group="),
    (lambda: AntiAffinity().reserve(2, placement_group_bundle_index=0), PlacementError,
     "drop placement_group_bundle_index="),
    (lambda: AntiAffinity().reserve(2, {"CPU": 1}, num_cpus=1), ValueError,
     "give the demand once"),
    (lambda: AntiAffinity().reserve(2, max_retries=3), TypeError,
     r"give it to reservation.place\(fn, max_retries=...\)"),
    (lambda: AntiAffinity().reserve(2, num_cpu=1), TypeError, "did you mean num_cpus="),
    (lambda: AntiAffinity().reserve(2, num_cpus=-1), ValueError, "num_cpus must be"),
    (lambda: AntiAffinity().reserve(2, resources={"CPU": 1}), ValueError, "num_cpus="),
    (lambda: Packing().reserve(2), ValueError, r"groups=\['a', 'a', 'b', 'b'\]"),
    (lambda: Packing().reserve(2, groups=[["a"], "b"]), TypeError, "group must be hashable"),
    (lambda: AntiAffinity(where={"zone": "z1"}).reserve(2, label_selector={"zone": "z2"}),
     PlacementError, "both constrain 'zone'"),
])
def test_bad_input_is_refused_before_anything_is_created(call, error, text):
    """Refused before the cluster is read: here no Ray is connected at all (a call that got as
    far as reading the cluster would raise ClusterNotFoundError instead)."""
    connected = ray.is_initialized()
    with pytest.raises(error, match=text):
        call()
    assert ray.is_initialized() == connected


def reservation(n=3, demand=None):
    plan = AntiAffinity().plan(SNAP, n, demand)
    return Reservation(None, plan, bundles_of(plan, Demand(demand))[0])


def test_bundles_are_handed_out_in_plan_order_and_a_failed_one_comes_back():
    held = reservation()
    assert [held._take(), held._take()] == [0, 1]
    held._give_back(0)  # its submission failed: the next call uses it
    assert [held._take(), held._take()] == [0, 2]
    with pytest.raises(PlacementError) as used_up:
        held._take()
    assert used_up.value.rule == errors.RESERVATION_USED_UP
    assert "all 3 bundles" in used_up.value.detail


def test_release_is_idempotent_and_ends_the_hand_out(monkeypatch):
    removed = []
    monkeypatch.setattr("placement.reserve.remove_placement_group", removed.append)
    held = reservation()
    with held as entered:
        assert entered is held
    held.release()
    assert removed == [None] and held.released and held.free == 0
    with pytest.raises(RuntimeError, match="released"):
        held._take()
    with pytest.raises(RuntimeError, match="released"):
        held.place(lambda: None)
    assert "released" in repr(held)


def test_the_reservation_shows_its_plan():
    held = reservation(2, {"CPU": 1})
    assert held.nodes == tuple(IDS[:2])
    assert held.bundles == ({"CPU": 1.0}, {"CPU": 1.0})
    assert repr(held) == ("Reservation(AntiAffinity(), 2 x {'CPU': 1.0} on node0, node1, "
                          "2 free)")


def work():
    return 1


class Worker:
    pass


@pytest.mark.parametrize(("fn", "options", "text"), [
    (work, {}, r"needs \{'CPU': 1.0\} \(a task without num_cpus= needs 1 CPU\)"),
    (Worker, {}, r"\(an actor without num_cpus= needs 1 CPU\)"),
    (work, {"num_cpus": 0, "resources": {"accel": 1}}, r"\['accel'\] do not fit"),
])
def test_work_that_does_not_fit_a_bundle_is_refused_naming_the_fix(fn, options, text):
    held = reservation(2, {"CPU": 0})  # bundles of one byte of memory
    with pytest.raises(PlacementError, match=text) as refused:
        held.place(fn, **options)
    assert refused.value.rule == errors.BAD_OPTIONS
    assert "policy.reserve(n, num_cpus=...)" in refused.value.fix


def test_work_that_fits_a_bundle_is_accepted():
    held = reservation(2, {"CPU": 1})
    held.place(work)  # 1 CPU by default: fits
    held.place(Worker, num_cpus=0.5)
    reservation(2, {"CPU": 0}).place(work, num_cpus=0)


@pytest.mark.parametrize("name", ["scheduling_strategy", "placement_group",
                                  "placement_group_bundle_index", "fallback_strategy"])
def test_place_refuses_options_the_reservation_sets(name):
    with pytest.raises(PlacementError, match=f"drop {name}= from place") as refused:
        reservation().place(work, **{name: "x"})
    assert refused.value.rule == errors.BAD_OPTIONS


def test_a_label_selector_must_match_every_bundles_node():
    held = reservation(2, {"CPU": 1})
    held.place(work, label_selector={"placement.node": "in(node0,node1)"})
    with pytest.raises(PlacementError, match="does not match the bundles on node1") as refused:
        held.place(work, label_selector={"placement.node": "node0"})
    assert refused.value.rule == errors.NO_MATCHING_NODES
