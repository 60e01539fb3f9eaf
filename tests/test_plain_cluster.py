"""Policies on a plain Ray cluster: nodes started by `ray start` with no node<i> resources and no
placement labels. Where work ran is read inside it."""
from __future__ import annotations

from collections import Counter

import pytest

from placement import errors
from placement.local_cluster import ClusterSpec, start_cluster, stop_cluster

from .conftest import free_port, new_state_dir, run_scenarios

pytestmark = pytest.mark.slow
NODES = 3


@pytest.fixture(scope="module")
def plain():
    state_dir = new_state_dir("plain")
    start_cluster(ClusterSpec(nodes=NODES, state_dir=state_dir, port=free_port(),
                              first_address="127.0.0.50", cpus_per_node=1, labelled=False,
                              node_labels=({"zone": "z1"}, {"zone": "z2"}, {})))
    try:
        return run_scenarios("plain_scenarios", state_dir, timeout=600)
    finally:
        stop_cluster(state_dir)


def test_the_cluster_really_is_plain(plain):
    assert len(plain["nodes"]) == NODES and plain["labelled"] == 0


def test_round_robin_by_node_id_spreads_evenly_reused_or_inline(plain):
    for counts in (plain["round_robin"], plain["inline"]):
        assert Counter(counts) == {node: 2 for node in plain["nodes"]}


def test_failed_submissions_do_not_use_up_strict_spread(plain):
    assert plain["failures"] == ["TypeError", "ActorAlreadyExistsError"]
    assert sorted(plain["replicas"]) == plain["nodes"]  # one replica on every node
    assert plain["extra_replica"] == errors.SPREAD_EXHAUSTED


def test_local_children_stay_on_their_parents_node(plain):
    parent_node, children = plain["local"]
    assert set(children) == {parent_node}


def test_the_resource_backend_refuses_a_plain_cluster_and_names_the_fix(plain):
    assert plain["resource_backend"] == errors.NO_LABELLED_NODES


def test_every_policy_works_by_default_on_a_cluster_without_setup(plain):
    """backend="auto": no node<i> resources here, so policies choose nodes by id (read inside
    the work: it ran where they said)."""
    nodes = plain["nodes"]
    assert plain["auto_backends"] == ["node_id"]
    assert sorted(plain["auto_round_robin"]) == nodes
    assert set(plain["auto_round_robin"].values()) == {2}  # two rounds, evenly
    assert sorted(plain["auto_replicas"]) == nodes  # one replica on every node
    a, b = plain["auto_groups"]["a"], plain["auto_groups"]["b"]
    assert len(a) == 1 and len(b) == 1 and a != b  # each group together, the groups apart
    assert len(plain["auto_affinity"]) == 1 and plain["auto_affinity"][0] in nodes


def test_where_filters_hold_on_a_plain_cluster(plain):
    zones = plain["zones"]
    by_zone = {zone: sorted(n for n, z in zones.items() if z == zone) for zone in ("z1", "z2")}
    assert plain["node_id_labels"]  # Ray 2.60 labels every node with its id
    assert plain["where_z1"] == by_zone["z1"]
    assert plain["where_not_z1"] == sorted(n for n, z in zones.items() if z != "z1")
    assert plain["where_z9"] == errors.NO_MATCHING_NODES
    # soft: each placement ran on the node it chose, inside the filter
    assert all(chosen == ran for chosen, ran in plain["where_soft"])
    assert {ran for _, ran in plain["where_soft"]} == set(by_zone["z1"] + by_zone["z2"])


def test_ray_treats_a_missing_label_as_satisfying_a_negative_selector(plain):
    """The fact where= builds on, checked on Ray itself: '!z1' matches a node without 'zone'."""
    assert plain["ray_not_z1"] == sorted(n for n, z in plain["zones"].items() if z != "z1")


def test_soft_on_an_unlabelled_busy_node_runs_elsewhere_and_gone_waits(plain):
    assert plain["soft_busy_True"] == {"spilled": True, "ran_on_busy_node": False}
    assert plain["soft_busy_gone"] == {"spilled": False, "ran_on_busy_node": True}


def _by_zone(plain, zone):
    return sorted(n for n, z in plain["zones"].items() if z == zone)


def test_a_users_label_selector_is_combined_with_the_policy(plain):
    z1, z2 = _by_zone(plain, "z1"), _by_zone(plain, "z2")
    assert Counter(plain["selector_rr"]) == {z1[0]: 2, z2[0]: 2}  # balanced over what it allows
    assert plain["selector_soft"] == z2
    assert plain["selector_z9"] == errors.NO_MATCHING_NODES  # refused before submitting
    assert plain["selector_contradicts"] == errors.BAD_OPTIONS


def test_topology_and_max_skew_on_zone_labels(plain):
    z1, z2 = _by_zone(plain, "z1"), _by_zone(plain, "z2")
    assert sorted(plain["topology_replicas"]) == sorted(z1 + z2)  # one per zone
    assert plain["topology_extra"] == errors.SPREAD_EXHAUSTED  # the zoneless node is no zone
    assert plain["skew_ran"] == [z1[0], z2[0], z1[0]]
    assert plain["skew_extra"] == errors.SKEW_EXCEEDED
    a, b = plain["zone_groups"]["a"], plain["zone_groups"]["b"]
    assert set(a) == set(z1) and set(b) == set(z2)  # each group in its zone, apart


def test_a_strict_spread_out_of_nodes_asks_ray_for_one_and_waits(plain):
    """wait_for_nodes=: Ray was asked (read back from Ray) for one more node than the 3 in use,
    the stand-in autoscaler started one, the 4th replica ran on it (read inside); the request
    was cleared after; with nothing to start a node the wait ended with the refusal."""
    assert plain["grow_asked"] == [{"CPU": 1.0}] * (NODES + 1)
    assert plain["grow_new_node"] == [False] * NODES + [True]
    assert plain["grow_cleared"] == [] and plain["grow_cleared_after_timeout"] == []
    assert plain["grow_timeout"] == [errors.SPREAD_EXHAUSTED, True]


def test_a_reservation_pins_by_node_id_on_a_cluster_without_setup(plain):
    """policy.reserve on plain nodes: bundles pinned by Ray's ray.io/node-id label, one replica
    per node ran where planned (read inside), a second gang for the same CPUs timed out whole."""
    assert sorted(plain["reserve_planned"]) == plain["nodes"]  # one bundle per node
    assert plain["reserve_ran"] == plain["reserve_planned"] == plain["reserve_table"]
    assert plain["reserve_second"] == errors.RESERVATION_TIMEOUT
    assert plain["reserve_second_states"] == ["REMOVED"]
    assert plain["reserve_released"] == "REMOVED"


def test_a_shared_ledger_spreads_two_owners_by_node_id(plain):
    assert sorted(plain["shared_ran"]) == plain["nodes"]  # read inside each replica
    assert plain["shared_extra"] == errors.SPREAD_EXHAUSTED


def test_least_loaded_and_locality_need_no_setup(plain):
    first, second = plain["least_loaded_waves"]
    assert first == second == sorted(plain["nodes"])  # one per node: idle nodes tie, in order
    assert plain["least_loaded_left"] == 0  # every finished task was released
    pairs = plain["locality_pairs"]
    assert all(made == ran for made, ran in pairs), pairs
    assert {made for made, _ in pairs} == set(plain["nodes"])
    assert plain["locality_fallbacks"] == 0  # Locality decided each, from the bytes it found
