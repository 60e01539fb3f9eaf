"""Whose turn it is in a weighted round robin: step t of a node set's weighted order, as a
value read by position, so that the ledger of a weighted round robin is just its step count.

Nodes of equal weight are alike, so the turns go to weight classes (Tijdeman's chairman
assignment over the distinct weights: after every step each class is within 1 of its share)
and round robin among a class's nodes. When the classes' totals are whole numbers whose period
(their sum over their greatest common divisor) is at most ``PERIOD_LIMIT``, one period is
computed once and step t is a list read; otherwise the steps are computed in order and the
last ``WINDOW`` kept (a rollback goes back a step or two).

>>> turns = Turns((2.0, 1.0, 1.0))      # node 0 weighs 2, nodes 1 and 2 weigh 1
>>> [turns.node(t, turns.offsets(0)) for t in range(8)]
[0, 1, 0, 2, 0, 1, 0, 2]
"""
from __future__ import annotations

import bisect
import heapq
import math

# A period longer than this is computed step by step instead: precomputing it would cost more
# than it saves (benchmarks/decide.py, weighted rows).
PERIOD_LIMIT = 1 << 15
WINDOW = 4096  # steps kept when computed in order


class Turns:
    """The weighted order of one node set: ``node(t, offsets)`` is the position of the node
    whose turn step t is; ``offsets(start)`` makes each class begin at ``start`` or after."""

    __slots__ = ("_base", "_counts", "_cycle", "_memo", "_occurrence", "_per_period",
                 "_sequence", "members", "weights")

    def __init__(self, weights: tuple[float, ...]) -> None:
        self.weights = weights
        largest = max(weights)
        groups: dict[float, list[int]] = {}
        for i, weight in enumerate(weights):
            if weight > 0 and weight / largest > 0:  # 0, or so small against the largest
                groups.setdefault(weight, []).append(i)
        self.members: list[list[int]] = list(groups.values())
        self._cycle: list[int] | None = None
        self._memo: list[tuple[int, int]] = []
        self._base = 0
        self._sequence: _Chairman | None = None
        self._counts: list[int] = []
        self._occurrence: list[int] = []
        self._per_period: list[int] = []
        if all(float(w).is_integer() for w in groups):
            units = [int(w) * len(m) for w, m in groups.items()]
            common = math.gcd(*units)
            period = sum(units) // common
            if period <= PERIOD_LIMIT:
                once = _Chairman(tuple(float(u // common) for u in units))
                self._cycle = [once.next() for _ in range(period)]
                seen = [0] * len(units)
                for c in self._cycle:
                    self._occurrence.append(seen[c])
                    seen[c] += 1
                self._per_period = seen
        if self._cycle is None:
            # Scaled by the largest weight: 1e308 and 1.5e308 would sum to infinity.
            self._sequence = _Chairman(tuple(w / largest * len(m) for w, m in groups.items()))
            self._counts = [0] * len(self.members)

    def offsets(self, start: int) -> tuple[int, ...]:
        """Per class, the index of its first node at position ``start`` or after (wrapping)."""
        return tuple(bisect.bisect_left(members, start) % len(members)
                     for members in self.members)

    def turn(self, t: int) -> tuple[int, int]:
        """(class, how many turns that class had before step t)."""
        cycle = self._cycle
        if cycle is not None:
            period = len(cycle)
            step = t % period
            c = cycle[step]
            return c, (t // period) * self._per_period[c] + self._occurrence[step]
        memo, base = self._memo, self._base
        if t < base:  # further back than the window: compute again from the first step
            self._restart()
            memo, base = self._memo, self._base
        while t >= base + len(memo):
            self._extend()
            memo, base = self._memo, self._base
        return memo[t - base]

    def node(self, t: int, offsets: tuple[int, ...]) -> int:
        c, before = self.turn(t)
        members = self.members[c]
        return members[(before + offsets[c]) % len(members)]

    def _extend(self) -> None:
        assert self._sequence is not None  # built whenever there is no cycle
        c = self._sequence.next()
        self._memo.append((c, self._counts[c]))
        self._counts[c] += 1
        if len(self._memo) > 2 * WINDOW:
            del self._memo[:WINDOW]
            self._base += WINDOW

    def _restart(self) -> None:
        groups = [self.weights[m[0]] for m in self.members]
        largest = max(self.weights)
        self._sequence = _Chairman(tuple(w / largest * len(m)
                                         for w, m in zip(groups, self.members, strict=True)))
        self._counts = [0] * len(self.members)
        self._memo, self._base = [], 0


class _Chairman:
    """Tijdeman's solution of the chairman assignment problem: with shares s_i, after every step
    t each count x_i stays within 1 - 1/(2n-2) of s_i * t.

    Item i is released once s_i * t - x_i >= C and is due by (x_i + 1 - C) / s_i; each step takes
    the released item due first. Two heaps make a step O(log n). Ties go to the first in order.
    """

    _EPS = 1e-9

    def __init__(self, weights: tuple[float, ...]) -> None:
        used = [i for i, w in enumerate(weights) if w > 0]
        total = sum(weights[i] for i in used)
        self._c = 1.0 / (2 * len(used) - 2) if len(used) > 1 else 0.0
        self._share = [w / total for w in weights]
        self._t = 0
        self._count = [0] * len(weights)
        # (release time, item, count) and (deadline, item, count)
        self._pending = [((self._c) / self._share[i], i, 0) for i in used]
        heapq.heapify(self._pending)
        self._ready: list[tuple[float, int, int]] = []

    def next(self) -> int:
        t = self._t = self._t + 1
        limit = t + self._EPS
        share, c = self._share, self._c
        pending, ready = self._pending, self._ready
        while pending and pending[0][0] <= limit:
            _, i, made_for = heapq.heappop(pending)
            heapq.heappush(ready, ((made_for + 1 - c) / share[i], i, made_for))
        if ready:
            _, i, made_for = heapq.heappop(ready)
        else:  # rounding left nothing released: take the item released soonest
            _, i, made_for = heapq.heappop(pending)
        made_for = self._count[i] = made_for + 1
        heapq.heappush(pending, ((made_for + c) / share[i], i, made_for))
        return i
