"""Generated attacks on the pure policies: snapshot churn between decisions (nodes die, join,
change labels and free resources), several demands through one policy, available below totals,
failed submissions (rolled back), releases and stale snapshots. No Ray. (That a policy which saw
failed submissions decides exactly as one that never did is tests/test_twin.py.)

Each test states an invariant and checks it after every step against a model kept here from the
steps themselves (which nodes fit, what was committed), never from the policy's internals.
"""
from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placement import errors
from placement.errors import PlacementError
from placement.policies import (
    AUTO,
    NODE_ID,
    RESOURCE,
    AntiAffinity,
    Demand,
    LeastLoaded,
    Packing,
    Request,
    RoundRobin,
)
from placement.snapshot import ClusterSnapshot

from .thoroughness import examples

CORE = settings(max_examples=examples(300), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# The demands one policy serves, interleaved: CPU only, CPU plus an accelerator, a big CPU ask,
# nothing at all, and CPU on nodes of zones z0 or z1 (a user's label_selector).
IN_Z0_Z1 = Demand({"CPU": 1}, labels={"zone": "in(z0,z1)"})
DEMANDS = (Demand({"CPU": 1}), Demand({"CPU": 1, "accel": 1}), Demand({"CPU": 6}), Demand(),
           IN_Z0_Z1)


@dataclass
class Node:
    ident: int
    cpus: int
    accel: bool
    zone: int
    alive: bool = True
    labelled: bool = True

    def as_dict(self, busy: float) -> dict[str, object]:
        total = {"CPU": self.cpus, "memory": 4e6, **({"accel": 1} if self.accel else {})}
        return {
            "id": f"{self.ident:056x}",
            "address": f"127.0.{self.ident // 250}.{self.ident % 250 + 2}",
            "label": f"node{self.ident}" if self.labelled else None,
            "alive": self.alive,
            "labels": {"zone": f"z{self.zone}"},
            "resources": total,
            "available": {k: v * (1 - busy) for k, v in total.items()},  # below the totals
        }


@dataclass
class Cluster:
    """The model: nodes as the test changed them, and each snapshot built from them."""

    nodes: list[Node]
    snapshots: list[ClusterSnapshot] = field(default_factory=list)
    # How new snapshots reach the policy: refreshed by difference from the last one (as the cache
    # does), and brought to the policy by follow() before it decides (as the refresher does).
    incremental: bool = False
    follow: bool = False

    def snapshot(self, busy: float = 0.0) -> ClusterSnapshot:
        previous = self.snapshots[-1] if self.incremental and self.snapshots else None
        snap = ClusterSnapshot.from_dicts([n.as_dict(busy) for n in self.nodes],
                                          previous=previous)
        self.snapshots.append(snap)
        return snap

    def fitting(self, snap: ClusterSnapshot, demand: Demand, backend: str) -> list[str]:
        if backend == AUTO:  # the resource backend while every live node has its node<i>
            backend = RESOURCE if all(n.label in n.total for n in snap.live) else NODE_ID
        nodes = snap.placeable if backend == RESOURCE else snap.live
        return [n.node_id for n in nodes
                if all(n.total.get(k, 0) >= v for k, v in demand.as_dict().items())
                and (demand != IN_Z0_Z1 or n.labels["zone"] in ("z0", "z1"))]


_NODE = st.builds(Node, ident=st.just(0), cpus=st.integers(0, 8), accel=st.booleans(),
                  zone=st.integers(0, 3), labelled=st.booleans())

# One step: decide (demand, group, whether Ray refuses the submission), or change the cluster.
_DECIDE = st.tuples(st.just("decide"), st.integers(0, len(DEMANDS) - 1), st.integers(0, 5),
                    st.booleans())
_STEP = st.one_of(
    _DECIDE,
    st.tuples(st.just("kill"), st.integers(0, 10**6)),
    st.tuples(st.just("join"), _NODE),
    st.tuples(st.just("relabel"), st.integers(0, 10**6)),
    st.tuples(st.just("busy"), st.floats(0, 1)),  # same nodes, a new snapshot object
    st.tuples(st.just("release"), st.integers(0, 10**6)),
    st.tuples(st.just("stale"), st.integers(0, 10**6)),  # decide on an older snapshot
)


@st.composite
def scenarios(draw, max_nodes=12, max_steps=80):
    nodes = draw(st.lists(_NODE, min_size=1, max_size=max_nodes))
    for i, node in enumerate(nodes):
        node.ident = i
    nodes[0].labelled = True
    cluster = Cluster(nodes, incremental=draw(st.booleans()), follow=draw(st.booleans()))
    return cluster, draw(st.lists(_STEP, min_size=min(1, max_steps), max_size=max_steps))


def churn(cluster: Cluster, step: tuple) -> bool:
    """Apply a cluster-changing step; False when the step is not one."""
    kind = step[0]
    if kind == "kill":
        alive = [n for n in cluster.nodes if n.alive]
        if len(alive) > 1:
            alive[step[1] % len(alive)].alive = False
    elif kind == "join":
        node = Node(len(cluster.nodes), step[1].cpus, step[1].accel, step[1].zone,
                    labelled=step[1].labelled)
        cluster.nodes.append(node)
    elif kind == "relabel":
        node = cluster.nodes[step[1] % len(cluster.nodes)]
        node.zone = (node.zone + 1) % 4
    elif kind != "busy":
        return False
    return True


def run_scenario(policy, cluster: Cluster, steps, backend, on_commit, on_release=None,
                 on_refusal=None, newest_check=True):
    """Drive ``policy`` through ``steps`` as the submit layer would: propose, then commit, or
    roll back when the generated submission fails."""
    snap = cluster.snapshot()
    used = snap  # the newest snapshot the policy was given
    committed = []
    for step in steps:
        if churn(cluster, step):
            snap = cluster.snapshot(step[1] if step[0] == "busy" else 0.0)
            if cluster.follow:
                policy.follow(snap)
                used = snap
            continue
        if step[0] == "release":
            if committed and on_release is not None:
                decision = committed.pop(step[1] % len(committed))
                policy.release(decision)
                policy.release(decision)  # idempotent
                on_release(decision)
            continue
        use = snap
        if step[0] == "stale":
            use = cluster.snapshots[step[1] % len(cluster.snapshots)]
            demand, group, fails = DEMANDS[0], 0, False
        else:
            _, demand_index, group, fails = step
            demand = DEMANDS[demand_index]
        request = Request(demand, group, None)
        if use.version > used.version:
            used = use
        try:
            decision = policy.propose(use, request)
        except PlacementError as refusal:
            if on_refusal is not None:
                on_refusal(used, request, refusal)
            continue
        if newest_check:  # snapshots only move forward: never a node it already saw dead
            assert used.by_id[decision.node.node_id].alive, "decided on a node seen dead"
        if fails:
            policy.rollback(decision)
            policy.rollback(decision)  # idempotent
            continue
        policy.commit(decision)
        committed.append(decision)
        on_commit(used, demand, decision)
    return committed


# -- RoundRobin ----------------------------------------------------------------------------------


@CORE
@given(scenarios(), st.sampled_from([AUTO, RESOURCE, NODE_ID]))
def test_round_robin_balances_each_demand_over_its_nodes_under_churn(scenario, backend):
    cluster, steps = scenario
    policy = RoundRobin(backend=backend).clone()  # its own copy of the process positions
    epoch: dict[Demand, tuple[list[str], Counter]] = {}

    def on_commit(snap, demand, decision):
        fitting = cluster.fitting(snap, demand, backend)
        if demand not in epoch or epoch[demand][0] != fitting:
            epoch[demand] = (fitting, Counter())  # the node set changed: a new epoch
        counts = epoch[demand][1]
        counts[decision.node.node_id] += 1
        assert decision.node.node_id in fitting
        per_node = [counts[n] for n in fitting]
        assert max(per_node) - min(per_node) <= 1, (demand, per_node)

    run_scenario(policy, cluster, steps, backend, on_commit)


@CORE
@given(scenarios(), st.sampled_from(["capacity", "label"]))
def test_weighted_round_robin_keeps_each_node_within_one_of_its_share(scenario, weights):
    cluster, steps = scenario
    policy = RoundRobin(weights=weights, seed=1)
    epoch: dict[Demand, tuple[list[tuple[str, float]], Counter]] = {}

    def weight(node) -> float:
        return node.cpus if weights == "capacity" else node.total.get(node.label, 0.0)

    def on_commit(snap, demand, decision):
        fitting = [(i, weight(snap.by_id[i])) for i in cluster.fitting(snap, demand, AUTO)]
        if demand not in epoch or epoch[demand][0] != fitting:
            epoch[demand] = (fitting, Counter())
        counts = epoch[demand][1]
        counts[decision.node.node_id] += 1
        total, placed = sum(w for _, w in fitting), sum(counts.values())
        for node_id, w in fitting:
            assert abs(counts[node_id] - placed * w / total) < 1 + 1e-9

    def on_refusal(snap, request, refusal):  # refused only when no fitting node has weight
        fitting = cluster.fitting(snap, request.demand, AUTO)
        assert not fitting or not any(weight(snap.by_id[i]) > 0 for i in fitting), refusal

    run_scenario(policy, cluster, steps, AUTO, on_commit, on_refusal=on_refusal)


@pytest.mark.parametrize("weights", [None, "capacity", "label"])
@CORE
@given(scenarios(max_steps=0), st.lists(st.tuples(st.integers(0, len(DEMANDS) - 1),
                                                  st.floats(0, 1)), min_size=1, max_size=60))
def test_a_new_snapshot_object_with_the_same_nodes_changes_nothing(weights, scenario, steps):
    cluster, _ = scenario
    one = cluster.snapshot()
    same, fresh = RoundRobin(weights=weights).clone(), RoundRobin(weights=weights).clone()
    for demand_index, busy in steps:
        demand = DEMANDS[demand_index]
        try:
            expected = same.decide(one, demand).node.node_id
        except PlacementError:
            with pytest.raises(PlacementError):
                fresh.decide(cluster.snapshot(busy), demand)
            continue
        assert fresh.decide(cluster.snapshot(busy), demand).node.node_id == expected


# -- AntiAffinity and Packing --------------------------------------------------------------------


@CORE
@given(scenarios(), st.integers(1, 3), st.booleans())
def test_anti_affinity_never_exceeds_its_cap_and_refuses_exactly_when_full(scenario, cap, topo):
    cluster, steps = scenario
    topology = "zone" if topo else None
    policy = AntiAffinity(max_per_node=cap, topology=topology)
    held: Counter = Counter()  # committed, not released, per domain

    def domain(snap, node_id):
        node = snap.by_id[node_id]
        return node_id if topology is None else node.labels["zone"]

    def on_commit(snap, demand, decision):
        key = decision.node.node_id if topology is None else decision.node.labels["zone"]
        fitting = {domain(snap, n) for n in cluster.fitting(snap, demand, AUTO)}
        assert held[key] == min(held[d] for d in fitting), "not the least-used domain"
        held[key] += 1
        assert held[key] <= cap

    def on_release(decision):
        key = decision.node.node_id if topology is None else decision.node.labels["zone"]
        held[key] -= 1

    def on_refusal(snap, request, refusal):
        fitting = {domain(snap, n) for n in cluster.fitting(snap, request.demand, AUTO)}
        if refusal.rule == errors.SPREAD_EXHAUSTED:
            assert all(held[d] >= cap for d in fitting)
        else:
            assert not fitting, refusal

    run_scenario(policy, cluster, steps, AUTO, on_commit, on_release, on_refusal)


@CORE
@given(scenarios())
def test_packing_keeps_live_groups_together_and_apart(scenario):
    cluster, steps = scenario
    policy = Packing()
    members: Counter = Counter()
    node_of: dict[int, str] = {}

    def on_commit(snap, demand, decision):
        group, node_id = decision.group, decision.node.node_id
        if members[group]:
            assert node_of[group] == node_id, "a group was split"
        else:
            others = {node_of[g] for g, n in members.items() if n and g != group}
            assert node_id not in others, "two live groups share a node"
        node_of[group] = node_id
        members[group] += 1

    def on_release(decision):
        members[decision.group] -= 1

    def on_refusal(snap, request, refusal):
        if refusal.rule == errors.GROUPS_EXHAUSTED:
            taken = {node_of[g] for g, n in members.items() if n}
            assert set(cluster.fitting(snap, request.demand, AUTO)) <= taken
            assert not members[request.group]

    committed = run_scenario(policy, cluster, steps, AUTO, on_commit, on_release, on_refusal)
    live_groups = {g for g, n in members.items() if n}
    assert {d.group for d in committed} >= live_groups


@CORE
@given(scenarios(), st.integers(1, 3), st.booleans(), st.sampled_from([None, 2]), st.booleans())
def test_max_skew_bounds_every_placement_and_refuses_exactly_when_it_would_not(
        scenario, skew, topo, cap, strict):
    """Kubernetes' rule, checked per placement against counts kept here: a placement may not
    leave its domain more than max_skew above the least-used domain of every candidate (whatever
    the demand); strict refuses exactly then, soft places on the least-used fitting domain and
    flags it."""
    cluster, steps = scenario
    topology = "zone" if topo else None
    policy = AntiAffinity(max_per_node=cap, topology=topology, max_skew=skew, strict=strict)
    held: Counter = Counter()  # committed, not released, per domain

    def domain(snap, node_id):
        return node_id if topology is None else snap.by_id[node_id].labels["zone"]

    def domains(snap, demand):
        return {domain(snap, n) for n in cluster.fitting(snap, demand, AUTO)}

    def over(snap, key):  # the placement would leave key more than max_skew above the floor
        return held[key] + 1 - min(held[d] for d in domains(snap, Demand())) > skew

    def on_commit(snap, demand, decision):
        key = domain(snap, decision.node.node_id)
        fitting = domains(snap, demand)
        assert held[key] == min(held[d] for d in fitting), "not the least-used fitting domain"
        full = cap is not None and held[key] >= cap
        assert decision.fallback == (over(snap, key) or full)
        assert not strict or not decision.fallback
        held[key] += 1

    def on_release(decision):
        held[domain(cluster.snapshots[-1], decision.node.node_id) if topology is None
             else decision.node.labels["zone"]] -= 1

    def on_refusal(snap, request, refusal):
        fitting = domains(snap, request.demand)
        if refusal.rule == errors.SKEW_EXCEEDED:
            assert strict
            least = min(held[d] for d in fitting)
            assert cap is None or least < cap
            assert all(over(snap, d) for d in fitting if held[d] == least)
        elif refusal.rule == errors.SPREAD_EXHAUSTED:
            assert strict and all(held[d] >= cap for d in fitting)
        else:
            assert not fitting, refusal

    run_scenario(policy, cluster, steps, AUTO, on_commit, on_release, on_refusal)


@CORE
@given(scenarios(), st.booleans())
def test_packing_by_topology_keeps_groups_in_one_value_and_apart(scenario, strict):
    """Packing(topology="zone"): a live group's members share one zone, live groups never share
    one while zones remain (strict), and each member goes to the zone's fitting node holding the
    fewest members of the policy."""
    cluster, steps = scenario
    policy = Packing(topology="zone", strict=strict)
    members: Counter = Counter()
    zone_of: dict[int, str] = {}
    per_node: Counter = Counter()  # committed members per node

    def on_commit(snap, demand, decision):
        group, node = decision.group, decision.node
        zone = snap.by_id[node.node_id].labels["zone"]
        if members[group] and not decision.fallback:
            assert zone_of[group] == zone, "a group was split across zones"
        elif not decision.fallback:
            others = {zone_of[g] for g, n in members.items() if n and g != group}
            assert zone not in others, "two live groups share a zone"
        same_zone = [n for n in cluster.fitting(snap, demand, AUTO)
                     if snap.by_id[n].labels["zone"] == zone]
        assert per_node[node.node_id] == min(per_node[n] for n in same_zone), "not the least-used"
        if not decision.reason.startswith("its group's node cannot hold it"):
            zone_of[group] = zone  # a soft member placed apart leaves its group where it is
        members[group] += 1
        per_node[node.node_id] += 1

    def on_release(decision):
        members[decision.group] -= 1
        per_node[decision.node.node_id] -= 1

    def on_refusal(snap, request, refusal):
        assert strict or not cluster.fitting(snap, request.demand, AUTO), refusal
        if refusal.rule == errors.GROUPS_EXHAUSTED:
            taken = {zone_of[g] for g, n in members.items() if n}
            fitting = {snap.by_id[n].labels["zone"]
                       for n in cluster.fitting(snap, request.demand, AUTO)}
            assert fitting <= taken and not members[request.group]

    run_scenario(policy, cluster, steps, AUTO, on_commit, on_release, on_refusal)


@CORE
@given(scenarios(), st.sampled_from(["capacity", "equal"]))
def test_least_loaded_never_chooses_a_node_more_loaded_than_another_that_fits(scenario, weights):
    """LeastLoaded under churn, mixed demands, rollbacks and releases (work that finished): the
    chosen node's in-flight placements per unit of weight are the fewest of every fitting node,
    counted here from what was committed and released."""
    cluster, steps = scenario
    policy = LeastLoaded(weights=weights)
    inflight: Counter = Counter()

    def load(snap, node_id):
        weight = snap.by_id[node_id].total.get("CPU", 0) if weights == "capacity" else 1
        return (0, inflight[node_id] / weight) if weight > 0 else (1, inflight[node_id])

    def on_commit(snap, demand, decision):
        chosen = decision.node.node_id
        assert load(snap, chosen) == min(load(snap, n) for n in cluster.fitting(snap, demand, AUTO))
        inflight[chosen] += 1

    def on_release(decision):
        inflight[decision.node.node_id] -= 1

    def on_refusal(snap, request, refusal):
        assert not cluster.fitting(snap, request.demand, AUTO), refusal

    run_scenario(policy, cluster, steps, AUTO, on_commit, on_release, on_refusal)


# -- values and stale snapshots --------------------------------------------------------------------


def test_a_mutated_demand_dict_is_a_new_demand():
    snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0", "resources": {"CPU": 4}}])
    policy = RoundRobin()
    spec = {"CPU": 1}
    assert policy.decide(snap, spec).node_name == "node0"
    spec["CPU"] = 64
    with pytest.raises(PlacementError) as refusal:
        policy.decide(snap, spec)
    assert refusal.value.rule == errors.RESOURCES_EXCEED_NODES


def test_a_policy_never_goes_back_to_an_older_snapshot():
    nodes = [{"id": "a", "label": "node0"}, {"id": "b", "label": "node1"}]
    older = ClusterSnapshot.from_dicts(nodes)
    newer = ClusterSnapshot.from_dicts([nodes[0], {**nodes[1], "alive": False}])
    policy = RoundRobin()
    policy.decide(newer)
    assert {policy.decide(older).node_name for _ in range(4)} == {"node0"}


def test_requests_are_values():
    assert Request(Demand({"CPU": 1}), "g") == Request(Demand({"CPU": 1.0}), "g")
    assert len({Demand({"CPU": 1, "x": 0}), Demand({"CPU": 1.0})}) == 1
    with pytest.raises(AttributeError):
        Demand({"CPU": 1}).extra = ()


# -- inline and long-lived round robin -------------------------------------------------------------


@settings(max_examples=examples(100), deadline=None)
@given(st.integers(1, 30), st.integers(1, 200))
def test_inline_round_robin_objects_still_spread(n_nodes, calls):
    snap = ClusterSnapshot.from_dicts([{"id": f"n{i}", "label": f"node{i}"}
                                       for i in range(n_nodes)])
    counts = Counter(RoundRobin().decide(snap).node_name for _ in range(calls))
    per_node = [counts[f"node{i}"] for i in range(n_nodes)]
    assert max(per_node) - min(per_node) <= 1


@settings(max_examples=examples(100), deadline=None)
@given(st.integers(1, 30), st.lists(st.booleans(), min_size=1, max_size=300))
def test_interleaved_round_robins_each_stay_balanced(n_nodes, which):
    snap = ClusterSnapshot.from_dicts([{"id": f"n{i}", "label": f"node{i}"}
                                       for i in range(n_nodes)])
    policies = (RoundRobin(), RoundRobin())
    counts = (defaultdict(int), defaultdict(int))
    for second in which:
        counts[second][policies[second].decide(snap).node_name] += 1
    for own in counts:
        per_node = [own[f"node{i}"] for i in range(n_nodes)]
        assert max(per_node) - min(per_node) <= 1


# -- seeds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [None, "capacity"])
def test_the_seed_picks_the_start_and_the_same_seed_repeats(weights):
    snap = ClusterSnapshot.from_dicts([{"id": f"n{i}", "label": f"node{i}",
                                        "resources": {"CPU": 2}} for i in range(8)])

    def sequence(seed):
        policy = RoundRobin(weights=weights, seed=seed)
        return [policy.decide(snap).node_name for _ in range(12)]

    firsts = {sequence(seed)[0] for seed in range(40)}
    assert len(firsts) >= 4, "the seed does not move the starting node"
    assert all(sequence(seed) == sequence(seed) for seed in range(10))


# -- the layers ----------------------------------------------------------------------------------


def test_the_decide_layer_loads_no_ray():
    code = ("import sys, placement.policies, placement.snapshot\n"
            "from placement.policies import RoundRobin\n"
            "from placement.snapshot import ClusterSnapshot\n"
            "RoundRobin().plan(ClusterSnapshot.from_dicts([{'id': 'a', 'label': 'node0'}]), 3)\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
