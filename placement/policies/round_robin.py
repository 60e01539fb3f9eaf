"""RoundRobin: balance, per demand, over the nodes that fit it.

Each demand has its own rotation (and, weighted, its own chairman sequence) over the nodes whose
totals can hold it, so tasks of one demand are balanced whatever other demands the same policy
served in between. A rotation lives until the set of nodes fitting its demand changes: a new
snapshot object with the same nodes changes nothing.

Where a rotation starts: with ``seed=``, at a node the seed picks; otherwise right after the node
of the process's last round-robin placement. So ``RoundRobin()`` created anew for every call
(inline, as ``fn.options(...).remote()`` is written) still spreads, while two long-lived policies
whose calls interleave each stay balanced on their own (each keeps its own cursor).

>>> from placement.snapshot import ClusterSnapshot
>>> snap = ClusterSnapshot.from_dicts([{"id": f"n{i}", "label": f"node{i}"} for i in range(3)])
>>> rr = RoundRobin(seed=0)
>>> [rr.decide(snap).node_name for _ in range(4)]
['node1', 'node2', 'node0', 'node1']
"""
from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Mapping
from typing import Any

from .. import errors
from ..errors import PlacementError
from ..snapshot import BY_ORDER, ClusterSnapshot, NodeInfo
from .base import Hold, Policy
from .candidates import Candidates
from .decision import DEFAULT_PIN_AMOUNT, Decision, node_name
from .request import Demand, Request
from .rotation import Ledger, Rotation

Weights = str | Mapping[str, float] | None


class RotationMemory:
    """Per demand, the placement-order key of the node its last round-robin placement went to."""

    __slots__ = ("last",)
    LIMIT = 1024  # demands remembered; past that the memory starts afresh

    def __init__(self, last: dict[Demand, tuple[object, ...]] | None = None) -> None:
        self.last: dict[Demand, tuple[object, ...]] = dict(last or {})


# Shared by every RoundRobin of the process: only where a new rotation starts depends on it.
PROCESS_ROTATION = RotationMemory()


def _check_weight(key: str, weight: Any) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
            not math.isfinite(weight) or weight <= 0:
        raise ValueError(
            f"weight of {key!r} must be a positive finite number, got {weight!r}: "
            "leave a node out of the mapping instead of giving it 0"
        )
    return float(weight)


# Weights whose class totals are whole numbers get their chairman sequence computed once for a
# whole period, when that period (their sum over their greatest common divisor) is at most this:
# at the end of a period every count equals its share exactly, so the sequence repeats. A step is
# then a list read, not four heap operations (about 0.9 us of the 2 us budget). The cost, paid
# when the node set changes, is about 1 us per step of the period: weights="capacity" over 10,000
# nodes of 1 to 8 CPUs has a period of 36 (5 ms in all, mostly grouping the nodes); the limit
# keeps the worst case near 35 ms.
_PERIOD_LIMIT = 1 << 15


