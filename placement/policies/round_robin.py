"""RoundRobin: balance, per demand, over the nodes that fit it.

A round robin's ledger is one position per demand: the placement-order key of the node its last
placement went to (and, weighted, the step of its weighted order). The next placement goes to
the first fitting node after that key, in natural order, wrapping; while the fitting nodes stay
the same object (a refresh that changed none of them) that is the next index, O(1), and when they
change it is found again by bisection, so a rotation carries on after its last node whatever
joined or left. Rolling back a proposal restores the position it replaced: exact by
construction, also across a refresh in between.

Where a demand's first placement goes: with ``seed=``, at a node the seed picks; otherwise right
after the node of the process's last round-robin placement of that demand (the process keeps the
positions of its last ``bounded.PROCESS_DEMANDS`` demands, least recently used first out). So
``RoundRobin()`` created anew for every call (inline, as ``fn.options(...).remote()`` is
written), weighted too, still spreads, from any number of threads, while two long-lived policies
whose calls interleave each stay balanced on their own (each keeps its own positions, at most
``bounded.DEMANDS_PER_POLICY`` demands; a demand evicted continues from the process's position).

>>> from placement.snapshot import ClusterSnapshot
>>> snap = ClusterSnapshot.from_dicts([{"id": f"n{i}", "label": f"node{i}"} for i in range(3)])
>>> rr = RoundRobin(seed=0)
>>> [rr.decide(snap).node_name for _ in range(4)]
['node1', 'node2', 'node0', 'node1']
"""
from __future__ import annotations

import bisect
import threading
from collections.abc import Hashable, Mapping
from typing import Any

from .. import errors
from ..errors import PlacementError
from ..snapshot import BY_ORDER, ClusterSnapshot, NodeInfo
from .base import Choice, Hold, Outcome, Policy, Refusal, not_a_decision
from .bounded import (
    DEMANDS_PER_POLICY,
    NODE_SETS_PER_LEDGER,
    PROCESS_DEMANDS,
    PROCESS_WEIGHTINGS,
    Bounded,
)
from .candidates import Candidates, NodeSet, not_here, shown
from .decision import DEFAULT_PIN_AMOUNT, Decision
from .ledger import draw
from .request import Demand, Request, finite
from .turns import Turns

Weights = str | Mapping[str, float] | None
# One demand's position, a list (made on every placement, it costs a tenth of an object):
# [0] the order key of the node of the placement, [1] the node set it was on, [2] that node's
# index in it, [3] the weighted order or None, [4] its next step, [5] where its classes start,
# [6] what the three tables (the policy's, the process's per demand and per weighting) held
# before it, until it is committed, [7] whether it was rolled back. A rollback puts back the
# latest position before it that was not rolled back too: exact in any order of rollbacks.
Position = list[Any]



class RotationMemory:
    """Where a demand's first placement goes, for every RoundRobin of the process: the last
    position of each (demand, weighting), at most ``bounded.PROCESS_DEMANDS`` of them, and the
    last position of each weighting whatever the demand (a demand never seen, or forgotten,
    carries on from there, so inline policies asking ever new demands still spread)."""

    __slots__ = ("last", "positions")

    def __init__(self) -> None:
        self.positions: Bounded[tuple[Demand, Hashable], Position] = Bounded(PROCESS_DEMANDS)
        self.last: Bounded[Hashable, Position] = Bounded(PROCESS_WEIGHTINGS)

    def copy(self) -> RotationMemory:
        twin = RotationMemory()
        twin.positions, twin.last = self.positions.copy(), self.last.copy()
        return twin


PROCESS_ROTATION = RotationMemory()
# Every round robin's lock: a decision may read and move the process's positions (a demand the
# policy has not placed yet), so inline policies in several threads never read the same one.
_PROCESS_LOCK = threading.RLock()

_NEXT = "next in round-robin order"
_NEXT_WEIGHTED = "next in weighted round-robin order"
_ALLOWED = "allowed (not its turn: the rotation stays where it was)"
_REFILL = "its turn came while a failed submission held it: taken now"
_HOLES = 64  # owed nodes kept per demand


def _drop(holes: list[Position] | None, gone: list[Position]) -> None:
    """Remove the positions ``gone`` (by identity) from ``holes``."""
    if holes and gone:
        holes[:] = [hole for hole in holes if not any(hole is g for g in gone)]


def _restore(table: Bounded[Any, Position], key: Hashable, placed: Position,
             which: int) -> list[Position]:
    """``placed`` was rolled back: if ``table`` still holds it under ``key``, put back the
    latest position before it (in that table) that was not rolled back too; return the rolled
    back ones passed over."""
    if table.get(key) is not placed:
        return []  # placed since: the newer position stays
    walked = []
    before = placed[6][which]
    while before is not None and before[7]:
        walked.append(before)
        before = before[6][which]  # rolled back too (never committed: its history is there)
    if before is None:
        del table[key]
    else:
        table.put(key, before)
    return walked


