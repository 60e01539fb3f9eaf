"""Why work has not started: ``placement.explain(ref_or_actor)`` and ``placement pending``.

For a task or actor that has not started: the node placement pinned it to, what it asked for,
what that node has free now, and the fix. Where the work stands comes from Ray's GCS task events
(workers report them about once a second; one read, no dashboard needed); what a node has free
from Ray's resource view; the node a placement chose from this driver's own record of its last
RECORDED decisions (Ray's task events do not say which node a scheduling strategy named).

>>> ref = placement.Affinity("node2").place(train, num_cpus=2).remote()  # doctest: +SKIP
>>> print(placement.explain(ref))                                         # doctest: +SKIP
train: pending (PENDING_NODE_ASSIGNMENT), pinned to node2 by Affinity('node2')
  asked CPU 2, node2 0.001; node2 has CPU 0, node2 1 free now
  why: node2 is busy: it has CPU 0 of the 2 asked free (held by other work; it starts when ...
  fix: wait, use soft=True to run elsewhere, or place it on a node with room now: node0, node1
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray

from . import _ray
from .cluster import current_snapshot
from .policies import Decision
from .policies.selector import LabelFilter
from .reachability import REACHABILITY
from .snapshot import NodeInfo

RECORDED = 10_000  # decisions kept for explain(), the newest

PENDING = frozenset({"NIL", "PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT",
                     "PENDING_OBJ_STORE_MEM_AVAIL", "PENDING_ARGS_FETCH"})
ENDED = frozenset({"FINISHED", "FAILED"})
# Pending for its arguments, not for a node: (why, fix).
WAITING_FOR_ARGUMENTS = {
    "PENDING_ARGS_AVAIL": ("its arguments are not ready: the work that makes them has not "
                           "finished", "wait for that work (placement.explain on its result)"),
    "PENDING_ARGS_FETCH": ("its arguments are being copied to its node",
                           "wait; place it where its data is (Locality()) to copy less"),
}

# (TaskID or actor id, its decision), newest last: the submit layer appends to it in C (a
# bounded deque), with no call into this module on the submit path.
RECENT: deque[tuple[Any, Decision]] = deque(maxlen=RECORDED)
_lock = threading.Lock()


def record(result: Any, decision: Decision) -> None:
    """Remember which decision placed ``result`` (a task's ObjectRef, or an actor handle)."""
    key = work_key(result)
    if key is not None:
        RECENT.append((key, decision))


def work_key(result: Any) -> Any:
    """What ``RECENT`` files ``result`` under: its TaskID (cheaper than its hex) or actor id."""
    ref = result[0] if isinstance(result, list) and result else result
    if isinstance(ref, ray.ObjectRef):
        return ref.task_id()
    return _work_id(result)


def _work_id(work: Any) -> str | None:
    ref = work[0] if isinstance(work, list) and work else work
    if isinstance(ref, ray.ObjectRef):
        return str(ref.task_id().hex())
    if _ray.is_actor_handle(work):
        return _ray.actor_id_hex(work)
    return None


# task or actor id -> (its name, why it was refused after submission)
_refused: OrderedDict[str, tuple[str, str]] = OrderedDict()


def note_refused(work_id: str, name: str, reason: str) -> None:
    """Remember why work was refused after submission (a pending deadline), for explain()."""
    with _lock:
        _refused[work_id] = (name, reason)
        if len(_refused) > RECORDED:
            _refused.popitem(last=False)


def refused_because(work_id: str) -> str | None:
    with _lock:
        found = _refused.get(work_id)
    return None if found is None else found[1]


def waiting_because(decision: Decision | None, asked: Mapping[str, float],
                    labels: Mapping[str, str]) -> str:
    """Why work placed by ``decision`` waits now: one read of the nodes and their free
    resources."""
    nodes, free = _nodes_now()
    why, _ = diagnose(asked, labels, _pinned(decision, asked, nodes), nodes, free)
    return why


def _nodes_now() -> tuple[Sequence[NodeInfo], dict[str, dict[str, float]]]:
    """The nodes and what each has free, read now (a snapshot refresh and a resource read)."""
    return current_snapshot(refresh=True).nodes, _ray.available_resources_per_node()


def _pinned(decision: Decision | None, asked: Mapping[str, float],
            nodes: Sequence[NodeInfo]) -> NodeInfo | None:
    """The node work waits for: the one its decision named, unless it is soft enough for Ray
    to run it elsewhere while that node is busy; without a decision (placed by another
    process), a node label resource in its demand."""
    if decision is None:
        return next((n for n in nodes if n.label and n.label in asked), None)
    if decision.soft not in (False, "gone"):
        return None
    return next((n for n in nodes if n.node_id == decision.node.node_id), decision.node)


def _recorded() -> dict[str, Decision]:
    return {k if isinstance(k, str) else k.hex(): d for k, d in list(RECENT)}


def decisions_of(refs: Sequence[Any]) -> list[tuple[Any, Decision]]:
    """(ref, the decision that placed it) for the refs among the recent decisions, in order.
    Reads all of ``RECENT`` (bounded): for error paths only."""
    recorded = _recorded()
    found = []
    for ref in refs:
        work_id = _work_id(ref)
        decision = recorded.get(work_id) if work_id is not None else None
        if decision is not None:
            found.append((ref, decision))
    return found


@dataclass(frozen=True)
class Explanation:
    """Where one piece of work stands and, if it waits, why and what to do."""

    name: str
    state: str  # "pending", "running", "finished", "failed", "refused" or "unknown"
    ray_state: str  # the latest state in Ray's task events
    node: str | None  # the node it was pinned to, or ran on
    asked: Mapping[str, float] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    free: Mapping[str, float] | None = None  # the pinned node's free resources now
    policy: str | None = None
    why: str = ""
    fix: str = ""
    # Set when its node is left out of placements now (unreachable: reachability.py).
    left_out: str = ""

    def __str__(self) -> str:
        by = f" by {self.policy}" if self.policy else ""
        where = (f", pinned to {self.node}{by}" if self.state == "pending" and self.node
                 else f" on {self.node}" if self.node else "")
        lines = [f"{self.name}: {self.state} ({self.ray_state}){where}"]
        if self.state in ("refused", "unknown") and self.why:
            lines += [f"  why: {self.why}", f"  fix: {self.fix}"]
        if self.state == "pending":
            asked = ", ".join(f"{k} {_num(v)}" for k, v in sorted(self.asked.items()))
            line = f"  asked {asked or 'nothing'}"
            if self.labels:
                line += f" on labels {dict(self.labels)}"
            if self.free is not None and self.node:
                has = ", ".join(f"{k} {_num(self.free.get(k, 0))}" for k in sorted(self.asked))
                line += f"; {self.node} has {has or 'nothing asked'} free now"
            lines += [line, f"  why: {self.why}", f"  fix: {self.fix}"]
        if self.left_out:
            lines.append(f"  left out: {self.left_out}")
        return "\n".join(lines)


def _num(value: float) -> str:
    return f"{value:g}"


def diagnose(asked: Mapping[str, float], labels: Mapping[str, str], pinned: NodeInfo | None,
             nodes: Sequence[NodeInfo], free: Mapping[str, Mapping[str, float]]
             ) -> tuple[str, str]:
    """(why, fix) for work that asked ``asked`` on nodes with ``labels`` and has not started:
    pinned to a node that is gone, busy or too small, or (not pinned) no node that matches has
    room or exists. ``free``: resources free now per node id.

    >>> from placement.snapshot import ClusterSnapshot
    >>> two = ClusterSnapshot.from_dicts([{"id": i, "label": f"node{n}", "resources": {"CPU": 2}}
    ...                                   for n, i in enumerate("ab")]).live
    >>> diagnose({"CPU": 2}, {}, two[0], two, {"a": {"CPU": 0}, "b": {"CPU": 2}})[0]
    'node0 is busy: it has CPU 0 of the 2 asked free (held by other work; it starts when they end)'
    """
    matching = LabelFilter(labels, "label_selector") if labels else None
    pins = {n.label for n in nodes if n.label}  # a node label resource pins: not a need
    asked = {k: v for k, v in asked.items() if k not in pins}

    def fits_total(node: NodeInfo) -> bool:
        return all(node.total.get(k, 0) >= v for k, v in asked.items() if v)

    def fits_now(node: NodeInfo) -> bool:
        room = free.get(node.node_id, {})
        return all(room.get(k, 0) >= v for k, v in asked.items() if v)

    candidates = [n for n in nodes if n.alive and (matching is None or matching.matches(n.labels))]
    roomy = [_name(n) for n in candidates if fits_now(n)]
    elsewhere = (f"place it on a node with room now: {', '.join(roomy[:8])}" if roomy
                 else "add a node that can hold it")
    if pinned is not None:
        name = _name(pinned)
        if not pinned.alive or all(n.node_id != pinned.node_id for n in nodes):
            return (f"{name} is gone: the node it was pinned to died",
                    "place it again (soft=True places work of a dead node elsewhere)")
        short = {k: v for k, v in asked.items() if v and pinned.total.get(k, 0) < v}
        if short:
            lacks = ", ".join(f"{k} {_num(pinned.total.get(k, 0))} of {_num(v)}"
                              for k, v in short.items())
            return f"{name} is too small: it has {lacks} in all", elsewhere
        room = free.get(pinned.node_id, {})
        busy = {k: v for k, v in asked.items() if v and room.get(k, 0) < v}
        if busy:
            lacks = ", ".join(f"{k} {_num(room.get(k, 0))} of the {_num(v)} asked"
                              for k, v in busy.items())
            return (f"{name} is busy: it has {lacks} free (held by other work; it starts when "
                    "they end)", f"wait, use soft=True to run elsewhere, or {elsewhere}")
        return (f"{name} has room now: Ray has not started it yet (its arguments, a worker "
                "process, or its events are about a second behind)",
                "look again in a few seconds")
    if not candidates:
        return (f"no live node has the labels {dict(labels)}",
                "start a node with them (`ray start --labels ...`) or change the selector")
    if not any(fits_total(n) for n in candidates):
        return ("no node that matches is large enough: "
                + ", ".join(f"{k} {_num(v)}" for k, v in asked.items() if v) + " asked",
                "ask for less, or add a larger node")
    if not roomy:
        return ("every node that can hold it is busy (it starts when work ends)",
                "wait, or add nodes")
    return ("nodes that match have room now: Ray has not started it yet (its arguments, a "
            "worker process, or events about a second behind), or a scheduling strategy pins "
            "it to a busy node (Ray's events do not say which)",
            "look again in a few seconds; placement.explain(ref) in the driver that placed it "
            "knows the node")


def _name(node: NodeInfo) -> str:
    return node.label or node.node_id[:12]


def _state_of(ray_state: str) -> str:
    if ray_state in PENDING:
        return "pending"
    if ray_state in ENDED:
        return ray_state.lower()
    return "running"


def explain(work: Any) -> Explanation:
    """Where a task (its ObjectRef) or an actor (its handle) stands; if it has not started, why
    and the fix. One read of Ray's task events and of the nodes' free resources."""
    key = _work_id(work)
    if key is None:
        raise TypeError(f"explain() takes an ObjectRef or an actor handle, got "
                        f"{type(work).__name__}")
    decision = _recorded().get(key)
    with _lock:
        refused = _refused.get(key)
    if refused is not None:
        return Explanation(refused[0], "refused", "CANCELLED",
                           decision.node_name if decision else None,
                           policy=decision.policy if decision else None, why=refused[1],
                           fix="raise pending_timeout=, use soft=True, or free the node")
    actor = _ray.is_actor_handle(work)
    events = [e for e in _ray.task_events()
              if (e.get("actor_id") == key and e.get("kind") == "ACTOR_CREATION_TASK"
                  if actor else e["task_id"] == key)]
    found = _explanation(events[0] if events else None, decision, *_nodes_now())
    ejection = REACHABILITY.ejected().get(decision.node.node_id) if decision else None
    if decision is None or ejection is None:
        return found
    at = time.strftime("%H:%M:%S", time.localtime(ejection.since))
    return dataclasses.replace(found, left_out=(
        f"{decision.node_name} since {at}: {ejection.why}; placements go elsewhere until it "
        f"answers again (ejected {ejection.times} time(s) in a row)"))


def pending(job_id: str | None = None) -> list[Explanation]:
    """Every task and actor of the cluster (or of ``job_id``) that has not started, explained."""
    nodes, free = _nodes_now()
    decisions = _recorded()
    found = []
    for event in _ray.task_events(job_id):
        if event["state"] not in PENDING or "name" not in event:
            continue
        key = event["actor_id"] if event.get("kind") == "ACTOR_CREATION_TASK" else event["task_id"]
        found.append(_explanation(event, decisions.get(key), nodes, free))
    return found


def _explanation(event: Mapping[str, Any] | None, decision: Decision | None,
                 nodes: Sequence[NodeInfo], free: Mapping[str, Mapping[str, float]]
                 ) -> Explanation:
    ray_state = event["state"] if event else "unknown"
    state = _state_of(ray_state) if event else "unknown"
    asked = dict(event.get("asked", {})) if event else {}
    labels = dict(event.get("labels", {})) if event else {}
    name = (event.get("name") if event else None) or "work"
    by_id = {n.node_id: n for n in nodes}
    pinned = _pinned(decision, asked, nodes)
    if state != "pending":
        ran = event.get("node_id") if event else None
        node = by_id.get(ran) if ran else None
        where = _name(node) if node else (ran[:12] if ran else None)
        if event is None:
            return Explanation(name, state, ray_state, where,
                               why="Ray has no task event for it: its events are about a "
                                   "second behind, it ended long ago, or it is an object from "
                                   "ray.put (no task made it)",
                               fix="look again in a few seconds; explain() takes what a "
                                   ".remote() returned")
        return Explanation(name, state, ray_state, where, asked, labels)
    if ray_state in WAITING_FOR_ARGUMENTS:
        why, fix = WAITING_FOR_ARGUMENTS[ray_state]
    else:
        why, fix = diagnose(asked, labels, pinned, nodes, free)
    return Explanation(name, state, ray_state, _name(pinned) if pinned else None, asked, labels,
                       free.get(pinned.node_id, {}) if pinned else None,
                       decision.policy if decision is not None else None, why, fix)
