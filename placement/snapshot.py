"""An immutable picture of a Ray cluster: the nodes, their labels and resources.

Pure data: nothing here talks to Ray. ``placement.cluster`` builds snapshots from a live cluster;
tests and dry runs build them from plain dicts or JSON.
"""
from __future__ import annotations

import bisect
import difflib
import itertools
import json
import math
import re
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import InitVar, dataclass, field, replace
from itertools import compress
from operator import attrgetter, eq, itemgetter, not_
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from .naming import DEFAULT_LABEL_PREFIX, LABEL_KEY, label_pattern, natural_key

# Every snapshot built in this process gets the next number: policies use it to never decide on a
# snapshot older than one they already used (a thread may read before another but decide after it).
_versions = itertools.count(1)

_T = TypeVar("_T")

# Ray's bookkeeping resources that say nothing about where work can go.
_IMPLICIT_RESOURCE_PREFIXES = ("node:", "memory", "object_store_memory")


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if isinstance(mapping, MappingProxyType):  # already a read-only view of a dict of its own
        return mapping
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class NodeInfo:
    """One Ray node as the snapshot saw it: what stays while the node does (its free resources
    change all the time and live in the snapshot, ``ClusterSnapshot.free``).

    ``label`` is the node's placement label (``node3``) or None when the node carries none.
    ``order_key`` is its place in placement order (labelled nodes first, node2 before node10),
    computed once: a refresh that keeps the node keeps the object and its key.
    """

    node_id: str
    address: str
    label: str | None
    alive: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)
    total: Mapping[str, float] = field(default_factory=dict)
    is_head: bool = False
    # The fields of the ray.nodes() record it was built from (id, Alive, Resources, Labels,
    # address, raylet port), to recognise that record unchanged at the next refresh in one
    # comparison (and, for the port, to probe the raylet: reachability.py).
    ray_record: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)
    order_key: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _frozen(self.labels))
        object.__setattr__(self, "total", _frozen(self.total))
        # The node id last: keys are unique, so sorted sequences of nodes can be searched by key.
        key = ((0, natural_key(self.label), self.node_id) if self.label
               else (1, natural_key(self.address), self.node_id))
        object.__setattr__(self, "order_key", key)

    def __hash__(self) -> int:
        # Equal nodes share these fields; the mappings (labels, totals) are compared, not hashed.
        return hash((self.node_id, self.address, self.label, self.alive))

    def __reduce__(self) -> tuple[type[NodeInfo], tuple[Any, ...]]:
        # Rebuilt from plain dicts: its read-only mappings do not pickle, and a Decision (or an
        # error's data) crossing to a Ray worker carries its node.
        return NodeInfo, (self.node_id, self.address, self.label, self.alive, dict(self.labels),
                          dict(self.total), self.is_head, self.ray_record)

    @property
    def cpus(self) -> float:
        return float(self.total.get("CPU", 0.0))

    @property
    def custom_resources(self) -> dict[str, float]:
        """Resources other than CPU, GPU and Ray's implicit ones (the node labels among them)."""
        return {
            name: amount
            for name, amount in self.total.items()
            if name not in ("CPU", "GPU") and not name.startswith(_IMPLICIT_RESOURCE_PREFIXES)
        }

    def fits(self, demand: Iterable[tuple[str, float]]) -> bool:
        """Whether the node's totals could ever hold ``demand``, given as (name, amount) pairs
        (a ``Demand``, or ``mapping.items()``); not whether the node is free now."""
        total = self.total
        return all(total.get(name, 0.0) >= amount for name, amount in demand if amount > 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "address": self.address,
            "label": self.label,
            "alive": self.alive,
            "is_head": self.is_head,
            "labels": dict(self.labels),
            "resources": dict(self.total),
        }


class SnapshotDiff(NamedTuple):
    """How a snapshot differs from the one it was refreshed from (``base_version``).

    ``removed``: that snapshot's nodes this one no longer has as they were (gone, died, or
    changed: labels, totals, address); ``added``: this snapshot's nodes that one did not have (new,
    or the changed nodes as they are now). A node that stayed the same is the same object in both.
    """

    base_version: int
    removed: tuple[NodeInfo, ...]
    added: tuple[NodeInfo, ...]


