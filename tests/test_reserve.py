"""Reservations on the real 4-node cluster: all or nothing, pinned where the plan said (read
inside the work, and from Ray's placement group table), bounded, and leaving no group behind."""
from __future__ import annotations

import threading
from collections import Counter

import pytest
import ray
from ray.util import placement_group_table
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from placement import (
    Affinity,
    AntiAffinity,
    Local,
    Packing,
    PlacementError,
    RoundRobin,
    current_snapshot,
    errors,
)

from .conftest import SESSION_NODES

pytestmark = pytest.mark.cluster
LIVE = ("PENDING", "CREATED", "RESCHEDULING")  # states of a group that holds or wants capacity


@ray.remote(num_cpus=0)
def where() -> str:
    return ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=1)
class Worker:
    def where(self) -> str:
        return ray.get_runtime_context().get_node_id()


@pytest.fixture
def labels(ray_cluster):
    """node id -> label; and no placement group may be left holding or wanting capacity."""
    nodes = {n.node_id: n.label for n in current_snapshot(refresh=True).placeable}
    assert len(nodes) == SESSION_NODES
    yield nodes
    assert live_groups() == [], "a test left a placement group behind"


def live_groups() -> list[str]:
    return sorted(g["placement_group_id"] for g in placement_group_table().values()
                  if g["state"] in LIVE)


def state(reservation) -> str:
    return placement_group_table(reservation.placement_group)["state"]


def pinned(reservation) -> list[str]:
    """Where Ray put each bundle (its table), in bundle order."""
    found = placement_group_table(reservation.placement_group)["bundles_to_node_id"]
    return [found[i] for i in range(len(reservation.bundles))]


def test_strict_spread_reserves_four_distinct_nodes_and_the_gang_runs_there(labels):
    gang = AntiAffinity().reserve(4, num_cpus=1)
    try:
        assert state(gang) == "CREATED"
        assert len(set(gang.nodes)) == 4 and set(gang.nodes) == set(labels)
        # Ray's default PACK would put two 1-CPU bundles on each 2-CPU node: the pins decide.
        assert pinned(gang) == list(gang.nodes)
        workers = [gang.place(Worker).remote() for _ in range(4)]
        ran = ray.get([w.where.remote() for w in workers], timeout=120)
        assert ran == list(gang.nodes)  # read inside each actor
        with pytest.raises(PlacementError) as fifth:
            gang.place(Worker).remote()
        assert fifth.value.rule == errors.RESERVATION_USED_UP
    finally:
        gang.release()
    assert state(gang) == "REMOVED"
    # Removing the group ended the actors in it (Ray's doing): say so in the docs.
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(workers[0].where.remote(), timeout=60)


def test_more_than_the_nodes_is_refused_by_the_plan_before_any_group_exists(labels):
    before = len(placement_group_table())
    with pytest.raises(PlacementError) as refused:
        AntiAffinity().reserve(5, num_cpus=1)
    assert refused.value.rule == errors.SPREAD_EXHAUSTED
    assert len(placement_group_table()) == before  # no group was created, not even removed


def hold_one_cpu_per_node(labels) -> list:
    holders = [Worker.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False))
               .remote() for n in labels]
    ray.get([h.where.remote() for h in holders], timeout=120)
    return holders


def test_a_group_that_cannot_be_reserved_times_out_naming_the_nodes_and_leaves_nothing(labels):
    holders = hold_one_cpu_per_node(labels)  # 1 of each node's 2 CPUs
    before = set(placement_group_table())
    try:
        with pytest.raises(PlacementError) as refused:
            AntiAffinity().reserve(4, num_cpus=2, timeout=3)
    finally:
        for holder in holders:
            ray.kill(holder)
    error = refused.value
    assert error.rule == errors.RESERVATION_TIMEOUT
    assert "not ready after 3 s" in error.detail
    assert sorted(error.nodes) == sorted(labels.values())
    for label in labels.values():
        assert f"{label} (bundle" in error.detail
    assert "asks {'CPU': 2.0} and has {'CPU': 1.0} free" in error.detail
    new = [placement_group_table()[g] for g in set(placement_group_table()) - before]
    assert [g["state"] for g in new] == ["REMOVED"]  # it existed, and it is gone


