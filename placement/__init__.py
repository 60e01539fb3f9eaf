"""placement: placement policies for Ray tasks and actors.

>>> import placement
>>> placement.__version__
'0.1.0'
"""
from .audit import Audit, AuditReport
from .cluster import SnapshotCache, current_snapshot, read_snapshot
from .connect import Connection, connect
from .decision import Decision
from .executor import LocalExecutor, PlacementExecutor, RayFuture
from .errors import ClusterNotFoundError, LocalClusterError, PlacementError
from .plan import Plan
from .policies import Affinity, AntiAffinity, Fallback, Local, Packing, Policy, RoundRobin
from .snapshot import ClusterSnapshot, NodeInfo

__version__ = "0.1.0"

__all__ = [
    "Affinity",
    "AntiAffinity",
    "Audit",
    "AuditReport",
    "Decision",
    "Fallback",
    "Local",
    "LocalExecutor",
    "Packing",
    "Plan",
    "PlacementExecutor",
    "RayFuture",
    "Policy",
    "RoundRobin",
    "ClusterNotFoundError",
    "ClusterSnapshot",
    "Connection",
    "LocalClusterError",
    "NodeInfo",
    "PlacementError",
    "SnapshotCache",
    "connect",
    "current_snapshot",
    "read_snapshot",
]
