"""What one placement asks for, as immutable, hashable values: policies and caches key on them.

A ``Demand`` is what one task or actor needs of a node: resources, and the Ray labels the user
asked for with ``label_selector=`` (as Kubernetes' requests and nodeSelector); a ``Request`` adds
the group key (Packing), the caller's node (Local) and nothing else. Both are values: changing
the dict a demand was made from changes nothing, and two equal demands are one key.

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

from .selector import LabelFilter


class Demand(tuple[tuple[str, float], ...]):
    """What one placement needs of one node: resources as sorted (name, amount) pairs, zeros
    dropped, and optionally Ray label conditions (``labels=``, Ray's selector syntax).

    A tuple underneath, so hashing and comparing it (once per decision) run in C. Label
    conditions ride in it as pairs of amount 0 named ``<NUL>label:<key>=<selector>``: resource
    pairs are never 0, so ``NodeInfo.fits`` (which skips zeros) reads resources only, while every
    per-demand cache keys on labels too.

    >>> need = Demand({"CPU": 1}, labels={"zone": "in(z1,z2)"})
    >>> need.as_dict(), need.where.matches({"zone": "z2"})
    ({'CPU': 1.0}, True)
    """

    __slots__ = ()

    def __new__(cls, resources: Mapping[str, float] | None = None,
                labels: Mapping[str, str] | LabelFilter | None = None) -> Demand:
        pairs = []
        if resources is not None and not isinstance(resources, Mapping):
            raise TypeError(f"a demand is a dict of resource name to amount, got "
                            f"{type(resources).__name__} {resources!r}: e.g. {{'CPU': 1}}")
        for name, amount in (resources or {}).items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"resource names must be non-empty strings, got {name!r}: "
                                "e.g. {'CPU': 1}")
            value = finite(amount)
            if value is None or value < 0:
                raise ValueError(
                    f"the demand for {name!r} must be a finite number >= 0, got {amount!r:.40}")
            if value > 0:
                pairs.append((name, value))
        if labels is not None:
            selector = labels if isinstance(labels, LabelFilter) else LabelFilter(labels)
            pairs += ((f"{_LABEL}{key}={text}", 0.0) for key, text in selector.selector.items())
        return super().__new__(cls, sorted(pairs))

    def __reduce__(self) -> tuple[type[Demand], tuple[dict[str, float], dict[str, str] | None]]:
        where = self.where  # rebuilt from its parts: __new__ takes mappings, not pairs
        return Demand, (self.as_dict(), None if where is None else dict(where.selector))

    def as_dict(self) -> dict[str, float]:
        """The resources (without label conditions)."""
        return {name: amount for name, amount in self if amount}

    @property
    def where(self) -> LabelFilter | None:
        """The label conditions a node must satisfy, or None."""
        if not self or not self[0][0].startswith(_LABEL):  # they sort first
            return None
        return _label_filter(tuple(name for name, amount in self if not amount))

    def __repr__(self) -> str:
        where = self.where
        shown = "" if where is None else f", labels={dict(where.selector)!r}"
        return f"Demand({self.as_dict()!r}{shown})"


def finite(value: object) -> float | None:
    """``value`` as a float if it is a real, finite number (not a bool), else None; integers
    too large for a float (10**400) are None, not an OverflowError.

    >>> finite(2), finite(10**400), finite(float("nan")), finite(True), finite("1")
    (2.0, None, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


# Sorts before any resource name, and no Ray resource is named so.
_LABEL = "\0label:"


@functools.lru_cache(maxsize=1024)
def _label_filter(names: tuple[str, ...]) -> LabelFilter:
    return LabelFilter(dict(name[len(_LABEL):].split("=", 1) for name in names))


DemandLike = Demand | Mapping[str, float] | None
NOTHING = Demand()


class Request(NamedTuple):
    """One placement to decide: what it needs, its group (Packing), the caller's node (Local),
    where its arguments' data is (Locality): (node id, bytes) pairs, most bytes first, and the
    nodes of the actors it follows (Affinity(actor)): (id of the actor handle, node id) pairs.
    ``make_request`` checks the fields and puts the pairs in that order; a Request built by hand
    is taken as it is (proposals do not check it again).

    >>> Request(Demand({"CPU": 1}), group="p3") == Request(Demand({"CPU": 1.0}), group="p3")
    True
    """

    demand: Demand = NOTHING
    group: Hashable | None = None
    caller_node_id: str | None = None
    data: tuple[tuple[str, int], ...] = ()
    targets: tuple[tuple[int, str], ...] = ()


def make_request(demand: DemandLike = None, group: Hashable | None = None,
                 caller_node_id: str | None = None,
                 data: Mapping[str, int] | None = None,
                 targets: Mapping[int, str] | None = None) -> Request:
    """A Request, checking every field: the group key must be a dict key (policies file
    placements by it); ``data``: bytes of the arguments per node id (Locality); ``targets``:
    node id per followed actor (the id() of its handle)."""
    if not isinstance(demand, Demand):
        demand = Demand(demand)
    if group is None and caller_node_id is None and not data and not targets:
        return _new_request((demand, None, None, (), ()))  # the common case: no tuple building
    if caller_node_id is not None and not isinstance(caller_node_id, str):
        raise TypeError(f"caller_node_id must be a node id string, got {caller_node_id!r}")
    check_group(group)
    pairs: tuple[tuple[int, str], ...] = ()
    if targets:
        if not isinstance(targets, Mapping) or not all(
                isinstance(k, int) and isinstance(v, str) for k, v in targets.items()):
            raise TypeError(f"targets must map id(actor) to a node id string, got {targets!r}")
        pairs = tuple(targets.items())
    return Request(demand, group, caller_node_id, data_pairs(data or {}), pairs)


def check_group(group: object) -> None:
    """Refuse a group key that cannot be a dict key (policies file placements by it).

    >>> check_group(["p", 3])
    Traceback (most recent call last):
    ...
    TypeError: group must be hashable (a str, int or tuple), got list: e.g. group='partition-3'
    """
    if group is None:
        return
    try:
        hash(group)
    except TypeError:
        raise TypeError(
            f"group must be hashable (a str, int or tuple), got {type(group).__name__}: "
            "e.g. group='partition-3'") from None


def check_request(request: object) -> Request:
    """``request`` if it is a Request of a Demand (None: the empty request); a clear TypeError
    otherwise. Cheap: it runs on every proposal."""
    if request is None:
        return NO_REQUEST
    if not isinstance(request, Request):
        raise TypeError(f"propose() takes a Request (or None), got {type(request).__name__}: "
                        "build one with make_request(demand, group=...), or call "
                        "decide(snapshot, demand, group=...)")
    if not isinstance(request.demand, Demand):
        raise TypeError(f"Request.demand must be a Demand, got {type(request.demand).__name__}:"
                        " e.g. Request(Demand({'CPU': 1}))")
    return request


MAX_BYTES = 2**63  # past any object store: a larger size is a bug in the caller


def data_pairs(data: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """Bytes per node id as a request carries them: (node id, bytes) pairs, most bytes first."""
    if not isinstance(data, Mapping):
        raise TypeError(f"data must map node ids to bytes, got {type(data).__name__}: e.g. "
                        "data={node_id: 4_000_000}")
    for node_id, size in data.items():
        if not isinstance(node_id, str) or isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"data must map node ids (str) to whole numbers of bytes, got "
                            f"{node_id!r}: {size!r}")
        if not 0 <= size < MAX_BYTES:
            raise ValueError(f"data[{node_id!r}] must be bytes >= 0 and below 2**63, got "
                             f"{size if size.bit_length() < 128 else 'a longer integer'}")
    return tuple(sorted(data.items(), key=lambda pair: (-pair[1], pair[0])))


_new_request: Callable[[tuple[Demand, None, None, tuple[()], tuple[()]]], Request] = (
    functools.partial(tuple.__new__, Request))
NO_REQUEST = Request()
