"""Render a cluster snapshot as a table for people (the JSON form is ``snapshot.to_json()``)."""
from __future__ import annotations

from tabulate import tabulate

from .snapshot import ClusterSnapshot, NodeInfo


def _amount(value: float) -> str:
    return f"{value:g}"


def _used_of_total(snapshot: ClusterSnapshot, node: NodeInfo, name: str) -> str:
    total = node.total.get(name, 0.0)
    used = total - snapshot.free(node).get(name, total) if node.alive else 0.0
    return f"{_amount(round(used, 4))}/{_amount(total)}"


def status_rows(snapshot: ClusterSnapshot) -> list[list[str]]:
    """One row per node: placeable nodes in label order, then unlabelled, then dead ones."""
    ordered = list(snapshot.placeable)
    ordered += [n for n in snapshot.live if n not in ordered]
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
        ])
    return rows


def status_table(snapshot: ClusterSnapshot) -> str:
    """
    >>> snap = ClusterSnapshot.from_dicts([
    ...     {"id": "a1b2c3d4e5", "address": "127.0.0.10", "label": "node0",
    ...      "resources": {"CPU": 1}, "available": {"CPU": 1, "node0": 1000}}])
    >>> print(status_table(snap))
    label    address     node id    alive    role    CPU used/total    custom resources used/total
    -------  ----------  ---------  -------  ------  ----------------  -----------------------------
    node0    127.0.0.10  a1b2c3d4   yes              0/1               node0 0/1000
    """
    headers = ["label", "address", "node id", "alive", "role", "CPU used/total",
               "custom resources used/total"]
    table: str = tabulate(status_rows(snapshot), headers=headers)  # tabulate has no type hints
    return table
