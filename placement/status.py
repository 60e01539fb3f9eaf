"""Render a cluster snapshot as a table for people (the JSON form is ``snapshot.to_json()``)."""
from __future__ import annotations

from tabulate import tabulate

from .naming import LABEL_KEY
from .snapshot import ClusterSnapshot, NodeInfo

# Shown elsewhere in the row (the node id, the placement label), or Ray's prefix, left out.
_HIDDEN_LABELS = ("ray.io/node-id", LABEL_KEY)
_RAY_PREFIX = "ray.io/"


def _amount(value: float) -> str:
    return f"{value:g}"


def _used_of_total(snapshot: ClusterSnapshot, node: NodeInfo, name: str) -> str:
    total = node.total.get(name, 0.0)
    used = total - snapshot.free(node).get(name, total) if node.alive else 0.0
    return f"{_amount(round(used, 4))}/{_amount(total)}"


def ray_labels(node: NodeInfo) -> str:
    """The node's Ray labels for people: zone, accelerator, node group, and custom ones.

    >>> node = NodeInfo("a", "", None, labels={"ray.io/availability-zone": "us-east-1a",
    ...                                         "ray.io/node-id": "a", "tier": "gold"})
    >>> ray_labels(node)
    'availability-zone=us-east-1a, tier=gold'
    """
    shown = [(key.removeprefix(_RAY_PREFIX), value) for key, value in node.labels.items()
             if key not in _HIDDEN_LABELS]
    return ", ".join(f"{key}={value}" for key, value in sorted(shown))


def status_rows(snapshot: ClusterSnapshot) -> list[list[str]]:
    """One row per node: placeable nodes in label order, then unlabelled, then dead ones."""
    ordered = list(snapshot.placeable)
    listed = {n.node_id for n in ordered}
    ordered += [n for n in snapshot.live if n.node_id not in listed]
    ordered += list(snapshot.dead)
    rows = []
    for node in ordered:
        custom = ", ".join(f"{name} {_used_of_total(snapshot, node, name)}"
                           for name in sorted(node.custom_resources))
        rows.append([
            node.label or "-",
            node.address,
            node.node_id[:8],
            "yes" if node.alive else "DEAD",
            "head" if node.is_head else "",
            _used_of_total(snapshot, node, "CPU"),
            custom or "-",
            ray_labels(node) or "-",
        ])
    return rows


def status_table(snapshot: ClusterSnapshot) -> str:
    """
    >>> snap = ClusterSnapshot.from_dicts([
    ...     {"id": "a1b2c3d4e5", "address": "127.0.0.10", "label": "node0",
    ...      "resources": {"CPU": 1}, "available": {"CPU": 1, "node0": 1000},
    ...      "labels": {"ray.io/availability-zone": "z1"}}])
    >>> status_rows(snap)[0]
    ['node0', '127.0.0.10', 'a1b2c3d4', 'yes', '', '0/1', 'node0 0/1000', 'availability-zone=z1']
    >>> print(status_table(snap).splitlines()[0])  # doctest: +NORMALIZE_WHITESPACE
    label address node id alive role CPU used/total custom resources used/total Ray labels
    """
    headers = ["label", "address", "node id", "alive", "role", "CPU used/total",
               "custom resources used/total", "Ray labels"]
    table: str = tabulate(status_rows(snapshot), headers=headers)  # tabulate has no type hints
    return table
