"""LeastLoaded: each placement goes to the node with the fewest of this policy's placements still
running, relative to its capacity.

Round robin is exact in counts and blind to time: with task durations that vary, work queues on
a node whose tasks run long while others idle. LeastLoaded counts what is still in flight: the
submit layer releases a task's placement when its result is ready (a completion callback, no
polling), so a node whose work runs long gets less new work. Load is in-flight placements over
the node's weight (its CPUs by default); ties go to natural node order. The least-loaded node
of a demand's fitting nodes comes from an index per node set (shared by the demands that fit the
same nodes) that a count change updates only where the node is. ``choices=2`` samples two
fitting nodes and takes the less loaded one (power of two choices, as Mitzenmacher); the k-th
draw depends only on the seed and k, so a rolled-back proposal gives its draw back.

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
import random
from collections.abc import Mapping
from typing import Any

from .. import errors
from ..errors import PlacementError
from ..snapshot import NodeInfo
from .base import Choice, Hold, Outcome, Policy, Refusal
from .bounded import NODE_SETS_PER_LEDGER, Bounded
from .candidates import Candidates, NodeSet, not_here, shown
from .decision import DEFAULT_PIN_AMOUNT
from .ledger import LeastIndex, Ledger, draw
from .needs import Needs
from .request import Request
from .round_robin import check_weight, check_weights, unknown_names

_CHOICES = (None, 2)
MIN_WEIGHT = 1e-9  # of the largest: a smaller positive weight counts as this much
_LEAST = "the least loaded"
_OF_TWO = "the less loaded of two drawn at random"


class LeastLoaded(Policy):
    """Each placement goes to the fitting node with the fewest placements of this policy still
    running per unit of weight, ties by natural order.

    ``weights="capacity"`` (the default: each node's CPUs), ``"equal"``, or a mapping of labels
    or node ids to weights (nodes left out weigh 1). Nodes of weight 0 (no CPUs) are used only
    when no other node fits. ``choices=2`` compares two nodes drawn at random instead of all
    (``seed=`` makes the draws repeatable). A placement counts until it is released: the submit
    layer releases a task when its result is ready and an actor when it dies
    (placement/liveness.py). Soft when the node is gone (``soft="gone"``, the default), as
    ``RoundRobin``: the work waits for a busy node and runs elsewhere only once its node is gone.
    """

    default_soft = "gone"
    keeps = True
    needs = Needs(completion=True)
    repr_defaults = {"weights": "capacity"}

    def __init__(self, weights: str | Mapping[str, float] = "capacity", *,
                 choices: int | None = None, seed: int | None = None, soft: bool | str = "gone",
                 backend: str | None = None, pin_amount: float = DEFAULT_PIN_AMOUNT,
                 cache: Any = None, where: Mapping[str, str] | None = None,
                 wait_for_nodes: float | None = None) -> None:
        super().__init__(soft=soft, backend=backend, pin_amount=pin_amount, cache=cache,
                         where=where, wait_for_nodes=wait_for_nodes)
        if isinstance(weights, str):
            check_weights(weights, ("capacity", "equal"))
            self.weights: str | dict[str, float] = weights
        else:
            check_weights(weights, ("capacity", "equal"))
            self.weights = {k: check_weight(k, v, allow_zero=True) for k, v in weights.items()}
        if choices is not None and type(choices) is not int or choices not in _CHOICES:
            raise ValueError(f"choices must be None (compare every fitting node) or 2 (power "
                             f"of two choices), got {choices!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.choices = choices
        self.seed = seed
        self._tracked = True
        self._inflight = Ledger()  # node id -> placements not yet released
        self._weights: Bounded[NodeSet, list[float]] = Bounded(NODE_SETS_PER_LEDGER)
        self._seed = seed if seed is not None else random.getrandbits(64)
        self._draws = 0  # the next new draw
        self._given_back: list[int] = []  # draws below it rolled back: drawn again first
        self._made = 0  # placements reserved and not rolled back: names are checked while 0

    def _config(self) -> dict[str, Any]:
        return {"weights": self.weights, "choices": self.choices, "seed": self.seed,
                **super()._config()}

    def load(self, node_id: str) -> int:
        """Placements of this policy on the node not yet released."""
        return self._inflight.counts.get(node_id, 0)

    def _weigh(self, node: NodeInfo) -> float:
        weights = self.weights
        if weights == "capacity":
            return node.total.get("CPU", 0.0)
        if weights == "equal":
            return 1.0
        assert isinstance(weights, dict)
        return weights.get(node.label or "", weights.get(node.node_id, 1.0))

    def _weights_of(self, nodes: NodeSet) -> list[float]:
        found = self._weights.get(nodes)
        if found is None:
            raw = [float(self._weigh(n)) for n in nodes.nodes]
            # Relative to the largest, and at least MIN_WEIGHT of it: loads stay finite numbers
            # that order as the weights do (a weight of 1e-320 would make every load infinite).
            largest = max(raw) or 1.0
            found = [max(w / largest, MIN_WEIGHT) if w > 0 else 0.0 for w in raw]
            self._weights.put(nodes, found)
        else:
            self._weights.move_to_end(nodes)
        return found

    def _index(self, nodes: NodeSet) -> LeastIndex:
        return self._inflight.index(nodes, nodes.ids, nodes.position, self._weights_of(nodes))

    def _check_names(self, cands: Candidates) -> Refusal | None:
        """Refuse weights naming no node of the cluster (a typo), until a placement was made
        (reserve marks it): a node that later leaves must not stop the others."""
        if not isinstance(self.weights, dict) or self._made:
            return None
        unknown = unknown_names(self.weights, cands.snapshot)
        if unknown:
            return Refusal.of(PlacementError(
                errors.UNKNOWN_LABEL,
                f"weights name {', '.join(map(repr, unknown))}, which no node of the cluster is "
                "labelled or has as id", "fix the names in weights= (placement status lists the "
                "nodes; nodes left out weigh 1)", shown(cands.nodes)))
        return None

    def _choose(self, cands: Candidates, request: Request) -> Outcome:
        refused = self._check_names(cands)
        if refused is not None:
            return refused
        try:
            nodes = cands.node_set(request.demand)
        except PlacementError as refusal:
            return Refusal.of(refusal)
        if self.choices is None:
            found = self._index(nodes).least()
            assert found is not None  # a node set is never empty
            return (nodes.nodes[found[0]], _LEAST, False, None, 0)
        n = len(nodes.nodes)
        drawn = draw(self._seed, self._given_back[0] if self._given_back else self._draws)
        a, b = drawn % n, (drawn >> 32) % n
        weights, counts = self._weights_of(nodes), self._inflight.counts
        loads = [_load(counts.get(nodes.ids[i], 0), weights[i]) for i in (a, b)]
        i = a if (loads[0], a) <= (loads[1], b) else b
        return (nodes.nodes[i], _OF_TWO, False, True, 0)

    judges = True

    def _choose_at(self, cands: Candidates, request: Request, node: NodeInfo) -> Outcome:
        """Allow any candidate that can hold the demand: the placement counts there."""
        wrong = not_here(cands, request.demand, node)
        if wrong is not None:
            return Refusal.of(wrong)
        return (node, _LEAST, False, None, 0)

    def _reserve(self, request: Request, choice: Choice) -> Hold:
        node_id = choice[0].node_id
        self._inflight.change(node_id, +1)
        self._made += 1
        if choice[3] is not True:
            return node_id, None
        if self._given_back:
            return node_id, heapq.heappop(self._given_back)
        self._draws += 1
        return node_id, self._draws - 1

    def _unreserve(self, hold: Hold) -> None:
        node_id, drawn = hold
        self._inflight.change(node_id, -1)
        self._made -= 1
        if drawn is None:
            return
        # Give the draw back, as if never drawn: the lowest given back is drawn next, and the
        # last ones shrink the count, so any order of rollbacks ends where no draw was made.
        heapq.heappush(self._given_back, drawn)
        given = self._given_back
        while given and max(given) == self._draws - 1:
            given.remove(self._draws - 1)
            heapq.heapify(given)
            self._draws -= 1

    def _release(self, hold: Hold) -> None:
        """The work ended: its node's load goes down (its draw stays drawn)."""
        self._inflight.change(hold[0], -1)

    def _follow(self, cands: Candidates) -> None:
        """Build the indexes of the node sets used last as the new candidates have them."""
        for old in list(self._weights):
            nodes = cands.successor(old)
            if nodes is not None:
                self._index(nodes)


def _load(count: int, weight: float) -> float:
    return count / weight if weight > 0 else (count + 1) * 1e12
