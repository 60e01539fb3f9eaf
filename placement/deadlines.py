"""Pending deadlines: work that has not *started* within ``pending_timeout`` seconds is ended and
refused with its reason, instead of waiting in silence for a busy node or a missing label.

Whether a task started is settled by one atomic step in the GCS key-value store, so a task can
never be both refused and run. The task's first act (``gate``, before the user's function) is to
put a key unless it exists; at the deadline the watcher puts the same key unless it exists.
Whoever is first wins: a task that started first runs and the watcher forgets it; a deadline that
came first makes the task, if it ever starts, raise PlacementError("pending-timeout") without
running the function, and the watcher cancels it in Ray's queue at once (``ray.cancel``). The
watcher is one thread that sleeps until the next deadline: nothing polls Ray per task, and a task
costs one key put when it starts and one at its deadline (about a millisecond each here).

An actor is not gated (its constructor cannot be wrapped): at the deadline the watcher reads its
record in Ray's actor table (one read) and ends it (``ray.kill``) unless Ray has given it a worker
process (its constructor runs) or it is alive. An actor given a worker in the instant between
that read and the kill is ended too.

>>> late = Affinity("node1").place(train, pending_timeout=2).remote()      # doctest: +SKIP
>>> ray.get(late)  # node1 stayed busy: cancelled at the deadline           # doctest: +SKIP
Traceback (most recent call last):
ray.exceptions.TaskCancelledError: ...
>>> print(placement.explain(late))  # the reason, also logged as a warning   # doctest: +SKIP
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import ray

from . import _ray, diagnosis, errors
from .diagnosis import note_refused, refused_because, waiting_because
from .errors import PlacementError
from .policies.decision import check_seconds, node_name

logger = logging.getLogger("placement")

_KEY_PREFIX = "pending/"
_STARTED = "started"
# Actor states (Ray's actor table) in which an actor has not started anywhere.
NOT_STARTED = frozenset({"DEPENDENCIES_UNREADY", "PENDING_CREATION"})
_TIMED_OUT = "timed out"


def check_pending_timeout(seconds: Any) -> float | None:
    """``pending_timeout``: None, or seconds more than 0 and at most a day."""
    return check_seconds("pending_timeout", seconds, "pending_timeout=30")


def gate(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Runs inside the task, first: mark it started, unless its deadline came first. Its key is
    its own task id (the watcher reads the same id from the task's ObjectRef), so nothing has
    to travel with the task."""
    context = ray.get_runtime_context()
    return settle(key_of(context.get_job_id(), context.get_task_id()), fn, *args, **kwargs)