def check_weight(key: str, weight: Any, allow_zero: bool = False) -> float:
    """One weight of a mapping: a finite number > 0 (>= 0 with ``allow_zero``)."""
    value = finite(weight)
    if value is None or value < 0 or (value == 0 and not allow_zero):
        what = ("a finite number >= 0 (0: used only when no other node fits; nodes left out "
                "weigh 1)" if allow_zero else "a positive finite number: leave a node out of "
                "the mapping instead of giving it 0")
        raise ValueError(f"weight of {key!r} must be {what}, got {weight!r:.40}")
    return value


def check_weights(weights: Any, named: tuple[str, ...]) -> str | dict[str, float]:
    """``weights``: one of the ``named`` modes, or a non-empty mapping of label or node id to
    weight."""
    if isinstance(weights, str):
        if weights not in named:
            raise ValueError(f"weights={weights!r} is unknown: use "
                             f"{', '.join(map(repr, named))} or a mapping {{label: weight}}")
        return weights
    if not isinstance(weights, Mapping) or not weights:
        raise TypeError(f"weights must be {', '.join(map(repr, named))}, or a non-empty mapping "
                        f"{{label: weight}}, got {weights!r}")
    for key in weights:
        if not isinstance(key, str) or not key:
            raise TypeError(f"weights are keyed by node label or node id (a string), got "
                            f"{key!r}: e.g. {{'node0': 2}}")
    return {}


def unknown_names(weights: Mapping[str, float], snapshot: ClusterSnapshot) -> list[str]:
    """The keys of ``weights`` no node of the snapshot is labelled or has as id."""
    return sorted(k for k in weights if k not in snapshot.by_id and k not in snapshot.by_label
                  and not any(n.label == k for n in snapshot.dead))