class _Weighted:
    """Smooth weighted round robin: Tijdeman's chairman assignment over the distinct weights,
    then round robin among the nodes that share a weight. Nodes of equal weight are alike, so a
    class of k nodes takes k times the share and hands its turns out in order; each node then
    stays within 1 of its own share (class error below 1/k, plus under (k-1)/k from rounding),
    and a step costs O(log distinct weights): weights="capacity" at 10,000 nodes of 8 sizes has
    8 classes, not 10,000 heap entries."""

    __slots__ = ("_chairman", "_classes", "_cycle", "_placed", "_redo", "_slot_of", "_step")

    def __init__(self, weights: tuple[float, ...], start: int) -> None:
        n = len(weights)
        members: dict[float, list[int]] = {}
        largest = max(weights)
        for i in sorted(range(n), key=lambda i: (i - start) % n):  # from the starting node on
            if weights[i] / largest > 0:  # 0, or so small against the largest that it is 0
                members.setdefault(weights[i], []).append(i)
        self._classes = [Rotation(nodes, Ledger()) for nodes in members.values()]
        self._slot_of = {i: (c, j) for c, nodes in enumerate(members.values())
                         for j, i in enumerate(nodes)}
        self._cycle: list[int] | None = None
        self._chairman: _ChairmanSequence | None = None  # stepped live only without a cycle
        if all(float(w).is_integer() for w in members):
            units = [int(w) * len(m) for w, m in members.items()]
            common = math.gcd(*units)
            period = sum(units) // common
            if period <= _PERIOD_LIMIT:
                once = _ChairmanSequence(tuple(float(u // common) for u in units))
                self._cycle = [once.next() for _ in range(period)]
        if self._cycle is None:
            # Scaled by the largest weight: 1e308 and 1.5e308 would sum to infinity.
            self._chairman = _ChairmanSequence(
                tuple(w / largest * len(m) for w, m in members.items()))
        self._step = 0
        self._redo: list[int] = []  # turns given back out of order (concurrent rollbacks)
        self._placed = 0

    def take_next(self) -> int:
        cycle = self._cycle
        if self._redo:
            c = self._redo.pop()
        elif cycle is not None:
            step = self._step
            c = cycle[step]
            self._step = step + 1 if step + 1 < len(cycle) else 0
        else:
            assert self._chairman is not None  # built whenever there is no cycle
            c = self._chairman.next()
        rotation = self._classes[c]
        j = rotation.take_next()
        assert j is not None  # an unbounded rotation always has a slot
        self._placed += 1
        node: int = rotation.slots[j]  # type: ignore[assignment]  # slots are node positions
        return node

    def untake(self, i: int) -> None:
        c, j = self._slot_of[i]
        self._classes[c].untake(j)
        self._placed -= 1
        cycle = self._cycle
        if cycle is None:
            assert self._chairman is not None  # built whenever there is no cycle
            self._chairman.undo(c)
            return
        before = (self._step or len(cycle)) - 1
        if cycle[before] == c and not self._redo:
            self._step = before  # the last turn handed out: as if it never was
        else:
            self._redo.append(c)

    def empty(self) -> bool:
        return self._placed == 0


class _Class:
    """The rotation of one demand over the nodes that fit it (one epoch of its node set)."""

    __slots__ = ("cands", "last", "nodes", "order", "origin", "seed_draw", "start", "weights")

    def __init__(self, cands: Candidates, nodes: tuple[NodeInfo, ...],
                 weights: tuple[float, ...] | None, start: int,
                 origin: _Class | None = None) -> None:
        self.cands = cands
        self.nodes = nodes
        self.weights = weights
        self.start = start % len(nodes)  # where the rotation starts, as an index
        self.origin = origin  # the rotation of the previous node set it continues, if any
        self.last: int | None = None
        # The seeded random state before and after drawing this rotation's start, if it drew.
        self.seed_draw: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None
        self.order: Rotation | _Weighted = (
            Rotation(range(len(nodes)), Ledger(), None, start) if weights is None
            else _Weighted(weights, start))


class RoundRobin(Policy):
    """Load balancing: cycle over the candidate nodes in natural label order.

    After k placements of one demand, its per-node counts differ by at most 1.
    ``weights="capacity"`` (CPUs), ``weights="label"`` (the node<i> resource amount) or a mapping
    ``{"node0": 2, "node1": 1}`` (labels or node ids) gives smooth weighted round robin, each node
    within 1 of its target share. ``seed`` picks the starting node (spreads several drivers); the
    same seed gives the same sequence.

    >>> from placement.snapshot import ClusterSnapshot
    >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
    ...                                    {"id": "b", "label": "node1"}])
    >>> rr = RoundRobin(weights={"node0": 3, "node1": 1}, seed=0)
    >>> sorted(rr.decide(snap).node_name for _ in range(4))
    ['node0', 'node0', 'node0', 'node1']
    """

    def __init__(self, weights: Weights = None, *, seed: int | None = None, soft: bool = False,
                 backend: str | None = None, pin_amount: float = DEFAULT_PIN_AMOUNT,
                 cache: Any = None, where: Mapping[str, str] | None = None,
                 wait_for_nodes: float | None = None) -> None:
        super().__init__(soft=soft, backend=backend, pin_amount=pin_amount, cache=cache,
                         where=where, wait_for_nodes=wait_for_nodes)
        if isinstance(weights, str):
            if weights not in ("capacity", "label"):
                raise ValueError(f"weights={weights!r} is unknown: use 'capacity', 'label' or a "
                                 "mapping {label: weight}")
        elif weights is not None:
            if not isinstance(weights, Mapping) or not weights:
                raise TypeError("weights must be 'capacity', 'label', or a non-empty mapping "
                                "{label: weight}")
            weights = {str(k): _check_weight(str(k), v) for k, v in weights.items()}
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.weights = weights
        self.seed = seed
        self._random = random.Random(seed)
        self.memory = PROCESS_ROTATION
        self._classes: dict[Demand, _Class] = {}
        self._weights_checked = False

    def _config(self) -> dict[str, Any]:
        return {"weights": self.weights, "seed": self.seed, **super()._config()}

    def clone(self) -> RoundRobin:
        """Same configuration, empty ledger; its rotations start where the process's would now,
        but its placements do not move the process's (dry runs stay dry)."""
        twin = RoundRobin(**self._config())
        twin.memory = RotationMemory(self.memory.last)
        return twin

    # -- deciding ---------------------------------------------------------------------------------

    def _choose(self, cands: Candidates, request: Request) -> tuple[Decision, Hold]:
        demand = request.demand
        state = old = self._classes.get(demand)
        if state is None or state.cands is not cands:
            state = self._classes[demand] = self._class_for(cands, demand, state)
        i = state.order.take_next()
        assert i is not None  # round robin has no cap: there is always a next node
        memory = self.memory
        # What to roll back: a plain tuple, cheaper to build than a NamedTuple on this path.
        last = memory.last
        before = last.get(demand)
        undo = (demand, state, i, state.last, before, state is not old)
        state.last = i
        if before is None and len(last) >= memory.LIMIT:
            last.clear()  # bounded: a process placing ever new demands does not grow it forever
        last[demand] = state.nodes[i].order_key
        reason = "next in round-robin order" if state.weights is None else \
            "next in weighted round-robin order"
        return self._decision(state.nodes[i], reason), undo

    def _follow(self, cands: Candidates) -> None:
        for demand, state in list(self._classes.items()):
            try:
                self._classes[demand] = self._class_for(cands, demand, state)
            except PlacementError:
                pass  # no node fits it now: its next decision says so

    def _undo(self, hold: Hold) -> None:
        demand: Demand
        state: _Class
        demand, state, i, state_last, memory_last, created = hold
        last = self.memory.last
        if last.get(demand) == state.nodes[i].order_key:  # nothing placed since: back to before
            if memory_last is None:
                del last[demand]
            else:
                last[demand] = memory_last
        current = self._classes.get(demand)
        # A rotation for a newer node set that started after this placement's node, and placed
        # nothing since (the refresher followed a snapshot between propose and rollback):
        # restart it as if this placement never happened.
        restart = (current is not state and current is not None and current.origin is state
                   and current.order.empty())
        if current is not state and not restart:  # its node set changed: counts restarted
            return
        state.order.untake(i)
        if state.last == i:
            state.last = state_last
        if created and state.order.empty():  # as if never decided: the next starts it afresh
            del self._classes[demand]
            if state.seed_draw is not None and self._random.getstate() == state.seed_draw[1]:
                self._random.setstate(state.seed_draw[0])  # and the seed's draw is undone too
        elif restart:
            assert current is not None  # restart implies a current rotation
            self._classes[demand] = self._class_for(current.cands, demand, state)

    def _class_for(self, cands: Candidates, demand: Demand, old: _Class | None) -> _Class:
        nodes = cands.fitting(demand)
        weights = None if self.weights is None else self._weights_of(cands.snapshot, nodes)
        if old is not None and _same_ids(old.nodes, nodes) and old.weights == weights:
            old.cands, old.nodes = cands, nodes  # same nodes in a newer snapshot: carry on
            return old
        if old is not None and old.last is not None:  # the node set changed: continue after ours
            start = bisect.bisect_right(nodes, old.nodes[old.last].order_key, key=BY_ORDER)
        elif old is not None:  # it placed nothing yet: start where it would have started
            start = bisect.bisect_left(nodes, old.nodes[old.start].order_key, key=BY_ORDER)
        elif self.seed is not None:
            before = self._random.getstate()
            start = self._random.randrange(len(nodes))
            fresh = _Class(cands, nodes, weights, start)
            fresh.seed_draw = (before, self._random.getstate())
            return fresh
        elif demand in self.memory.last:  # continue after the process's last placement
            start = bisect.bisect_right(nodes, self.memory.last[demand], key=BY_ORDER)
        else:
            start = 0
        if old is not None:
            old.origin = None  # keep one step of history, not a chain of every node set
        return _Class(cands, nodes, weights, start, old)

    def _weights_of(self, snapshot: ClusterSnapshot,
                    nodes: tuple[NodeInfo, ...]) -> tuple[float, ...]:
        if self.weights == "capacity":
            found = tuple(n.cpus for n in nodes)
        elif self.weights == "label":
            found = tuple(float(n.total.get(n.label or "", 0.0)) for n in nodes)
        else:
            assert isinstance(self.weights, Mapping)
            named = self.weights
            known = {n.label for n in snapshot.nodes} | {n.node_id for n in snapshot.nodes}
            unknown = sorted(set(named) - known)
            # Checked on the first snapshot only: a typo shows at once, while a node that later
            # leaves the cluster's records must not stop the others.
            if unknown and not self._weights_checked:
                raise PlacementError(
                    errors.UNKNOWN_LABEL,
                    f"weights name {', '.join(map(repr, unknown))}, which no node of the cluster "
                    "is labelled or has as id",
                    "fix the names in weights= (placement status lists the nodes)",
                    [node_name(n) for n in nodes],
                )
            self._weights_checked = True
            found = tuple(named.get(n.label or "", named.get(n.node_id, 0.0)) for n in nodes)
        if not any(w > 0 for w in found):
            raise PlacementError(
                errors.UNKNOWN_LABEL,
                f"no candidate node has a positive weight under weights={self.weights!r}",
                "name live nodes in the weights (placement status lists them) or give nodes CPUs",
                [node_name(n) for n in nodes],
            )
        return found


def _same_ids(before: tuple[NodeInfo, ...], now: tuple[NodeInfo, ...]) -> bool:
    """Whether two node sequences name the same nodes in the same order. A refresh keeps the
    objects of unchanged nodes, so the tuples usually compare equal by identity, in C."""
    if before is now:
        return True
    if len(before) != len(now):
        return False
    return all(a is b or a.node_id == b.node_id for a, b in zip(before, now, strict=True))


class _ChairmanSequence:
    """Tijdeman's solution of the chairman assignment problem: with shares s_i, after every step
    t each node's count x_i stays within 1 - 1/(2n-2) of s_i * t.

    Node i is released once s_i * t - x_i >= C and is due by (x_i + 1 - C) / s_i; each step takes
    the released node due first. Two heaps make a step O(log n). Entries carry the count they were
    made for, so ``undo`` (a rolled-back placement) only has to push a fresh entry: stale ones are
    skipped when they surface. Nodes of weight 0 never come up. Ties go to the first in order.
    """

    _EPS = 1e-9

    def __init__(self, weights: tuple[float, ...]) -> None:
        used = [i for i, w in enumerate(weights) if w > 0]
        total = sum(weights[i] for i in used)
        n = len(weights)
        self._c = 1.0 / (2 * len(used) - 2) if len(used) > 1 else 0.0
        self._share = [w / total for w in weights]
        self._tie = list(range(n))
        self._t = 0
        self._count = [0] * n
        # (release time, tie, node, count) and (deadline, tie, node, count)
        self._pending: list[tuple[float, int, int, int]] = [self._release(i) for i in used]
        heapq.heapify(self._pending)
        self._ready: list[tuple[float, int, int, int]] = []

    def _release(self, i: int) -> tuple[float, int, int, int]:
        return ((self._count[i] + self._c) / self._share[i], self._tie[i], i, self._count[i])

    def next(self) -> int:
        t = self._t = self._t + 1
        limit = t + self._EPS
        count, share, c = self._count, self._share, self._c
        pending, ready = self._pending, self._ready
        pop, push = heapq.heappop, heapq.heappush
        while pending and pending[0][0] <= limit:
            _, tie, i, made_for = pop(pending)
            if made_for == count[i]:
                push(ready, ((made_for + 1 - c) / share[i], tie, i, made_for))
        while True:
            if ready:
                _, tie, i, made_for = pop(ready)
                if made_for != count[i]:
                    continue  # stale: the node's count changed by an undo
                release = (made_for + c) / share[i]
                if release > limit:  # released for a later step (after an undo)
                    push(pending, (release, tie, i, made_for))
                    continue
                break
            # Nothing released: Tijdeman's theorem rules this out unless undos came out of
            # order (concurrent rollbacks). Take the node released soonest.
            _, tie, i, made_for = pop(pending)
            if made_for == count[i]:
                break
        made_for = count[i] = made_for + 1
        push(pending, ((made_for + c) / share[i], tie, i, made_for))
        return i

    @property
    def placed(self) -> int:
        return self._t

    def undo(self, i: int) -> None:
        """Take back one placement on node ``i``."""
        if self._count[i] == 0:
            return
        self._t -= 1
        self._count[i] -= 1
        heapq.heappush(self._pending, self._release(i))
