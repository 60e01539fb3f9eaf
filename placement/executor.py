"""Drop-in ``concurrent.futures`` executors that run each call as a placed Ray task.

``PlacementExecutor(policy)`` spreads calls as the policy says (global parallelism with
RoundRobin); ``LocalExecutor()`` keeps them on the caller's node (local parallelism: from inside a
task, its children stay where its data is).

>>> from placement import LocalExecutor, PlacementExecutor, RoundRobin
>>> with PlacementExecutor(RoundRobin(), max_workers=8) as pool:      # doctest: +SKIP
...     squares = list(pool.map(pow, range(10), [2] * 10))
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import ray
from ray.exceptions import (
    ActorUnschedulableError,
    NodeDiedError,
    RayTaskError,
    TaskUnschedulableError,
)

from . import _ray
from .handle import cache_of, current_node_id
from .policies import Local, Policy

CANCEL_WAIT_SECONDS = 30.0


class RayFuture(Future[Any]):
    """A ``concurrent.futures.Future`` for a Ray task. It stays pending while the task is in Ray,
    so ``cancel()`` can still succeed, and then cancels the Ray task too (Ray's own
    ``ObjectRef.future()`` does not)."""

    def __init__(self) -> None:
        super().__init__()
        self.object_ref: Any = None

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self.cancel_ray_task()
        return True

    def cancel_ray_task(self) -> None:
        if self.object_ref is not None:
            try:
                ray.cancel(self.object_ref)
            except Exception:  # noqa: BLE001 - the task may have finished or be gone already
                pass

    def _wait_through_ray(self, timeout: float | None) -> float | None:
        """Inside a Ray worker, wait through Ray first: a task blocked in ray.wait lends its CPU to
        the children it waits for (a plain thread wait would hold it, and can deadlock).
        Returns the timeout left."""
        if self.done() or self.object_ref is None or not _ray.in_ray_worker():
            return timeout
        began = time.monotonic()
        ray.wait([self.object_ref], timeout=timeout)
        return None if timeout is None else max(0.0, timeout - (time.monotonic() - began))

    def result(self, timeout: float | None = None) -> Any:
        return super().result(self._wait_through_ray(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return super().exception(self._wait_through_ray(timeout))


def _node_gone(error: BaseException) -> bool:
    return isinstance(error, (NodeDiedError, TaskUnschedulableError, ActorUnschedulableError))


def _original_exception(error: BaseException) -> BaseException:
    """The exception the task raised, not Ray's wrapper around it."""
    if isinstance(error, RayTaskError) and isinstance(error.cause, BaseException):
        return error.cause
    return error