def settle(key: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Mark ``key`` started and run ``fn``, unless the deadline's mark is there. A retry of a
    task that started (Ray's max_retries) finds its own mark and runs; the mark of a refusal
    stays (the watcher deletes it later), so a retry after a refusal is refused too."""
    if not _ray.kv_put_new(key, _STARTED):
        reason = (_ray.kv_get(key) or b"").decode()
        if reason != _STARTED:
            raise _late(reason)
    return fn(*args, **kwargs)


def key_of(job_id: str, task_id: str | None) -> str:
    """A task's key: its job's id first, so that the keys a driver that ended left behind can
    be found and deleted (``_forget_ended_jobs_once``)."""
    return f"{_KEY_PREFIX}{job_id}/{task_id}"


def _late(reason: str) -> PlacementError:
    return PlacementError(errors.PENDING_TIMEOUT, f"it did not start in time: {reason}",
                          "raise pending_timeout=, use soft=True, or free the node")


_gated = ray.remote(gate)


def gated_remote() -> Any:
    """The remote function that runs ``gate`` (the handle submits it with the work's options)."""
    return _gated


_swept = False


def _forget_ended_jobs_once() -> None:
    """Once per process: delete the keys of drivers that ended before their deadlines fell due
    (their watcher thread ended with them). One key listing and one job table read."""
    global _swept
    if _swept:
        return
    _swept = True
    try:
        ended = _ray.ended_job_ids()
        for job in {key[len(_KEY_PREFIX):].split("/", 1)[0]
                    for key in _ray.kv_keys(_KEY_PREFIX)} & ended:
            _ray.kv_del(f"{_KEY_PREFIX}{job}/", by_prefix=True)
    except Exception:  # noqa: BLE001 - housekeeping: never in the way of a submission
        logger.debug("placement: could not delete ended jobs' deadline keys", exc_info=True)


class _Watch:
    __slots__ = ("actor", "asked", "decision", "key", "labels", "name", "policy", "ref",
                 "seconds")

    def __init__(self, name: str, seconds: float, policy: Any, decision: Any,
                 asked: dict[str, float], labels: dict[str, str], key: str | None = None,
                 ref: Any = None, actor: Any = None) -> None:
        self.name, self.seconds, self.policy, self.decision = name, seconds, policy, decision
        self.asked, self.labels = asked, labels
        self.key, self.ref, self.actor = key, ref, actor


_lock = threading.Condition()
_heap: list[tuple[float, int, _Watch | str]] = []  # (due, order, a watch or a key to delete)
_order = itertools.count()
_watcher: threading.Thread | None = None
# A refused task's key stays this long after its deadline (a cancel racing with the task's
# start must still find it), then is deleted.
KEEP_REFUSED_SECONDS = 300.0


def watch_task(ref: Any, seconds: float, name: str, policy: Any, decision: Any,
               asked: dict[str, float], labels: dict[str, str]) -> None:
    """Refuse the gated task behind ``ref`` if it has not started ``seconds`` from now; its
    placement is then released (it never runs)."""
    _forget_ended_jobs_once()
    key = key_of(ray.get_runtime_context().get_job_id(), ref.task_id().hex())
    _add(seconds, _Watch(name, seconds, policy, decision, asked, labels, key=key, ref=ref))


def watch_actor(actor: Any, seconds: float, name: str, policy: Any, decision: Any,
                asked: dict[str, float], labels: dict[str, str]) -> None:
    """End the actor if Ray has not started it on a node ``seconds`` from now, and release
    its placement."""
    _add(seconds, _Watch(name, seconds, policy, decision, asked, labels, actor=actor))


def _add(seconds: float, item: _Watch | str) -> None:
    global _watcher
    with _lock:
        heapq.heappush(_heap, (time.monotonic() + seconds, next(_order), item))
        if _watcher is None:
            _watcher = threading.Thread(target=_watch_loop, name="placement-deadlines",
                                        daemon=True)
            _watcher.start()
        _lock.notify()


def _watch_loop() -> None:
    global _watcher
    while True:
        with _lock:
            while True:
                if not _heap or not ray.is_initialized():
                    _heap.clear()
                    _watcher = None
                    return
                due, _, item = _heap[0]
                left = due - time.monotonic()
                if left <= 0:
                    heapq.heappop(_heap)
                    break
                _lock.wait(left)
        try:
            if isinstance(item, str):
                _ray.kv_del(item)
            else:
                _expire(item)
        except Exception:  # noqa: BLE001 - a shutdown underway, a GCS hiccup: the work waits on
            logger.debug("placement: deadline check of %s failed", item, exc_info=True)


def _expire(watch: _Watch) -> None:
    """The deadline of one piece of work: refuse it unless it started. Why is noted before the
    work is ended, so that whoever sees it end can read why."""
    if watch.key is not None:
        key = watch.key
        if not _ray.kv_put_new(key, _TIMED_OUT):  # it started first
            _ray.kv_del(key)
            return
        reason = _why(watch)
        _ray.kv_put(key, reason)  # a task starting late raises with it
        _refused(str(watch.ref.task_id().hex()), watch, reason)
        ray.cancel(watch.ref)  # queued: it never runs, and ray.get raises at once
        _add(KEEP_REFUSED_SECONDS, key)
    else:
        actor_id = _ray.actor_id_hex(watch.actor)
        state, on_worker = _ray.actor_has_worker(actor_id)
        # Waiting for its arguments or for room. Once Ray has given it a worker process its
        # constructor may be running: it has started.
        if state not in NOT_STARTED or on_worker:
            return
        _refused(actor_id, watch, _why(watch))
        ray.kill(watch.actor)
    watch.policy.release(watch.decision)  # the library ended it: its slot is free again


def _why(watch: _Watch) -> str:
    """Why the work waits; a cluster that cannot be read must not stop the refusal."""
    try:
        return waiting_because(watch.decision, watch.asked, watch.labels)
    except Exception as error:  # noqa: BLE001 - the refusal matters more than its reason
        return f"no reason read ({type(error).__name__}: {error})"


def _refused(work_id: str, watch: _Watch, reason: str) -> None:
    note_refused(work_id, watch.name,
                 f"{errors.PENDING_TIMEOUT} after {watch.seconds:g}s: {reason}")
    logger.warning("placement: %s did not start within %gs (%s): %s", watch.name,
                   watch.seconds, errors.PENDING_TIMEOUT, reason)


def get(refs: Any, *, timeout: float | None = None) -> Any:
    """``ray.get(refs, timeout=timeout)``, except that a task refused at its pending deadline
    raises the PlacementError that says why, from Ray's ``TaskCancelledError`` (whose message
    Ray leaves empty: a cancelled task's error cannot carry a reason), and a hard placement on a
    node Ray can no longer run it on (dead, or cut off and marked dead) raises ``dead-node``
    naming the node, from Ray's ``TaskUnschedulableError``.

    >>> late = placement.Affinity("node2").place(f, pending_timeout=2).remote()  # doctest: +SKIP
    >>> placement.get(late)                                                   # doctest: +SKIP
    Traceback (most recent call last):
    placement.errors.PlacementError: it did not start in time: pending-timeout after 2s: ...
    """
    try:
        return ray.get(refs, timeout=timeout)
    except ray.exceptions.TaskCancelledError as cancelled:
        for ref in refs if isinstance(refs, (list, tuple)) else [refs]:
            if isinstance(ref, ray.ObjectRef):
                why = refusal(ref.task_id().hex())
                if why is not None:
                    raise why from cancelled
        raise
    except ray.exceptions.TaskUnschedulableError as lost:
        gone = _hard_on_a_gone_node(refs if isinstance(refs, (list, tuple)) else [refs])
        if gone is not None:
            raise gone from lost
        raise


def _hard_on_a_gone_node(refs: Sequence[Any]) -> PlacementError | None:
    """The PlacementError for the first of ``refs`` that a hard placement bound to a node Ray
    could no longer schedule on (it died, or was cut off and marked dead), or None."""
    for ref, decision in diagnosis.decisions_of([r for r in refs if isinstance(r, ray.ObjectRef)]):
        if decision.soft is not False or not ray.wait([ref], timeout=0)[0]:
            continue
        try:
            ray.get(ref, timeout=0)
        except ray.exceptions.TaskUnschedulableError:
            node = decision.node
            return PlacementError(
                errors.DEAD_NODE,
                f"{decision.policy} placed it on {node_name(node)} ({node.address or 'no address'},"
                f" node {node.node_id[:12]}), which Ray could no longer run it on: the node died "
                "or was cut off, and the placement was hard (soft=False)",
                "resubmit it; to let Ray run such work elsewhere when its node is gone, use "
                "soft='gone' (RoundRobin's and LeastLoaded's default) or soft=True",
                (node_name(node),))
        except Exception:  # noqa: BLE001 - another error: not this ref's case
            continue
    return None


def refusal(work_id: str) -> PlacementError | None:
    """The PlacementError for work refused at its deadline (the executor hands it to the
    caller's future), or None."""
    reason = refused_because(work_id)
    return None if reason is None else _late(reason)
