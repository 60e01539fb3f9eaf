"""Affinity (co-location on one node) and Local (the caller's node).

>>> from placement.snapshot import ClusterSnapshot
>>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
...                                    {"id": "b", "label": "node1", "resources": {"CPU": 8}}])
>>> together = Affinity()
>>> {together.decide(snap).node_name for _ in range(5)}
{'node1'}
>>> Local().decide(snap, caller_node_id="a").node_name
'node0'
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import errors
from ..errors import PlacementError
from ..snapshot import NodeInfo
from .base import Choice, Hold, Outcome, Policy, Refusal
from .candidates import Candidates, NodeSet, demand_error, holds
from .decision import DEFAULT_PIN_AMOUNT, NODE_ID, node_name
from .needs import Needs
from .request import Demand, Request

_NOT_A_TARGET = (bool, int, float, bytes, Mapping, list, tuple, set, frozenset)
_FOLLOWS = "follows its node"
_FIRST = "first placement: node with the most free CPUs; later ones follow"
_CALLER = "the calling process's node"


def _fitting(node: NodeInfo, demand: Demand) -> Outcome | None:
    """None when ``node`` can hold ``demand``; otherwise the refusal."""
    if demand and not holds(node, demand):
        return Refusal.of(demand_error(demand, [node]))
    return None


def most_free_cpus(cands: Candidates, nodes: NodeSet) -> NodeInfo:
    """The node of ``nodes`` with the most free CPUs in the snapshot, first among equals
    (once per snapshot and node set: every later question is a lookup)."""
    free = cands.snapshot.free

    def find() -> NodeInfo:
        return min(nodes.nodes, key=lambda n: -free(n).get("CPU", 0.0))
    return cands.snapshot.derived(("most-free-cpus", nodes), find)


class Affinity(Policy):
    """Co-location: every placement goes to one node.

    ``target`` is a label (``"node1"``), a node id, an actor handle (the node it runs on; the
    submit layer looks it up and each request carries it), or None: then the first placement
    picks the node with the most free CPUs and every later one follows. Soft: when that node is
    gone, the next placement picks a new node and the rest follow it. A proposal rolled back
    leaves the binding as it was before it.
    """

    def __init__(self, target: Any = None, *, soft: bool = False, backend: str | None = None,
                 pin_amount: float = DEFAULT_PIN_AMOUNT, cache: Any = None,
                 where: Mapping[str, str] | None = None,
                 wait_for_nodes: float | None = None) -> None:
        super().__init__(soft=soft, backend=backend, pin_amount=pin_amount, cache=cache,
                         where=where, wait_for_nodes=wait_for_nodes)
        if isinstance(target, str):
            if not target:
                raise ValueError("target must not be empty: give a label such as 'node1', a node "
                                 "id, an actor or None")
        elif isinstance(target, _NOT_A_TARGET) or callable(target) and not hasattr(
                target, "_actor_id"):
            raise TypeError(
                "Affinity target must be a node label such as 'node1', a node id, an actor handle "
                f"or None, got {type(target).__name__}"
            )
        self.target = target
        if target is not None and not isinstance(target, str):
            self.needs = Needs(follows=(target,))
        # The node placements follow: (label or node id, whether this policy chose it), the
        # placements reserved on it, and how many times it was bound (to know a rollback's).
        self._binding: str | None = target if isinstance(target, str) else None
        self._chosen = False
        self._on_binding = 0
        self._generation = 0
        self._refused: tuple[Candidates, str, Refusal] | None = None

    def _config(self) -> dict[str, Any]:
        return {"target": self.target, **super()._config()}

    def _choose(self, cands: Candidates, request: Request) -> Outcome:
        demand, snapshot = request.demand, cands.snapshot
        if self.needs.follows:
            bound = next((node for key, node in request.targets if key == id(self.target)),
                         None)
            if bound is None:
                return Refusal(errors.ACTOR_NOT_RUNNING, lambda: PlacementError(
                    errors.ACTOR_NOT_RUNNING,
                    "Affinity(actor) decides next to the actor's node, which this request does "
                    "not carry", "use policy.place(fn), which looks the node up, or give "
                    "Affinity the node's label or id to plan"))
        else:
            bound = self._binding
        if bound is not None:
            found = snapshot.by_label.get(bound) or snapshot.by_id.get(bound)
            node = cands.get(found.node_id) if found is not None else None
            if node is not None:
                return _fitting(node, demand) or (node, _FOLLOWS, False, None, 0)
            if not self.soft or self.needs.follows:
                return self._gone(cands, bound)
        try:
            nodes = cands.node_set(demand)
        except PlacementError as refusal:
            return Refusal.of(refusal)
        node = most_free_cpus(cands, nodes)
        if bound is None:
            return (node, _FIRST, False, node.node_id, 0)
        moved = f"{bound} is gone: soft affinity moved to {node_name(node)}"
        return (node, moved, True, node.node_id, 0)

    def _gone(self, cands: Candidates, bound: str) -> Refusal:
        """Why the bound node is no candidate, worked out once per candidates and node."""
        memo = self._refused
        if memo is None or memo[0] is not cands or memo[1] != bound:
            memo = self._refused = (cands, bound, Refusal.of(cands.target_error(bound)))
        return memo[2]

    def _reserve(self, request: Request, choice: Choice) -> Hold:
        rebind = choice[3]
        if rebind is None:  # follows the bound node
            self._on_binding += 1
            return (self._generation,)
        before = (self._binding, self._chosen, self._on_binding, self._generation)
        self._generation += 1
        self._binding, self._chosen, self._on_binding = rebind, True, 1
        return before, self._generation

    def _unreserve(self, hold: Hold) -> None:
        if len(hold) == 1:  # a placement that followed
            if hold[0] == self._generation:
                self._on_binding -= 1
                if self._on_binding == 0 and self._chosen:
                    # None is left on the node this policy chose itself: back to its target
                    # (or to choosing afresh), as if none had been decided.
                    self._binding = self.target if isinstance(self.target, str) else None
                    self._chosen = False
                    self._generation += 1
            return
        before, generation = hold
        if generation != self._generation:
            return  # bound again since: that binding stays
        if self._on_binding > 1:  # others followed this binding since: it stays theirs
            self._on_binding -= 1
            return
        self._binding, self._chosen, self._on_binding, self._generation = before

    def can_grow(self, request: Request) -> bool:
        return self.target is None and self._binding is None  # bound: only that node will do


class Local(Policy):
    """Pin to the node of the calling process: the driver's node, or inside a task or actor its
    own node (local parallelism). Uses the node-id backend by default, so the node needs no label.
    """

    default_backend = NODE_ID
    needs = Needs(caller=True)

    def _choose(self, cands: Candidates, request: Request) -> Outcome:
        caller = request.caller_node_id
        if caller is None:
            return Refusal(errors.NOT_IN_RAY, lambda: PlacementError(
                errors.NOT_IN_RAY, "Local needs the calling process's node, and none was given",
                "call from a Ray driver, task or actor (policy.place(fn) finds the node itself)",
            ))
        if not isinstance(caller, str):
            raise TypeError(f"caller_node_id must be a node id string, got {caller!r}")
        node = cands.get(caller)
        if node is None:
            return Refusal.of(self._not_here(cands, caller))
        return _fitting(node, request.demand) or (node, _CALLER, False, None, 0)

    def _not_here(self, cands: Candidates, caller: str) -> PlacementError:
        known = cands.snapshot.by_id.get(caller)
        if known is not None and known.alive and (
                cands.where is None or cands.where.matches(known.labels)):
            return PlacementError(
                errors.NO_LABELLED_NODES, f"the current node {node_name(known)} has no label "
                f"for the {self.backend!r} backend", "use Local() with its default "
                "backend='node_id'", [node_name(known)],
            )
        return cands.target_error(caller)

    def can_grow(self, request: Request) -> bool:
        return False  # the caller's node: a new node is never it
