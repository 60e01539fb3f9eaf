"""Fault scenarios on a real local cluster, run as a driver of its own:

    python -m tests.fault_scenarios STATE_DIR

Prints one JSON object; tests/test_faults.py asserts on it. Kills nodes, so it gets a cluster of
its own (three nodes; one joins, two die).
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter

import ray

import placement
from placement import Affinity, AntiAffinity, Audit, PlacementError, RoundRobin, SnapshotCache
from placement.local_cluster import add_node, kill_node, load_state

DEATH_WAIT_SECONDS = 90
# A hard placement on a dead node must fail, not wait: no answer within this long is a hang.
STALE_WAIT_SECONDS = 60


@ray.remote(num_cpus=0, max_retries=5)
def work(i: int) -> tuple[int, str]:
    time.sleep(0.005)
    return i, ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=0)
class Replica:
    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()


def wait_until_dead(node_id: str) -> float:
    began = time.monotonic()
    while time.monotonic() - began < DEATH_WAIT_SECONDS:
        if not placement.current_snapshot(refresh=True).by_id[node_id].alive:
            return time.monotonic() - began
        time.sleep(0.2)
    raise TimeoutError(f"Ray did not mark node {node_id[:8]} dead within {DEATH_WAIT_SECONDS}s")


def node_joins(state_dir: str) -> dict:
    policy = RoundRobin()
    handle = policy.place(work)
    before = {node for _, node in ray.get([handle.remote(i) for i in range(6)])}
    add_node(state_dir)
    placement.current_snapshot(refresh=True)
    after = Counter(node for _, node in ray.get([handle.remote(i) for i in range(8)]))
    return {"nodes_before": len(before), "nodes_after": len(after),
            "after_counts": sorted(after.values())}


# The cluster as read just before a node was killed: what a stale cache would still hold.
BEFORE_KILL: list[placement.ClusterSnapshot] = []


def node_dies_during_round_robin(state_dir: str) -> dict:
    snap = placement.current_snapshot(refresh=True)
    BEFORE_KILL.append(snap)
    driver_node = ray.get_runtime_context().get_node_id()  # this driver submits through it: keep it
    victim = [n for n in snap.placeable if n.node_id != driver_node][-1]
    with Audit() as audit:
        handle = audit.place(RoundRobin(soft=True), work)
        refs, chosen_after_refresh = [], []
        for i in range(1000):
            if i == 300:
                kill_node(state_dir, victim.address)
            if i == 600:  # by now Ray has noticed; the snapshot is read again
                detect = wait_until_dead(victim.node_id)
            ref, decision = handle.submit(i)
            refs.append(ref)
            if i >= 600:
                chosen_after_refresh.append(decision.node.node_id)
        results = ray.get(refs, timeout=300)
        report = audit.report(timeout=60)
    return {
        "results": len(results), "distinct": len({i for i, _ in results}),
        "ran_on_dead_after_kill": sum(node == victim.node_id for _, node in results[310:]),
        "chosen_dead_after_refresh": sum(n == victim.node_id for n in chosen_after_refresh),
        "after_refresh_counts": sorted(Counter(chosen_after_refresh).values()),
        "detect_seconds": round(detect, 1), "victim": victim.label, "audit": report.counts(),
        "audit_violations": len(report.violations),
    }


def strict_to_dead_node(victim_label: str) -> dict:
    began = time.monotonic()
    try:
        Affinity(victim_label).place(work).remote(0)
        refused = None
    except PlacementError as error:
        refused = error.rule
    refused_ms = (time.monotonic() - began) * 1000
    # A snapshot read before the kill still shows the node alive, with its resources: the hard
    # placement reaches Ray, which must fail it (not wait for it).
    alive_again = BEFORE_KILL[-1]
    outcomes: dict[str, str] = {}
    said: dict[str, str] = {}  # what placement.get raises for the same work
    for backend in ("resource", "node_id"):  # each backend's own outcome, none overwritten
        stale_cache = SnapshotCache(ttl=3600, reader=lambda previous: alive_again)
        policy = Affinity(victim_label, backend=backend, cache=stale_cache)
        ref = policy.place(work).remote(1)
        try:
            ray.get(ref, timeout=STALE_WAIT_SECONDS)
            outcomes[backend] = "no error"
        except ray.exceptions.GetTimeoutError:  # the bound: no answer in time counts as a hang
            outcomes[backend] = "hung"
        except Exception as error:  # noqa: BLE001 - the type is the result
            outcomes[backend] = type(error).__name__
        try:
            placement.get([ref], timeout=5)
            said[backend] = "no error"
        except PlacementError as error:
            said[backend] = f"{error.rule}: {error}"
        except Exception as error:  # noqa: BLE001 - the type is the result
            said[backend] = type(error).__name__
    return {"refused_rule": refused, "refused_ms": round(refused_ms, 1),
            "stale_outcomes": outcomes, "get_says": said, "victim_label": victim_label}


def anti_affinity_replaced(state_dir: str) -> dict:
    snap = placement.current_snapshot(refresh=True)
    apart = AntiAffinity()
    replicas = [apart.place(Replica).remote() for _ in range(len(snap.placeable) - 1)]
    homes = ray.get([r.node.remote() for r in replicas])
    driver_node = ray.get_runtime_context().get_node_id()  # this driver submits through it: keep it
    lost = next(home for home in homes if home != driver_node)
    kill_node(state_dir, snap.by_id[lost].address)
    wait_until_dead(lost)
    replacement = apart.place(Replica).remote()
    new_home = ray.get(replacement.node.remote(), timeout=120)
    return {"replicas": len(homes), "distinct": len(set(homes)),
            "replacement_distinct": new_home not in homes,
            "replacement_alive": placement.current_snapshot(refresh=True).by_id[new_home].alive}


def rebalance_after_a_node_joins(state_dir: str) -> dict:
    """Two replicas on each live node (AntiAffinity(max_per_node=2)); a node joins; the plan's
    moves are applied as a user would to stateless replicas: the new one started on the target
    (and answering) before the old one is killed, then the move recorded. Where each replica
    runs is read inside it."""
    live = placement.current_snapshot(refresh=True).placeable
    apart = AntiAffinity(max_per_node=2)
    handle = apart.place(Replica)
    replicas = {}
    for _ in range(2 * len(live)):
        actor, decision = handle.submit()
        replicas[decision.ticket] = actor
    before = Counter(ray.get([r.node.remote() for r in replicas.values()], timeout=120))
    add_node(state_dir)
    plan = apart.rebalance_plan(placement.current_snapshot(refresh=True))
    for move in plan.moves:
        new = Affinity(move.to.node_id).place(Replica).remote()
        ray.get(new.node.remote(), timeout=120)  # the new one answers before the old one ends
        ray.kill(replicas[move.ticket])
        replicas[move.ticket] = new
        apart.record_move(move)
    after = Counter(ray.get([r.node.remote() for r in replicas.values()], timeout=120))
    newest = placement.current_snapshot(refresh=True).placeable[-1].node_id
    # The ledger knows the moves: more replicas go to the nodes holding fewer, read inside.
    extras = [handle.remote() for _ in range(2 * (len(before) + 1) - len(replicas))]
    final = after + Counter(ray.get([e.node.remote() for e in extras], timeout=120))
    for actor in [*replicas.values(), *extras]:
        ray.kill(actor)
    return {"before": sorted(before.values()), "after": sorted(after.values()),
            "moves": len(plan.moves), "on_new_node": after.get(newest, 0),
            "moved_to_new": all(m.to.node_id == newest for m in plan.moves),
            "final": sorted(final.values())}


def main(state_dir: str) -> int:
    placement.connect(state_dir=state_dir)
    out = {"joins": node_joins(state_dir)}
    out["rebalance"] = rebalance_after_a_node_joins(state_dir)  # before any node dies
    out["death"] = node_dies_during_round_robin(state_dir)
    out["strict"] = strict_to_dead_node(out["death"]["victim"])
    out["anti"] = anti_affinity_replaced(state_dir)
    out["state_nodes"] = len(load_state(state_dir).nodes)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
