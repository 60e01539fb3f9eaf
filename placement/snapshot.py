"""An immutable picture of a Ray cluster: the nodes, their labels and resources.

Pure data: nothing here talks to Ray. ``placement.cluster`` builds snapshots from a live cluster;
tests and dry runs build them from plain dicts or JSON.
"""
from __future__ import annotations

import itertools
import json
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
        script would give it, unless ``resources`` already names it.
        """
        built = []
        for index, raw in enumerate(nodes):
            if "id" not in raw:
                raise ValueError(f"node #{index} has no 'id': give every node dict an 'id' key")
            total = {k: float(v) for k, v in (raw.get("resources") or {}).items()}
            label = raw.get("label")
            if label and label not in total:
                total[label] = 1000.0
            built.append(
                NodeInfo(
                    node_id=str(raw["id"]),
                    address=str(raw.get("address", "")),
                    label=label,
                    alive=bool(raw.get("alive", True)),
                    labels=dict(raw.get("labels") or {}),
                    total=total,
                    available={k: float(v) for k, v in (raw.get("available") or total).items()},
                    is_head=bool(raw.get("is_head", False)),
                )
            )
        return cls(tuple(built), label_prefix)

    @classmethod
    def from_json(cls, source: str | Path) -> ClusterSnapshot:
        """Build from a JSON file path, or a JSON string, as written by :meth:`to_json`
        (and by ``placement status --json``): ``{"label_prefix": ..., "nodes": [...]}`` or a bare
        list of node dicts."""
        text = str(source)
        if not text.lstrip().startswith(("{", "[")):
            text = Path(source).read_text()
        data = json.loads(text)
        if isinstance(data, list):
            return cls.from_dicts(data)
        snap = cls.from_dicts(data["nodes"],
                              label_prefix=data.get("label_prefix", DEFAULT_LABEL_PREFIX))
        if "taken_at" in data:
            snap = cls(snap.nodes, snap.label_prefix, float(data["taken_at"]))
        return snap

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_prefix": self.label_prefix,
            "taken_at": self.taken_at,
            "nodes": [n.to_dict() for n in self.nodes],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)
