"""Refreshing the snapshot by difference, and in the background. No Ray.

The oracle everywhere is a build from scratch: a snapshot (and its candidates) refreshed from the
previous one must be exactly what a fresh build of the same records gives, for generated
sequences of joins, deaths, removals, label and resource changes.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placement import errors
from placement.cluster import SnapshotCache
from placement.errors import PlacementError
from placement.policies import (
    AUTO,
    LABEL,
    NODE_ID,
    RESOURCE,
    AntiAffinity,
    Candidates,
    Demand,
    LeastLoaded,
    Packing,
    Request,
    RoundRobin,
)
from placement.policies.selector import LabelFilter
from placement.snapshot import ClusterSnapshot

from .conftest import SESSION_NODES, run_python
from .thoroughness import examples

PROPERTY = settings(max_examples=examples(150), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
DEMANDS = (Demand(), Demand({"CPU": 1}), Demand({"CPU": 4}), Demand({"CPU": 1, "accel": 1}))


# -- generated Ray node tables --------------------------------------------------------------------

def ray_record(ident: int, *, alive: bool = True, label: str | None = None, cpus: int = 2,
               accel: bool = False, zone: int = 0, address: str | None = None,
               by_resource: bool = False) -> dict:
    """A node record shaped as ``ray.nodes()`` returns it."""
    node_id = f"{ident:056x}"
    resources = {"CPU": float(cpus), **({"accel": 1.0} if accel else {})}
    labels = {"ray.io/node-id": node_id, "zone": f"z{zone}"}
    if label is not None:
        if by_resource:  # labelled by the node<i> resource only (a cluster before Ray labels)
            resources[label] = 1000.0
        else:
            resources[label] = 1000.0
            labels["placement.node"] = label
    return {"NodeID": node_id, "Alive": alive, "alive": alive,
            "NodeManagerAddress": address or f"127.0.{ident // 200}.{ident % 200 + 10}",
            "NodeManagerPort": 40000 + ident % 20000,
            "Resources": resources, "Labels": labels}


_CHANGE = st.one_of(
    st.tuples(st.just("join"), st.integers(0, 30), st.integers(0, 8), st.booleans(),
              st.booleans()),
    st.tuples(st.just("die"), st.integers(0, 10**6)),
    st.tuples(st.just("forget"), st.integers(0, 10**6)),  # gone from Ray's table altogether
    st.tuples(st.just("rezone"), st.integers(0, 10**6), st.integers(0, 3)),
    st.tuples(st.just("resize"), st.integers(0, 10**6), st.integers(0, 8)),
    st.tuples(st.just("relabel"), st.integers(0, 10**6), st.integers(0, 30)),  # placement label
    st.tuples(st.just("unlabel"), st.integers(0, 10**6)),
    st.tuples(st.just("move"), st.integers(0, 10**6), st.integers(0, 250)),  # new address
    st.tuples(st.just("revive"), st.integers(0, 10**6)),
    st.tuples(st.just("same"),),  # nothing changed: a refresh of an idle cluster
)


class Table:
    """The model: Ray's node table as the generated changes left it."""

    def __init__(self, sizes: list[tuple[int, bool]]) -> None:
        self.next = 0
        self.records: list[dict] = []
        for cpus, accel in sizes:
            self.join(self.next % 7, cpus, accel, by_resource=False)

    def join(self, label: int | None, cpus: int, accel: bool, by_resource: bool) -> None:
        # Labels repeat on purpose: two live nodes with one label happen on misconfigured clusters.
        self.records.append(ray_record(self.next, label=None if label is None else f"node{label}",
                                       cpus=cpus, accel=accel, zone=self.next % 3,
                                       by_resource=by_resource))
        self.next += 1

    def apply(self, change: tuple) -> None:
        kind, records = change[0], self.records
        if kind == "join":
            self.join(change[1] if change[1] < 25 else None, change[2], change[3], change[4])
            return
        if kind == "same" or not records:
            return
        i = change[1] % len(records)
        record = records[i]
        if kind == "die":
            records[i] = {**record, "Alive": False, "alive": False}
        elif kind == "revive":
            records[i] = {**record, "Alive": True, "alive": True}
        elif kind == "forget":
            del records[i]
        elif kind == "rezone":
            records[i] = {**record, "Labels": {**record["Labels"], "zone": f"z{change[2]}"}}
        elif kind == "resize":
            records[i] = {**record, "Resources": {**record["Resources"], "CPU": float(change[2])}}
        elif kind == "relabel":
            labels = {**record["Labels"], "placement.node": f"node{change[2]}"}
            resources = {**record["Resources"], f"node{change[2]}": 1000.0}
            records[i] = {**record, "Labels": labels, "Resources": resources}
        elif kind == "unlabel":
            labels = {k: v for k, v in record["Labels"].items() if k != "placement.node"}
            resources = {k: v for k, v in record["Resources"].items() if not k.startswith("node")}
            records[i] = {**record, "Labels": labels, "Resources": resources}
        elif kind == "move":
            records[i] = {**record, "NodeManagerAddress": f"127.1.0.{change[2]}"}

    def read(self) -> list[dict]:
        # ray.nodes() builds new dicts on every call
        return [{**r, "Resources": dict(r["Resources"]), "Labels": dict(r["Labels"])}
                for r in self.records]


