"""Per-key state with a cap: the least recently used key goes first. Pure: no Ray here.

Every per-demand table of the decide layer (the candidates' fitting sets, round-robin positions,
least-used indexes) is one of these, so a driver that asks ever new demands (``memory=`` per
chunk) holds a bounded amount, and a refresh patches only what is kept.

>>> kept = Bounded(2)
>>> kept.put("a", 1); kept.put("b", 2)
>>> kept.move_to_end("a")  # a use: "a" is now the most recent
>>> kept.put("c", 3)       # over the cap: "b", the least recently used, goes
>>> sorted(kept)
['a', 'c']
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import TypeVar

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")

# The caps, in one place (the README's "Bounded state" lists them).
DEMANDS_PER_CANDIDATES = 1024  # fitting node sets remembered per candidate set
DEMANDS_PER_POLICY = 1024  # per-demand positions or indexes a policy keeps
NODE_SETS_PER_LEDGER = 64  # least-used indexes kept per ledger (distinct fitting node sets)
PER_NODE_INDEXES = 64  # with a topology: indexes over one value's nodes
PROCESS_DEMANDS = 4096  # round-robin positions the process remembers for inline policies
PROCESS_WEIGHTINGS = 64  # round-robin weightings whose last position the process remembers


class Bounded(OrderedDict[_K, _V]):
    """An ordered dict kept to at most ``cap`` keys, least recently used first out.

    Reads are the dict's own (C calls, as the submit path wants them) and do not move a key:
    a reader that uses a key marks it with ``move_to_end(key)``; ``put`` stores a key as the most
    recent and drops the least recent past the cap (``evicted`` counts them). Every writer goes
    through ``put``, or does the same three C calls itself on the submit path.
    """

    def __init__(self, cap: int) -> None:
        super().__init__()
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ValueError(f"cap must be a whole number >= 1, got {cap!r}")
        self.cap = cap
        self.evicted = 0

    def put(self, key: _K, value: _V) -> None:
        """Store ``value`` under ``key`` as the most recent; drop the least recent past the cap."""
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.cap:
            self.popitem(last=False)
            self.evicted += 1

    def copy(self) -> Bounded[_K, _V]:
        """The same keys in the same order, under the same cap."""
        twin: Bounded[_K, _V] = Bounded(self.cap)
        twin.update(self)
        return twin
