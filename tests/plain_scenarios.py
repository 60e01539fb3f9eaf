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
from collections import Counter

import ray

import placement
from placement import Affinity, AntiAffinity, Local, Packing, PlacementError, RoundRobin


@ray.remote(num_cpus=0)
def where(_: object = None) -> str:
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
    print(json.dumps(out))
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