tables = st.builds(Table, st.lists(st.tuples(st.integers(0, 8), st.booleans()), min_size=0,
                                   max_size=12))
change_lists = st.lists(st.lists(_CHANGE, max_size=4), min_size=1, max_size=12)


def same_snapshot(got: ClusterSnapshot, want: ClusterSnapshot) -> None:
    """``got`` holds exactly what ``want`` (built from scratch) holds."""
    assert got.nodes == want.nodes
    assert got.live == want.live
    assert [n.node_id for n in got.placeable] == [n.node_id for n in want.placeable]
    assert got.placeable == want.placeable
    assert dict(got.by_id) == dict(want.by_id)
    assert dict(got.by_label) == dict(want.by_label)
    assert got.to_dict()["nodes"] == want.to_dict()["nodes"]


# -- snapshots ----------------------------------------------------------------------------------

@PROPERTY
@given(tables, change_lists)
def test_a_refreshed_snapshot_is_exactly_a_fresh_build(table, rounds):
    previous = ClusterSnapshot.from_ray(table.read())
    for changes in rounds:
        for change in changes:
            table.apply(change)
        records = table.read()
        refreshed = ClusterSnapshot.from_ray(records, previous=previous)
        same_snapshot(refreshed, ClusterSnapshot.from_ray(records))
        # The difference names exactly what changed, and unchanged nodes keep their objects.
        diff = refreshed.diff
        assert diff is not None and diff.base_version == previous.version
        before = previous.by_id
        for node in refreshed.nodes:
            old = before.get(node.node_id)
            if old is not None and old == node:
                assert node is old, "an unchanged node was built again"
        assert {n.node_id for n in diff.added} == {
            n.node_id for n in refreshed.nodes if before.get(n.node_id) is not n}
        assert {n.node_id for n in diff.removed} == {
            n.node_id for n in previous.nodes if refreshed.by_id.get(n.node_id) is not n}
        assert all(before[n.node_id] is n for n in diff.removed)
        previous = refreshed


@PROPERTY
@given(tables, change_lists)
def test_from_dicts_refreshes_the_same_way(table, rounds):
    def dicts(snap):
        return snap.to_dict()["nodes"]

    previous = ClusterSnapshot.from_ray(table.read())
    for changes in rounds:
        for change in changes:
            table.apply(change)
        fresh = ClusterSnapshot.from_ray(table.read())
        # Two live nodes with one label are refused by from_dicts: compare only valid tables.
        labels = [n.label for n in fresh.live if n.label]
        if len(labels) != len(set(labels)):
            continue
        refreshed = ClusterSnapshot.from_dicts(dicts(fresh), previous=previous)
        same_snapshot(refreshed, ClusterSnapshot.from_dicts(dicts(fresh)))
        previous = refreshed


