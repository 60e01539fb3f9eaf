"""Ledgers and the indexes that answer "which slot holds the fewest" without a scan. Pure.

A ``Ledger`` counts placements per slot (a node id, or a topology value); every least-used
question is answered by a ``LeastIndex`` over one ordered sequence of slots (a demand's fitting
nodes, the domains of a topology), registered with the ledger so that each count change reaches
exactly the indexes holding that slot. A ledger keeps at most ``bounded.NODE_SETS_PER_LEDGER``
indexes (least recently used first out): demands that fit the same nodes share one.

>>> ledger = Ledger()
>>> slots = ("a", "b", "c")
>>> index = ledger.index("every", slots, {"a": 0, "b": 1, "c": 2})
>>> ledger.change("a", +1); index.least()      # (position, count): b is first of the fewest
(1, 0)
>>> ledger.change("b", +1); ledger.change("c", +1); ledger.change("b", -1); index.least()
(1, 0)

Draws (LeastLoaded's ``choices=2``) are made from a counter instead of a random generator's
state: the k-th draw of a policy is a function of its seed and k, so a proposal that is rolled
back gives its k back and the next decision draws exactly what it would have drawn.

>>> draw(seed=7, k=3) == draw(seed=7, k=3) != draw(seed=7, k=4)
True
"""
from __future__ import annotations

import heapq
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from .bounded import NODE_SETS_PER_LEDGER, Bounded

_MASK = (1 << 64) - 1


def draw(seed: int, k: int) -> int:
    """A 64-bit number that depends only on (seed, k): SplitMix64's finaliser."""
    z = (seed + (k + 1) * 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


class LeastIndex:
    """The first slot in order among those with the lowest key, where a slot's key is its count
    over its weight (1 when unweighted; a slot of weight 0 keys above every weighted one).

    Slots at count 0 are walked in order by a cursor, so building an index stores nothing per
    slot but for slots already counted; the others sit in a heap of (key, position, count) whose
    entries go stale when the count moves on and are dropped when they surface. A question is
    amortised O(1) while counts only grow (a strict spread) and O(log n) otherwise.
    ``hist`` (counts -> slots) gives the floor after a change without a scan (max_skew).
    """

    __slots__ = ("_cursor", "_heap", "_returned", "counts", "hist", "n", "position", "slots",
                 "weights")

    def __init__(self, slots: Sequence[Any], position: Mapping[Any, int],
                 counts: Mapping[Any, int],
                 weights: Sequence[float] | None = None) -> None:
        self.slots = slots
        self.position = position
        self.counts = counts  # the ledger's own dict, read live
        self.weights = weights
        self.n = len(slots)
        self._cursor = 0
        self._returned: list[int] = []  # positions behind the cursor back at count 0
        self._build()

    def _build(self) -> None:
        heap: list[tuple[float, int, int]] = []
        hist: dict[int, int] = {}
        weights, position = self.weights, self.position
        for slot, count in self.counts.items():  # only the counted slots: O(placed)
            pos = position.get(slot)
            if pos is not None and count > 0:
                heap.append((self._key(pos, count), pos, count))
                hist[count] = hist.get(count, 0) + 1
        if weights is not None:  # weightless slots never take the cursor's fast path
            heap += [(self._key(pos, 0), pos, 0) for pos in range(self.n)
                     if weights[pos] <= 0 and self.counts.get(self.slots[pos], 0) == 0]
        heapq.heapify(heap)
        hist[0] = self.n - sum(hist.values())
        self._heap, self.hist = heap, hist
        self._cursor, self._returned = 0, []

    def _key(self, pos: int, count: int) -> float:
        weights = self.weights
        if weights is None:
            return count
        weight = weights[pos]
        return count / weight if weight > 0 else (count + 1) * _WEIGHTLESS

    def least(self) -> tuple[int, int] | None:
        """(position, count) of the first slot in order with the lowest key; None if empty."""
        counts, slots, weights = self.counts, self.slots, self.weights
        returned = self._returned
        while returned and counts.get(slots[returned[0]], 0):
            heapq.heappop(returned)
        cursor, n = self._cursor, self.n
        while cursor < n and (counts.get(slots[cursor], 0)
                              or (weights is not None and weights[cursor] <= 0)):
            cursor += 1
        self._cursor = cursor
        if returned and returned[0] < cursor:
            return returned[0], 0
        if cursor < n:
            return cursor, 0
        heap = self._heap
        while heap:
            _, pos, count = heap[0]
            if counts.get(slots[pos], 0) == count:
                return pos, count
            heapq.heappop(heap)
        return None

    def floor(self) -> int:
        """The lowest count of any slot."""
        found = self.least()
        return 0 if found is None else found[1]

    def moved(self, pos: int, old: int, new: int) -> None:
        """The ledger moved slot ``pos`` from ``old`` to ``new``."""
        hist = self.hist
        left = hist.get(old, 0) - 1
        if left > 0:
            hist[old] = left
        else:
            hist.pop(old, None)
        hist[new] = hist.get(new, 0) + 1
        weights = self.weights
        if new == 0 and (weights is None or weights[pos] > 0):
            if pos < self._cursor:
                returned = self._returned
                heapq.heappush(returned, pos)
                if len(returned) > self.n + 64:  # a slot back at 0 again and again: afresh
                    self._build()
            return  # ahead of the cursor: the cursor finds it
        heap = self._heap
        heapq.heappush(heap, (self._key(pos, new), pos, new))
        if len(heap) > 2 * self.n + 64:  # stale entries that never surfaced: start afresh
            self._build()


# The key of a weightless slot with nothing on it: above any weighted slot's (weights are at
# least MIN_WEIGHT of the largest: see least_loaded.py), so such slots are used only when no
# other fits, and still balanced among themselves.
_WEIGHTLESS = 1e30


class Ledger:
    """Placements per slot, and the least-used indexes that follow them.

    ``change`` is the only way counts move (reserve, unreserve, release, other drivers' counts):
    it tells each registered index that holds the slot.
    """

    __slots__ = ("counts", "indexes")

    def __init__(self, cap: int = NODE_SETS_PER_LEDGER) -> None:
        self.counts: dict[Hashable, int] = {}
        self.indexes: Bounded[Hashable, LeastIndex] = Bounded(cap)

    def change(self, slot: Hashable, by: int) -> None:
        """Raise or lower ``slot``'s count by ``by`` (never below 0)."""
        counts = self.counts
        old = counts.get(slot, 0)
        new = old + by
        if new > 0:
            counts[slot] = new
        else:
            new = 0
            if old == 0:
                return
            del counts[slot]
        for index in self.indexes.values():
            pos = index.position.get(slot)
            if pos is not None:
                index.moved(pos, old, new)

    def index(self, key: Hashable, slots: Sequence[Any], position: Mapping[Any, int],
              weights: Sequence[float] | None = None) -> LeastIndex:
        """The index registered under ``key`` (a node set, a domain set), built on first use."""
        indexes = self.indexes
        found: LeastIndex | None = indexes.get(key)
        if found is None:
            found = LeastIndex(slots, position, self.counts, weights)
            indexes.put(key, found)
        else:
            indexes.move_to_end(key)
        return found
