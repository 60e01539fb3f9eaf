"""Locality: a task or actor goes to the node that holds the most bytes of its arguments.

Any scheduling strategy turns Ray's own locality-aware scheduling off, and Ray never applies it
to actors. Locality puts it back as a policy: the submit layer looks up where each ObjectRef
argument is (Ray's object locations: no location for objects small enough to be inlined, under
about 100 KB) and the request carries the bytes per node; the node holding the most gets the
work, ties to natural order. When no argument has a location on a node that fits, it refuses
(``no-argument-locations``), so that ``Locality() | RoundRobin()`` falls back. The decision
records the bytes that did not have to move (``decision.local_bytes``).

>>> from placement.snapshot import ClusterSnapshot
>>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
...                                    {"id": "b", "label": "node1"}])
>>> near = Locality()
>>> decision = near.decide(snap, data={"b": 4_000_000, "a": 1_000})
>>> decision.node_name, decision.local_bytes
('node1', 4000000)
>>> from placement.policies import RoundRobin
>>> (Locality() | RoundRobin()).decide(snap).node_name   # no argument with a location
'node0'
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import errors
from ..errors import PlacementError
from .base import Outcome, Policy, Refusal
from .candidates import Candidates, holds, shown
from .decision import DEFAULT_PIN_AMOUNT
from .needs import Needs
from .request import Request


class Locality(Policy):
    """Data locality: the fitting node with the most bytes of the placement's ObjectRef
    arguments. Soft by default (``soft=True``: Ray runs the work elsewhere while that node is
    busy, as its own locality does); ``soft=False`` waits for the data's node."""

    needs = Needs(locations=True)
    default_soft = True

    def __init__(self, *, soft: bool | str = True, backend: str | None = None,
                 pin_amount: float = DEFAULT_PIN_AMOUNT, cache: Any = None,
                 where: Mapping[str, str] | None = None,
                 wait_for_nodes: float | None = None) -> None:
        super().__init__(soft=soft, backend=backend, pin_amount=pin_amount, cache=cache,
                         where=where, wait_for_nodes=wait_for_nodes)

    def _choose(self, cands: Candidates, request: Request) -> Outcome:
        demand, best, most = request.demand, None, 0
        for node_id, size in request.data:  # most bytes first: the first that fits wins
            node = cands.get(node_id)
            if node is not None and size > 0 and (not demand or holds(node, demand)):
                if best is None or size > most or (size == most
                                                   and node.order_key < best.order_key):
                    best, most = node, size
                elif size < most:
                    break
        if best is None:
            try:
                cands.node_set(demand)  # nothing can hold it: that refusal, not the one below
            except PlacementError as refusal:
                return Refusal.of(refusal)
            return Refusal(errors.NO_DATA_LOCATIONS, lambda: self._no_locations(cands, request))
        return (best, "holds the most bytes of its arguments", False, None, most)

    def _no_locations(self, cands: Candidates, request: Request) -> PlacementError:
        known = [node_id for node_id, size in request.data if size > 0]
        detail = ("none of its arguments has a location (no ObjectRef argument, or objects "
                  "small enough for Ray to inline: under about 100 KB)" if not known else
                  f"the nodes holding its arguments ({', '.join(i[:8] for i in known[:4])}) are "
                  "not candidates that fit it")
        return PlacementError(
            errors.NO_DATA_LOCATIONS, detail,
            "combine it with a policy for that case, e.g. Locality() | RoundRobin()",
            shown(cands.nodes[:8]))
