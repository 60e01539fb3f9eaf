"""Every policy and every backend on a real 4-node cluster, tasks and actors: where each piece of
work actually ran (read inside it) matches the policy."""
from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest
import ray

from placement import (
    Affinity,
    AntiAffinity,
    Audit,
    LeastLoaded,
    Local,
    Locality,
    Packing,
    PlacementError,
    RoundRobin,
    current_snapshot,
    errors,
    liveness,
)
from placement.policies.decision import BACKENDS

from .conftest import SESSION_NODES
from .plain_scenarios import block, made_and_ran

pytestmark = pytest.mark.cluster


@ray.remote(num_cpus=0)
def where() -> str:
    return ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=0)
class Probe:
    def where(self) -> str:
        return ray.get_runtime_context().get_node_id()


def plain_where() -> str:
    return ray.get_runtime_context().get_node_id()


def submit(handle, n: int, kind: str):
    """Place n tasks or actors; returns (decisions, nodes they really ran on)."""
    decisions, refs, actors = [], [], []
    for _ in range(n):
        made, decision = handle.submit()
        decisions.append(decision)
        if kind == "actor":
            actors.append(made)
            refs.append(made.where.remote())
        else:
            refs.append(made)
    ran = ray.get(refs, timeout=120)
    for actor in actors:
        ray.kill(actor)
    return decisions, ran


@pytest.fixture
def labels(ray_cluster):
    return {n.node_id: n.label for n in current_snapshot(refresh=True).placeable}