class RoundRobin(Policy):
    """Load balancing: cycle over the candidate nodes in natural label order.

    After k placements of one demand, its per-node counts differ by at most 1.
    ``weights="capacity"`` (CPUs), ``weights="label"`` (the node<i> resource amount) or a mapping
    ``{"node0": 2, "node1": 1}`` (labels or node ids) gives smooth weighted round robin, each node
    within 1 of its target share. ``seed`` picks the starting node (spreads several drivers); the
    same seed gives the same sequence.

    ``soft="gone"`` (the default, the intent being balance): the work waits for its node while
    that node is busy, and runs elsewhere (inside ``where=`` and the work's ``label_selector``)
    only when the node is gone (dead, or cut off once Ray marks it dead). ``soft=False``: only
    there (work bound to a dead node fails); ``soft=True``: elsewhere also while it is busy.

    >>> from placement.snapshot import ClusterSnapshot
    >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
    ...                                    {"id": "b", "label": "node1"}])
    >>> rr = RoundRobin(weights={"node0": 3, "node1": 1}, seed=0)
    >>> sorted(rr.decide(snap).node_name for _ in range(4))
    ['node0', 'node0', 'node0', 'node1']
    """

    default_soft = "gone"

    def __init__(self, weights: Weights = None, *, seed: int | None = None,
                 soft: bool | str = "gone", backend: str | None = None,
                 pin_amount: float = DEFAULT_PIN_AMOUNT,
                 cache: Any = None, where: Mapping[str, str] | None = None,
                 wait_for_nodes: float | None = None) -> None:
        super().__init__(soft=soft, backend=backend, pin_amount=pin_amount, cache=cache,
                         where=where, wait_for_nodes=wait_for_nodes)
        if weights is not None and not isinstance(weights, str):
            check_weights(weights, ("capacity", "label"))
            weights = {k: check_weight(k, v) for k, v in weights.items()}
        elif weights is not None:
            check_weights(weights, ("capacity", "label"))
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.weights = weights
        self.seed = seed
        # The process's positions are keyed by the weighting too: a weighted order and a plain
        # one are different rotations.
        self._mode: Hashable = (None if weights is None else weights if isinstance(weights, str)
                                else tuple(sorted(weights.items())))
        self._memory = PROCESS_ROTATION
        self._lock = _PROCESS_LOCK
        self._at: Bounded[Demand, Position] = Bounded(DEMANDS_PER_POLICY)
        self._turns: Bounded[NodeSet, Turns] = Bounded(NODE_SETS_PER_LEDGER)
        self._made = 0  # placements reserved and not rolled back: names are checked while 0
        # demand -> positions rolled back after a later one stood: nodes the rotation owes
        self._holes: Bounded[Demand, list[Position]] = Bounded(DEMANDS_PER_POLICY)

    def _config(self) -> dict[str, Any]:
        return {"weights": self.weights, "seed": self.seed, **super()._config()}

    def clone(self) -> RoundRobin:
        """Same configuration, empty ledger; its rotations start where the process's would now,
        but its placements do not move the process's (dry runs stay dry)."""
        twin = RoundRobin(**self._config())
        with _PROCESS_LOCK:
            twin._memory = self._memory.copy()
        return twin

    # -- deciding ---------------------------------------------------------------------------------

    def _choose(self, cands: Candidates, request: Request) -> Outcome:
        demand = request.demand
        fits = cands.fits
        nodes = fits.get(demand)  # node_set(demand), inline: this runs on every placement
        if nodes.__class__ is NodeSet:
            fits.move_to_end(demand)
        else:
            try:
                nodes = cands.node_set(demand)
            except PlacementError as refusal:
                return Refusal.of(refusal)
        if self._holes:
            refill = self._refill(demand, nodes)
            if refill is not None:
                return refill
        at = self._at.get(demand)
        if at is None and self.seed is None:
            memory = self._memory
            at = memory.positions.get((demand, self._mode)) or memory.last.get(self._mode)
        if self.weights is None:
            n = len(nodes.nodes)
            if at is None:
                i = 0 if self.seed is None else draw(self.seed, 0) % n
            elif at[1] is nodes:
                i = at[2] + 1
                if i == n:
                    i = 0
            else:
                i = bisect.bisect_right(nodes.nodes, at[0], key=BY_ORDER)
                if i == n:
                    i = 0
            node = nodes.nodes[i]
            return (node, _NEXT, False,
                    (demand, [node.order_key, nodes, i, None, 0, (), None, False]), 0)
        if not self._made and isinstance(self.weights, Mapping):
            # Checked while no placement stands: a typo shows at once, while a node that later
            # leaves the cluster's records must not stop the others.
            unknown = unknown_names(self.weights, cands.snapshot)
            if unknown:
                return Refusal(errors.UNKNOWN_LABEL, lambda: PlacementError(
                    errors.UNKNOWN_LABEL,
                    f"weights name {', '.join(map(repr, unknown))}, which no node of the cluster "
                    "is labelled or has as id",
                    "fix the names in weights= (placement status lists the nodes)",
                    shown(cands.nodes)))
        if at is not None and at[1] is nodes and at[3] is not None:
            turns, step, offsets = at[3], at[4], at[5]
        else:  # the first placement, or another node set (or the same nodes, read anew)
            found = self._turns_of(cands, nodes)
            if not isinstance(found, Turns):
                return found
            turns = found
            if (at is not None and at[3] is not None and at[1].ids == nodes.ids
                    and at[3].weights == turns.weights):
                turns, step, offsets = at[3], at[4], at[5]  # the same order carries on
            elif at is not None:
                start = bisect.bisect_right(nodes.nodes, at[0], key=BY_ORDER) % len(nodes)
                step, offsets = 0, turns.offsets(start)
            else:
                start = 0 if self.seed is None else draw(self.seed, 0) % len(nodes)
                step, offsets = 0, turns.offsets(start)
        i = turns.node(step, offsets)
        node = nodes.nodes[i]
        position = [node.order_key, nodes, i, turns, step + 1, offsets, None, False]
        return (node, _NEXT_WEIGHTED, False, (demand, position), 0)

    judges = True

    def _choose_at(self, cands: Candidates, request: Request, node: NodeInfo) -> Outcome:
        """Allow a node of its own that can hold the demand (and that its weights give a share):
        its own turn moves the rotation; another node leaves the rotation where it is, so the
        turn comes again at the next placement and the rotation stays even over the nodes it
        places on (another member's choices are that member's balance)."""
        mine = cands.get(node.node_id)
        wrong = not_here(cands, request.demand, mine if mine is not None else node)
        if wrong is not None:
            return Refusal.of(wrong)
        assert mine is not None  # not_here refuses a node that is not a candidate
        if isinstance(self.weights, Mapping) and self.weights.get(
                mine.label or "", self.weights.get(mine.node_id, 0.0)) <= 0:
            return Refusal(errors.UNKNOWN_LABEL, lambda: PlacementError(
                errors.UNKNOWN_LABEL, f"weights={self.weights!r} give node {shown([mine])[0]} "
                "no share", "name the node in weights=, or let another member choose",
                shown([mine])))
        own = self._choose(cands, request)
        if isinstance(own, Refusal) or own[0] is mine:
            return own
        return (mine, _ALLOWED, False, None, 0)

    def _refill(self, demand: Demand, nodes: NodeSet) -> Choice | None:
        """The node of a proposal rolled back after a later one of the same demand stood (the
        rotation had passed it), if it still fits: taken before the rotation moves on, so
        proposals that fail out of order leave no node short."""
        for hole in self._holes.get(demand) or ():
            i = hole[2] if hole[1] is nodes else bisect.bisect_left(nodes.nodes, hole[0],
                                                                     key=BY_ORDER)
            if i < len(nodes.nodes) and nodes.nodes[i].order_key == hole[0]:
                return (nodes.nodes[i], _REFILL, False, (demand, hole, True), 0)
        return None

    def _reserve(self, request: Request, choice: Choice) -> Hold:
        if choice[3] is None:  # allowed another member's node: the rotation does not move
            self._made += 1
            return None
        if len(choice[3]) == 3:  # a refill: the rotation does not move
            demand, hole, _ = choice[3]
            _drop(self._holes.get(demand), [hole])
            self._made += 1
            return demand, hole, True
        demand, position = choice[3]
        at, memory, mode = self._at, self._memory, self._mode
        key = (demand, mode)
        positions, lasts = memory.positions, memory.last
        position[6] = (at.get(demand), positions.get(key), lasts.get(mode))
        # Bounded.put's three C calls, inline: this runs on every placement.
        at[demand] = position
        at.move_to_end(demand)
        if len(at) > at.cap:
            at.popitem(last=False)
        positions[key] = position
        positions.move_to_end(key)
        if len(positions) > positions.cap:
            positions.popitem(last=False)
        lasts[mode] = position
        lasts.move_to_end(mode)
        if len(lasts) > lasts.cap:
            lasts.popitem(last=False)
        self._made += 1
        return demand, position

    def commit(self, decision: Decision) -> None:
        """Ray accepted the work. A committed position is never rolled back: what it replaced
        is history, and is dropped (the chain of what came before stays as short as the
        proposals open at once)."""
        if decision.__class__ is not Decision:
            raise not_a_decision(decision)
        self._committed(self._open.pop(decision.ticket, None))

    def _committed(self, hold: Hold) -> None:
        if hold is not None and len(hold) == 2:  # not a refill: a refilled hole stays as it was
            hold[1][6] = None

    def _unreserve(self, hold: Hold) -> None:
        self._made -= 1
        if hold is None:
            return
        if len(hold) == 3:  # a refill given back: the hole is open again
            self._owe(hold[0], hold[1])
            return
        position: Position
        demand, position = hold
        position[7] = True
        mode, memory = self._mode, self._memory
        if self._at.get(demand) is position:
            walked = _restore(self._at, demand, position, 0)  # back to before
            _drop(self._holes.get(demand), walked)  # undone by this: no longer owed
        else:  # a later one stands: the rotation passed this node, which is owed a placement
            self._owe(demand, position)
        _restore(memory.positions, (demand, mode), position, 1)
        _restore(memory.last, mode, position, 2)

    def _owe(self, demand: Demand, hole: Position) -> None:
        holes = self._holes.get(demand)
        if holes is None:
            holes = []
            self._holes.put(demand, holes)
        holes.append(hole)
        del holes[:-_HOLES]

    def _release(self, hold: Hold) -> None:
        """A round robin's ledger is history: a placement that ended changes nothing."""

    def _follow(self, cands: Candidates) -> None:
        """Build the weighted orders of the node sets used last as the new candidates have
        them, off the submit path."""
        if self.weights is None:
            return
        for old in list(self._turns):
            nodes = cands.successor(old)
            if nodes is not None:
                self._turns_of(cands, nodes)

    def _turns_of(self, cands: Candidates, nodes: NodeSet) -> Turns | Refusal:
        found = self._turns.get(nodes)
        if found is not None:
            self._turns.move_to_end(nodes)
            return found
        weights = self._weights_of(cands, nodes)
        if isinstance(weights, Refusal):
            return weights
        found = Turns(weights)
        self._turns.put(nodes, found)
        return found

    def _weights_of(self, cands: Candidates, nodes: NodeSet) -> tuple[float, ...] | Refusal:
        if self.weights == "capacity":
            found = tuple(n.cpus for n in nodes.nodes)
        elif self.weights == "label":
            found = tuple(float(n.total.get(n.label or "", 0.0)) for n in nodes.nodes)
        else:
            assert isinstance(self.weights, Mapping)
            named = self.weights
            found = tuple(named.get(n.label or "", named.get(n.node_id, 0.0))
                          for n in nodes.nodes)
        if not any(w > 0 for w in found):
            return Refusal(errors.UNKNOWN_LABEL, lambda: PlacementError(
                errors.UNKNOWN_LABEL,
                f"no candidate node has a positive weight under weights={self.weights!r}",
                "name live nodes in the weights (placement status lists them) or give nodes CPUs",
                shown(nodes.nodes)))
        return found
