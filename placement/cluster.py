"""Live reads of the connected Ray cluster, cached.

The only module that calls ``ray.nodes()``: it costs about 0.6 ms and Ray documents it as a
debugging call, so placements read a cached snapshot that is refreshed on a TTL and whenever a
placement finds a node gone.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import ray

from . import _ray
from .errors import ClusterNotFoundError
from .naming import DEFAULT_LABEL_PREFIX, LABEL_KEY
from .snapshot import ClusterSnapshot

# ray.nodes() costs about 0.6 ms: once per 2 s is noise, and a dead node drops out within 2 s
# of Ray noticing (Ray itself takes several seconds to mark a killed node dead).
DEFAULT_TTL_SECONDS = 2.0


def read_snapshot(
    label_prefix: str = DEFAULT_LABEL_PREFIX, label_key: str = LABEL_KEY
) -> ClusterSnapshot:
    """Read the connected cluster now (no cache).

    >>> import placement
    >>> placement.connect()                                   # doctest: +SKIP
    >>> [n.label for n in read_snapshot().placeable]         # doctest: +SKIP
    ['node0', 'node1', 'node2', 'node3']
    """
    if not ray.is_initialized():
        raise ClusterNotFoundError(
            "Ray is not initialised in this process: call placement.connect() (or ray.init()) first"
        )
    nodes = ray.nodes()
    try:
        available = _ray.available_resources_per_node()
    except Exception:  # noqa: BLE001 - private API moved: fall back to totals (no free counts)
        available = {}
    return ClusterSnapshot.from_ray(nodes, available, label_prefix=label_prefix,
                                    label_key=label_key)


class SnapshotCache:
    """A snapshot that is re-read when older than ``ttl`` seconds or when told to refresh.

    Thread-safe: concurrent callers share one read.

    >>> from placement.snapshot import ClusterSnapshot
    >>> cache = SnapshotCache(
    ...     ttl=60, reader=lambda: ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}]))
    >>> cache.get().by_label["node0"].node_id, cache.reads
    ('a', 1)
    >>> _ = cache.get(); cache.reads
    1
    >>> _ = cache.refresh(); cache.reads
    2
    """

    def __init__(
        self,
        ttl: float = DEFAULT_TTL_SECONDS,
        reader: Callable[[], ClusterSnapshot] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl >= 0:
            raise ValueError(f"ttl must be a number of seconds >= 0, got {ttl!r}")
        self.ttl = float(ttl)
        self._reader = reader or read_snapshot
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: ClusterSnapshot | None = None
        self._read_at = 0.0
        self.reads = 0  # how many times the cluster was actually read (benchmarks report it)

    def get(self) -> ClusterSnapshot:
        snapshot = self._snapshot
        if snapshot is not None and self._clock() - self._read_at < self.ttl:
            return snapshot
        with self._lock:
            if self._snapshot is None or self._clock() - self._read_at >= self.ttl:
                self._store(self._reader())
            return self._current()

    def refresh(self) -> ClusterSnapshot:
        """Read the cluster now, e.g. after a placement found its node gone."""
        with self._lock:
            self._store(self._reader())
            return self._current()

    def _current(self) -> ClusterSnapshot:
        if self._snapshot is None:  # unreachable: every caller stores one first
            raise ClusterNotFoundError("no snapshot was read")
        return self._snapshot

    def invalidate(self) -> None:
        with self._lock:
            self._snapshot = None

    def _store(self, snapshot: ClusterSnapshot) -> None:
        self._snapshot = snapshot
        self._read_at = self._clock()
        self.reads += 1


_default_cache = SnapshotCache()


def default_cache() -> SnapshotCache:
    """The process-wide cache policies use unless given a snapshot or a cache of their own."""
    return _default_cache


def current_snapshot(refresh: bool = False) -> ClusterSnapshot:
    """The cached snapshot of the connected cluster; ``refresh=True`` reads it now."""
    return _default_cache.refresh() if refresh else _default_cache.get()