def test_a_refresh_with_another_label_prefix_starts_over():
    first = ClusterSnapshot.from_ray([ray_record(0, label="node0")])
    other = ClusterSnapshot.from_ray([ray_record(0, label="node0")], label_prefix="gpu",
                                     previous=first)
    assert other.diff is None and other.nodes[0] is not first.nodes[0]
    assert other.placeable == ()  # node0 is not a gpu<i> label


def test_free_resources_change_without_changing_the_node():
    record = ray_record(0, label="node0", cpus=4)
    first = ClusterSnapshot.from_ray([record], {record["NodeID"]: {"CPU": 4.0}})
    busy = ClusterSnapshot.from_ray([record], {record["NodeID"]: {"CPU": 1.0}}, previous=first)
    assert busy.nodes[0] is first.nodes[0] and busy.diff == (first.version, (), ())
    assert busy.free(busy.nodes[0])["CPU"] == 1.0 and first.free(first.nodes[0])["CPU"] == 4.0


# -- candidates ---------------------------------------------------------------------------------

def attempt(call, *args):
    """``call(*args)`` and None, or None and the rule of the PlacementError it raised."""
    try:
        return call(*args), None
    except PlacementError as refusal:
        return None, refusal.rule


@PROPERTY
@given(tables, change_lists, st.sampled_from([AUTO, RESOURCE, NODE_ID, LABEL]),
       st.sampled_from([None, 0.001, 600.0, 2000.0]), st.lists(st.sampled_from(DEMANDS)),
       st.sampled_from([None, {"zone": "z1"}, {"zone": "!in(z0,z2)"}]))
def test_followed_candidates_are_exactly_fresh_ones(table, rounds, backend, pin, asked, where):
    where = None if where is None else LabelFilter(where)
    snap = ClusterSnapshot.from_ray(table.read())
    cands, _ = attempt(Candidates, snap, backend, pin, where)
    for changes in rounds:
        for demand in asked:  # fill the per-demand cache the update must patch
            if cands is not None:
                attempt(cands.fitting, demand)
        for change in changes:
            table.apply(change)
        snap = ClusterSnapshot.from_ray(table.read(), previous=snap)
        fresh, fresh_rule = attempt(Candidates, snap, backend, pin, where)
        if cands is None:
            cands = fresh
            continue
        followed, rule = attempt(cands.follow, snap)
        assert rule == fresh_rule
        if fresh is None:
            cands = None
            continue
        assert followed is not None
        assert followed.backend == fresh.backend  # auto: the same resolution
        assert followed.nodes == fresh.nodes
        assert followed.by_id == fresh.by_id
        for demand in DEMANDS:
            want, want_rule = attempt(fresh.fitting, demand)
            assert attempt(followed.fitting, demand) == (want, want_rule)
            if want is not None:
                assert followed.fitting_ids(demand) == tuple(n.node_id for n in want)
        for node in snap.nodes:
            assert followed.get(node.node_id) is fresh.get(node.node_id)
        cands = followed


def test_candidates_are_shared_by_the_policies_deciding_on_one_snapshot():
    snap = ClusterSnapshot.from_dicts([{"id": f"n{i}", "label": f"node{i}"} for i in range(3)])
    hard = [RoundRobin(soft=False), AntiAffinity(), Packing()]
    soft = [RoundRobin(), LeastLoaded(), AntiAffinity(strict=False)]  # no pin to check
    for policy in hard + soft:
        policy.decide(snap, group="g")
    assert len({id(policy._candidates) for policy in hard}) == 1
    assert len({id(policy._candidates) for policy in soft}) == 1


# -- policies across refreshes ---------------------------------------------------------------------

def counting(built, name, original):
    """``original`` (a function), recording ``name`` in ``built`` at each call."""
    def count(*args, **kwargs):
        built.append(name)
        return original(*args, **kwargs)
    return count


