"""placement: placement policies for Ray tasks and actors.

Names load on first use (PEP 562), so ``import placement.policies`` (the pure decide layer) never
imports Ray. This module sits above every layer: it registers the submit layer with the decide
layer (``policy.place`` and ``policy.reserve`` reach it through that interface) and loads it on
the first placement.

>>> import placement
>>> placement.__version__
'0.1.0'
"""
from __future__ import annotations

import importlib
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from .connect import Connection as Connection  # eager: the submodule's name would hide
from .connect import connect as connect  # the function
from .policies import base as _decide

__version__ = "0.1.0"

# The public names, each with the module that defines it: __all__ and the lazy loader come from
# this table, and tests/test_public_names.py checks the type-checking imports below against it.
PUBLIC: dict[str, str] = {
    "Affinity": "placement.policies",
    "AllOf": "placement.policies",
    "AntiAffinity": "placement.policies",
    "Decision": "placement.policies",
    "Demand": "placement.policies",
    "Fallback": "placement.policies",
    "LeastLoaded": "placement.policies",
    "Local": "placement.policies",
    "Locality": "placement.policies",
    "Move": "placement.policies",
    "Needs": "placement.policies",
    "Packing": "placement.policies",
    "Plan": "placement.policies",
    "Policy": "placement.policies",
    "Rebalance": "placement.policies",
    "Request": "placement.policies",
    "RoundRobin": "placement.policies",
    "Submitted": "placement.policies",
    "ClusterSnapshot": "placement.snapshot",
    "NodeInfo": "placement.snapshot",
    "ClusterNotFoundError": "placement.errors",
    "LocalClusterError": "placement.errors",
    "PlacementError": "placement.errors",
    "SnapshotCache": "placement.cluster",
    "current_snapshot": "placement.cluster",
    "read_snapshot": "placement.cluster",
    "PlacedRemote": "placement.handle",
    "Reservation": "placement.reserve",
    "LocalExecutor": "placement.executor",
    "PlacementExecutor": "placement.executor",
    "RayFuture": "placement.executor",
    "Audit": "placement.audit",
    "AuditReport": "placement.audit",
    "explain": "placement.diagnosis",
    "get": "placement.deadlines",
    "Explanation": "placement.diagnosis",
    "remove_shared_ledger": "placement.shared",
    "shared_counts": "placement.shared",
    "Connection": "placement.connect",
    "connect": "placement.connect",
}

__all__ = sorted(PUBLIC)


def __getattr__(name: str) -> Any:
    module = PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'placement' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *PUBLIC})


class _SubmitLayer:
    """The submit layer as the decide layer sees it (``policies.base.SubmitLayer``): loaded on
    the first placement, so that deciding never needs Ray."""

    def place(self, policy: _decide.Policy, fn: Any, group: Hashable | None,
              options: dict[str, Any]) -> _decide.PlacedHandle:
        handle: _decide.PlacedHandle = importlib.import_module("placement.handle").place(
            policy, fn, group, options)
        return handle

    def reserve(self, policy: _decide.Policy, n: int, demand: Any,
                groups: list[Hashable] | None, timeout: float,
                options: dict[str, Any]) -> _decide.Reserved:
        reservation: _decide.Reserved = importlib.import_module("placement.reserve").reserve(
            policy, n, demand, groups=groups, timeout=timeout, options=options)
        return reservation


_decide.use_submit_layer(_SubmitLayer())


if TYPE_CHECKING:  # what type checkers and editors see: the table's names, re-exported
    from .audit import Audit as Audit
    from .audit import AuditReport as AuditReport
    from .cluster import SnapshotCache as SnapshotCache
    from .cluster import current_snapshot as current_snapshot
    from .cluster import read_snapshot as read_snapshot
    from .deadlines import get as get
    from .diagnosis import Explanation as Explanation
    from .diagnosis import explain as explain
    from .errors import ClusterNotFoundError as ClusterNotFoundError
    from .errors import LocalClusterError as LocalClusterError
    from .errors import PlacementError as PlacementError
    from .executor import LocalExecutor as LocalExecutor
    from .executor import PlacementExecutor as PlacementExecutor
    from .executor import RayFuture as RayFuture
    from .handle import PlacedRemote as PlacedRemote
    from .policies import Affinity as Affinity
    from .policies import AllOf as AllOf
    from .policies import AntiAffinity as AntiAffinity
    from .policies import Decision as Decision
    from .policies import Demand as Demand
    from .policies import Fallback as Fallback
    from .policies import LeastLoaded as LeastLoaded
    from .policies import Local as Local
    from .policies import Locality as Locality
    from .policies import Move as Move
    from .policies import Needs as Needs
    from .policies import Packing as Packing
    from .policies import Plan as Plan
    from .policies import Policy as Policy
    from .policies import Rebalance as Rebalance
    from .policies import Request as Request
    from .policies import RoundRobin as RoundRobin
    from .policies import Submitted as Submitted
    from .reserve import Reservation as Reservation
    from .shared import remove_shared_ledger as remove_shared_ledger
    from .shared import shared_counts as shared_counts
    from .snapshot import ClusterSnapshot as ClusterSnapshot
    from .snapshot import NodeInfo as NodeInfo
