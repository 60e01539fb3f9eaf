"""What one placement asks for, as immutable, hashable values: policies and caches key on them.

A ``Demand`` is the resources one task or actor needs on a node; a ``Request`` adds the group key
(Packing), the caller's node (Local) and nothing else. Both are values: changing the dict a
demand was made from changes nothing, and two equal demands are one key.

>>> Demand({"CPU": 2, "accel": 1}) == Demand({"accel": 1.0, "CPU": 2.0})
True
>>> spec = {"CPU": 1}
>>> demand = Demand(spec); spec["CPU"] = 64
>>> demand
Demand({'CPU': 1.0})
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Mapping
from typing import NamedTuple


class Demand(tuple[tuple[str, float], ...]):
    """Resources one placement needs on one node: sorted (name, amount) pairs, zeros dropped.

    A tuple underneath, so hashing and comparing it (once per decision) run in C.
    """

    __slots__ = ()

    def __new__(cls, resources: Mapping[str, float] | None = None) -> Demand:
        pairs = []
        for name, amount in (resources or {}).items():
            if not isinstance(name, str):
                raise TypeError(f"resource names must be strings, got {name!r}")
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or \
                    not math.isfinite(amount) or amount < 0:
                raise ValueError(
                    f"the demand for {name!r} must be a finite number >= 0, got {amount!r}")
            if amount > 0:
                pairs.append((name, float(amount)))
        return super().__new__(cls, sorted(pairs))

    def as_dict(self) -> dict[str, float]:
        return dict(self)

    def __repr__(self) -> str:
        return f"Demand({self.as_dict()!r})"


DemandLike = Demand | Mapping[str, float] | None
NOTHING = Demand()


class Request(NamedTuple):
    """One placement to decide: what it needs, its group (Packing) and the caller's node (Local).

    >>> Request(Demand({"CPU": 1}), group="p3") == Request(Demand({"CPU": 1.0}), group="p3")
    True
    """

    demand: Demand = NOTHING
    group: Hashable | None = None
    caller_node_id: str | None = None


def make_request(demand: DemandLike = None, group: Hashable | None = None,
                 caller_node_id: str | None = None) -> Request:
    """A Request, checking that the group key can be a dict key (policies file placements by it)."""
    if not isinstance(demand, Demand):
        demand = Demand(demand)
    if group is None and caller_node_id is None:
        return _new_request((demand, None, None))  # the common case, about 0.2 us cheaper
    if caller_node_id is not None and not isinstance(caller_node_id, str):
        raise TypeError(f"caller_node_id must be a node id string, got {caller_node_id!r}")
    if group is not None:
        try:
            hash(group)
        except TypeError:
            raise TypeError(
                f"group must be hashable (a str, int or tuple), got {type(group).__name__}"
            ) from None
    return Request(demand, group, caller_node_id)


_new_request: Callable[[tuple[Demand, None, None]], Request] = functools.partial(
    tuple.__new__, Request)
