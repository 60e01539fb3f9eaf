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
from .candidates import Candidates, NodeSet, demand_error, holds, looks_like_node_id
from .decision import DEFAULT_PIN_AMOUNT, NODE_ID, node_name
from .needs import Needs
from .request import Demand, Request

_FOLLOWS = "follows its node"
_FIRST = "first placement: node with the most free CPUs; later ones follow"
_CALLER = "the calling process's node"
_BINDINGS = 64


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
        elif target is not None and not hasattr(target, "_actor_id"):  # not an actor handle
            raise TypeError(
                "Affinity target must be a node label such as 'node1', a node id, an actor handle "
                f"or None, got {type(target).__name__}"
            )
        self.target = target
        if target is not None and not isinstance(target, str):
            self.needs = Needs(follows=(target,))
        # The bindings, the current one last: [label or node id, whether this policy chose it,
        # placements reserved on it and not rolled back]. A binding the policy chose that is
        # left with no placement goes, and the one before it is current again: exact in any
        # order of rollbacks. At most _BINDINGS are kept (the oldest chosen ones go first).
        self._bindings: list[list[Any]] = [[target if isinstance(target, str) else None,
                                            False, 0]]
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
            bound = self._bindings[-1][0]
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
        rebind, bindings = choice[3], self._bindings
        if rebind is None:  # follows the current binding
            binding = bindings[-1]
            binding[2] += 1
            return binding
        binding = [rebind, True, 1]
        bindings.append(binding)
        if len(bindings) > _BINDINGS:
            del bindings[1]
        return binding

    def _unreserve(self, hold: Hold) -> None:
        hold[2] -= 1
        bindings = self._bindings
        while len(bindings) > 1 and bindings[-1][1] and not bindings[-1][2]:
            bindings.pop()  # chosen, and nothing left on it: as if never chosen

    def can_grow(self, request: Request) -> bool:
        # bound: only that node will do
        return self.target is None and self._bindings[-1][0] is None


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
        if node is None:  # the message is built when read: a fallback goes on without it
            known = cands.snapshot.by_id.get(caller)
            if known is None:
                rule = errors.UNKNOWN_NODE if looks_like_node_id(caller) else errors.UNKNOWN_LABEL
            elif not known.alive:
                rule = errors.DEAD_NODE
            elif cands.where is None or cands.where.matches(known.labels):
                rule = errors.NO_LABELLED_NODES
            else:
                rule = errors.NO_MATCHING_NODES
            return Refusal(rule, lambda: self._not_here(cands, caller))
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