KINDS = {"task": where, "actor": Probe}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("soft", [False, True])
def test_round_robin(labels, backend, kind, soft):
    handle = RoundRobin(backend=backend, soft=soft).place(KINDS[kind])
    decisions, ran = submit(handle, 2 * SESSION_NODES, kind)
    assert ran == [d.node.node_id for d in decisions]
    assert Counter(labels[n] for n in ran) == {label: 2 for label in labels.values()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_affinity_to_label_and_to_first_choice(labels, backend, kind):
    decisions, ran = submit(Affinity("node2", backend=backend).place(KINDS[kind]), 3, kind)
    assert {labels[n] for n in ran} == {"node2"}
    decisions, ran = submit(Affinity(backend=backend).place(KINDS[kind]), 3, kind)
    assert len(set(ran)) == 1 and ran[0] == decisions[0].node.node_id


@pytest.mark.parametrize("backend", BACKENDS)
def test_affinity_follows_an_actor(labels, backend):
    actor = Affinity("node3", backend=backend).place(Probe).remote()
    try:
        ran = ray.get([Affinity(actor, backend=backend).place(where).remote() for _ in range(3)])
        assert {labels[n] for n in ran} == {"node3"}
    finally:
        ray.kill(actor)


def test_affinity_follows_an_actor_placed_by_ray(labels):
    actor = Probe.remote()  # placed by Ray, not by a policy: its node comes from Ray's actor table
    try:
        home = ray.get(actor.where.remote())
        assert ray.get(Affinity(actor).place(where).remote()) == home
    finally:
        ray.kill(actor)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_anti_affinity_spreads_and_refuses_before_submitting(labels, backend, kind):
    policy = AntiAffinity(backend=backend)
    handle = policy.place(KINDS[kind])
    decisions, ran = submit(handle, SESSION_NODES, kind)
    assert ran == [d.node.node_id for d in decisions]
    assert len(set(ran)) == SESSION_NODES
    with pytest.raises(PlacementError) as refusal:
        handle.remote()
    assert refusal.value.rule == errors.SPREAD_EXHAUSTED
    assert "start_cluster.sh 5" in str(refusal.value)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_packing_keeps_groups_together_and_apart(labels, backend, kind):
    policy = Packing(backend=backend)
    by_group = {}
    for group in ("p0", "p1", "p2"):
        decisions, ran = submit(policy.place(KINDS[kind], group=group), 3, kind)
        assert ran == [d.node.node_id for d in decisions]
        assert len(set(ran)) == 1
        by_group[group] = ran[0]
    assert len(set(by_group.values())) == 3
    # .options(group=...) reuses the group's node.
    assert ray.get(policy.place(where, group="p0").options(group="p1").remote()) == by_group["p1"]


def test_local_from_driver_and_inside_tasks(labels):
    driver_node = ray.get_runtime_context().get_node_id()
    assert set(ray.get([Local().place(where).remote() for _ in range(3)])) == {driver_node}

    @ray.remote(num_cpus=0)
    def parent() -> tuple[str, list[str]]:
        children = [Local().place(plain_where).remote() for _ in range(4)]
        return ray.get_runtime_context().get_node_id(), ray.get(children)

    spread = RoundRobin().place(parent)
    results = ray.get([spread.remote() for _ in range(SESSION_NODES)])
    assert {labels[p] for p, _ in results} == set(labels.values())
    for parent_node, children in results:
        assert set(children) == {parent_node}


def test_user_options_are_kept(labels):
    handle = AntiAffinity().place(Probe, name="kept-name", num_cpus=1, max_restarts=1)
    actor, decision = handle.submit()
    try:
        assert ray.get(ray.get_actor("kept-name").where.remote()) == decision.node.node_id
    finally:
        ray.kill(actor)
    handle = RoundRobin().place(where, num_cpus=2, resources={f"node{SESSION_NODES - 1}": 1})
    # The user's resources are merged with the policy's; node3's resource makes only node3 fit.
    assert labels[ray.get(handle.remote())] == f"node{SESSION_NODES - 1}"


@pytest.mark.parametrize("make, options, rule", [
    (lambda: RoundRobin(), {"num_cpus": 64}, errors.RESOURCES_EXCEED_NODES),
    (lambda: RoundRobin(), {"resources": {"gpu-like": 1}}, errors.RESOURCES_EXCEED_NODES),
    (lambda: Affinity("node9"), {}, errors.UNKNOWN_LABEL),
    (lambda: Affinity("f" * 56, backend="node_id"), {}, errors.UNKNOWN_NODE),
])
def test_infeasible_requests_raise_before_submitting(ray_cluster, make, options, rule):
    with pytest.raises(PlacementError) as refusal:
        make().place(where, **options).remote()
    assert refusal.value.rule == rule and refusal.value.fix


@pytest.mark.parametrize("options, error", [
    ({"scheduling_strategy": "SPREAD"}, PlacementError),
    ({"placement_group": object()}, PlacementError),
    ({"fallback_strategy": [{"label_selector": {"a": "b"}}]}, PlacementError),
    ({"label_selector": {"a": "in()"}}, ValueError),
    ({"resources": {"CPU": 1}}, ValueError),
    ({"resources": {"x": 0.00001}}, ValueError),
    ({"num_cpus": float("nan")}, ValueError),
])
def test_contradicting_options_are_refused_at_place_time(ray_cluster, options, error):
    with pytest.raises(error):
        RoundRobin().place(where, **options)


def test_place_plain_functions_and_refuse_non_callables(labels):
    assert labels[ray.get(Affinity("node1").place(plain_where).remote())] == "node1"
    with pytest.raises(TypeError, match="not the result of calling it"):
        RoundRobin().place(42)
    with pytest.raises(TypeError, match="already bound with .options"):
        RoundRobin().place(where.options(num_cpus=1))


def test_round_robin_from_8_threads_is_exactly_balanced(labels):
    """8 threads submit 1000 tasks each through one RoundRobin: exact balance, nothing lost."""
    import threading

    handle = RoundRobin().place(where)
    refs: list = []
    lock = threading.Lock()

    def submit() -> None:
        mine = [handle.remote() for _ in range(1000)]
        with lock:
            refs.extend(mine)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ran = ray.get(refs, timeout=600)
    assert len(ran) == 8000
    assert Counter(labels[n] for n in ran) == {
        label: 8000 // SESSION_NODES for label in labels.values()}


def test_failed_submissions_roll_back_and_spread_still_fills_every_node(labels):
    apart = AntiAffinity()
    with pytest.raises(TypeError):  # Ray cannot pickle the argument: nothing was submitted
        apart.place(where).remote(threading.Lock())
    keep = Probe.options(name="taken-name").remote()
    with pytest.raises(ValueError):  # Ray refuses a taken actor name
        apart.place(Probe, name="taken-name").remote()
    with pytest.raises(ValueError):  # an option Ray rejects at submission
        apart.place(where, max_retries=-5).remote()
    replicas = [apart.place(Probe).remote() for _ in range(SESSION_NODES)]
    try:
        ran = ray.get([r.where.remote() for r in replicas], timeout=120)
        assert sorted(labels[n] for n in ran) == sorted(labels.values())
        with pytest.raises(PlacementError) as full:
            apart.place(Probe).remote()
        assert full.value.rule == errors.SPREAD_EXHAUSTED
    finally:
        for actor in [*replicas, keep]:
            ray.kill(actor)


@ray.remote(num_cpus=0, resources={"accel": 1})
def assigned() -> tuple[str, dict]:
    context = ray.get_runtime_context()
    return context.get_node_id(), context.get_assigned_resources()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_functions_own_resources_survive_placement(labels, backend):
    node, resources = ray.get(Affinity("node2", backend=backend).place(assigned).remote())
    assert labels[node] == "node2"
    assert resources.get("accel") == 1  # reserved by Ray, not dropped by the placement's options


def test_inline_round_robin_spreads(labels):
    ran = ray.get([RoundRobin().place(where).remote() for _ in range(2 * SESSION_NODES)])
    assert Counter(labels[n] for n in ran) == {label: 2 for label in labels.values()}


def test_audit_reads_actor_nodes_from_ray_not_from_decisions(labels):
    by_label = {label: node for node, label in labels.items()}
    snapshot = current_snapshot(refresh=True)
    with Audit() as audit:
        handle = audit.place(Affinity("node1"), Probe)
        actor, decision = handle.submit()
        assert labels[ray.get(actor.where.remote())] == "node1"
        # The same actor recorded with a decision that named node2: only Ray's own record can
        # tell that it is not there.
        audit._record(actor, decision._replace(node=snapshot.by_id[by_label["node2"]]))
        gone, _ = handle.submit()
        ray.get(gone.where.remote())
        ray.kill(gone)
        report = audit.report(timeout=10)
    verdicts = [(row.verdict, row.actual) for row in report.rows]
    assert verdicts == [("ok", "node1"), ("VIOLATION", "node1"), ("not reported", None)]
    ray.kill(actor)


@ray.remote(num_cpus=0)
def held(release_file: str) -> str:
    """Runs until the test creates ``release_file`` (at most 120 s): a long task."""
    import os
    import time
    for _ in range(1200):
        if os.path.exists(release_file):
            break
        time.sleep(0.1)
    return ray.get_runtime_context().get_node_id()


def test_least_loaded_sends_new_work_away_from_a_node_still_busy(ray_cluster, tmp_path):
    """The first task (long) holds its node; short tasks, each awaited, finish and are released
    by Ray's completion callback: new work goes to the other nodes, read inside each task."""
    balance = LeastLoaded(weights="equal")
    release_file = str(tmp_path / "go")
    long_ref, long_decision = balance.place(held).submit(release_file)
    short = balance.place(where)
    ran = [ray.get(short.remote(), timeout=60) for _ in range(3 * (SESSION_NODES - 1))]
    (tmp_path / "go").write_text("")
    busy = ray.get(long_ref, timeout=150)
    assert busy == long_decision.node.node_id  # the long task ran where it was placed
    counts = Counter(ran)
    # Each short task ends before the next starts: the busy node (1 in flight) loses to every
    # idle one, which tie at 0 (the first in order wins, unless Ray's callback is late).
    assert counts[busy] < min(counts[n] for n in set(ran) - {busy}), counts
    for _ in range(100):  # Ray runs the completion callback on its own thread, soon after
        if balance.load(busy) == 0:
            break
        threading.Event().wait(0.1)
    assert balance.load(busy) == 0  # the long task was released when it ended


def _when_freed(submit):
    """``submit()`` once the live ledger has freed a slot: Ray's callbacks and the actor watcher
    (about every second) run beside this thread; bounded at 30 s."""
    for _ in range(300):
        try:
            return submit()
        except PlacementError as full:
            assert full.rule == errors.SPREAD_EXHAUSTED
            threading.Event().wait(0.1)
    pytest.fail("the live ledger never freed a slot in 30 s")


def test_a_live_spread_gives_a_killed_replicas_node_to_the_next_one(ray_cluster, tmp_path):
    """AntiAffinity(live=True): ray.kill of one of 4 strictly spread replicas frees its node with
    no release(); the next replica goes there (read inside it). Tasks free theirs when done."""
    apart = AntiAffinity(live=True)
    replicas = [apart.place(Probe).remote() for _ in range(SESSION_NODES)]
    nodes = ray.get([r.where.remote() for r in replicas], timeout=120)
    assert len(set(nodes)) == SESSION_NODES
    ray.kill(replicas[1])
    newcomer = _when_freed(apart.place(Probe).remote)
    assert ray.get(newcomer.where.remote(), timeout=60) == nodes[1]
    for actor in [*replicas, newcomer]:
        ray.kill(actor)
    mixed = AntiAffinity() | LeastLoaded()  # only the live member's placements are released
    spread = [mixed.place(Probe).submit() for _ in range(SESSION_NODES)]
    assert not any(d.fallback for _, d in spread)
    ray.kill(spread[0].result)
    threading.Event().wait(3 * liveness.WATCH_SECONDS)  # the watcher read the dead actor
    extra = mixed.place(Probe).submit()
    assert extra.decision.fallback  # AntiAffinity still counts its killed replica
    for actor in [*(s.result for s in spread), extra.result]:
        ray.kill(actor)
    tasks = AntiAffinity(live=True).place(held)
    waves = []
    for wave in range(3):  # each wave's tasks run until all are placed; later waves fit once freed
        release = str(tmp_path / f"wave{wave}")
        placed = [_when_freed(lambda release=release: tasks.remote(release))
                  for _ in range(SESSION_NODES)]
        open(release, "w").close()
        waves.append(sorted(ray.get(placed, timeout=120)))
    assert waves[0] == waves[1] == waves[2] and len(set(waves[0])) == SESSION_NODES


@ray.remote(num_cpus=0)
class Holder:
    def __init__(self, block: tuple[str, bytes]) -> None:
        self.made_on = block[0]

    def nodes(self) -> tuple[str, str]:
        return self.made_on, ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=0)
class Gate:
    """Holds consumers until opened, so that every one is in flight when the next is placed."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()

    async def wait(self) -> None:
        await self.opened.wait()

    def open(self) -> None:
        self.opened.set()


@ray.remote(num_cpus=0.25)
def consume_after(made: tuple[str, bytes], gate) -> tuple[str, str]:
    ray.get(gate.wait.remote(), timeout=120)
    return made[0], ray.get_runtime_context().get_node_id()


def test_locality_spreads_consumers_of_replicated_data(ray_cluster):
    """After an ordinary ray.wait (which copies every block to the driver's node), each block is
    on two nodes: its maker's and the driver's. Two consumers of each, all in flight at once,
    run on nodes holding their block (read inside) and spread over every node, at most 3 on one
    (2 or 3, by the order the blocks landed in), where choosing the first holder in order put
    all 8 on the driver's node."""
    blocks = [RoundRobin().place(block).remote(4) for _ in range(SESSION_NODES)]
    ray.wait(blocks, num_returns=len(blocks), timeout=120)  # fetch_local=True: Ray's default
    driver = ray.get_runtime_context().get_node_id()
    gate = Gate.remote()
    near = Locality() | RoundRobin()
    submitted = [near.place(consume_after).submit(made, gate)
                 for _ in range(2) for made in blocks]
    gate.open.remote()
    pairs = ray.get([ref for ref, _ in submitted], timeout=120)
    assert all(ran in (made, driver) for made, ran in pairs), pairs
    assert all(not d.fallback and d.local_bytes >= 4 * 2**20 for _, d in submitted)
    per_node = Counter(ran for _, ran in pairs)
    assert len(per_node) == SESSION_NODES and max(per_node.values()) <= 3, per_node
    assert any("of 2 nodes with about as many" in d.reason for _, d in submitted)
    ray.kill(gate)


def test_all_of_places_where_every_member_allows_and_frees_a_slot_when_work_ends(ray_cluster):
    """LeastLoaded & AntiAffinity(max_per_node=2): 8 actors, 2 on each node (read inside each);
    a ninth is refused before anything is submitted, naming the member that refused; once one
    actor is killed, its placement ends in both members (the actor watcher), and the next
    actor runs on that node."""
    both = LeastLoaded() & AntiAffinity(max_per_node=2)
    handle = both.place(Probe)
    actors = [handle.remote() for _ in range(2 * SESSION_NODES)]
    ran = ray.get([a.where.remote() for a in actors], timeout=120)
    assert sorted(Counter(ran).values()) == [2] * SESSION_NODES, Counter(ran)
    with pytest.raises(PlacementError) as refused:
        handle.remote()
    assert "AntiAffinity(max_per_node=2) refused" in refused.value.detail
    ray.kill(actors[0])
    freed, deadline = None, time.monotonic() + 30
    while freed is None and time.monotonic() < deadline:  # the watcher reads once a second
        try:
            freed = handle.remote()
        except PlacementError:
            time.sleep(0.5)
    assert freed is not None, "the killed actor's slot was not given back within 30 s"
    assert ray.get(freed.where.remote(), timeout=60) == ran[0]
    for actor in [*actors[1:], freed]:
        ray.kill(actor)


def test_locality_runs_tasks_and_actors_where_their_argument_is(ray_cluster):
    """Blocks of 2 MB made on every node (round robin); a consumer of each, placed by Locality,
    runs on the node that made its block (both read inside); actor creation too, which Ray's own
    locality never does. Small arguments have no location: the fallback decides."""
    blocks = [RoundRobin().place(block).remote(2) for _ in range(2 * SESSION_NODES)]
    # fetch_local=False: by default ray.wait copies every object to this node (seen in
    # Ray's object locations), and that copy would be data moved before the run.
    ray.wait(blocks, num_returns=len(blocks), timeout=120, fetch_local=False)
    near = Locality() | RoundRobin()
    submitted = [near.place(made_and_ran).submit(made) for made in blocks]
    pairs = ray.get([ref for ref, _ in submitted], timeout=120)
    assert all(made == ran for made, ran in pairs), pairs
    assert len({made for made, _ in pairs}) == SESSION_NODES  # the blocks were on every node
    assert all(d.local_bytes >= 2 * 2**20 and not d.fallback for _, d in submitted)
    holders = [near.place(Holder).remote(made) for made in blocks[:SESSION_NODES]]
    placed = ray.get([h.nodes.remote() for h in holders], timeout=120)
    assert all(made == ran for made, ran in placed), placed
    for holder in holders:
        ray.kill(holder)
    small, decision = near.place(made_and_ran).submit(("tiny", b"x"))  # inlined: no location
    assert decision.fallback and decision.local_bytes == 0 and ray.get(small, timeout=60)
