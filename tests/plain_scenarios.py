"""Policies on a plain Ray cluster (``ray start`` with no node<i> resources and no placement
labels, as a cluster the toolkit did not set up), run as a driver of its own:

    python -m tests.plain_scenarios STATE_DIR

Prints one JSON object; tests/test_plain_cluster.py asserts on it. Every node is read inside the
work itself.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter

import ray
from ray._private.ray_constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
from ray.experimental.internal_kv import _internal_kv_get
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import placement
from placement import (
    Affinity,
    AntiAffinity,
    LeastLoaded,
    Local,
    Locality,
    Packing,
    PlacementError,
    RoundRobin,
)
from placement.local_cluster import add_node


@ray.remote(num_cpus=0)
def where(_: object = None) -> str:
    time.sleep(0.2)  # long enough that queued one-CPU tasks spill to every node they may
    return ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=0)
class Replica:
    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=0)
def parent() -> tuple[str, list[str]]:
    children = [Local().place(where).remote() for _ in range(3)]
    return ray.get_runtime_context().get_node_id(), ray.get(children)


def main(state_dir: str) -> int:
    placement.connect(state_dir=state_dir)
    out: dict[str, object] = {}
    snap = placement.current_snapshot(refresh=True)
    out["nodes"] = sorted(n.node_id for n in snap.live)
    out["labelled"] = len(snap.placeable)

    handle = RoundRobin(backend="node_id").place(where)
    out["round_robin"] = Counter(ray.get([handle.remote() for _ in range(6)], timeout=120))
    out["inline"] = Counter(ray.get([RoundRobin(backend="node_id").place(where).remote()
                                     for _ in range(6)], timeout=120))

    apart = AntiAffinity(backend="node_id")
    failures = []
    try:  # Ray refuses the argument: the slot must not be used up
        apart.place(where).remote(threading.Lock())
    except TypeError as error:
        failures.append(type(error).__name__)
    keep = Replica.options(name="taken").remote()
    try:  # Ray refuses the taken name
        apart.place(Replica, name="taken").remote()
    except ValueError as error:  # ActorAlreadyExistsError is one
        failures.append(type(error).__name__)
    replicas = [apart.place(Replica).remote() for _ in range(len(snap.live))]
    out["failures"] = failures
    out["replicas"] = ray.get([r.node.remote() for r in replicas], timeout=120)
    try:
        apart.place(Replica).remote()
        out["extra_replica"] = "placed"
    except PlacementError as refusal:
        out["extra_replica"] = refusal.rule
    for actor in [*replicas, keep]:
        ray.kill(actor)

    out["local"] = ray.get(parent.remote(), timeout=120)
    try:
        RoundRobin(backend="resource").place(where).remote()
        out["resource_backend"] = "placed"
    except PlacementError as refusal:
        out["resource_backend"] = refusal.rule

    # No setup, no backend named: every policy's default works on this cluster by node id.
    spread = RoundRobin().place(where)
    decided = [spread.submit() for _ in range(2 * len(snap.live))]
    out["auto_round_robin"] = Counter(ray.get([ref for ref, _ in decided], timeout=120))
    out["auto_backends"] = sorted({decision.backend for _, decision in decided})
    apart = AntiAffinity()
    spread_replicas = [apart.place(Replica).remote() for _ in range(len(snap.live))]
    out["auto_replicas"] = ray.get([r.node.remote() for r in spread_replicas], timeout=120)
    for actor in spread_replicas:
        ray.kill(actor)
    pack = Packing()
    groups = {g: ray.get([pack.place(where, group=g).remote() for _ in range(3)], timeout=120)
              for g in ("a", "b")}
    out["auto_groups"] = {g: sorted(set(nodes)) for g, nodes in groups.items()}
    follow = Affinity()
    out["auto_affinity"] = sorted(set(ray.get([follow.place(where).remote() for _ in range(4)],
                                              timeout=120)))

    # Label filters (the nodes have zone labels: z1, z2 and none).
    out["zones"] = {n.node_id: n.labels.get("zone") for n in snap.live}
    out["node_id_labels"] = all(n.labels.get("ray.io/node-id") == n.node_id for n in snap.live)
    out["where_z1"] = sorted(set(ray.get(
        [RoundRobin(where={"zone": "z1"}).place(where).remote() for _ in range(4)], timeout=120)))
    not_z1 = RoundRobin(where={"zone": "!z1"}).place(where)
    out["where_not_z1"] = sorted(set(ray.get([not_z1.remote() for _ in range(4)], timeout=120)))
    # Soft, on an unlabelled node: named by Ray's ray.io/node-id label, falling back inside the
    # filter (a label selector nobody matches would wait forever: the timeout would say so).
    soft = RoundRobin(soft=True, where={"zone": "in(z1,z2)"}).place(where)
    decided = [soft.submit() for _ in range(4)]
    ran = ray.get([ref for ref, _ in decided], timeout=120)
    out["where_soft"] = [(d.node.node_id, node) for (_, d), node in zip(decided, ran, strict=True)]
    # What Ray itself does with "!z1" on a node without the key (the filters assume Kubernetes'
    # NotIn: it matches), through plain Ray: 12 one-CPU tasks on one-CPU nodes spill over every
    # node the selector allows.
    plain_not_z1 = where.options(label_selector={"zone": "!z1"}, num_cpus=1)
    out["ray_not_z1"] = sorted(set(ray.get([plain_not_z1.remote(i) for i in range(12)],
                                           timeout=120)))
    # Soft on an unlabelled node whose one CPU is held: True runs elsewhere, "gone" waits.
    busy = next(n for n in snap.live if n.labels.get("zone") == "z2")
    for mode in (True, "gone"):
        holder = Replica.options(num_cpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(
            busy.node_id, soft=False)).remote()
        ray.get(holder.node.remote(), timeout=60)
        ref = Affinity(busy.node_id, soft=mode).place(where, num_cpus=1).remote()
        done, _ = ray.wait([ref], timeout=8)
        ray.kill(holder)
        out[f"soft_busy_{mode}"] = {"spilled": bool(done),
                                    "ran_on_busy_node": ray.get(ref, timeout=60) == busy.node_id}
    # A user's own label_selector: part of the demand, combined with the policy's, passed on.
    both = RoundRobin().place(where, label_selector={"zone": "in(z1,z2)"})
    out["selector_rr"] = Counter(ray.get([both.remote() for _ in range(4)], timeout=120))
    soft_z2 = RoundRobin(soft=True).place(where, label_selector={"zone": "z2"})
    out["selector_soft"] = sorted(set(ray.get([soft_z2.remote() for _ in range(2)],
                                              timeout=120)))
    for name, attempt in (
            ("selector_z9", lambda: RoundRobin().place(where, label_selector={"zone": "z9"})
             .remote()),
            ("selector_contradicts", lambda: RoundRobin(where={"zone": "z1"}).place(
                where, label_selector={"zone": "z2"}))):
        try:
            attempt()
            out[name] = "placed"
        except PlacementError as refusal:
            out[name] = refusal.rule

    # Topology on any label: spread over zones (the node without one is in no domain), with
    # a bound on skew; groups packed per zone.
    zoned = AntiAffinity(topology="zone")
    zone_replicas = [zoned.place(Replica).remote() for _ in range(2)]
    out["topology_replicas"] = ray.get([r.node.remote() for r in zone_replicas], timeout=120)
    try:
        zoned.place(Replica).remote()
        out["topology_extra"] = "placed"
    except PlacementError as refusal:
        out["topology_extra"] = refusal.rule
    for actor in zone_replicas:
        ray.kill(actor)
    even = AntiAffinity(topology="zone", max_skew=1)
    skewed = [even.place(where).remote() for _ in range(2)]  # z1, z2
    skewed.append(even.place(where, label_selector={"zone": "z1"}).remote())  # 2 vs 1
    out["skew_ran"] = ray.get(skewed, timeout=120)
    try:  # 3 vs 1
        even.place(where, label_selector={"zone": "z1"}).remote()
        out["skew_extra"] = "placed"
    except PlacementError as refusal:
        out["skew_extra"] = refusal.rule
    zone_pack = Packing(topology="zone")
    out["zone_groups"] = {g: ray.get([zone_pack.place(where, group=g).remote()
                                      for _ in range(2)], timeout=120) for g in ("a", "b")}
    try:
        RoundRobin(where={"zone": "z9"}).place(where).remote()
        out["where_z9"] = "placed"
    except PlacementError as refusal:
        out["where_z9"] = refusal.rule
    out.update(reserve_by_node_id())
    out.update(shared_by_node_id())
    out.update(balance_and_locality())
    out.update(grow_when_nodes_run_out(state_dir))
    print(json.dumps(out))
    ray.shutdown()
    return 0


@ray.remote(num_cpus=0)
def block(megabytes: int) -> tuple[str, bytes]:
    return ray.get_runtime_context().get_node_id(), b"x" * (megabytes * 2**20)


@ray.remote(num_cpus=0)
def made_and_ran(made: tuple[str, bytes]) -> tuple[str, str]:
    return made[0], ray.get_runtime_context().get_node_id()


def balance_and_locality() -> dict[str, object]:
    """LeastLoaded and Locality with no setup: a live LeastLoaded releases each task as it ends
    (a second wave of the same size lands like the first), and Locality runs each consumer on
    the node that made its block (both read inside)."""
    out: dict[str, object] = {}
    live = [n.node_id for n in placement.current_snapshot(refresh=True).live]
    nodes = len(live)
    policy = LeastLoaded(weights="equal")
    balance = policy.place(where)
    waves = []
    for _ in range(2):
        waves.append(sorted(ray.get([balance.remote() for _ in range(nodes)], timeout=120)))
        # Ray runs the completion callbacks on its own thread, soon after the results: wait
        # (bounded) until the policy heard of every one, so the next wave starts from 0.
        for _ in range(100):
            if not any(policy.load(n) for n in live):
                break
            time.sleep(0.1)
    out["least_loaded_waves"] = waves
    out["least_loaded_left"] = sum(policy.load(n) for n in live)
    blocks = [RoundRobin().place(block).remote(2) for _ in range(2 * nodes)]
    ray.wait(blocks, num_returns=len(blocks), timeout=120, fetch_local=False)  # no copy here
    near = (Locality() | RoundRobin()).place(made_and_ran)
    # In reverse: consumers placed round robin would not follow the blocks' round robin then.
    submitted = [near.submit(b) for b in reversed(blocks)]
    out["locality_pairs"] = ray.get([ref for ref, _ in submitted], timeout=120)
    out["locality_fallbacks"] = sum(d.fallback or not d.local_bytes for _, d in submitted)
    return out


def shared_by_node_id() -> dict[str, object]:
    """Two policies sharing a ledger (as two drivers would: each has its own owner id) spread
    over every node together, by node id; one more is refused."""
    from placement.shared import remove_shared_ledger

    nodes = len(placement.current_snapshot(refresh=True).live)
    first, second = (AntiAffinity(shared="plain-web") for _ in range(2))
    replicas = [(first, second)[i % 2].place(Replica).remote() for i in range(nodes)]
    out: dict[str, object] = {
        "shared_ran": ray.get([r.node.remote() for r in replicas], timeout=120)}
    try:
        second.place(Replica).remote()
        out["shared_extra"] = "placed"
    except PlacementError as refusal:
        out["shared_extra"] = refusal.rule
    for actor in replicas:
        ray.kill(actor)
    remove_shared_ledger("plain-web")
    return out


def reserve_by_node_id() -> dict[str, object]:
    """A reservation pins its bundles by Ray's ray.io/node-id label, which every node has: one
    replica per node runs where planned (read inside); a second gang while the first holds every
    CPU times out and leaves only a REMOVED group."""
    from ray.util import placement_group_table

    out: dict[str, object] = {}
    nodes = len(placement.current_snapshot(refresh=True).live)
    with AntiAffinity().reserve(nodes, num_cpus=1) as gang:
        replicas = [gang.place(Replica, num_cpus=1).remote() for _ in range(nodes)]
        out["reserve_planned"] = list(gang.nodes)
        out["reserve_ran"] = ray.get([r.node.remote() for r in replicas], timeout=120)
        table = placement_group_table(gang.placement_group)["bundles_to_node_id"]
        out["reserve_table"] = [table[i] for i in range(nodes)]
        before = set(placement_group_table())
        try:
            AntiAffinity().reserve(nodes, num_cpus=1, timeout=3)
            out["reserve_second"] = "reserved"
        except PlacementError as refusal:
            out["reserve_second"] = refusal.rule
        out["reserve_second_states"] = [placement_group_table()[g]["state"]
                                        for g in set(placement_group_table()) - before]
    out["reserve_released"] = placement_group_table(gang.placement_group)["state"]
    return out


def requested() -> list:
    """What Ray's autoscaler was asked for (request_resources), read where Ray keeps it."""
    from ray.autoscaler.v2.utils import is_autoscaler_v2
    assert not is_autoscaler_v2(), "this cluster runs autoscaler v2: read its constraints instead"
    raw = _internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
    return json.loads(raw) if raw else []


