"""An immutable picture of a Ray cluster: the nodes, their labels and resources.

Pure data: nothing here talks to Ray. ``placement.cluster`` builds snapshots from a live cluster;
tests and dry runs build them from plain dicts or JSON.
"""
from __future__ import annotations

import difflib
import itertools
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .naming import DEFAULT_LABEL_PREFIX, LABEL_KEY, label_pattern, natural_key

# Every snapshot built in this process gets the next number: policies use it to never decide on a
# snapshot older than one they already used (a thread may read before another but decide after it).
_versions = itertools.count(1)

# Ray's bookkeeping resources that say nothing about where work can go.
_IMPLICIT_RESOURCE_PREFIXES = ("node:", "memory", "object_store_memory")


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class NodeInfo:
    """One Ray node as the snapshot saw it.

    ``label`` is the node's placement label (``node3``) or None when the node carries none.
    """

    node_id: str
    address: str
    label: str | None
    alive: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)
    total: Mapping[str, float] = field(default_factory=dict)
    available: Mapping[str, float] = field(default_factory=dict)
    is_head: bool = False

    def __post_init__(self) -> None:
        for name in ("labels", "total", "available"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

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
            "available": dict(self.available),
        }


@dataclass(frozen=True)
class ClusterSnapshot:
    """All nodes of a cluster at one moment, dead ones included; placement only uses ``placeable``.

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
    # Order of creation in this process: newer snapshots have larger versions.
    version: int = field(default_factory=lambda: next(_versions), compare=False)
    # Derived once in __post_init__: snapshots are immutable and read on every placement.
    live: tuple[NodeInfo, ...] = field(init=False, repr=False, compare=False)
    placeable: tuple[NodeInfo, ...] = field(init=False, repr=False, compare=False)
    by_label: Mapping[str, NodeInfo] = field(init=False, repr=False, compare=False)
    by_id: Mapping[str, NodeInfo] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        live = tuple(n for n in self.nodes if n.alive)
        placeable = sorted((n for n in live if n.label), key=lambda n: natural_key(n.label or ""))
        # live: alive nodes in Ray's order; placeable: alive and labelled, in natural label order
        # (node2 before node10); by_label: placeable nodes; by_id: every node, dead ones included.
        object.__setattr__(self, "live", live)
        object.__setattr__(self, "placeable", tuple(placeable))
        object.__setattr__(self, "by_label", MappingProxyType({n.label: n for n in placeable}))
        object.__setattr__(self, "by_id", MappingProxyType({n.node_id: n for n in self.nodes}))

    @property
    def dead(self) -> tuple[NodeInfo, ...]:
        return tuple(n for n in self.nodes if not n.alive)

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
    ) -> ClusterSnapshot:
        """Build from the records ``ray.nodes()`` returns (pure: pass them in).

        A node's label is its Ray label ``label_key`` when set, otherwise the one custom resource
        named ``<label_prefix><number>`` it carries.
        """
        pattern = label_pattern(label_prefix)
        available_per_node = available_per_node or {}
        nodes = []
        for raw in ray_nodes:
            node_id = raw["NodeID"]
            total = dict(raw.get("Resources") or {})
            labels = dict(raw.get("Labels") or {})
            label = labels.get(label_key)
            if not (label and pattern.match(label)):
                matching = sorted((r for r in total if pattern.match(r)), key=natural_key)
                label = matching[0] if matching else None
            alive = bool(raw.get("Alive", raw.get("alive", False)))
            nodes.append(
                NodeInfo(
                    node_id=node_id,
                    address=str(raw.get("NodeManagerAddress", "")),
                    label=label,
                    alive=alive,
                    labels=labels,
                    total=total,
                    available=dict(available_per_node.get(node_id, total if alive else {})),
                    is_head="node:__internal_head__" in total,
                )
            )
        return cls(tuple(nodes), label_prefix, time.time() if taken_at is None else taken_at)

    @classmethod
    def from_dicts(
        cls, nodes: Iterable[Mapping[str, Any]], *, label_prefix: str = DEFAULT_LABEL_PREFIX
    ) -> ClusterSnapshot:
        """Build from plain dicts: ``id`` (required), ``address``, ``label``,
        ``alive`` (default True), ``labels``, ``resources`` (totals), ``available``
        (defaults to the totals), ``is_head``.

        A node given a ``label`` also gets the matching custom resource, as the local cluster
        script would give it, unless ``resources`` already names it. Bad input (a string
        ``"false"`` for ``alive``, two nodes with one id, two live nodes with one label, a negative,
        NaN or infinite amount, a number for an id or label) raises ValueError naming the node
        and the fix.
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
        built = []
        first_with_id: dict[str, int] = {}
        first_live_with_label: dict[str, int] = {}
        for index, raw in enumerate(nodes):
            node = _node_from_dict(index, raw)
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
        return cls(tuple(built), label_prefix)

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
                    or not math.isfinite(taken_at)):
                raise ValueError(f"'taken_at' in {what} is {taken_at!r}: give seconds since the "
                                 "epoch (a number, as time.time() returns), or leave it out")
            snap = cls(snap.nodes, snap.label_prefix, float(taken_at))
        return snap

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_prefix": self.label_prefix,
            "taken_at": self.taken_at,
            "nodes": [n.to_dict() for n in self.nodes],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)


_EXPECTED_JSON = (
    "a snapshot as JSON text or the path of a JSON file, as `placement status --json` writes it: "
    '{"nodes": [{"id": "a", "label": "node0"}, ...]} or a list of node dicts'
)
_NODE_KEYS = ("id", "address", "label", "alive", "is_head", "labels", "resources", "available")


def _read_json_file(path: Path) -> str:
    if path.is_dir():
        raise ValueError(f"{path} is a directory: expected {_EXPECTED_JSON}")
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ValueError(f"no file {path}: expected {_EXPECTED_JSON}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path} ({exc}): expected {_EXPECTED_JSON}") from None


def _node_from_dict(index: int, raw: Any) -> NodeInfo:
    """One node of :meth:`ClusterSnapshot.from_dicts`, checked field by field."""
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
    available = _amounts(where, "available", raw["available"]) if raw.get("available") else total
    labels = raw.get("labels") or {}
    if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ValueError(f"{where} 'labels' is {labels!r}: give a dict of strings to strings, "
                         'e.g. "labels": {"zone": "z1"}')
    return NodeInfo(
        node_id=node_id,
        address=address,
        label=label,
        alive=_flag(where, "alive", raw.get("alive", True)),
        labels=dict(labels),
        total=total,
        available=available,
        is_head=_flag(where, "is_head", raw.get("is_head", False)),
    )


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
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"{where} {key}[{name!r}] is {amount!r}: give a finite number >= 0 "
                             "(no resource total or free amount is negative, NaN or infinite)")
        amounts[name] = float(amount)
    return amounts
