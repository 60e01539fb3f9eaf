"""LeastLoaded: each placement goes to the node with the fewest of this policy's placements still
running, relative to its capacity.

Round robin is exact in counts and blind to time: with task durations that vary, work queues on
a node whose tasks run long while others idle. LeastLoaded counts what is still in flight: the
submit layer releases a task's placement when its result is ready (a completion callback, no
polling), so a node whose work runs long gets less new work. Load is in-flight placements over
the node's weight (its CPUs by default); ties go to natural node order. ``choices=2`` samples two
fitting nodes and takes the less loaded one (power of two choices, as Mitzenmacher: O(1) and
near the best at large node counts).

>>> from placement.snapshot import ClusterSnapshot
>>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0", "resources": {"CPU": 2}},
...                                    {"id": "b", "label": "node1", "resources": {"CPU": 1}}])
>>> balance = LeastLoaded()
>>> placed = [balance.decide(snap) for _ in range(3)]
>>> [d.node_name for d in placed]   # loads 0/2 0/1, then 1/2 0/1, then 1/2 1/1
['node0', 'node1', 'node0']
>>> balance.release(placed[1])      # node1's task finished
>>> balance.decide(snap).node_name
'node1'
"""
from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping
from typing import Any, cast

from .. import errors
from ..errors import PlacementError
from ..snapshot import NodeInfo
from .base import Hold, Policy
from .candidates import Candidates
from .decision import DEFAULT_PIN_AMOUNT, Decision, node_name
from .request import Demand, Request

_CHOICES = (None, 2)
# Per-demand heaps kept at most: a program asking ever new demands (memory= per chunk) would
# otherwise make every count change touch every heap (measured: 10 us -> 5.4 ms per decision
# after 1,000 demands at 100 nodes). The oldest is dropped; it is rebuilt if asked again.
_MAX_DEMANDS = 32
# A heap entry: (load, index, version); the index is the natural order. A three-tuple: each
# comparison in the heap (14 levels at 10,000 nodes) is then cheaper than with a rank in front.
_Entry = tuple[float, int, int]
# The load of a weightless node (no CPUs) with nothing on it: above any weighted node's, so
# such nodes are used only when no other fits, and still balanced among themselves.
_WEIGHTLESS = 1e12


class _Loads:
    """One demand's fitting nodes in a heap keyed by load. Counts are shared by every demand,
    so an entry carries the node's version when pushed: a stale one is refreshed (or dropped,
    when a fresh one is already in) when it reaches the top."""

    __slots__ = ("cands", "heap", "ids", "index", "latest", "nodes", "weights")

    def __init__(self, cands: Candidates, demand: Demand, weigh: Any, inflight: dict[str, int],
                 versions: dict[str, int], ordered: bool = True) -> None:
        self.cands = cands
        self.nodes: tuple[NodeInfo, ...] = cands.fitting(demand)
        self.ids: tuple[str, ...] = cands.fitting_ids(demand)
        self.weights = [float(weigh(n)) for n in self.nodes]
        # Without ``ordered`` (two choices) no heap is kept: draws read the counts directly.
        self.index = {node_id: i for i, node_id in enumerate(self.ids)} if ordered else {}
        self.latest = [versions.get(i, 0) for i in self.ids]  # the newest entry's version
        self.heap: list[_Entry] = [self.entry(i, inflight, self.latest[i])
                                   for i in range(len(self.ids))] if ordered else []
        heapq.heapify(self.heap)

    def entry(self, i: int, inflight: dict[str, int], version: int) -> _Entry:
        weight, count = self.weights[i], inflight.get(self.ids[i], 0)
        return (count / weight if weight > 0 else (count + 1) * _WEIGHTLESS, i, version)

    def top(self, inflight: dict[str, int], versions: dict[str, int]) -> int:
        """The index of the least-loaded node (first in order among equals)."""
        heap, ids, latest = self.heap, self.ids, self.latest
        while True:
            _, i, version = heap[0]
            now = versions.get(ids[i], 0)
            if version == now:
                return i
            if latest[i] == now:  # a fresh entry is in the heap already: drop this one
                heapq.heappop(heap)
            else:  # the count changed through another demand: refresh in place
                latest[i] = now
                heapq.heapreplace(heap, self.entry(i, inflight, now))

    def taken(self, i: int, inflight: dict[str, int], version: int) -> None:
        """Node ``i``, on top, was just counted: its fresh entry replaces the top (one heap
        operation, not a push and a later pop)."""
        self.latest[i] = version
        heapq.heapreplace(self.heap, self.entry(i, inflight, version))

    def changed(self, i: int, inflight: dict[str, int], version: int) -> None:
        """Node ``i``'s count changed (now at ``version``): push its fresh entry."""
        self.latest[i] = version
        heapq.heappush(self.heap, self.entry(i, inflight, version))
        if len(self.heap) > 4 * len(self.ids) + 64:  # stale entries that never surface
            self.heap = [self.entry(j, inflight, self.latest[j]) for j in range(len(self.ids))]
            heapq.heapify(self.heap)


