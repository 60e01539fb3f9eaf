"""Label filters (``where=``) on every policy. No Ray.

The oracle evaluates the generated conditions itself, from the generator's draws, by the rule
Ray documents (and Kubernetes' NotIn follows): a node without the key satisfies the negative forms
and not the positive ones.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placement import errors
from placement.errors import PlacementError
from placement.naming import LABEL_KEY
from placement.options import (
    NODE_ID_LABEL,
    asks_nothing,
    check_label_selector,
    check_user_options,
    demand_of,
    effective_options,
    merged_options,
    placement_options,
)
from placement.policies import (
    AUTO,
    NODE_ID,
    Affinity,
    AntiAffinity,
    Demand,
    LeastLoaded,
    Packing,
    Request,
    RoundRobin,
)
from placement.policies.selector import LabelFilter
from placement.snapshot import ClusterSnapshot

from .thoroughness import examples

PROPERTY = settings(max_examples=examples(200), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
ZONES = ("z0", "z1", "z2")


def satisfies(labels: dict, conditions: list[tuple[str, str, tuple[str, ...]]]) -> bool:
    for key, op, values in conditions:
        has = key in labels and labels[key] in values
        if has != (op in ("eq", "in")):
            return False
    return True


def as_where(conditions) -> dict[str, str]:
    forms = {"eq": "{}", "ne": "!{}", "in": "in({})", "notin": "!in({})"}
    return {key: forms[op].format(",".join(values)) for key, op, values in conditions}


_CONDITION = st.tuples(
    st.sampled_from(["zone", "tier"]), st.sampled_from(["eq", "ne", "in", "notin"]),
    st.lists(st.sampled_from(ZONES + ("gold", "spot")), min_size=1, max_size=3, unique=True)
    .map(tuple),
)
conditions = st.lists(_CONDITION, min_size=1, max_size=2, unique_by=lambda c: c[0]).map(
    lambda cs: [(k, op, vals if op in ("in", "notin") else vals[:1]) for k, op, vals in cs])


@st.composite
def clusters(draw):
    nodes = []
    for i in range(draw(st.integers(1, 12))):
        labels = {NODE_ID_LABEL: f"{i:056x}"}
        zone, tier = draw(st.sampled_from(ZONES + (None,))), draw(st.sampled_from(
            ("gold", "spot", None)))
        if zone:
            labels["zone"] = zone
        if tier:
            labels["tier"] = tier
        labelled = draw(st.booleans())
        if labelled:
            labels[LABEL_KEY] = f"node{i}"
        nodes.append({"id": f"{i:056x}", "label": f"node{i}" if labelled else None,
                      "address": f"127.0.0.{10 + i}", "alive": i == 0 or draw(st.booleans()),
                      "labels": labels, "resources": {"CPU": 2}})
    return ClusterSnapshot.from_dicts(nodes)


POLICIES = {
    "round robin": lambda where, backend: RoundRobin(where=where, backend=backend),
    "soft spread": lambda where, backend: AntiAffinity(where=where, strict=False,
                                                       backend=backend),
    "soft packing": lambda where, backend: Packing(where=where, strict=False, backend=backend),
    "affinity": lambda where, backend: Affinity(where=where, backend=backend),
}


@PROPERTY
@given(clusters(), conditions, st.sampled_from(sorted(POLICIES)), st.sampled_from([AUTO, NODE_ID]),
       st.integers(1, 20))
def test_policies_choose_only_nodes_the_filter_keeps_and_refuse_exactly_when_none(
        snap, conds, name, backend, k):
    policy = POLICIES[name](as_where(conds), backend)
    kept = {n.node_id for n in snap.live if satisfies(dict(n.labels), conds)}
    for i in range(k):
        if not kept:
            with pytest.raises(PlacementError) as refused:
                policy.decide(snap, group=i % 3)
            assert refused.value.rule == errors.NO_MATCHING_NODES
            assert "zone" in refused.value.detail or "tier" in refused.value.detail
            return
        decision = policy.decide(snap, group=i % 3)
        assert decision.node.node_id in kept
        assert decision.where == LabelFilter(as_where(conds))


def test_auto_decides_among_the_kept_nodes_only():
    """auto: node<i> resources when every node the filter keeps has one, whatever the others."""
    snap = ClusterSnapshot.from_dicts([
        {"id": "a", "label": "node0", "labels": {"zone": "z1"}},
        {"id": "b", "label": "node1", "labels": {"zone": "z1"}},
        {"id": "c", "address": "127.0.0.12", "labels": {"zone": "z2"}},  # plain ray start
    ])
    assert RoundRobin(where={"zone": "z1"}).decide(snap).backend == "resource"
    assert RoundRobin(where={"zone": "in(z1,z2)"}).decide(snap).backend == "node_id"


@pytest.mark.parametrize("where, fix", [
    ({}, "non-empty dict"),
    ("zone=z1", "non-empty dict"),
    ({"zone": "in(z1"}, "in(a,b)"),
    ({"zone": "z 1"}, "in(a,b)"),
    ({"zone": 3}, "not a string"),
    ({"bad key!": "z1"}, "ray.io/availability-zone"),
    ({"zone": "-z1"}, "in(a,b)"),
])
def test_a_bad_filter_is_refused_when_the_policy_is_made(where, fix):
    with pytest.raises((TypeError, ValueError), match="where") as refused:
        RoundRobin(where=where)
    assert fix in str(refused.value)


def test_filters_are_values():
    assert LabelFilter({"zone": "in(z1,z2)", "tier": "!spot"}) == \
        LabelFilter({"tier": "!spot", "zone": "in(z1,z2)"})
    assert len({LabelFilter({"zone": "z1"}), LabelFilter({"zone": "z1"})}) == 1
    policy = AntiAffinity(where={"zone": "z1"})
    assert policy.clone().where == policy.where and "where={'zone': 'z1'}" in repr(policy)


def test_soft_placements_fall_back_only_to_nodes_the_filter_keeps():
    snap = ClusterSnapshot.from_dicts([
        {"id": "a" * 56, "label": "node0",
         "labels": {"zone": "z1", LABEL_KEY: "node0", NODE_ID_LABEL: "a" * 56}},
        {"id": "b" * 56, "address": "127.0.0.11",
         "labels": {"zone": "z1", NODE_ID_LABEL: "b" * 56}},
    ])
    labelled = RoundRobin(soft=True, where={"zone": "z1"}, backend="resource").decide(snap)
    assert placement_options(labelled) == {
        "label_selector": {LABEL_KEY: "node0"},
        "fallback_strategy": [{"label_selector": {"zone": "z1", LABEL_KEY: "!node0"}}]}
    plain = Affinity("b" * 56, soft=True, where={"zone": "z1"}).decide(snap)
    assert placement_options(plain) == {
        "label_selector": {NODE_ID_LABEL: "b" * 56},
        "fallback_strategy": [{"label_selector": {"zone": "z1"}}]}


def test_gone_placements_fall_back_inside_the_filter_and_the_users_selector():
    """soft="gone" (the balance policies' default): soft node affinity with the filter's and
    the user's label_selector beside it (Ray keeps the fallback inside it: measured in
    tests/test_soft_semantics.py); work that asks for no resources gets the label form, as Ray
    ignores soft node affinity for an empty actor request."""
    snap = ClusterSnapshot.from_dicts([
        {"id": "a" * 56, "label": "node0",
         "labels": {"zone": "z1", LABEL_KEY: "node0", NODE_ID_LABEL: "a" * 56}},
        {"id": "b" * 56, "label": "node1",
         "labels": {"zone": "z2", LABEL_KEY: "node1", NODE_ID_LABEL: "b" * 56}},
    ])
    anywhere = RoundRobin().decide(snap)
    assert anywhere.soft == "gone" and set(placement_options(anywhere)) == {
        "scheduling_strategy"}
    strategy = placement_options(anywhere)["scheduling_strategy"]
    assert (strategy.node_id, strategy.soft) == (anywhere.node.node_id, True)
    inside = RoundRobin(where={"zone": "z1"}).decide(snap)
    options = merged_options({"num_cpus": 1, "label_selector": {"disk": "ssd"}}, inside)
    assert options["label_selector"] == {"disk": "ssd", "zone": "z1"}
    strategy = options["scheduling_strategy"]
    assert (strategy.node_id, strategy.soft) == ("a" * 56, True)
    for user, own in (({"num_cpus": 0}, {}), ({}, {"num_cpus": 0})):
        empty = merged_options(user, inside, own)
        assert "scheduling_strategy" not in empty and empty["label_selector"] == {
            LABEL_KEY: "node0"}
        assert empty["fallback_strategy"] == [{"label_selector": {"zone": "z1",
                                                                  LABEL_KEY: "!node0"}}]
    assert "fallback_strategy" not in merged_options({"num_cpus": 0, "num_gpus": 1}, inside)


def test_requests_with_a_demand_still_fit_inside_the_filter():
    snap = ClusterSnapshot.from_dicts([
        {"id": "a", "label": "node0", "labels": {"zone": "z1"}, "resources": {"CPU": 1}},
        {"id": "b", "label": "node1", "labels": {"zone": "z2"}, "resources": {"CPU": 8}},
    ])
    with pytest.raises(PlacementError) as refused:  # the big node is outside the filter
        RoundRobin(where={"zone": "z1"}).propose(snap, Request(Demand({"CPU": 4})))
    assert refused.value.rule == errors.RESOURCES_EXCEED_NODES


# -- reproductions from an adversarial review ------------------------------------------------------

def test_a_filter_cannot_be_changed_and_pickles_as_a_value():
    import pickle

    policy = RoundRobin(where={"zone": "z1"})
    with pytest.raises(TypeError):
        policy.where.selector["zone"] = "z2"  # type: ignore[index]
    with pytest.raises(AttributeError):
        policy.where._conditions = ()  # type: ignore[misc]
    copy = pickle.loads(pickle.dumps(policy.where))
    assert copy == policy.where and hash(copy) == hash(policy.where)


@pytest.mark.parametrize("where", [
    {".".join(["a" * 63] * 4) + "/zone": "z1"},  # a prefix over Ray's 253 characters
    {1: "a", "zone": "z1"},  # keys of mixed types
])
def test_keys_ray_would_refuse_are_refused_with_the_fix(where):
    with pytest.raises(ValueError, match="where has the label key"):
        RoundRobin(where=where)


def test_a_live_target_outside_the_filter_is_named_as_such():
    snap = ClusterSnapshot.from_dicts([
        {"id": "a" * 56, "label": "node0", "labels": {"zone": "z1"}},
        {"id": "b" * 56, "label": "node1", "labels": {"zone": "z2"}},
    ])
    from placement.policies import Local

    for refuse in (lambda: Local(where={"zone": "z1"}).decide(snap, caller_node_id="b" * 56),
                   lambda: Affinity("node1", where={"zone": "z1"}).decide(snap)):
        with pytest.raises(PlacementError) as refused:
            refuse()
        assert refused.value.rule == errors.NO_MATCHING_NODES
        assert "node1 is live but outside where" in refused.value.detail


def test_soft_takes_only_the_documented_values():
    from unittest import mock

    with pytest.raises(TypeError, match="'busy' or 'gone'"):
        RoundRobin(soft=mock.ANY)


# -- a user's own label_selector= (part of the demand) --------------------------------------------


def _zoned() -> ClusterSnapshot:
    return ClusterSnapshot.from_dicts([
        {"id": "a" * 56, "label": "node0",
         "labels": {"zone": "z1", LABEL_KEY: "node0", NODE_ID_LABEL: "a" * 56}},
        {"id": "b" * 56, "label": "node1",
         "labels": {"zone": "z2", LABEL_KEY: "node1", NODE_ID_LABEL: "b" * 56}},
        {"id": "c" * 56, "label": "node2",
         "labels": {"zone": "z2", LABEL_KEY: "node2", NODE_ID_LABEL: "c" * 56}}])


def test_a_label_selector_in_the_demand_restricts_every_policy():
    snap, in_z2 = _zoned(), Demand({"CPU": 0}, labels={"zone": "z2"})
    assert {RoundRobin().decide(snap, in_z2).node_name for _ in range(4)} == {"node1", "node2"}
    apart = AntiAffinity()
    assert [apart.decide(snap, in_z2).node_name for _ in range(2)] == ["node1", "node2"]
    assert apart.decide(snap).node_name == "node0"  # the same ledger, without the selector
    assert Packing().decide(snap, in_z2, group="g").node_name == "node1"
    with pytest.raises(PlacementError) as outside:  # a target the selector excludes
        Affinity("node0").decide(snap, in_z2)
    assert outside.value.rule == errors.NO_MATCHING_NODES
    with pytest.raises(PlacementError) as nowhere:
        RoundRobin().decide(snap, Demand(labels={"zone": "z9"}))
    assert nowhere.value.rule == errors.NO_MATCHING_NODES and "z1, z2" in nowhere.value.detail
    assert Demand(labels={"zone": "z2"}) != Demand() and repr(in_z2) == \
        "Demand({}, labels={'zone': 'z2'})"


def test_a_users_label_selector_is_passed_on_and_kept_by_soft_fallbacks():
    snap, asked = _zoned(), {"zone": "z2"}
    need = Demand(labels=asked)
    hard = RoundRobin(backend="label", soft=False).decide(snap, need)
    assert merged_options({"label_selector": asked}, hard)["label_selector"] == {
        "zone": "z2", LABEL_KEY: hard.node_name}
    pinned = RoundRobin(backend="node_id", soft=False).decide(snap, need)
    assert merged_options({"label_selector": asked}, pinned)["label_selector"] == asked
    soft = RoundRobin(soft=True).decide(snap, need)
    merged = merged_options({}, soft, defaults={"label_selector": asked})  # @ray.remote's own
    assert merged["label_selector"] == {"zone": "z2", LABEL_KEY: soft.node_name}
    assert merged["fallback_strategy"] == [
        {"label_selector": {LABEL_KEY: f"!{soft.node_name}", "zone": "z2"}}]


def test_label_selector_none_drops_the_functions_own_as_in_ray():
    snap = _zoned()
    own, user = {"label_selector": {"zone": "z1"}}, {"label_selector": None}
    policy, demand = RoundRobin(soft=True), demand_of({**own, **user, "num_cpus": 0})
    assert demand.where is None
    for _ in range(3):
        decision = policy.decide(snap, demand)
        assert merged_options(user, decision, own)["label_selector"] == {
            LABEL_KEY: decision.node_name}  # never a zone no chosen node has


def test_selectors_ray_takes_are_taken_and_equal_conditions_agree():
    check_user_options({"label_selector": {}})
    assert demand_of({"label_selector": {}}).where is None
    check_label_selector({"zone": "in(z2,z1)"}, [LabelFilter({"zone": "in(z1,z2)"})])
    with pytest.raises(PlacementError):
        check_label_selector({"zone": "in(z2,z3)"}, [LabelFilter({"zone": "in(z1,z2)"})])


def test_demands_pickle_and_copy_as_values():
    import copy
    import pickle
    need = Demand({"CPU": 1}, labels={"zone": "in(z1,z2)"})
    assert pickle.loads(pickle.dumps(need)) == need and copy.deepcopy(need) == need
    assert pickle.loads(pickle.dumps(Demand({"CPU": 2}))) == Demand({"CPU": 2})


def test_an_all_of_tells_ray_every_members_filter_and_pins_as_its_first_hard_member():
    snap = ClusterSnapshot.from_dicts([
        {"id": "a" * 56, "label": "node0",
         "labels": {"zone": "z1", "disk": "ssd", LABEL_KEY: "node0", NODE_ID_LABEL: "a" * 56}},
        {"id": "b" * 56, "label": "node1",
         "labels": {"zone": "z2", "disk": "ssd", LABEL_KEY: "node1", NODE_ID_LABEL: "b" * 56}},
    ])
    both = LeastLoaded(where={"disk": "ssd"}) & RoundRobin(where={"zone": "z1"})
    decision = both.decide(snap)
    assert decision.soft == "gone" and decision.node_name == "node0"
    assert merged_options({"num_cpus": 1}, decision)["label_selector"] == {
        "disk": "ssd", "zone": "z1"}
    assert merged_options({"num_cpus": 0}, decision)["fallback_strategy"] == [
        {"label_selector": {"disk": "ssd", "zone": "z1", LABEL_KEY: "!node0"}}]
    # One label filtered two ways cannot be one Ray selector: the placement is hard instead.
    split = RoundRobin(where={"zone": "in(z1,z2)"}) & LeastLoaded(where={"zone": "!z2"})
    hard = split.decide(snap)
    assert hard.soft is False and hard.backend == NODE_ID
    assert merged_options({}, hard)["scheduling_strategy"].soft is False
    # Hard because of a hard member: pinned as that member pins (its pin was checked).
    pinned = (RoundRobin(pin_amount=2000) & AntiAffinity()).decide(snap)
    assert pinned.soft is False and pinned.pin_amount == AntiAffinity().pin_amount


def test_work_that_asks_for_something_is_not_taken_for_empty():
    assert asks_nothing({"num_cpus": 0}) and asks_nothing({"num_cpus": 0, "memory": 0})
    for asks in ({"num_cpus": 0, "accelerator_type": "A100"},
                 {"num_cpus": 0, "object_store_memory": 2**20},
                 {"num_cpus": 0, "resources": {"accel": 1}}, {}):
        assert not asks_nothing(asks), asks


def test_the_functions_own_resources_are_kept_and_checked_whatever_the_pin():
    own, user = {"resources": {"accel": 1}}, {"resources": {"disk": 1}}
    assert effective_options(user, own)["resources"] == {"accel": 1, "disk": 1}
    assert demand_of(effective_options(user, own)).as_dict() == {
        "CPU": 1.0, "accel": 1.0, "disk": 1.0}
    snap = ClusterSnapshot.from_dicts([{"id": "a" * 56, "label": "node0"}])
    for policy in (RoundRobin(), RoundRobin(soft=True), RoundRobin(soft=False)):
        sent = merged_options(user, policy.decide(snap), own)
        assert {"accel", "disk"} <= set(sent["resources"]), (policy, sent)


def test_an_unplaced_retry_keeps_to_the_policys_filter():
    class Recorder:
        def options(self, **options):
            return options

    handle = RoundRobin(where={"zone": "z1"}).place(lambda: None, label_selector={"disk": "ssd"})
    handle._fn = Recorder()
    assert handle.unplaced(LabelFilter({"zone": "z1"}))["label_selector"] == {
        "zone": "z1", "disk": "ssd"}
    assert handle.unplaced()["label_selector"] == {"disk": "ssd"}


def test_resources_given_empty_drop_the_functions_own_as_in_ray_and_accelerators_count():
    own = {"resources": {"accel": 1}}
    for user in ({"resources": {}}, {"resources": None}):
        assert "accel" not in (effective_options(user, own).get("resources") or {})
        snap = ClusterSnapshot.from_dicts([{"id": "a" * 56, "label": "node0"}])
        sent = merged_options(user, RoundRobin(soft=False).decide(snap), own)
        assert "accel" not in sent["resources"], sent
    asked = demand_of({"accelerator_type": "A100"}).as_dict()
    assert asked["accelerator_type:A100"] > 0 and not asks_nothing(
        {"num_cpus": 0, "accelerator_type": "A100"})


def test_one_condition_spelled_two_ways_keeps_an_all_of_soft():
    snap = ClusterSnapshot.from_dicts([
        {"id": "a" * 56, "label": "node0",
         "labels": {"zone": "z1", LABEL_KEY: "node0", NODE_ID_LABEL: "a" * 56}}])
    both = RoundRobin(where={"zone": "in(z1,z2)"}) & LeastLoaded(where={"zone": "in(z2, z1)"})
    assert both.decide(snap).soft == "gone"


def test_max_calls_is_left_to_the_function_and_refused_beside_a_deadline():
    import ray

    @ray.remote(max_calls=1)
    def once():
        return 1

    handle = RoundRobin().place(once)
    handle.unplaced()  # Ray refuses max_calls in .options(): it must not be passed
    with pytest.raises(ValueError, match="max_calls"):
        RoundRobin().place(once, pending_timeout=5)