def test_a_followed_policy_decides_without_building_anything(monkeypatch):
    """What "no .remote() pays for a refresh" means: after the refresher's follow, the next
    decision neither builds nor patches candidates, node sets, slots, indexes or weighted
    orders."""
    import placement.policies.candidates as candidates
    import placement.policies.ledger as ledger
    import placement.policies.spread as spread
    import placement.policies.turns as turns

    table = Table([(2, False)] * 6)
    snap = ClusterSnapshot.from_ray(table.read())
    policies = [RoundRobin(), RoundRobin(weights="capacity"), AntiAffinity(max_per_node=99),
                AntiAffinity(max_per_node=99, topology="zone"), Packing(),
                AntiAffinity(max_skew=2, strict=False),
                AntiAffinity(topology="zone", max_skew=2, strict=False),
                Packing(topology="zone", strict=False), LeastLoaded()]
    for policy in policies:
        for group in range(3):
            policy.commit(policy.propose(snap, Request(Demand({"CPU": 1}), group)))
    for change in [("join", 9, 2, False, False), ("die", 2), ("rezone", 0, 2), ("resize", 1, 4)]:
        table.apply(change)
        snap = ClusterSnapshot.from_ray(table.read(), previous=snap)
        for policy in policies:
            policy.follow(snap)
        built: list[str] = []
        for owner, name in ((Candidates, "__init__"), (Candidates, "_followed"),
                            (Candidates, "_fit"), (candidates.NodeSet, "__init__"),
                            (ledger.LeastIndex, "__init__"), (spread.Domains, "__init__"),
                            (turns.Turns, "__init__")):
            monkeypatch.setattr(owner, name,
                                counting(built, f"{owner.__name__}.{name}", getattr(owner, name)))
        for policy in policies:
            policy.commit(policy.propose(snap, Request(Demand({"CPU": 1}), 1)))
        monkeypatch.undo()
        assert built == [], f"a decision after follow() built {built}"


@PROPERTY
@given(tables, change_lists, st.booleans())
def test_strict_spread_stays_distinct_across_followed_refreshes(table, rounds, follow):
    """Replicas stay on distinct nodes whether the refresher followed each snapshot or the
    decisions met them first; refusals happen exactly when every live candidate holds one."""
    policy = AntiAffinity(backend=NODE_ID)
    snap = ClusterSnapshot.from_ray(table.read())
    placed: dict[str, int] = {}  # node id -> replicas, released when the node dies
    decisions = []
    for changes in rounds:
        for change in changes:
            table.apply(change)
        snap = ClusterSnapshot.from_ray(table.read(), previous=snap)
        if follow:
            policy.follow(snap)
        for node_id in list(placed):  # replicas on nodes that died ended
            if node_id not in {n.node_id for n in snap.live}:
                for decision in [d for d in decisions if d.node.node_id == node_id]:
                    policy.release(decision)
                    decisions.remove(decision)
                del placed[node_id]
        free = [n.node_id for n in snap.live if n.node_id not in placed]
        try:
            decision = policy.propose(snap)
        except PlacementError as refusal:
            assert not free, f"refused ({refusal.rule}) with {free} free"
            continue
        policy.commit(decision)
        decisions.append(decision)
        assert decision.node.node_id in free
        placed[decision.node.node_id] = 1


# -- the cache and its refresher ------------------------------------------------------------------

class Reader:
    """A fake cluster read: counts reads, records which threads read, can fail or hang."""

    def __init__(self, nodes: int = 3) -> None:
        self.table = Table([(2, False)] * nodes)
        self.threads: list[str] = []
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, previous):
        self.threads.append(threading.current_thread().name)
        self.gate.wait(10)
        if self.fail:
            raise ConnectionError("GCS unreachable")
        return ClusterSnapshot.from_ray(self.table.read(), previous=previous)


def wait_until(condition, timeout=5.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.01)


