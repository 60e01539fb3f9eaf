"""The probe rounds of outlier ejection for the connected cluster (the table and the probe are in
``reachability``): one daemon thread, started by the first placement, probes every
``PROBE_SECONDS`` the raylets of the nodes recent placements went to (and of the nodes ejected),
and reads the snapshot again when a node is ejected or comes back. It ends when Ray shuts down.

``PLACEMENT_EJECTION=off`` in the environment turns it off (Ray's own health checks then decide
alone when a node is gone).

>>> import placement
>>> placement.connect()                                  # doctest: +SKIP
>>> placement.ejection.left_out()                        # doctest: +SKIP
{}
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import weakref
from collections.abc import Callable

import ray

from .cluster import SnapshotCache
from .diagnosis import RECENT
from .reachability import PROBE_NODES, REACHABILITY, Ejection, tcp_probe
from .snapshot import ClusterSnapshot

PROBE_SECONDS = 1.0  # a round every second: a cut host is left out within about 3 s
PROBE_TIMEOUT = 1.0  # a raylet that takes longer to accept a connection does not answer
SCANNED = 4 * PROBE_NODES  # the newest decisions looked at for nodes to probe
_ENABLED = os.environ.get("PLACEMENT_EJECTION", "on").lower() not in ("off", "0", "false", "no")

logger = logging.getLogger("placement")
_lock = threading.Lock()
_thread: threading.Thread | None = None
_caches: weakref.WeakSet[SnapshotCache] = weakref.WeakSet()


def watch(cache: SnapshotCache) -> None:
    """Probe the nodes placements go to, reading ``cache`` again when one is left out or comes
    back (the first call starts the thread)."""
    global _thread
    if not _ENABLED:
        return
    with _lock:
        _caches.add(cache)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, args=(ray.is_initialized,),
                                       name="placement-ejection", daemon=True)
            _thread.start()


def left_out() -> dict[str, Ejection]:
    """The nodes left out now, by node id: why, since when, and until when."""
    return REACHABILITY.ejected()


def targets(*snapshots: ClusterSnapshot) -> dict[str, tuple[str, int]]:
    """The raylets to probe, as the snapshots know them: the nodes left out now (at most half
    of ``PROBE_NODES``, the oldest ejections first), then the nodes recent placements went to,
    newest first, up to ``PROBE_NODES`` in all. Never the whole cluster."""
    wanted = list(REACHABILITY.ejected())[:PROBE_NODES // 2]
    seen = set(wanted)
    recent = list(RECENT)  # one C call: other threads append meanwhile
    for _, decision in itertools.islice(reversed(recent), SCANNED):
        if len(wanted) >= PROBE_NODES:
            break
        node_id = decision.node.node_id
        if node_id not in seen:
            seen.add(node_id)
            wanted.append(node_id)
    found = {}
    for node_id in wanted:
        for snapshot in snapshots:
            node = snapshot.by_id.get(node_id)
            record = node.ray_record if node is not None else None
            if record and record[4] and isinstance(record[5], int):
                found[node_id] = (str(record[4]), record[5])
                break
    return found


def _round(caches: list[SnapshotCache]) -> None:
    # The snapshots held now: a round never reads the cluster (the refresher does).
    probes = targets(*(s for s in (cache.latest for cache in caches) if s is not None))
    if not probes:
        return
    answered = tcp_probe(list(probes.values()), PROBE_TIMEOUT)
    before = REACHABILITY.ejected()
    results = dict(zip(probes, answered, strict=True))
    if REACHABILITY.observe(results):
        _say_changes(before, REACHABILITY.ejected(), probes, results)
        for cache in caches:  # now, not at the next refresh: decisions skip it at once
            cache.refresh()


def _say_changes(before: dict[str, Ejection], after: dict[str, Ejection],
                 probes: dict[str, tuple[str, int]], answered: dict[str, bool]) -> None:
    """A warning per node left out, a note per node back (one that answered this round; the
    bounded table may also forget the oldest): a user reading the driver's log learns why work
    stopped going to a node."""
    for node_id, ejection in after.items():
        if node_id not in before:
            address, port = probes.get(node_id, ("?", 0))
            logger.warning("placement: node %s (raylet %s:%s) left out of placements for %.0f s: "
                           "%s", node_id[:12], address, port,
                           ejection.until - REACHABILITY.now(), ejection.why)
    for node_id in before.keys() - after.keys():
        if not answered.get(node_id):
            continue
        logger.warning("placement: node %s answers again: placements may use it", node_id[:12])


def _run(connected: Callable[[], bool]) -> None:
    global _thread
    stop = threading.Event()
    try:
        while connected():
            with _lock:  # a WeakSet cannot be copied while watch() adds to it
                caches = list(_caches)
            if not caches:
                return
            try:
                _round(caches)
            except Exception:  # noqa: BLE001 - a read failed (Ray going away): next round
                logger.debug("placement: a probe round failed", exc_info=True)
            stop.wait(PROBE_SECONDS)
    finally:
        REACHABILITY.forget()
        with _lock:
            if _thread is threading.current_thread():
                _thread = None