def test_two_reservations_racing_for_the_same_capacity_one_whole_the_other_nothing(labels):
    outcomes: list = []

    def take_every_cpu() -> None:
        try:
            outcomes.append(AntiAffinity().reserve(4, num_cpus=2, timeout=10))
        except PlacementError as refusal:
            outcomes.append(refusal)

    threads = [threading.Thread(target=take_every_cpu) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    won = [o for o in outcomes if not isinstance(o, PlacementError)]
    lost = [o for o in outcomes if isinstance(o, PlacementError)]
    try:
        assert len(won) == 1 and len(lost) == 1
        assert lost[0].rule == errors.RESERVATION_TIMEOUT
        assert all(pinned(won[0]))  # every bundle of the winner placed, on its planned node
        assert pinned(won[0]) == list(won[0].nodes)
        assert live_groups() == [won[0].placement_group.id.hex()]  # the loser holds nothing
    finally:
        for reservation in won:
            reservation.release()


def test_the_context_manager_removes_the_group(labels):
    with RoundRobin().reserve(2, num_cpus=0) as pair:
        assert state(pair) == "CREATED" and pair.bundles == ({"memory": 1.0},) * 2
        ran = ray.get([pair.place(where).remote() for _ in range(2)], timeout=120)
        assert ran == list(pair.nodes)  # a zero-CPU demand's one-byte bundles pin as well
    assert state(pair) == "REMOVED" and pair.released


def test_packing_and_round_robin_reservations_land_where_planned(labels):
    with Packing().reserve(4, groups=["a", "a", "b", "b"], num_cpus=0.5) as packed, \
            RoundRobin().reserve(8, num_cpus=0.5) as spread:
        for reservation in (packed, spread):
            ran = ray.get([reservation.place(where).remote() for _ in reservation.bundles],
                          timeout=120)
            assert ran == list(reservation.nodes) == pinned(reservation)
        a, b = packed.nodes[:2], packed.nodes[2:]
        assert len(set(a)) == 1 and len(set(b)) == 1 and a[0] != b[0]
        # Without the pins Ray's PACK would fill two nodes with the eight half-CPU bundles.
        assert Counter(spread.nodes) == {node: 2 for node in labels}


def test_affinity_local_and_a_label_selector_choose_the_nodes_reserved(labels):
    by_label = {label: node for node, label in labels.items()}
    with Affinity("node2").reserve(2, num_cpus=1) as beside, \
            AntiAffinity().reserve(2, num_cpus=0,
                                   label_selector={"placement.node": "in(node1,node3)"}) as some:
        assert beside.nodes == (by_label["node2"],) * 2
        assert ray.get([beside.place(where).remote() for _ in range(2)],
                       timeout=120) == list(beside.nodes)
        assert sorted(labels[n] for n in some.nodes) == ["node1", "node3"]
        assert ray.get([some.place(where).remote() for _ in range(2)],
                       timeout=120) == list(some.nodes)
    with Local().reserve(2, num_cpus=0.5) as here:  # the driver's node
        assert here.nodes == (ray.get_runtime_context().get_node_id(),) * 2
        assert ray.get([here.place(where).remote() for _ in range(2)],
                       timeout=120) == list(here.nodes)


def test_a_failed_submission_gives_its_bundle_back(labels):
    keep = Worker.options(name="reserve-taken", num_cpus=0).remote()
    try:
        with AntiAffinity().reserve(2, num_cpus=1) as pair:
            with pytest.raises(TypeError):  # Ray cannot pickle the argument
                pair.place(where).remote(threading.Lock())
            with pytest.raises(ValueError):  # Ray refuses the taken name
                pair.place(Worker, name="reserve-taken").remote()
            assert pair.free == 2
            workers = [pair.place(Worker).remote() for _ in range(2)]
            ran = ray.get([w.where.remote() for w in workers], timeout=120)
            assert ran == list(pair.nodes)  # bundle 0 went to the first call that worked
    finally:
        ray.kill(keep)


def test_work_that_does_not_fit_its_bundle_is_refused_before_submitting(labels):
    with AntiAffinity().reserve(2, num_cpus=1) as pair:
        with pytest.raises(PlacementError) as refused:
            pair.place(Worker, num_cpus=2)
        assert refused.value.rule == errors.BAD_OPTIONS
        assert pair.free == 2
