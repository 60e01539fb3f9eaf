"""Locality: a task or actor goes to a node that holds the most bytes of its arguments, and
replicated data spreads the work.

Any scheduling strategy turns Ray's own locality-aware scheduling off, and Ray never applies it
to actors. Locality puts it back as a policy: the submit layer looks up where each ObjectRef
argument is (Ray's object locations: no location for objects small enough to be inlined, under
about 100 KB) and the request carries the bytes per node. The nodes that hold at least
``1 - margin`` of the most bytes (``margin=0.1``: within 10%) count as holding the same data;
among them the work goes to the one with the fewest of this policy's placements in flight (then
the most bytes, then natural order), so eight consumers of an object Ray copied to every node
(``ray.wait`` fetches to the driver's node) spread instead of piling on the first holder. A
placement stops counting when its work ends (the submit layer tracks completion).

When no argument has a location on a node that fits, it refuses (``no-argument-locations``), so
that ``Locality() | RoundRobin()`` falls back. The decision records the bytes that did not have
to move (``decision.local_bytes``) and how many nodes held them.

>>> from placement.snapshot import ClusterSnapshot
>>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
...                                    {"id": "b", "label": "node1"}])
>>> near = Locality()
>>> decision = near.decide(snap, data={"b": 4_000_000, "a": 1_000})
>>> decision.node_name, decision.local_bytes
('node1', 4000000)
>>> [near.decide(snap, data={"a": 8_000_000, "b": 8_000_000}).node_name for _ in range(3)]
['node0', 'node0', 'node1']
>>> near.decide(snap, data={"a": 8_000_000, "b": 8_000_000}).reason
'holds the most bytes of its arguments (1 of 2 nodes with about as many; the fewest in flight)'
>>> from placement.policies import RoundRobin
>>> (Locality() | RoundRobin()).decide(snap).node_name   # no argument with a location
'node0'
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import errors
from ..errors import PlacementError
from ..snapshot import NodeInfo
from .base import Choice, Hold, Outcome, Policy, Refusal
from .candidates import Candidates, holds, shown
from .decision import DEFAULT_PIN_AMOUNT
from .ledger import Ledger
from .needs import Needs
from .request import Request

# Nodes holding at least this share less than the most bytes hold "the same data": replicas of
# one object differ by nothing, and a few small arguments should not decide between them.
DEFAULT_MARGIN = 0.1
_REASONS_KEPT = 64
_REASONS: dict[int, str] = {1: "holds the most bytes of its arguments"}


def _reason(holding: int) -> str:
    """The decision's reason for ``holding`` nodes with the data (a decision is on the submit
    path: kept for up to ``_REASONS_KEPT`` counts, made anew beyond)."""
    found = _REASONS.get(holding)
    if found is None:
        found = (f"holds the most bytes of its arguments (1 of {holding} nodes with about "
                 "as many; the fewest in flight)")
        if holding <= _REASONS_KEPT:
            _REASONS[holding] = found
    return found


def check_margin(margin: object) -> float:
    """A share in [0, 1): how far below the most bytes a node still counts as holding them."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise TypeError(f"margin must be a number in [0, 1), e.g. margin=0.1 (within 10% of the "
                        f"most bytes), got {margin!r}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be in [0, 1): 0 only the nodes with the most bytes, 0.1 "
                         f"within 10% of them; got {margin!r}")
    return float(margin)


class Locality(Policy):
    """Data locality: a fitting node with the most bytes of the placement's ObjectRef arguments;
    among the nodes within ``margin`` of the most, the one with the fewest of this policy's
    placements in flight. Soft by default (``soft=True``: Ray runs the work elsewhere while that
    node is busy, as its own locality does); ``soft=False`` waits for the data's node.

    >>> Locality(margin=0.25)
    Locality(margin=0.25)
    """

    keeps = True
    needs = Needs(locations=True, completion=True)
    default_soft = True
    repr_defaults = {"margin": DEFAULT_MARGIN}

    def __init__(self, *, margin: float = DEFAULT_MARGIN, soft: bool | str = True,
                 backend: str | None = None, pin_amount: float = DEFAULT_PIN_AMOUNT,
                 cache: Any = None, where: Mapping[str, str] | None = None,
                 wait_for_nodes: float | None = None) -> None:
        super().__init__(soft=soft, backend=backend, pin_amount=pin_amount, cache=cache,
                         where=where, wait_for_nodes=wait_for_nodes)
        self.margin = check_margin(margin)
        self._keep = 1.0 - self.margin  # the share of the most bytes a node must hold
        self._tracked = True
        # Node id -> placements not yet released: only nodes with work in flight have an entry,
        # so it holds at most as many entries as placements in flight.
        self._inflight = Ledger()

    def _config(self) -> dict[str, Any]:
        return {"margin": self.margin, **super()._config()}

    def load(self, node_id: str) -> int:
        """Placements of this policy on the node not yet released."""
        return self._inflight.counts.get(node_id, 0)

    def _choose(self, cands: Candidates, request: Request) -> Outcome:
        demand, counts, get = request.demand, self._inflight.counts, cands.get
        best: NodeInfo | None = None
        best_count = best_size = holding = 0
        floor = 0.0
        # Most bytes first: only the nodes holding the data are read, never the cluster. A
        # later node has no more bytes, so it wins on fewer in flight, or on order at a tie.
        for node_id, size in request.data:
            if size <= 0 or size < floor:
                break
            holding += 1  # Ray's count, whether or not the node is a candidate now
            count = counts.get(node_id, 0)
            if best is not None and (count > best_count or count == best_count
                                     and size < best_size):
                continue  # cannot win: not read further
            node = get(node_id)
            if node is None or (demand and not holds(node, demand)):
                continue
            if best is None:
                floor = size * self._keep
                best, best_count, best_size = node, count, size
            elif count < best_count or node.order_key < best.order_key:
                best, best_count, best_size = node, count, size
        if best is None:
            try:
                cands.node_set(demand)  # nothing can hold it: that refusal, not the one below
            except PlacementError as refusal:
                return Refusal.of(refusal)
            return Refusal(errors.NO_DATA_LOCATIONS, lambda: self._no_locations(cands, request))
        return (best, _reason(holding), False, None, best_size)

    def _reserve(self, request: Request, choice: Choice) -> Hold:
        node_id = choice[0].node_id
        self._inflight.change(node_id, +1)
        return node_id

    def _unreserve(self, hold: Hold) -> None:
        self._inflight.change(hold, -1)

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