def test_the_refresher_reads_off_the_submit_path_and_follows_before_publishing():
    reader = Reader()
    cache = SnapshotCache(ttl=0.05, reader=reader, background=True)
    policy = RoundRobin()
    seen_during_follow = []

    class Watcher:
        def follow(self, snapshot):
            seen_during_follow.append((snapshot.version, cache._snapshot.version))

    watcher = Watcher()
    cache.follow(policy)
    cache.follow(watcher)
    try:
        first = cache.get()  # the first read happens here; the refresher starts after it
        policy.decide(first)
        assert cache.refreshing
        thread = cache._thread
        wait_until(lambda: cache.reads >= 4, what="three background refreshes")
        for _ in range(200):
            cache.get()
        assert reader.threads[0] == threading.current_thread().name
        assert set(reader.threads[1:]) == {"placement-snapshot-refresher"}
        # Followers saw each new snapshot while get() still returned the one before.
        assert seen_during_follow and all(new > old for new, old in seen_during_follow)
        assert policy._candidates.snapshot.version >= seen_during_follow[-1][0] or \
            policy._candidates.snapshot is cache.get()
    finally:
        cache.stop()
    # This cache's thread (the process may run others: the session's connection has one).
    assert not cache.refreshing and thread is not None and not thread.is_alive()


def test_the_refresher_ends_when_the_connection_does():
    connected = [True]
    cache = SnapshotCache(ttl=0.05, reader=Reader(), background=True,
                          connected=lambda: connected[0])
    cache.get()
    assert cache.refreshing
    first = cache._thread
    connected[0] = False
    wait_until(lambda: not cache.refreshing, timeout=1 + 2 * SnapshotCache.POLL,
               what="the refresher ending after the connection ended")
    assert first is not None and not first.is_alive()
    # The next get() reads at once (the next connection may be another cluster) and, once
    # connected again, starts a new refresher.
    reads = cache.reads
    connected[0] = True
    cache.get()
    assert cache.reads == reads + 1 and cache.refreshing
    second = cache._thread
    cache.stop()
    cache.stop()  # idempotent
    assert second is not None and second is not first and not second.is_alive()


def test_no_refresher_starts_without_a_connection():
    cache = SnapshotCache(ttl=0.05, reader=Reader(), background=True, connected=lambda: False)
    cache.get()
    assert not cache.refreshing and cache._thread is None


def test_a_failing_read_keeps_the_last_snapshot_and_is_retried():
    reader = Reader()
    cache = SnapshotCache(ttl=0.05, reader=reader, background=True, stale_after=60)
    try:
        good = cache.get()
        reader.fail = True
        wait_until(lambda: cache.errors >= 2, what="two failed background reads")
        assert cache.get() is good and isinstance(cache.last_error, ConnectionError)
        reader.fail = False
        wait_until(lambda: cache.get() is not good, what="a read after the failures")
        assert cache.refreshing
    finally:
        cache.stop()


def test_a_hanging_refresher_does_not_hold_placements_past_stale_after():
    now = [0.0]
    reader = Reader()
    hang, hanging, release = threading.Event(), threading.Event(), threading.Event()

    def read(previous):  # the refresher's reads hang while `hang` is set; callers' never do
        snapshot = reader(previous)
        if threading.current_thread().name == "placement-snapshot-refresher" and hang.is_set():
            hanging.set()
            release.wait(10)
        return snapshot

    class Published:  # followers see every snapshot as it is published
        versions: list[int] = []

        def follow(self, snapshot):
            self.versions.append(snapshot.version)

    published = Published()
    cache = SnapshotCache(ttl=1, reader=read, clock=lambda: now[0], background=True,
                          stale_after=5)
    cache.follow(published)
    try:
        first = cache.get()
        now[0] = 3.0  # older than the ttl, younger than stale_after: the refresher's job
        assert cache.get() is first and reader.threads.count("MainThread") == 1
        hang.set()
        assert hanging.wait(5), "the refresher did not start a read within 5 s"
        now[0] = 6.0  # now too old: the placement reads for itself, the refresher still hangs
        done = []
        caller = threading.Thread(target=lambda: done.append(cache.get()), name="caller")
        caller.start()
        caller.join(5)
        assert done and done[0] is not first and "caller" in reader.threads
        hang.clear()
        release.set()  # the hung read returns a snapshot older than the caller's
        wait_until(lambda: cache.get().version > done[0].version,
                   what="a later background read")
        assert published.versions == sorted(set(published.versions)), \
            "an older snapshot was published over a newer one"
    finally:
        hang.clear()
        release.set()
        cache.stop()


