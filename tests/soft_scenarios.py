"""What Ray 2.60 does with a soft placement whose node is alive but busy, run as a driver of its
own against a labelled local cluster:

    python -m tests.soft_scenarios STATE_DIR

node1's CPUs are held by two one-CPU actors, then one-CPU tasks are sent softly to node1 in each
form Ray offers. Each either runs elsewhere at once (spills when busy) or waits for node1. Prints
one JSON object; tests/test_soft_semantics.py asserts on it. Nodes are read inside the tasks.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import placement
from placement import Affinity
from placement.naming import LABEL_KEY

WAIT_SECONDS = 8.0  # a spill happens within about a second here; a wait lasts until freed


@ray.remote(num_cpus=1)
class Holder:
    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=1)
def where() -> str:
    return ray.get_runtime_context().get_node_id()


def forms(node_id: str, label: str) -> dict[str, dict[str, Any]]:
    return {
        "label selector + fallback": {
            "label_selector": {LABEL_KEY: label},
            "fallback_strategy": [{"label_selector": {LABEL_KEY: f"!{label}"}}]},
        "soft node affinity": {
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=True)},
        "soft node affinity, spill on unavailable": {
            "scheduling_strategy": NodeAffinitySchedulingStrategy(
                node_id, soft=True, _spill_on_unavailable=True)},
    }


# The toolkit's own forms: Affinity("node1", soft=...).place(where).
TOOLKIT = {"toolkit soft=True": True, "toolkit soft='busy'": "busy",
           "toolkit soft='gone'": "gone"}


def main(state_dir: str) -> int:
    placement.connect(state_dir=state_dir)
    snap = placement.current_snapshot(refresh=True)
    busy = snap.by_label["node1"]
    out: dict[str, Any] = {"busy_node": busy.node_id}
    for name, options in [*forms(busy.node_id, "node1").items(), *TOOLKIT.items()]:
        holders = [Holder.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            busy.node_id, soft=False)).remote() for _ in range(int(busy.cpus))]
        held = ray.get([h.node.remote() for h in holders], timeout=60)
        assert set(held) == {busy.node_id}, held
        if name in TOOLKIT:
            ref = Affinity("node1", soft=TOOLKIT[name]).place(where).remote()
        else:
            ref = where.options(**options).remote()
        done, _ = ray.wait([ref], timeout=WAIT_SECONDS)
        spilled_to = ray.get(ref) if done else None
        for holder in holders:
            ray.kill(holder)
        ran_on = ray.get(ref, timeout=60)  # a task that waited runs once node1 is free
        out[name] = {"spilled": bool(done), "ran_on": ran_on,
                     "ran_on_busy_node": ran_on == busy.node_id,
                     "spilled_to": spilled_to}
    out["beside a label_selector"] = _beside_a_label_selector(snap)
    out["zero-CPU actors, soft='gone'"] = _zero_cpu_actors()
    print(json.dumps(out))
    ray.shutdown()
    return 0


@ray.remote(num_cpus=0)
class Idle:
    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()


def _beside_a_label_selector(snap: placement.ClusterSnapshot) -> dict[str, Any]:
    """Soft node affinity to node0 with a label_selector node0 does not match: where Ray runs
    it says whether the selector bounds the fallback (soft="gone" relies on it for where=)."""
    target = snap.by_label["node0"]
    refs = [where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        target.node_id, soft=True), label_selector={LABEL_KEY: "!node0"}).remote()
        for _ in range(4)]
    ran = ray.get(refs, timeout=60)
    return {"target": target.node_id, "ran_on": ran,
            "ran_on_target": sum(node == target.node_id for node in ran)}


def _zero_cpu_actors() -> dict[str, Any]:
    """Actors asking no resources, placed by RoundRobin's default (soft="gone"): Ray ignores
    soft node affinity for them, so the toolkit names the node by label instead."""
    placed = [placement.RoundRobin().place(Idle).submit() for _ in range(8)]
    ran = ray.get([s.result.node.remote() for s in placed], timeout=60)
    for s in placed:
        ray.kill(s.result)
    return {"placed": len(placed),
            "where_planned": sum(s.decision.node.node_id == node
                                 for s, node in zip(placed, ran, strict=True)),
            "nodes": len(set(ran))}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
