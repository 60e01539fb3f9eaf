"""placement: placement policies for Ray tasks and actors.

Names load on first use (PEP 562), so ``import placement.policies`` (the pure decide layer) never
imports Ray; ``policy.place(fn)`` loads the submit layer when first called.

>>> import placement
>>> placement.__version__
'0.1.0'
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .connect import Connection, connect  # eager: the submodule's name would hide the function

__version__ = "0.1.0"

# name -> the module that defines it
_WHERE = {
    "Affinity": "placement.policies",
    "AntiAffinity": "placement.policies",
    "Decision": "placement.policies",
    "Demand": "placement.policies",
    "Fallback": "placement.policies",
    "LeastLoaded": "placement.policies",
    "Local": "placement.policies",
    "Locality": "placement.policies",
    "Packing": "placement.policies",
    "Plan": "placement.policies",
    "Policy": "placement.policies",
    "Request": "placement.policies",
    "RoundRobin": "placement.policies",
    "ClusterSnapshot": "placement.snapshot",
    "NodeInfo": "placement.snapshot",
    "ClusterNotFoundError": "placement.errors",
    "LocalClusterError": "placement.errors",
    "PlacementError": "placement.errors",
    "SnapshotCache": "placement.cluster",
    "current_snapshot": "placement.cluster",
    "read_snapshot": "placement.cluster",
    "PlacedRemote": "placement.handle",
    "Submitted": "placement.handle",
    "Reservation": "placement.reserve",
    "LocalExecutor": "placement.executor",
    "PlacementExecutor": "placement.executor",
    "RayFuture": "placement.executor",
    "Audit": "placement.audit",
    "remove_shared_ledger": "placement.shared",
    "explain": "placement.diagnosis",
    "Explanation": "placement.diagnosis",
    "shared_counts": "placement.shared",
    "AuditReport": "placement.audit",
}

__all__ = [
    "Affinity",
    "AntiAffinity",
    "Audit",
    "AuditReport",
    "ClusterNotFoundError",
    "ClusterSnapshot",
    "Connection",
    "Decision",
    "Demand",
    "Fallback",
    "LeastLoaded",
    "Local",
    "LocalClusterError",
    "LocalExecutor",
    "Locality",
    "NodeInfo",
    "Packing",
    "PlacedRemote",
    "PlacementError",
    "PlacementExecutor",
    "Plan",
    "Policy",
    "RayFuture",
    "Request",
    "Reservation",
    "RoundRobin",
    "SnapshotCache",
    "Submitted",
    "Explanation",
    "explain",
    "remove_shared_ledger",
    "shared_counts",
    "connect",
    "current_snapshot",
    "read_snapshot",
]

def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'placement' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


if TYPE_CHECKING:  # what type checkers and editors see
    from .audit import Audit, AuditReport
    from .cluster import SnapshotCache, current_snapshot, read_snapshot
    from .errors import ClusterNotFoundError, LocalClusterError, PlacementError
    from .executor import LocalExecutor, PlacementExecutor, RayFuture
    from .handle import PlacedRemote, Submitted
    from .policies import (
        Affinity,
        AntiAffinity,
        Decision,
        Demand,
        Fallback,
        LeastLoaded,
        Local,
        Locality,
        Packing,
        Plan,
        Policy,
        Request,
        RoundRobin,
    )
    from .reserve import Reservation
    from .snapshot import ClusterSnapshot, NodeInfo