def test_invalidate_keeps_the_base_of_the_next_refresh():
    reader = Reader()
    cache = SnapshotCache(ttl=60, reader=reader)
    first = cache.get()
    cache.invalidate()
    second = cache.get()
    assert second is not first and cache.reads == 2
    assert second.diff is not None and second.diff.base_version == first.version
    assert second.nodes[0] is first.nodes[0]


def test_followers_are_held_weakly():
    cache = SnapshotCache(ttl=60, reader=Reader())
    policy = RoundRobin()
    cache.follow(policy)
    assert len(cache._followers) == 1
    del policy
    assert len(cache._followers) == 0


def test_a_follower_that_raises_does_not_stop_the_refresh():
    class Broken:
        def follow(self, snapshot):
            raise RuntimeError("boom")

    broken = Broken()
    cache = SnapshotCache(ttl=60, reader=Reader())
    cache.follow(broken)
    first = cache.get()
    assert cache.refresh() is not first


def test_refusals_after_a_refresh_name_the_same_rule():
    """When a refresh leaves no candidate, the decision gives the reason a fresh build gives:
    here the filter's nodes died while others live (no-node-matches, not no-labelled-nodes)."""
    table = Table([(2, False)] * 3)  # zones z0, z1, z2
    snap = ClusterSnapshot.from_ray(table.read())
    policy = RoundRobin(where={"zone": "z1"})
    policy.decide(snap)
    table.apply(("die", 1))  # the only z1 node
    dead = ClusterSnapshot.from_ray(table.read(), previous=snap)
    policy.follow(dead)  # nothing to follow to: the decision says why
    with pytest.raises(PlacementError) as refused:
        policy.decide(dead)
    assert refused.value.rule == errors.NO_MATCHING_NODES
    table.apply(("die", 0))
    table.apply(("die", 2))
    gone = ClusterSnapshot.from_ray(table.read(), previous=dead)
    with pytest.raises(PlacementError) as refused:
        policy.decide(gone)
    assert refused.value.rule == errors.NO_CLUSTER_NODES


# -- on the real cluster ------------------------------------------------------------------------

_DRIVER = """
import json, threading, time
import ray
import placement
import placement.cluster as cluster
from placement import RoundRobin

reads = []
original = cluster.read_snapshot
def counting(*args, **kwargs):
    reads.append(threading.current_thread().name)
    return original(*args, **kwargs)
cluster.read_snapshot = counting

placement.connect(state_dir={state_dir!r})

@ray.remote(num_cpus=0)
def where():
    return ray.get_runtime_context().get_node_id()

spread = RoundRobin().place(where)
ran = []
deadline = time.monotonic() + 3 * cluster.DEFAULT_TTL_SECONDS
while time.monotonic() < deadline:  # placements while the refresher reads three times or more
    ran.append(ray.get(spread.remote()))
alive_before = cluster.default_cache().refreshing
ray.shutdown()
time.sleep(1.0)
left = [t.name for t in threading.enumerate() if t.name == "placement-snapshot-refresher"]
print(json.dumps({{"reads": reads, "ran": ran, "alive_before": alive_before, "left": left}}))
"""


