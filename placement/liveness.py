"""A live ledger: the placements of work that ended stop counting, without a ``release()``.

For policies that track completion (``LeastLoaded``; ``AntiAffinity`` and ``Packing`` with
``live=True``) the handle hands every submission here. A task is released when Ray reports its
result ready: a callback from Ray's core worker (``ObjectRef.future()``), no polling. An actor is
released when it dies: one watcher thread reads this job's dead actors from Ray's actor table
once every WATCH_SECONDS (one GCS read for all watched actors, never on the submit path), and
ends when nothing is watched or Ray is shut down.

>>> apart = placement.AntiAffinity(live=True)                         # doctest: +SKIP
>>> replicas = [apart.place(Replica).remote() for _ in range(4)]      # doctest: +SKIP
>>> ray.kill(replicas[0])  # about a second later, its node takes a replica  # doctest: +SKIP
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ray

from . import _ray
from .policies import Decision, Policy

# How often the watcher reads the dead actors: a killed replica's node is free again within
# about this long. One read of the actor table costs about a millisecond here.
WATCH_SECONDS = 1.0

_lock = threading.Lock()
_watched: dict[str, tuple[Policy, Decision]] = {}  # actor id -> what to release when it dies
_watcher: threading.Thread | None = None


def release_when_done(result: Any, policy: Policy, decision: Decision) -> None:
    """Release ``decision`` when the work ``result`` stands for ends: a task's result is ready
    (or failed), an actor died. Streaming generators are not tracked: they count until
    ``policy.release(decision)``."""
    ref = result[0] if isinstance(result, list) and result else result
    if isinstance(ref, ray.ObjectRef):
        ref.future().add_done_callback(lambda _: policy.release(decision))
    elif _ray.is_actor_handle(result):
        _watch(_ray.actor_id_hex(result), policy, decision)


def _watch(actor_id: str, policy: Policy, decision: Decision) -> None:
    global _watcher
    with _lock:
        _watched[actor_id] = (policy, decision)
        if _watcher is None:
            _watcher = threading.Thread(target=_watch_loop, args=(_ray.dead_actor_ids,),
                                        name="placement-actor-watcher", daemon=True)
            _watcher.start()


def _watch_loop(read_dead: Callable[[], set[str]], wait: Callable[[float], Any] | None = None,
                connected: Callable[[], bool] = ray.is_initialized) -> None:
    """Release the decisions of watched actors that died; return once none is watched or Ray
    is no longer connected."""
    global _watcher
    pause = wait if wait is not None else threading.Event().wait
    while True:
        pause(WATCH_SECONDS)
        with _lock:
            if not _watched or not connected():
                _watched.clear()
                _watcher = None  # under the lock: the next watch starts a new thread
                return
        try:
            dead = read_dead()
        except Exception:  # a GCS hiccup or a shutdown underway: look again next time
            continue
        with _lock:
            ended = [_watched.pop(actor_id) for actor_id in list(_watched) if actor_id in dead]
        for policy, decision in ended:
            try:
                policy.release(decision)
            except Exception:  # one policy's failure must not end the watch for the others
                continue


def watched() -> int:
    """How many placed actors are being watched (for tests and ``placement status``)."""
    with _lock:
        return len(_watched)
