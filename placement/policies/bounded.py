"""Per-key state with a cap: the least recently used key goes first. Pure: no Ray here.

Every per-demand table of the decide layer (the candidates' fitting sets, round-robin positions,
least-used indexes) is one of these, so a driver that asks ever new demands (``memory=`` per
chunk) holds a bounded amount, and a refresh patches only what is kept.

>>> kept = Bounded(2)
>>> kept["a"], kept["b"] = 1, 2
>>> kept.get("a")          # a use: "a" is now the most recent
1
>>> kept["c"] = 3          # over the cap: "b", the least recently used, goes
>>> sorted(kept)
['a', 'c']
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, TypeVar

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")

# The caps, in one place (the README's "Bounded state" lists them).
DEMANDS_PER_CANDIDATES = 1024  # fitting node sets remembered per candidate set
DEMANDS_PER_POLICY = 1024  # per-demand positions or indexes a policy keeps
NODE_SETS_PER_LEDGER = 16  # least-used indexes kept per ledger (distinct fitting node sets)
PROCESS_DEMANDS = 4096  # round-robin positions the process remembers for inline policies
PROCESS_WEIGHTINGS = 64  # round-robin weightings whose last position the process remembers


class Bounded(OrderedDict[_K, _V]):
    """An ordered dict of at most ``cap`` keys: ``get`` and a store make a key the most
    recent; a store past the cap drops the least recent (``evicted`` counts them)."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ValueError(f"cap must be a whole number >= 1, got {cap!r}")
        self.cap = cap
        self.evicted = 0

    def get(self, key: _K, default: None = None) -> _V | None:  # type: ignore[override]
        """The value of ``key`` (now the most recent), or None."""
        found = super().get(key, _MISSING)
        if found is _MISSING:
            return None
        self.move_to_end(key)
        return found  # type: ignore[no-any-return]

    def __setitem__(self, key: _K, value: _V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.cap:
            self.popitem(last=False)
            self.evicted += 1


    def copy(self) -> Bounded[_K, _V]:
        """The same keys in the same order, under the same cap."""
        twin: Bounded[_K, _V] = Bounded(self.cap)
        twin.update(self)
        return twin


_MISSING: Any = object()
