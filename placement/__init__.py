"""placement: placement policies for Ray tasks and actors.

>>> import placement
>>> placement.__version__
'0.1.0'
"""
from .cluster import SnapshotCache, current_snapshot, read_snapshot
from .connect import Connection, connect
from .errors import ClusterNotFoundError, LocalClusterError, PlacementError
from .snapshot import ClusterSnapshot, NodeInfo

__version__ = "0.1.0"

__all__ = [
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