def grow_when_nodes_run_out(state_dir: str) -> dict[str, object]:
    """A strict spread out of nodes with wait_for_nodes= asks Ray for one more node and waits.
    The autoscaler here is a stand-in: it reads what Ray was asked and starts a node (the
    toolkit's add_node); the replica must then run on the new node."""
    before = {n.node_id for n in placement.current_snapshot(refresh=True).live}
    out: dict[str, object] = {}
    seen: list[list] = []

    def stand_in_autoscaler() -> None:
        for _ in range(600):
            asked = requested()
            if asked:
                seen.append(asked)
                add_node(state_dir)
                return
            time.sleep(0.2)

    grower = threading.Thread(target=stand_in_autoscaler, daemon=True)
    grower.start()
    spread = AntiAffinity(wait_for_nodes=180)
    replicas = [spread.place(Replica).remote() for _ in range(len(before) + 1)]
    nodes = ray.get([r.node.remote() for r in replicas], timeout=120)
    grower.join(timeout=60)
    out["grow_asked"] = seen[0] if seen else None
    out["grow_new_node"] = [node not in before for node in nodes]
    out["grow_cleared"] = requested()
    brief = AntiAffinity(wait_for_nodes=3)
    replicas += [brief.place(Replica).remote() for _ in range(len(before) + 1)]
    try:  # nothing starts a node this time: the wait ends, bounded, and says so
        brief.place(Replica).remote()
        out["grow_timeout"] = "placed"
    except PlacementError as refusal:
        out["grow_timeout"] = [refusal.rule, "waited 3 s" in refusal.detail]
    out["grow_cleared_after_timeout"] = requested()
    for actor in replicas:
        ray.kill(actor)
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