BY_ORDER = attrgetter("order_key")  # the key sorted sequences of nodes are searched by


def patch_sorted(nodes: Sequence[NodeInfo], removed: Iterable[NodeInfo],
                 added: Iterable[NodeInfo]) -> list[NodeInfo]:
    """``nodes`` (sorted by order key) without the ``removed`` objects and with ``added``, still
    sorted: O(changes x log n) searches, each edit one memmove."""
    out = list(nodes)
    # A node that changed but kept its place (its labels or totals changed) is replaced in place.
    unplaced = {n.order_key: n for n in added}
    for node in removed:
        i = bisect.bisect_left(out, node.order_key, key=BY_ORDER)
        if i < len(out) and out[i] is node:
            twin = unplaced.pop(node.order_key, None)
            if twin is None:
                del out[i]
            else:
                out[i] = twin
    for node in unplaced.values():
        bisect.insort(out, node, key=BY_ORDER)
    return out


@dataclass(frozen=True)
class ClusterSnapshot:
    """All nodes of a cluster at one moment, dead ones included; placement only uses ``placeable``.

    Given the ``previous`` snapshot (a refresh), it keeps that snapshot's derived sequences where
    no node changed and patches them where some did, and records the ``diff``: candidates and
    policies update by it instead of starting over (the full build at 100,000 nodes took 1.3 s).

    >>> snap = ClusterSnapshot.from_dicts([
    ...     {"id": "a1", "label": "node10", "resources": {"CPU": 2}},
    ...     {"id": "b2", "label": "node2", "resources": {"CPU": 1}},
    ...     {"id": "c3", "label": "node1", "alive": False},
    ... ])
    >>> [n.label for n in snap.placeable]
    ['node2', 'node10']
    >>> snap.by_label["node10"].node_id
    'a1'
    """

    nodes: tuple[NodeInfo, ...]
    label_prefix: str = DEFAULT_LABEL_PREFIX
    taken_at: float = field(default_factory=time.time)
    # Free resources per node id, as Ray last reported them (missing: the totals). Kept apart from
    # the nodes: they change on every refresh of a busy cluster, the nodes rarely.
    available: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    previous: InitVar[ClusterSnapshot | None] = None
    # The nodes that are not ``previous``'s own objects, when the builder knows them (a hint that
    # saves a pass over the nodes; without it they are found by identity).
    added: InitVar[Sequence[NodeInfo] | None] = None
    # The Ray label ``from_ray`` read placement labels from (None: built another way, e.g. from
    # dicts, whose labels are given): a refresh reuses nodes only if equal.
    label_key: str | None = field(default=LABEL_KEY, compare=False)
    # Order of creation in this process: newer snapshots have larger versions.
    version: int = field(default_factory=lambda: next(_versions), compare=False)
    # Ids of the nodes Ray lists alive that this snapshot reads as gone because they do not
    # answer (outlier ejection, reachability.py); decisions mention them.
    left_out: tuple[str, ...] = field(default=(), compare=False)
    # Derived once in __post_init__: snapshots are immutable and read on every placement.
    live: tuple[NodeInfo, ...] = field(init=False, repr=False, compare=False)
    placeable: tuple[NodeInfo, ...] = field(init=False, repr=False, compare=False)
    by_label: Mapping[str, NodeInfo] = field(init=False, repr=False, compare=False)
    by_id: Mapping[str, NodeInfo] = field(init=False, repr=False, compare=False)
    diff: SnapshotDiff | None = field(init=False, repr=False, compare=False)
    # The plain dicts behind by_id and by_label, and the values derived() built.
    _by_id: dict[str, NodeInfo] = field(init=False, repr=False, compare=False)
    _by_label: dict[str, NodeInfo] = field(init=False, repr=False, compare=False)
    _memo: dict[Hashable, Any] = field(init=False, repr=False, compare=False)
    # from_ray: each node's record as read, in Ray's order (None: not built from Ray)
    _records: list[tuple[Any, ...] | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self, previous: ClusterSnapshot | None,
                      added: Sequence[NodeInfo] | None) -> None:
        nodes = tuple(self.nodes)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "_memo", {})
        object.__setattr__(self, "_records", [None] * len(nodes))
        if not isinstance(self.available, MappingProxyType):
            object.__setattr__(self, "available", MappingProxyType(dict(self.available)))
        # The plain dicts behind the read-only views: a refresh copies and reads them in C
        # (through a mappingproxy, dict() and .get() cost several times more).
        if previous is not None and added is not None:  # patch: a copy costs a third of a build
            by_id = dict(previous._by_id)
            by_id.update(zip(map(_BY_ID, added), added, strict=True))
            if len(by_id) != len(nodes):  # some left Ray's table altogether
                for node_id in by_id.keys() - set(map(_BY_ID, nodes)):
                    del by_id[node_id]
        else:
            by_id = dict(zip(map(_BY_ID, nodes), nodes, strict=True))
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "by_id", MappingProxyType(by_id))
        # live: alive nodes in Ray's order; placeable: alive and labelled, in placement order
        # (node2 before node10); by_label: placeable nodes; by_id: every node, dead ones included.
        live = tuple(compress(nodes, map(_ALIVE, nodes)))
        object.__setattr__(self, "live", live)
        if previous is None or previous.label_prefix != self.label_prefix:
            object.__setattr__(self, "diff", None)
            placeable = sorted((n for n in live if n.label), key=BY_ORDER)
            by_label = _by_label(placeable)
        else:
            diff = _diff(previous._by_id, by_id, nodes, previous.version, added)
            object.__setattr__(self, "diff", diff)
            gone = [n for n in diff.removed if n.alive and n.label]
            new = [n for n in diff.added if n.alive and n.label]
            placeable, by_label = list(previous.placeable), previous._by_label
            if gone or new:
                placeable = patch_sorted(placeable, gone, new)
                by_label = _patched_by_label(by_label, placeable, gone, new)
        object.__setattr__(self, "placeable", tuple(placeable))
        object.__setattr__(self, "_by_label", by_label)
        object.__setattr__(self, "by_label", MappingProxyType(by_label))

    @property
    def dead(self) -> tuple[NodeInfo, ...]:
        return tuple(n for n in self.nodes if not n.alive)

    def derived(self, key: Hashable, build: Callable[[], _T]) -> _T:
        """A value computed from this snapshot alone, built once per ``key`` and then shared
        (every policy deciding on this snapshot shares its candidates this way). Two threads may
        both build it; one result is kept.

        >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}])
        >>> snap.derived("labels", lambda: sorted(snap.by_label))
        ['node0']
        """
        memo = self._memo
        found = memo.get(key, _MISSING)
        if found is _MISSING:
            found = memo.setdefault(key, build())
        return found  # type: ignore[no-any-return]

    def free(self, node: NodeInfo) -> Mapping[str, float]:
        """The resources ``node`` had free when the snapshot was taken (dead: none)."""
        found = self.available.get(node.node_id)
        if found is not None:
            return found
        return node.total if node.alive else _NOTHING

    def totals(self) -> dict[str, float]:
        """Resources summed over live nodes (what ``ray.cluster_resources()`` reports)."""
        summed: dict[str, float] = {}
        for node in self.live:
            for name, amount in node.total.items():
                summed[name] = summed.get(name, 0.0) + amount
        return summed

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.taken_at

    # -- building -------------------------------------------------------------------------

    @classmethod
    def from_ray(
        cls,
        ray_nodes: Sequence[Mapping[str, Any]],
        available_per_node: Mapping[str, Mapping[str, float]] | None = None,
        *,
        label_prefix: str = DEFAULT_LABEL_PREFIX,
        label_key: str = LABEL_KEY,
        taken_at: float | None = None,
        previous: ClusterSnapshot | None = None,
        left_out: Sequence[str] = (),
    ) -> ClusterSnapshot:
        """Build from the records ``ray.nodes()`` returns (pure: pass them in). ``left_out``:
        ids of nodes read as gone because they do not answer (their records say not alive).

        A node's label is its Ray label ``label_key`` when set, otherwise the one custom resource
        named ``<label_prefix><number>`` it carries. With ``previous`` (built with the same
        ``label_prefix`` and ``label_key``), a node whose liveness, address, labels and totals are
        unchanged keeps its ``NodeInfo``, and the result records the difference.
        """
        _check_previous(previous)
        if taken_at is not None and (isinstance(taken_at, bool)
                                     or not isinstance(taken_at, (int, float))):
            raise ValueError(f"taken_at must be seconds since the epoch (a number), got "
                             f"{taken_at!r:.40}")
        pattern = label_pattern(label_prefix)
        same_naming = (previous is not None and previous.label_prefix == label_prefix
                       and previous.label_key == label_key)
        base = previous if previous is not None and same_naming else None
        records = _records_of(list(ray_nodes))
        nodes: list[NodeInfo] = []
        added: list[NodeInfo] = []
        if base is None:
            for record in records:
                node = _node_from_ray(record, pattern, label_key)
                nodes.append(node)
        else:
            # Ray lists its nodes in a stable order, so most records are at the same place as
            # last time: compare them all at once in C (map over two lists), and look only at
            # the places that differ by node id: cheaper than a Python loop over them, and far
            # cheaper than building the nodes again (benchmarks/refresh.py).
            same = list(map(eq, base._records, records))
            nodes = list(base.nodes[:len(records)])
            changed = list(compress(range(len(same)), map(not_, same)))
            changed += range(len(same), len(records))
            known = base._by_id
            for i in changed:
                record = records[i]
                old = known.get(record[0])
                if old is not None and old.ray_record == record:  # only moved in the list
                    node = old
                else:
                    node = _node_from_ray(record, pattern, label_key)
                    added.append(node)
                if i < len(nodes):
                    nodes[i] = node
                else:
                    nodes.append(node)
        if isinstance(left_out, str):
            raise TypeError(f"left_out takes node ids (a list), got the string {left_out!r:.60}")
        snapshot = cls(tuple(nodes), label_prefix, time.time() if taken_at is None else taken_at,
                       available_per_node or {}, base, added if base is not None else None,
                       label_key, left_out=tuple(dict.fromkeys(left_out)))
        # What the next refresh compares against: each node's record as read (with copies).
        object.__setattr__(snapshot, "_records", [n.ray_record for n in snapshot.nodes]
                           if base is None else _patched_records(base._records, nodes, changed))
        return snapshot

    @classmethod
    def from_dicts(
        cls, nodes: Iterable[Mapping[str, Any]], *, label_prefix: str = DEFAULT_LABEL_PREFIX,
        previous: ClusterSnapshot | None = None,
    ) -> ClusterSnapshot:
        """Build from plain dicts: ``id`` (required), ``address``, ``label``,
        ``alive`` (default True), ``labels``, ``resources`` (totals), ``available``
        (defaults to the totals), ``is_head``.

        A node given a ``label`` also gets the matching custom resource, as the local cluster
        script would give it, unless ``resources`` already names it. Bad input (a string
        ``"false"`` for ``alive``, two nodes with one id, two live nodes with one label, a negative,
        NaN or infinite amount, a number for an id or label) raises ValueError naming the node
        and the fix. With ``previous``, nodes equal to one of its nodes keep that object, as a
        refresh does (``from_ray``).
        """
        if isinstance(nodes, (str, bytes, Mapping)) or not isinstance(nodes, Iterable):
            raise ValueError(
                f"nodes must be a list of node dicts, got {type(nodes).__name__}: give "
                '[{"id": "a", "label": "node0"}, ...]'
            )
        if not isinstance(label_prefix, str) or not label_prefix:
            raise ValueError(
                f"label_prefix must be a non-empty string such as 'node', got {label_prefix!r}"
            )
        _check_previous(previous)
        built = []
        available: dict[str, Mapping[str, float]] = {}
        known = previous.by_id if previous is not None else _NO_NODES
        first_with_id: dict[str, int] = {}
        first_live_with_label: dict[str, int] = {}
        for index, raw in enumerate(nodes):
            node, free = _node_from_dict(index, raw)
            if free is not None:
                available[node.node_id] = free
            old = known.get(node.node_id)
            if old is not None and old == node:
                node = old
            first = first_with_id.setdefault(node.node_id, index)
            if first != index:
                raise ValueError(
                    f"node #{index} has the same 'id' {node.node_id!r} as node #{first}: "
                    "give every node its own id"
                )
            if node.alive and node.label is not None:
                first = first_live_with_label.setdefault(node.label, index)
                if first != index:
                    raise ValueError(
                        f"node #{index} and node #{first} are both alive with 'label' "
                        f"{node.label!r}: give each live node its own label, or mark the one "
                        'that is gone "alive": false'
                    )
            built.append(node)
        return cls(tuple(built), label_prefix, time.time(), available, previous, None, None)

    @classmethod
    def from_json(cls, source: str | Path) -> ClusterSnapshot:
        """Build from a JSON file path, or a JSON string, as written by :meth:`to_json`
        (and by ``placement status --json``): ``{"label_prefix": ..., "nodes": [...]}`` or a bare
        list of node dicts. Anything else raises ValueError saying what was expected."""
        if isinstance(source, Path):
            text, what = _read_json_file(source), str(source)
        elif isinstance(source, str):
            stripped = source.strip()
            if not stripped:
                raise ValueError(f"got {'an empty' if not source else 'a blank'} string: "
                                 f"expected {_EXPECTED_JSON}")
            if stripped.startswith(("{", "[")):
                text, what = source, "the JSON text"
            else:
                text, what = _read_json_file(Path(source)), source
        else:
            raise TypeError(f"from_json takes a str or a Path, got {type(source).__name__}: "
                            f"give {_EXPECTED_JSON}")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(
                f"{what} is not valid JSON ({exc}): expected {_EXPECTED_JSON}") from None
        if isinstance(data, list):
            return cls.from_dicts(data)
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
            raise ValueError(f"{what} holds no 'nodes' list: expected {_EXPECTED_JSON}")
        snap = cls.from_dicts(data["nodes"],
                              label_prefix=data.get("label_prefix", DEFAULT_LABEL_PREFIX))
        if "taken_at" in data:
            taken_at = data["taken_at"]
            if (isinstance(taken_at, bool) or not isinstance(taken_at, (int, float))
                    or not math.isfinite(float(taken_at) if abs(taken_at) < 1e300 else math.inf)):
                raise ValueError(f"'taken_at' in {what} is {taken_at!r}: give seconds since the "
                                 "epoch (a number, as time.time() returns), or leave it out")
            snap = replace(snap, taken_at=float(taken_at))
        return snap

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_prefix": self.label_prefix,
            "taken_at": self.taken_at,
            "nodes": [{**n.to_dict(), "available": dict(self.free(n))} for n in self.nodes],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)


