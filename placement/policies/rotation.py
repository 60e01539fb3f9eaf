"""Round robin over slots with fill levels: the counting core of RoundRobin, AntiAffinity and
Packing.

A slot is a node id or a topology value. A ``Rotation`` walks its slots in order and takes the
next one whose count is at the lowest level, never above ``cap``; counts live in a ``Ledger``
that several rotations (one per demand) may share. A cursor plus the current level make a pick
amortised O(1): a full scan happens only when a level is used up, or after a count went down.

>>> ledger = Ledger()
>>> spread = Rotation(["a", "b", "c"], ledger, cap=1)
>>> [spread.take() for _ in range(4)]
['a', 'b', 'c', None]
>>> ledger.give_back("b"); spread.take()
'b'
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence


class Ledger:
    """Placements per slot. ``lowered`` counts the times a count went down, so rotations know
    when their level is no longer a lower bound."""

    __slots__ = ("counts", "lowered")

    def __init__(self) -> None:
        self.counts: dict[Hashable, int] = {}
        self.lowered = 0

    def add(self, slot: Hashable) -> None:
        self.counts[slot] = self.counts.get(slot, 0) + 1

    def give_back(self, slot: Hashable) -> None:
        self.adjust(slot, -1)

    def adjust(self, slot: Hashable, change: int) -> None:
        """Raise or lower a slot's count by ``change`` (never below 0): placements counted
        here that this ledger did not make (other drivers'), or one given back."""
        if change > 0:
            self.counts[slot] = self.counts.get(slot, 0) + change
        elif change < 0:
            left = self.counts.get(slot, 0) + change
            if left > 0:
                self.counts[slot] = left
            else:
                self.counts.pop(slot, None)
            self.lowered += 1


class Floor:
    """The lowest count among ``slots``: a lower bound kept without a scan, made exact (one
    O(slots) scan) only when asked. Counts only grow between scans unless one went down, so
    the last exact value stays a lower bound until the ledger is ``lowered``.

    >>> ledger = Ledger(); floor = Floor(["a", "b"], ledger)
    >>> ledger.add("a"); floor.bound(), floor.exact()
    (0, 0)
    >>> ledger.add("b"); floor.bound(), floor.exact(), floor.bound()
    (0, 1, 1)
    """

    __slots__ = ("_lowered_seen", "ledger", "slots", "value")

    def __init__(self, slots: Sequence[Hashable], ledger: Ledger) -> None:
        self.slots = slots
        self.ledger = ledger
        self.value = 0  # counts are never negative
        self._lowered_seen = ledger.lowered

    def bound(self) -> int:
        """A count no slot is below (cheap; maybe lower than the exact floor)."""
        if self._lowered_seen != self.ledger.lowered:  # a count went down: back to the safe 0
            self._lowered_seen = self.ledger.lowered
            self.value = 0
        return self.value

    def exact(self) -> int:
        """The lowest count of any slot (a scan)."""
        counts = self.ledger.counts
        self._lowered_seen = self.ledger.lowered
        self.value = min(counts.get(slot, 0) for slot in self.slots)
        return self.value

    def lowest(self) -> list[Hashable]:
        """The slots at the exact floor, in order."""
        floor, counts = self.exact(), self.ledger.counts
        return [slot for slot in self.slots if counts.get(slot, 0) == floor]


class Rotation:
    """The next slot in order at the lowest count below ``cap`` (None: unbounded)."""

    __slots__ = ("_last_from", "_last_taken", "_lowered_seen", "_open_level", "cap", "counts",
                 "cursor", "ledger", "level", "n", "slots")

    def __init__(self, slots: Sequence[Hashable], ledger: Ledger, cap: int | None = None,
                 start: int = 0) -> None:
        if not slots:
            raise ValueError("a rotation needs at least one slot")
        self.slots = slots
        self.n = len(slots)
        self.ledger = ledger
        self.counts = ledger.counts
        self.cap = cap
        self.cursor = start % self.n
        self._lowered_seen = ledger.lowered
        self._last_taken = self._last_from = -1  # the last take, and the cursor before it
        self._set_level(0)

    def _set_level(self, level: int) -> None:
        self.level = level  # no slot's count is below this
        # The level a slot may be taken at without a scan; -1 once the cap is reached.
        self._open_level = level if self.cap is None or level < self.cap else -1

    def peek(self) -> int | None:
        """The index of the slot ``take`` would choose, or None when every slot is at the cap."""
        if self._lowered_seen != self.ledger.lowered:  # a count went down: find the level again
            self._lowered_seen = self.ledger.lowered
            self._set_level(self._lowest())
        slots, counts, n, cursor = self.slots, self.counts, self.n, self.cursor
        for _ in range(2):  # at the current level, then (once it is used up) at the next
            level = self._open_level
            if level < 0:
                return None
            for step in range(n):
                i = cursor + step
                if i >= n:
                    i -= n
                if counts.get(slots[i], 0) <= level:
                    return i
            self._set_level(self._lowest())
        raise AssertionError("unreachable: the lowest count is always found")  # pragma: no cover

    def _lowest(self) -> int:
        counts = self.counts
        return min(counts.get(slot, 0) for slot in self.slots)

    def take_next(self) -> int | None:
        """Count the next slot and return its index, or None when every slot is at the cap."""
        # The usual case first, in a few attribute reads: this runs on every placement.
        i = cursor = self.cursor
        slot = self.slots[i]
        count = self.counts.get(slot, 0)
        if count > self._open_level or self._lowered_seen != self.ledger.lowered:
            found = self.peek()
            if found is None:
                return None
            i, slot = found, self.slots[found]
            count = self.counts.get(slot, 0)
        self.counts[slot] = count + 1
        self._last_taken, self._last_from = i, cursor
        self.cursor = i + 1 if i + 1 < self.n else 0
        return i

    def take(self) -> Hashable | None:
        """Count and return the next slot, or None when every slot is at the cap."""
        i = self.take_next()
        return None if i is None else self.slots[i]

    def take_at(self, i: int) -> None:
        """Count slot ``i`` whatever its level (a soft policy's fallback)."""
        self.ledger.add(self.slots[i])
        self._last_taken, self._last_from = i, self.cursor
        self.cursor = i + 1 if i + 1 < self.n else 0

    def untake(self, i: int) -> None:
        """Undo a take of slot ``i``; when it was the last take, the cursor goes back to where it
        was, so the next pick is the same as if the take never happened."""
        self.ledger.give_back(self.slots[i])
        if self._last_taken == i and self.cursor == (i + 1) % self.n:
            self.cursor = self._last_from
            self._last_taken = -1

    def empty(self) -> bool:
        """Whether no slot holds anything (for a rotation that owns its ledger)."""
        return not self.counts

    def least_used(self) -> int:
        """The index of the least-used slot, first in order among equals (O(slots))."""
        counts, slots = self.counts, self.slots
        return min(range(self.n), key=lambda i: (counts.get(slots[i], 0), i))
