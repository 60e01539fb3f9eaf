"""Helpers shared by the examples: connecting, where work ran, tables and verdicts."""
from __future__ import annotations

import ray
from tabulate import tabulate

import placement


def connect() -> dict[str, str]:
    """Connect to the running cluster (see scripts/start_cluster.sh); returns node id -> name."""
    placement.connect()
    return {n.node_id: n.label or n.address for n in placement.current_snapshot(refresh=True).live}


def here() -> str:
    """The node this code runs on (call it inside a task or actor)."""
    return ray.get_runtime_context().get_node_id()


def show(title: str, rows: list, headers: list[str]) -> None:
    print(f"\n{title}")
    print(tabulate(rows, headers=headers))


def verdict(ok: bool, promise: str) -> int:
    """Print whether the promise held; the exit code for the script."""
    print(f"\n{'OK' if ok else 'FAILED'}: {promise}")
    return 0 if ok else 1
