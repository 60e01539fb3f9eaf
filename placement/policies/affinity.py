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
from .base import Hold, Policy
from .candidates import Candidates, demand_error, holds
from .decision import DEFAULT_PIN_AMOUNT, NODE_ID, Decision, node_name
from .request import Demand, Request

_NOT_A_TARGET = (bool, int, float, bytes, Mapping, list, tuple, set)


def _fitting_node(node: NodeInfo, demand: Demand) -> NodeInfo:
    if demand and not holds(node, demand):
        raise demand_error(demand, [node])
    return node


class Affinity(Policy):
    """Co-location: every placement goes to one node.

    ``target`` is a label (``"node1"``), a node id, an actor handle (the node it runs on; the
    submit layer looks it up), or None: then the first placement picks the node with the most free
    CPUs and every later one follows. Soft: when that node is gone, the next placement picks a new
    node and the rest follow it.
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
        elif isinstance(target, _NOT_A_TARGET):
            raise TypeError(
                "Affinity target must be a node label such as 'node1', a node id, an actor handle "
                f"or None, got {type(target).__name__}"
            )
        self.target = target
        self._bound: str | None = target if isinstance(target, str) else None  # label or node id
        self._placed = 0  # proposed placements not rolled back
        self._chosen = False  # whether this policy chose the bound node itself

    @property
    def actor_target(self) -> Any:
        """The actor to follow, while its node is not yet known."""
        return self.target if self._bound is None and self.target is not None else None

    def bind_to_node(self, node_id: str) -> None:
        """Follow ``node_id`` from now on (the submit layer calls it with an actor's node)."""
        with self._lock:
            self._bound, self._chosen = node_id, False

    def _config(self) -> dict[str, Any]:
        return {"target": self.target, **super()._config()}

    def _choose(self, cands: Candidates, request: Request) -> tuple[Decision, Hold]:
        if self.actor_target is not None:
            raise PlacementError(
                errors.ACTOR_NOT_RUNNING,
                "Affinity(actor) decides next to the actor's node, which is not known here",
                "use policy.place(fn), which looks the node up, or give Affinity the node's label "
                "or id to plan",
            )
        snapshot, demand = cands.snapshot, request.demand
        previous = self._bound
        if previous is not None:
            found = snapshot.by_label.get(previous) or snapshot.by_id.get(previous)
            node = cands.get(found.node_id) if found is not None else None
            if node is not None:
                node = _fitting_node(node, demand)
                self._placed += 1
                return self._decision(node, "follows its node"), None
            if not self.soft:
                raise cands.target_error(previous)
        fitting = cands.fitting(demand)
        free = snapshot.free
        node = min(fitting, key=lambda n: -free(n).get("CPU", 0.0))  # first among equals
        self._bound, self._chosen = node.node_id, True
        self._placed += 1
        if previous is None:
            reason = "first placement: node with the most free CPUs; later ones follow"
            return self._decision(node, reason), None
        reason = f"{previous} is gone: soft affinity moved to {node_name(node)}"
        return self._decision(node, reason, fallback=True), None

    def can_grow(self, request: Request) -> bool:
        return self.target is None and self._bound is None  # bound: only that node will do

    def _undo(self, hold: Hold) -> None:
        self._placed -= 1
        if self._placed == 0 and self._chosen:
            # No placement is left on the node this policy chose itself: back to its target (or
            # to choosing afresh), as if none had been decided.
            self._bound = self.target if isinstance(self.target, str) else None
            self._chosen = False


class Local(Policy):
    """Pin to the node of the calling process: the driver's node, or inside a task or actor its
    own node (local parallelism). Uses the node-id backend by default, so the node needs no label.
    """

    default_backend = NODE_ID
    needs_caller = True

    def _choose(self, cands: Candidates, request: Request) -> tuple[Decision, Hold]:
        caller = request.caller_node_id
        if caller is None:
            raise PlacementError(
                errors.NOT_IN_RAY, "Local needs the calling process's node, and none was given",
                "call from a Ray driver, task or actor (policy.place(fn) finds the node itself)",
            )
        node = cands.get(caller)
        if node is None:
            known = cands.snapshot.by_id.get(caller)
            if known is not None and known.alive and (
                    cands.where is None or cands.where.matches(known.labels)):
                raise PlacementError(
                    errors.NO_LABELLED_NODES, f"the current node {node_name(known)} has no label "
                    f"for the {self.backend!r} backend", "use Local() with its default "
                    "backend='node_id'", [node_name(known)],
                )
            raise cands.target_error(caller)
        node = _fitting_node(node, request.demand)
        return self._decision(node, "the calling process's node"), None

    def _undo(self, hold: Hold) -> None:
        """Local keeps no ledger: nothing to give back."""

    def can_grow(self, request: Request) -> bool:
        return False  # the caller's node: a new node is never it