def _check_previous(previous: object) -> None:
    if previous is not None and not isinstance(previous, ClusterSnapshot):
        raise TypeError(f"previous must be the ClusterSnapshot this one refreshes, or None, got "
                        f"{type(previous).__name__}")


def _record_of(raw: Mapping[str, Any]) -> tuple[Any, ...]:
    """The fields of a ``ray.nodes()`` record a node is built from and compared by."""
    try:  # one C call
        return _RAY_FIELDS(raw)  # type: ignore[no-any-return]
    except (KeyError, TypeError):  # an older record shape: read it field by field
        if not isinstance(raw, Mapping) or "NodeID" not in raw:
            raise ValueError(f"a ray.nodes() record needs a 'NodeID', got {raw!r:.80}: pass "
                             "the records ray.nodes() returns") from None
        return (raw["NodeID"], raw.get("Alive", raw.get("alive", False)), raw.get("Resources"),
                raw.get("Labels"), raw.get("NodeManagerAddress"), raw.get("NodeManagerPort"))


def _records_of(raws: list[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    try:  # all at once, in C, when every record has every field (Ray 2.60's do)
        return list(map(_RAY_FIELDS, raws))
    except KeyError:
        return [_record_of(raw) for raw in raws]


def _patched_records(before: list[tuple[Any, ...] | None], nodes: list[NodeInfo],
                     changed: list[int]) -> list[tuple[Any, ...] | None]:
    records = before[:len(nodes)]
    for i in changed:
        if i < len(records):
            records[i] = nodes[i].ray_record
        else:
            records.append(nodes[i].ray_record)
    return records


def _node_from_ray(record: tuple[Any, ...], pattern: re.Pattern[str],
                   label_key: str) -> NodeInfo:
    node_id, alive, raw_total, raw_labels, address, port = record
    if not isinstance(node_id, str) or not node_id:
        raise ValueError(f"a ray.nodes() record has the NodeID {node_id!r:.60}: a hex string")
    # Copies: the caller's dicts may change later; the record keeps the copies (or the None a
    # field was), so the next refresh compares against exactly what was read.
    total = _amounts(f"node {node_id[:12]}", "Resources", raw_total)
    labels = dict(raw_labels or {})
    label = labels.get(label_key)
    if not (label and pattern.match(label)):
        matching = sorted((r for r in total if pattern.match(r)), key=natural_key)
        label = matching[0] if matching else None
    seen = (node_id, alive, None if raw_total is None else total,
            None if raw_labels is None else labels, address, port)
    return NodeInfo(node_id=node_id, address=str(address or ""), label=label,
                    alive=bool(alive), labels=MappingProxyType(labels),
                    total=MappingProxyType(total), is_head="node:__internal_head__" in total,
                    ray_record=seen)


_RAY_FIELDS = itemgetter("NodeID", "Alive", "Resources", "Labels", "NodeManagerAddress",
                         "NodeManagerPort")
_MISSING: Any = object()
_BY_ID = attrgetter("node_id")
_ALIVE = attrgetter("alive")
_NOTHING: Mapping[str, Any] = MappingProxyType({})
_NO_NODES: Mapping[str, NodeInfo] = MappingProxyType({})
class _AfterAny:
    """Compares greater than any node id: the end of one label's run in ``placeable``."""

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return True


_AFTER_ANY_ID = _AfterAny()


def _diff(before: dict[str, NodeInfo], now: dict[str, NodeInfo], nodes: tuple[NodeInfo, ...],
          base_version: int, added_hint: Sequence[NodeInfo] | None) -> SnapshotDiff:
    if added_hint is None:
        get = before.get
        added = tuple(n for n in nodes if get(n.node_id) is not n)
    else:
        added = tuple(added_hint)
    if not added and len(now) == len(before):
        return SnapshotDiff(base_version, (), ())
    removed = [before[n.node_id] for n in added if n.node_id in before]
    if len(now) - (len(added) - len(removed)) != len(before):  # some left Ray's table
        removed += [before[node_id] for node_id in before.keys() - now.keys()]
    return SnapshotDiff(base_version, tuple(removed), added)


def _by_label(placeable: Sequence[NodeInfo]) -> dict[str, NodeInfo]:
    # Two live nodes with one label (a misconfigured cluster): the last in order is found.
    return {n.label: n for n in placeable if n.label}


def _patched_by_label(by_label: dict[str, NodeInfo], placeable: Sequence[NodeInfo],
                      gone: Sequence[NodeInfo], new: Sequence[NodeInfo]) -> dict[str, NodeInfo]:
    """``_by_label(placeable)``, from the previous map and the labels that changed."""
    patched = dict(by_label)
    for label in {n.label for n in gone} | {n.label for n in new}:
        assert label is not None  # gone and new hold labelled nodes only
        key = natural_key(label)
        lo = bisect.bisect_left(placeable, (0, key), key=BY_ORDER)
        hi = bisect.bisect_right(placeable, (0, key, _AFTER_ANY_ID), key=BY_ORDER)
        same = [n for n in placeable[lo:hi] if n.label == label]
        if same:
            patched[label] = same[-1]
        else:
            patched.pop(label, None)
    return patched


_EXPECTED_JSON = (
    "a snapshot as JSON text or the path of a JSON file, as `placement status --json` writes it: "
    '{"nodes": [{"id": "a", "label": "node0"}, ...]} or a list of node dicts'
)
_NODE_KEYS = ("id", "address", "label", "alive", "is_head", "labels", "resources", "available")


def _read_json_file(path: Path) -> str:
    try:
        if path.is_dir():
            raise ValueError(f"{path} is a directory: expected {_EXPECTED_JSON}")
        return path.read_text()
    except FileNotFoundError:
        raise ValueError(f"no file {path}: expected {_EXPECTED_JSON}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path} ({exc}): expected {_EXPECTED_JSON}") from None


def _node_from_dict(index: int, raw: Any) -> tuple[NodeInfo, dict[str, float] | None]:
    """One node of :meth:`ClusterSnapshot.from_dicts`, checked field by field, and its free
    resources when given."""
    where = f"node #{index}"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} is a {type(raw).__name__}, not a dict: give each node as a "
                         'dict such as {"id": "a", "label": "node0"}')
    if "id" not in raw:
        raise ValueError(f"{where} has no 'id': give every node dict an 'id' key")
    for key in raw:
        if key not in _NODE_KEYS:
            close = difflib.get_close_matches(str(key), _NODE_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"{where} has an unknown key {key!r}: {hint}"
                             f"use only {', '.join(_NODE_KEYS)}")
    node_id = _text(where, "id", raw["id"], example='"id": "a1"')
    if not node_id:
        raise ValueError(f"{where} 'id' is empty: give every node a non-empty id")
    label = raw.get("label")
    if label is not None:
        label = _text(where, "label", label, example='"label": "node0"')
        if not label:
            raise ValueError(f"{where} 'label' is empty: leave 'label' out (or null) for an "
                             "unlabelled node, or give one such as 'node0'")
    address = _text(where, "address", raw.get("address", ""), example='"address": "127.0.0.10"')
    total = _amounts(where, "resources", raw.get("resources"))
    if label and label not in total:
        total[label] = 1000.0
    available = (_amounts(where, "available", raw["available"])
                 if raw.get("available") is not None else None) or None
    labels = raw.get("labels")
    labels = {} if labels is None else labels
    if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ValueError(f"{where} 'labels' is {labels!r}: give a dict of strings to strings, "
                         'e.g. "labels": {"zone": "z1"}')
    node = NodeInfo(
        node_id=node_id,
        address=address,
        label=label,
        alive=_flag(where, "alive", raw.get("alive", True)),
        labels=dict(labels),
        total=total,
        is_head=_flag(where, "is_head", raw.get("is_head", False)),
    )
    return node, available


def _text(where: str, key: str, value: Any, example: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} '{key}' is {value!r} ({type(value).__name__}), not a string: "
                         f"quote it, e.g. {example}")
    return value


def _flag(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(
            f"{where} '{key}' is {value!r} ({type(value).__name__}), not a boolean: write "
            f'"{key}": true or "{key}": false, without quotes (the string "false" would be true)'
        )
    return value


def _amounts(where: str, key: str, value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} '{key}' is {value!r}: give a dict of resource name to amount, "
                         f'e.g. "{key}": {{"CPU": 2}}')
    amounts = {}
    for name, amount in value.items():
        if not isinstance(name, str):
            raise ValueError(f"{where} '{key}' has the resource name {name!r}: "
                             "quote resource names, e.g. \"CPU\"")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise ValueError(f"{where} {key}[{name!r}] is {amount!r} ({type(amount).__name__}): "
                             "give a number such as 2, not a string")
        try:
            value = float(amount)
        except OverflowError:  # an integer too large for a float
            value = math.inf
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{where} {key}[{name!r}] is {amount!r:.40}: give a finite number "
                             ">= 0 (no resource total or free amount is negative, NaN or "
                             "infinite)")
        amounts[name] = value
    return amounts
