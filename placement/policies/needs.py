"""What a policy needs from the layer that submits its placements, declared as one value.

The submit layer reads ``policy.needs`` once per handle and picks its steps from it: nothing
outside this package asks which class a policy is. A fallback needs what any member needs.

>>> from placement.policies import Local, Locality, LeastLoaded
>>> (Local() | Locality() | LeastLoaded()).needs
Needs(caller=True, locations=True, completion=True)
"""
from __future__ import annotations

from typing import Any, NamedTuple


class Needs(NamedTuple):
    """Each field: what the submit layer must do for every placement of the policy."""

    # Requests carry a group key (Packing): place(fn, group=...) is required.
    group: bool = False
    # Requests carry the calling process's node id (Local).
    caller: bool = False
    # Requests carry the bytes of the call's ObjectRef arguments per node (Locality).
    locations: bool = False
    # Placements whose decision says ``tracked`` are released when their work ends (a task's
    # result is ready, an actor died): LeastLoaded, and spreads with live=True.
    completion: bool = False
    # Names of ledgers shared with other drivers: decisions carrying a ``claim`` are claimed
    # there before they are submitted (AntiAffinity(shared=...)).
    shared: tuple[str, ...] = ()
    # Actors whose node requests must carry (Affinity(actor)), as ``Request.targets``.
    follows: tuple[Any, ...] = ()

    def __or__(self, other: object) -> Needs:
        if not isinstance(other, Needs):
            return NotImplemented
        return Needs(self.group or other.group, self.caller or other.caller,
                     self.locations or other.locations, self.completion or other.completion,
                     _union(self.shared, other.shared), _union(self.follows, other.follows))

    def __repr__(self) -> str:
        shown = [f"{name}={value!r}" for name, value in zip(self._fields, self, strict=True)
                 if value]
        return f"Needs({', '.join(shown)})"


def _union(first: tuple[Any, ...], second: tuple[Any, ...]) -> tuple[Any, ...]:
    return first + tuple(item for item in second if item not in first)


NOTHING_NEEDED = Needs()
