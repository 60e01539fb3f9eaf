"""Live reads of the connected Ray cluster, cached and refreshed in the background.

The only module that calls ``ray.nodes()``: it costs about 0.6 ms and Ray documents it as a
debugging call, so placements read a cached snapshot. A daemon thread refreshes it every TTL (off
the submit path: at 100,000 nodes a full rebuild took 1.3 s), each refresh building on the last
one by difference; a placement that finds a node gone reads at once.
"""
from __future__ import annotations

import atexit
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol

import ray

from . import _ray
from .errors import ClusterNotFoundError
from .naming import DEFAULT_LABEL_PREFIX, LABEL_KEY
from .reachability import REACHABILITY
from .snapshot import ClusterSnapshot

# One ray.nodes() call per 2 s is noise (docs/benchmarks.rst, "Cluster reads"), and a dead
# node drops out within 2 s of Ray noticing (Ray itself takes seconds to mark a killed node dead).
DEFAULT_TTL_SECONDS = 2.0


def read_snapshot(
    label_prefix: str = DEFAULT_LABEL_PREFIX, label_key: str = LABEL_KEY,
    previous: ClusterSnapshot | None = None,
) -> ClusterSnapshot:
    """Read the connected cluster now (no cache); with ``previous``, nodes that did not change
    keep their objects and the snapshot records the difference.

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
    left_out = REACHABILITY.ejected()
    listed: list[str] = []
    if left_out:  # unreachable, not yet dead to Ray: read as gone (reachability.py)
        listed = [raw.get("NodeID") for raw in nodes
                  if raw.get("NodeID") in left_out and raw.get("Alive")]
        REACHABILITY.keep_only(listed)  # the others are dead to Ray already: no probe needed
        nodes = [dict(raw, Alive=False) if raw.get("NodeID") in left_out else raw
                 for raw in nodes]
    try:
        available = _ray.available_resources_per_node()
    except Exception:  # noqa: BLE001 - private API moved: fall back to totals (no free counts)
        available = {}
    return ClusterSnapshot.from_ray(nodes, available, label_prefix=label_prefix,
                                    label_key=label_key, previous=previous, left_out=listed)


class Follower(Protocol):
    """What the cache brings up to each new snapshot before it is published (policies)."""

    def follow(self, snapshot: ClusterSnapshot) -> None: ...


Reader = Callable[[ClusterSnapshot | None], ClusterSnapshot]


class SnapshotCache:
    """The current snapshot, re-read when older than ``ttl`` seconds or when told to refresh.

    ``reader(previous)`` reads the cluster (``previous``: the snapshot it replaces, or None), so a
    refresh can keep what did not change. Thread-safe: concurrent callers share one read.

    With ``background=True`` a daemon thread re-reads every ``ttl`` seconds while ``connected()``
    holds, so ``get()`` (on every placement) only returns the current reference and no submitting
    thread pays for a read. The thread starts on the first ``get()``, brings every registered
    follower (``follow(policy)``) up to the new snapshot before publishing it, and ends within
    ``POLL`` seconds once ``connected()`` is false (``ray.shutdown()``) or ``stop()`` is called.
    If it falls behind (a read hangs), ``get()`` reads itself once the snapshot is older than
    ``stale_after`` seconds.

    >>> from placement.snapshot import ClusterSnapshot
    >>> cache = SnapshotCache(ttl=60, reader=lambda previous: ClusterSnapshot.from_dicts(
    ...     [{"id": "a", "label": "node0"}], previous=previous))
    >>> cache.get().by_label["node0"].node_id, cache.reads
    ('a', 1)
    >>> _ = cache.get(); cache.reads
    1
    >>> _ = cache.refresh(); cache.reads
    2
    """

    POLL = 0.1  # how often the refresher looks at connected(): the bound on outliving Ray

    def __init__(
        self,
        ttl: float = DEFAULT_TTL_SECONDS,
        reader: Reader | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        background: bool = False,
        connected: Callable[[], bool] = lambda: True,
        stale_after: float | None = None,
    ) -> None:
        if not ttl >= 0:
            raise ValueError(f"ttl must be a number of seconds >= 0, got {ttl!r}")
        self.ttl = float(ttl)
        self._reader = reader or _read_connected
        self._clock = clock
        self.background = background
        self._connected = connected
        self.stale_after = max(10 * self.ttl, 5.0) if stale_after is None else float(stale_after)
        self._lock = threading.Lock()  # callers that read share one read
        self._publishing = threading.Lock()  # follow and publish one snapshot at a time
        self._snapshot: ClusterSnapshot | None = None
        self._retired: ClusterSnapshot | None = None
        self._read_at = 0.0
        self._followers: weakref.WeakSet[Follower] = weakref.WeakSet()
        self._followers_lock = threading.Lock()  # a WeakSet cannot be copied while it grows
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.reads = 0  # how many times the cluster was actually read (benchmarks report it)
        self.errors = 0  # background reads that raised (the last one is kept in last_error)
        self.last_error: BaseException | None = None

    def get(self) -> ClusterSnapshot:
        snapshot = self._snapshot
        if snapshot is not None and self._fresh_enough():
            return snapshot
        with self._lock:  # callers share one read
            if self._snapshot is None or not self._fresh_enough():
                self._advance()
            current = self._current()
        if self.background and self._thread is None:
            self._start()
        return current

    def _fresh_enough(self) -> bool:
        age = self._clock() - self._read_at
        return age < self.ttl or (age < self.stale_after and self._thread is not None)

    def refresh(self) -> ClusterSnapshot:
        """Read the cluster now, e.g. after a placement found its node gone."""
        with self._lock:
            self._advance()
            return self._current()

    def follow(self, follower: Follower) -> None:
        """Bring ``follower`` up to every new snapshot before ``get()`` returns it. Held weakly:
        a policy nobody uses any more drops out by itself."""
        with self._followers_lock:
            self._followers.add(follower)

    def invalidate(self) -> None:
        """Make the next ``get()`` read the cluster (the snapshot stays, as the base the next
        read builds on)."""
        with self._publishing:
            self._read_at = -math.inf

    @property
    def latest(self) -> ClusterSnapshot | None:
        """The snapshot held now, never reading the cluster (None before the first read)."""
        return self._snapshot

    @property
    def refreshing(self) -> bool:
        """Whether the background refresher thread is running."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """End the background refresher for good (``get()`` then reads on its ttl, as a cache
        without one) and wait for it, at most ``timeout`` s. Idempotent."""
        with self._publishing:
            self.background = False
            thread = self._thread
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the snapshot refresher did not stop within {timeout} s "
                                   "(a cluster read is hanging)")

    def _start(self) -> None:
        with self._publishing:
            if self._thread is not None or not self.background or not self._is_connected():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,),
                                             name="placement-snapshot-refresher", daemon=True)
            self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        next_read = time.monotonic() + self.ttl
        try:
            while not stop.wait(min(self.POLL, self.ttl) or self.POLL):
                if not self._is_connected():
                    self.invalidate()  # the next connection may be another cluster
                    return
                if time.monotonic() < next_read:
                    continue
                try:
                    # Without the callers' lock: a read that hangs here must not hold up a
                    # placement that, once the snapshot is stale_after old, reads for itself.
                    self._advance()
                except Exception as error:  # noqa: BLE001 - keep the last snapshot, try again
                    self.errors += 1
                    self.last_error = error
                next_read = time.monotonic() + self.ttl
        finally:
            with self._publishing:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _is_connected(self) -> bool:
        try:
            return bool(self._connected())
        except Exception:  # noqa: BLE001 - a check that fails is a connection that is gone
            return False

    def _advance(self) -> None:
        """Read a new snapshot (by difference from the current one), bring the followers up to
        it, then publish it, unless a newer one was published while this one was read."""
        snapshot = self._reader(self._snapshot)
        with self._publishing:
            current = self._snapshot
            if current is not None and current.version > snapshot.version:
                return
            with self._followers_lock:
                followers = list(self._followers)
            for follower in followers:
                try:
                    follower.follow(snapshot)
                except Exception:  # noqa: BLE001, S110 - its own next decision raises it again
                    pass
            # The snapshot before the current one is dropped here, not by a submitting thread
            # that held it last: freeing a 100,000-node snapshot's tables takes milliseconds.
            self._retired = current
            self._snapshot = snapshot
            self._read_at = self._clock()
            self.reads += 1

    def _after_fork(self) -> None:
        """In a forked child: the parent's refresher thread is not there, nor may its locks be
        free; start over (the next get() reads and starts a refresher of the child's own)."""
        self._lock, self._publishing = threading.Lock(), threading.Lock()
        self._followers_lock = threading.Lock()
        self._thread = None
        self._read_at = -math.inf

    def _current(self) -> ClusterSnapshot:
        if self._snapshot is None:  # unreachable: every caller stores one first
            raise ClusterNotFoundError("no snapshot was read")
        return self._snapshot


def _read_connected(previous: ClusterSnapshot | None) -> ClusterSnapshot:
    return read_snapshot(previous=previous)


_default_cache = SnapshotCache(background=True, connected=ray.is_initialized)


def _stop_at_exit() -> None:
    try:
        _default_cache.stop(1.0)
    except TimeoutError:  # a read hangs: the daemon thread ends with the interpreter anyway
        pass


atexit.register(_stop_at_exit)
os.register_at_fork(after_in_child=_default_cache._after_fork)


def default_cache() -> SnapshotCache:
    """The process-wide cache policies use unless given a snapshot or a cache of their own. It
    refreshes in the background while Ray is initialised (see ``SnapshotCache``)."""
    return _default_cache


def current_snapshot(refresh: bool = False) -> ClusterSnapshot:
    """The cached snapshot of the connected cluster; ``refresh=True`` reads it now."""
    return _default_cache.refresh() if refresh else _default_cache.get()