class LeastLoaded(Policy):
    """Each placement goes to the fitting node with the fewest placements of this policy still
    running per unit of weight, ties by natural order.

    ``weights="capacity"`` (the default: each node's CPUs), ``"equal"``, or a mapping of labels
    or node ids to weights (nodes left out weigh 1). Nodes of weight 0 (no CPUs) are used only
    when no other node fits. ``choices=2`` compares two nodes drawn at random instead of all
    (``seed=`` makes the draws repeatable). A placement counts until it is released: the submit
    layer releases a task when its result is ready and an actor when it dies
    (placement/liveness.py).
    """

    releases = True
    tracks_completion = True
    repr_defaults = {"weights": "capacity"}

    def __init__(self, weights: str | Mapping[str, float] = "capacity", *,
                 choices: int | None = None, seed: int | None = None, soft: bool = False,
                 backend: str | None = None, pin_amount: float = DEFAULT_PIN_AMOUNT,
                 cache: Any = None, where: Mapping[str, str] | None = None,
                 wait_for_nodes: float | None = None) -> None:
        super().__init__(soft=soft, backend=backend, pin_amount=pin_amount, cache=cache,
                         where=where, wait_for_nodes=wait_for_nodes)
        if isinstance(weights, str):
            if weights not in ("capacity", "equal"):
                raise ValueError(f"weights={weights!r} is unknown: use 'capacity', 'equal' or "
                                 "a mapping {label: weight}")
            self.weights: str | dict[str, float] = weights
        elif isinstance(weights, Mapping) and weights:
            self.weights = {str(k): _check_weight(str(k), v) for k, v in weights.items()}
        else:
            raise TypeError("weights must be 'capacity', 'equal' or a non-empty mapping "
                            "{label: weight}")
        if choices not in _CHOICES or isinstance(choices, bool):
            raise ValueError(f"choices must be None (compare every fitting node) or 2 (power "
                             f"of two choices), got {choices!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.choices = choices
        self.seed = seed
        self._random = random.Random(seed)
        self._inflight: dict[str, int] = {}  # node id -> placements not yet released
        self._versions: dict[str, int] = {}  # node id -> changes of its count
        self._loads: dict[Demand, _Loads] = {}
        self._replay: list[tuple[int, int]] = []  # draws of rolled-back decisions, to reuse
        self._names_checked = False

    def _config(self) -> dict[str, Any]:
        return {"weights": self.weights, "choices": self.choices, "seed": self.seed,
                **super()._config()}

    def load(self, node_id: str) -> int:
        """Placements of this policy on the node not yet released."""
        return self._inflight.get(node_id, 0)

    def _weigh(self, node: NodeInfo) -> float:
        weights = self.weights
        if weights == "capacity":
            return node.total.get("CPU", 0.0)
        if weights == "equal":
            return 1.0
        named = cast(dict[str, float], weights)
        return named.get(node.label or "", named.get(node.node_id, 1.0))

    def _state(self, cands: Candidates, demand: Demand) -> _Loads:
        state = self._loads.get(demand)
        if state is None or state.cands is not cands:
            if state is None and len(self._loads) >= _MAX_DEMANDS:
                del self._loads[next(iter(self._loads))]  # the oldest demand's heap
            self._check_names(cands)
            state = self._loads[demand] = _Loads(cands, demand, self._weigh, self._inflight,
                                                 self._versions, self.choices is None)
        return state

    def _check_names(self, cands: Candidates) -> None:
        """Refuse weights naming no node of the cluster (a typo), on the first snapshot only: a
        node that later leaves must not stop the others."""
        if not isinstance(self.weights, dict) or self._names_checked:
            return
        snapshot = cands.snapshot
        known = {n.label for n in snapshot.nodes} | {n.node_id for n in snapshot.nodes}
        unknown = sorted(set(self.weights) - known)
        if unknown:
            raise PlacementError(
                errors.UNKNOWN_LABEL,
                f"weights name {', '.join(map(repr, unknown))}, which no node of the cluster is "
                "labelled or has as id", "fix the names in weights= (placement status lists the "
                "nodes; nodes left out weigh 1)", [node_name(n) for n in cands.nodes[:8]])
        self._names_checked = True

    def _choose(self, cands: Candidates, request: Request) -> tuple[Decision, Hold]:
        state = self._state(cands, request.demand)
        inflight = self._inflight
        if self.choices is None:
            i = state.top(inflight, self._versions)
            node_id = state.ids[i]
            version = self._count(node_id, +1, state)
            state.taken(i, inflight, version)
            return self._decision(state.nodes[i], "the least loaded"), (node_id, None)
        n = len(state.ids)
        if self._replay:  # drawn on a larger node set, a replayed draw wraps
            drawn = self._replay.pop()
        else:  # random() is about 3x cheaper than randrange()
            draw = self._random.random
            drawn = (int(draw() * n), int(draw() * n))
        a, b = drawn[0] % n, drawn[1] % n
        i = a if state.entry(a, inflight, 0) <= state.entry(b, inflight, 0) else b
        self._count(state.ids[i], +1, None)
        reason = "the less loaded of two drawn at random"
        return self._decision(state.nodes[i], reason), (state.ids[i], drawn)

    def _count(self, node_id: str, change: int, skip: _Loads | None) -> int:
        """Change the node's count; refresh it in every demand's heap but ``skip``'s (the
        caller's, which does it in place); returns the node's new version."""
        count = self._inflight.get(node_id, 0) + change
        if count:
            self._inflight[node_id] = count
        else:
            del self._inflight[node_id]
        version = self._versions[node_id] = self._versions.get(node_id, 0) + 1
        for state in self._loads.values():  # each demand's heap that holds the node
            i = state.index.get(node_id)
            if i is not None and state is not skip:
                state.changed(i, self._inflight, version)
        return version

    def _follow(self, cands: Candidates) -> None:
        for demand in list(self._loads):
            try:
                self._loads[demand] = _Loads(cands, demand, self._weigh, self._inflight,
                                             self._versions, self.choices is None)
            except PlacementError:  # nothing fits it now: its next decision says so
                del self._loads[demand]

    def _undo(self, hold: Hold) -> None:
        """The work ended (or was never submitted): its node's load goes down."""
        self._count(hold[0], -1, None)

    def _rollback(self, hold: Hold) -> None:
        self._undo(hold)
        if hold[1] is not None:  # as if never decided: the next decision draws the same two
            self._replay.append(hold[1])


def _check_weight(key: str, weight: Any) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
            not math.isfinite(weight) or weight < 0:
        raise ValueError(f"weight of {key!r} must be a finite number >= 0 (0: used only when no "
                         f"other node fits; nodes left out weigh 1), got {weight!r}")
    return float(weight)