class PlacementExecutor(Executor):
    """A ``concurrent.futures.Executor`` whose calls run as Ray tasks placed by ``policy``.

    - ``submit(fn, /, *args, **kwargs)`` returns a real Future (``as_completed``, ``wait`` work);
    - ``map(fn, *iterables, timeout=None, chunksize=1)`` submits eagerly and yields in order;
    - ``max_workers`` bounds the tasks in flight: ``submit`` blocks while that many run
      (backpressure, no unbounded queue). Default: twice the CPUs of the nodes the policy can use;
    - ``shutdown(wait=True, *, cancel_futures=False)`` is idempotent; ``submit`` after it raises
      RuntimeError; ``Future.cancel()`` cancels the Ray task;
    - an exception in the task reaches ``future.result()`` as the original exception type.

    ``ray_options`` (num_cpus, max_retries, ...) apply to every task.
    """

    def __init__(self, policy: Policy, max_workers: int | None = None, **ray_options: Any) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(
                f"PlacementExecutor needs a placement policy such as RoundRobin(), got {policy!r}"
            )
        if max_workers is not None and (isinstance(max_workers, bool)
                                        or not isinstance(max_workers, int)
                                        or max_workers <= 0):
            raise ValueError(f"max_workers must be greater than 0, got {max_workers!r}")
        self._policy = policy
        self._max_workers = max_workers
        self._ray_options = ray_options
        self._slots: threading.BoundedSemaphore | None = None
        self._lock = threading.Lock()
        self._shutdown = False
        self._in_flight: set[RayFuture] = set()
        self._placed: dict[Any, Any] = {}

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def max_workers(self) -> int:
        with self._lock:
            self._ensure_slots()
            assert self._max_workers is not None  # set by _ensure_slots
            return self._max_workers

    def _ensure_slots(self) -> threading.BoundedSemaphore:
        # Sized on first use, not in __init__: the default reads the cluster, which may not be
        # connected yet when the executor is built.
        if self._slots is None:
            if self._max_workers is None:
                self._max_workers = max(2, 2 * int(self._usable_cpus()))
            self._slots = threading.BoundedSemaphore(self._max_workers)
        return self._slots

    def _usable_cpus(self) -> float:
        snapshot = cache_of(self._policy).get()
        if isinstance(self._policy, Local):
            node = snapshot.by_id.get(current_node_id())
            return node.cpus if node is not None else 1.0
        return sum(n.cpus for n in snapshot.live)

    def _placed_for(self, fn: Callable[..., Any]) -> Any:
        placed = self._placed.get(fn)
        if placed is None:
            placed = self._placed[fn] = self._policy.place(fn, **self._ray_options)
        return placed

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            slots = self._ensure_slots()
        placed = self._placed_for(fn)  # bad fn or options raise here, before waiting for a slot
        self._acquire(slots)
        future = RayFuture()
        with self._lock:
            if self._shutdown:  # shut down while this call waited for a slot
                slots.release()
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._in_flight.add(future)
        try:
            future.object_ref = placed.remote(*args, **kwargs)
        except BaseException:
            self._finished(future)
            raise
        if future.cancelled():  # cancelled while being submitted: cancel the task it became
            future.cancel_ray_task()
        future.object_ref.future().add_done_callback(
            lambda ray_future: self._complete(future, ray_future))
        return future

    def _acquire(self, slots: threading.BoundedSemaphore) -> None:
        """Wait for a free slot. Inside a Ray worker, wait through ray.wait on the calls in flight:
        a task blocked on a plain semaphore would keep its CPU from the children it waits for."""
        if not _ray.in_ray_worker():
            slots.acquire()
            return
        while not slots.acquire(blocking=False):
            with self._lock:
                refs = [f.object_ref for f in self._in_flight if f.object_ref is not None]
            if refs:
                ray.wait(refs, num_returns=1, timeout=1.0)
            else:
                time.sleep(0.01)

    def _complete(self, future: RayFuture, ray_future: Future[Any]) -> None:
        try:
            if future.set_running_or_notify_cancel():
                error = ray_future.exception()
                if error is None:
                    future.set_result(ray_future.result())
                else:
                    if _node_gone(error):
                        cache_of(self._policy).invalidate()  # the next placement reads the cluster
                    future.set_exception(_original_exception(error))
        finally:
            self._finished(future)

    def _finished(self, future: RayFuture) -> None:
        with self._lock:
            if future not in self._in_flight:
                return
            self._in_flight.discard(future)
            slots = self._ensure_slots()
        slots.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            in_flight = list(self._in_flight)
        if cancel_futures:
            for future in in_flight:
                future.cancel()
        if wait:
            for future in in_flight:
                if future.cancelled() and future.object_ref is not None:
                    # ray.cancel was sent; the task ends shortly after. Bounded: a task that
                    # ignores cancellation must not hang shutdown.
                    ray.wait([future.object_ref], timeout=CANCEL_WAIT_SECONDS)
                else:
                    try:
                        future.exception()
                    except BaseException:  # noqa: BLE001 - only waiting here
                        pass


class LocalExecutor(PlacementExecutor):
    """A PlacementExecutor pinned to the calling process's node (``Local()`` policy): from inside a
    Ray task its calls run next to the task's data.

    >>> @ray.remote
    ... def parent(chunk):
    ...     with LocalExecutor() as pool:                             # children on this node
    ...         return sum(pool.map(process, chunk))                  # doctest: +SKIP
    """

    def __init__(
        self, max_workers: int | None = None, *, soft: bool = False, **ray_options: Any
    ) -> None:
        super().__init__(Local(soft=soft), max_workers, **ray_options)