def test_placements_read_the_cluster_once_and_the_refresher_ends_with_ray(local_cluster):
    done = run_python(_DRIVER.format(state_dir=str(local_cluster.state_dir)), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    reads, ran = report["reads"], report["ran"]
    # One read on the submitting thread (the first placement), every later one in the background.
    assert reads[0] == "MainThread" and len(reads) >= 3, reads
    assert set(reads[1:]) == {"placement-snapshot-refresher"}, reads
    # The placements still balance over the four nodes, read inside the tasks.
    counts = Counter(ran)
    assert len(counts) == SESSION_NODES and max(counts.values()) - min(counts.values()) <= 1
    assert report["alive_before"] and report["left"] == []


# -- reproductions from an adversarial review ------------------------------------------------------

def test_candidates_follow_while_another_policy_adds_a_demand(monkeypatch):
    """Policies share candidates: one may ask for a new demand while another follows them to a
    newer snapshot (another thread in real use; here, from inside the update itself)."""
    table = Table([(4, False), (1, False), (4, False)])
    snap = ClusterSnapshot.from_ray(table.read())
    cands = Candidates.of(snap, RESOURCE)
    cands.fitting(Demand({"CPU": 2}))  # some nodes: the update asks the new node if it fits
    table.apply(("join", 3, 4, False, False))
    newer = ClusterSnapshot.from_ray(table.read(), previous=snap)
    from placement.snapshot import NodeInfo

    original, asked = NodeInfo.fits, []

    def fits(node, demand):
        if not asked:
            asked.append(demand)
            cands.fitting(Demand({"CPU": 0.5}))  # a new demand, mid-update
        return original(node, demand)

    monkeypatch.setattr(NodeInfo, "fits", fits)
    followed = cands.follow(newer)
    monkeypatch.undo()
    fresh = Candidates(newer, RESOURCE)
    assert asked and followed.nodes == fresh.nodes
    assert followed.fitting(Demand({"CPU": 2})) == fresh.fitting(Demand({"CPU": 2}))


def test_followers_can_register_while_the_cache_refreshes():
    import sys

    cache = SnapshotCache(ttl=60, reader=Reader())
    keep = [RoundRobin() for _ in range(500)]
    for policy in keep:
        cache.follow(policy)
    stop, errors = threading.Event(), []

    def register():
        while not stop.is_set():
            policy = RoundRobin()
            keep.append(policy)
            cache.follow(policy)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    registrar = threading.Thread(target=register)
    registrar.start()
    try:
        for _ in range(examples(60)):
            try:
                cache.refresh()
            except RuntimeError as error:
                errors.append(repr(error))
    finally:
        stop.set()
        registrar.join(10)
        sys.setswitchinterval(interval)
    assert errors == []


def test_a_follow_racing_a_decision_is_not_lost(monkeypatch):
    def node(i, alive=True):
        return {"id": f"id{i}", "label": f"node{i}", "alive": alive}

    s1 = ClusterSnapshot.from_dicts([node(0), node(1)])
    s2 = ClusterSnapshot.from_dicts([node(0), node(1), node(2)], previous=s1)
    s3 = ClusterSnapshot.from_dicts([node(0), node(1, alive=False), node(2)], previous=s2)
    policy = RoundRobin()
    policy.decide(s1)
    entered, go_on = threading.Event(), threading.Event()
    original = Candidates.follow

    def slow_follow(self, newer):  # holds the window between building and installing open
        if newer is s3 and threading.current_thread().name == "follower":
            entered.set()
            go_on.wait(5)
        return original(self, newer)

    monkeypatch.setattr(Candidates, "follow", slow_follow)
    follower = threading.Thread(target=policy.follow, args=(s3,), name="follower")
    follower.start()
    assert entered.wait(5)
    policy.decide(s2)  # a decision moves the candidates to s2 meanwhile
    go_on.set()
    follower.join(5)
    monkeypatch.undo()
    assert "node1" not in [policy.decide(s2).node_name for _ in range(6)]


def test_a_rollback_after_a_followed_refresh_leaves_no_trace():
    s1 = ClusterSnapshot.from_dicts([{"id": f"id{i}", "label": f"node{i}"} for i in range(4)])
    s2 = ClusterSnapshot.from_dicts([{"id": f"id{i}", "label": f"node{i}"} for i in range(5)],
                                    previous=s1)

    def run(fail, seed):
        policy = RoundRobin(seed=seed).clone()
        policy.decide(s1)
        if fail:
            failed = policy.propose(s1)
        policy.follow(s2)
        if fail:
            policy.rollback(failed)
        return [policy.decide(s2).node_name for _ in range(6)]

    for seed in (None, 3):
        assert run(True, seed) == run(False, seed)


def test_a_seeded_round_robin_does_not_depend_on_how_often_it_was_followed():
    def snap(n, previous=None):
        return ClusterSnapshot.from_dicts([{"id": f"id{i}", "label": f"node{i}"}
                                           for i in range(n)], previous=previous)

    t1 = snap(4)
    t2 = snap(5, t1)
    t3 = snap(6, t2)

    def run(follows):
        policy = RoundRobin(seed=7)
        first = [policy.decide(t1).node_name for _ in range(2)]
        for snapshot in follows:
            policy.follow(snapshot)
        return first + [policy.decide(t3).node_name for _ in range(6)]

    assert run([]) == run([t3]) == run([t2, t3])


def test_node_ids_beyond_any_character_are_found_by_label():
    first = ClusterSnapshot.from_dicts([{"id": "\U0010ffff\U0010ffff", "label": "node0"}])
    changed = ClusterSnapshot.from_dicts(
        [{"id": "\U0010ffff\U0010ffff", "label": "node0", "resources": {"CPU": 2}}],
        previous=first)
    assert changed.by_label["node0"].cpus == 2


def test_a_ray_refresh_never_reuses_nodes_of_a_snapshot_built_from_dicts():
    given = ClusterSnapshot.from_dicts([{"id": "a", "label": "worker", "is_head": True}])
    record = {"NodeID": "a", "Alive": True, "NodeManagerAddress": "",
              "Resources": {"worker": 1000.0}, "Labels": {}}
    refreshed = ClusterSnapshot.from_ray([record], previous=given)
    same_snapshot(refreshed, ClusterSnapshot.from_ray([record]))


@pytest.mark.parametrize("shape", [
    {"Labels": None}, {"Labels": {}}, {"NodeManagerAddress": None}, {"Alive": 1},
    {"Resources": None},
])
def test_odd_record_shapes_still_reuse_unchanged_nodes(shape):
    record = {**ray_record(0, label="node0"), **shape}
    first = ClusterSnapshot.from_ray([dict(record)])
    again = ClusterSnapshot.from_ray([dict(record)], previous=first)
    assert again.nodes[0] is first.nodes[0] and again.diff.added == ()
    same_snapshot(again, ClusterSnapshot.from_ray([dict(record)]))


def test_auto_uses_node_resources_on_a_labelled_cluster_and_node_ids_on_any_other():
    table = Table([(2, False)] * 3)  # labelled node0..node2 (resource and Ray label)
    snap = ClusterSnapshot.from_ray(table.read())
    policy = RoundRobin()
    assert policy.decide(snap).backend == RESOURCE
    table.apply(("join", 99, 2, False, False))  # a node started with plain `ray start`
    snap = ClusterSnapshot.from_ray(table.read(), previous=snap)
    policy.follow(snap)
    decisions = [policy.decide(snap) for _ in range(4)]
    assert {d.backend for d in decisions} == {NODE_ID}
    assert len({d.node.node_id for d in decisions}) == 4  # the new node is used too
    table.apply(("forget", len(table.records) - 1))  # it leaves again: back to resources
    snap = ClusterSnapshot.from_ray(table.read(), previous=snap)
    assert policy.decide(snap).backend == RESOURCE


def test_a_forked_child_starts_its_own_refresher():
    import os

    reader = Reader()
    cache = SnapshotCache(ttl=0.05, reader=reader, background=True)
    os.register_at_fork(after_in_child=cache._after_fork)
    try:
        cache.get()
        assert cache.refreshing
        pid = os.fork()
        if pid == 0:  # the child: no parent thread, a read of its own, then a refresher
            ok = not cache.refreshing and cache.get() is not None and cache.refreshing
            cache.stop()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        cache.stop()
