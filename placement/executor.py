"""Drop-in ``concurrent.futures`` executors that run each call as a placed Ray task.

``PlacementExecutor(policy)`` spreads calls as the policy says (global parallelism with
RoundRobin); ``LocalExecutor()`` keeps them on the caller's node (local parallelism: from inside a
task, its children stay where its data is).

>>> from placement import LocalExecutor, PlacementExecutor, RoundRobin
>>> with PlacementExecutor(RoundRobin(), max_workers=8) as pool:      # doctest: +SKIP
...     squares = list(pool.map(pow, range(10), [2] * 10))

The shape is ThreadPoolExecutor's: ``submit`` puts a call in the executor's queue and returns at
once; a dispatcher thread hands queued calls to Ray while fewer than ``max_workers`` are in
flight, the way a pool thread picks up a work item. By default ``max_workers`` is the slots of
the nodes the policy can use (their CPUs over each call's ``num_cpus``), so calls wait in the
executor rather than in a busy node's queue, and the policy decides when a slot is free: late
binding, as Sparrow's. ``map(..., cost=fn)`` and ``submit_with_cost`` hand the costliest queued
calls out first (Graham's longest processing time first). A future is PENDING while queued
(``cancel()`` succeeds and the call never runs), RUNNING once handed to Ray (``cancel()`` is
False, as for a thread pool's running call, even if Ray itself still queues the task for a free
CPU), then FINISHED. Any picklable callable works (builtins, partials, bound methods, lambdas,
callable objects, classes): it travels as the first argument of one module-level remote
function; a Ray remote function is submitted as itself, so its own ``@ray.remote(...)`` options
apply.
"""
from __future__ import annotations

import heapq
import itertools
import math
import numbers
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import ray
from ray.actor import ActorClass
from ray.exceptions import (
    ActorUnschedulableError,
    NodeDiedError,
    RayTaskError,
    TaskUnschedulableError,
)
from ray.remote_function import RemoteFunction

from . import _ray
from .deadlines import check_pending_timeout, refusal
from .policies import Decision, Local, Policy
from .transaction import cache_of, current_node_id

# Inside a Ray worker a wait is sliced so that it goes through ray.wait (lending the caller's
# CPUs to the children it waits for) and still notices calls dispatched meanwhile.
_WAIT_SLICE_SECONDS = 1.0


def _call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Runs a submitted callable inside a Ray task. ``args`` stay top-level arguments of the
    task, so ObjectRefs among them are resolved as Ray resolves any task argument."""
    return fn(*args, **kwargs)


_remote_call = ray.remote(_call)


class RayFuture(Future[Any]):
    """A ``concurrent.futures.Future`` for a call run as a Ray task: the stdlib's states
    (PENDING while queued in the executor, RUNNING once handed to Ray, FINISHED), and
    ``object_ref``, the Ray task's result, once it was handed over."""

    def __init__(self, executor: PlacementExecutor | None = None) -> None:
        super().__init__()
        self.object_ref: Any = None
        self.decision: Decision | None = None  # what placed it, once handed to Ray
        self._executor = executor

    def _wait_through_ray(self, timeout: float | None) -> float | None:
        """Inside a Ray worker, wait through Ray first: a task blocked in ray.wait lends its CPU
        to the children it waits for (a plain thread wait would hold it, and can deadlock).
        Returns the timeout left."""
        if self.done() or not _ray.in_ray_worker():
            return timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return 0.0
            step = _WAIT_SLICE_SECONDS if left is None else min(left, _WAIT_SLICE_SECONDS)
            refs = [self.object_ref] if self.object_ref is not None else (
                self._executor.refs_in_flight() if self._executor is not None else [])
            if refs:
                ray.wait(refs, num_returns=1, timeout=step)
            else:
                time.sleep(min(step, 0.01))
            if self.object_ref is not None and not self.done():
                # Ray has the result; the done-callback that sets it runs on another thread.
                ready, _ = ray.wait([self.object_ref], timeout=0)
                if ready:
                    break
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def result(self, timeout: float | None = None) -> Any:
        return super().result(self._wait_through_ray(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return super().exception(self._wait_through_ray(timeout))


def _in_order(futures: list[RayFuture], end: float | None) -> Iterator[Any]:
    """The results of ``futures`` in order, as ``Executor.map`` yields them: one not done by
    ``end`` raises TimeoutError, and those not yielded are cancelled when iteration stops."""
    pending = futures[::-1]
    try:
        while pending:
            future = pending.pop()
            try:
                yield future.result(None if end is None else end - time.monotonic())
            finally:
                future.cancel()
    finally:
        for future in pending:
            future.cancel()


def _node_gone(error: BaseException) -> bool:
    return isinstance(error, (NodeDiedError, TaskUnschedulableError, ActorUnschedulableError))


def _original_exception(error: BaseException) -> BaseException:
    """The exception the task raised, not Ray's wrapper around it."""
    if isinstance(error, RayTaskError) and isinstance(error.cause, BaseException):
        return error.cause
    return error


_Item = tuple[RayFuture, Any, tuple[Any, ...], dict[str, Any]]
# A queued call: (minus its cost, its turn, the call); the heap hands out the costliest first,
# calls of equal cost in the order they came.
_Queued = tuple[float, int, _Item]


def check_cost(cost: object) -> float:
    """A call's cost: a real number >= 0 (seconds, bytes, rows: only the order matters), numpy's
    and ``Decimal`` too; integers past a float's range count as infinity (the costliest).

    >>> check_cost(3), check_cost(Decimal("2.5")), check_cost(10**400), check_cost(-0.0)
    (3.0, 2.5, inf, 0.0)
    """
    if isinstance(cost, bool) or not isinstance(cost, (numbers.Real, Decimal)):
        raise TypeError(f"a cost must be a number (a size, rows, expected seconds), got "
                        f"{type(cost).__name__}: make cost= return one, e.g. cost=len")
    try:
        value = float(cost)
    except OverflowError:
        value = math.inf if cost > 0 else -math.inf  # type: ignore[operator]
    except ValueError:  # Decimal("sNaN")
        value = math.nan
    if math.isnan(value) or cost < 0:
        raise ValueError(f"a cost must be a number >= 0, got {_shown(cost)}")
    return value + 0.0  # -0.0 is 0.0


def _shown(number: object) -> str:
    """``number`` for a message: an integer too long to print is described."""
    if isinstance(number, int) and number.bit_length() > 128:
        return f"an integer of {number.bit_length()} bits"
    try:
        return f"{number!r:.40}"
    except ValueError:  # Fraction(-10**5000): too long to print
        return f"a {type(number).__name__} too long to print"


class PlacementExecutor(Executor):
    """A ``concurrent.futures.Executor`` whose calls run as Ray tasks placed by ``policy``.

    - ``submit(fn, /, *args, **kwargs)`` takes any picklable callable and returns a real Future
      (``as_completed``, ``wait`` work); it never blocks;
    - ``map(fn, *iterables, timeout=None, chunksize=1, cost=None)`` submits eagerly and yields
      in order; ``cost(*args)`` (a number per call) hands the costliest calls out first;
    - ``submit_with_cost(cost, fn, /, *args, **kwargs)``: ``submit`` with a cost;
    - ``max_workers`` bounds the calls handed to Ray at once; the rest wait in the executor's
      queue. Default: the slots of the nodes the policy can use (each node's CPUs over the
      calls' ``num_cpus``, 1 unless given), read again when the cluster changes: a call is
      handed over, and placed, when a slot is free (late binding);
    - ``cancel()`` succeeds while a call is queued, never once it was handed to Ray;
      ``shutdown(wait=True, *, cancel_futures=False)`` is idempotent, cancels only queued calls,
      and ``submit`` after it raises RuntimeError;
    - an exception in the call reaches ``future.result()`` as the original exception type.

    ``ray_options`` (num_cpus, max_retries, ...) apply to every task.

    ``pending_timeout=seconds``: a call Ray has not started that long after it was handed over
    (its node busy, its label missing) is cancelled (placement/deadlines.py); with a strict
    policy its future fails with PlacementError("pending-timeout") naming why it waited, with a
    soft one it is submitted once more with no node named, and Ray runs it on any node with room.
    """

    def __init__(self, policy: Policy, max_workers: int | None = None, *,
                 pending_timeout: float | None = None, **ray_options: Any) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(
                f"PlacementExecutor needs a placement policy such as RoundRobin(), got {policy!r}")
        if max_workers is not None and (isinstance(max_workers, bool)
                                        or not isinstance(max_workers, int) or max_workers <= 0):
            raise ValueError(f"max_workers must be greater than 0, got {max_workers!r}")
        self._policy = policy
        self._max_workers = max_workers
        self._pending_timeout = check_pending_timeout(pending_timeout)
        if pending_timeout is not None:  # every handle of this executor keeps the deadline
            ray_options = {**ray_options, "pending_timeout": pending_timeout}
        self._ray_options = ray_options
        self._placed_call = policy.place(_remote_call, **ray_options)  # bad options raise here
        self._replaced: set[RayFuture] = set()  # calls placed again after their deadline
        self._items: dict[RayFuture, _Item] = {}  # in flight, with a deadline: to place again
        self._placed: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: list[_Queued] = []  # a heap
        self._turns = itertools.count()
        self._slots: tuple[int, int] | None = None  # (snapshot version, slots) of the default
        self._in_flight: set[RayFuture] = set()
        self._shutdown = False
        self._dispatcher: threading.Thread | None = None
        # Where futures are settled and their done-callbacks run (see _hand_over).
        self._completer: ThreadPoolExecutor | None = None

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def max_workers(self) -> int:
        with self._lock:
            return self._limit()

    def _limit(self) -> int:
        if self._max_workers is not None:
            return self._max_workers
        # Read on use, not in __init__ (the cluster may not be connected yet), and again when
        # the snapshot changes (nodes join or leave): a sum over the nodes, once per snapshot.
        snapshot = cache_of(self._policy).get()
        known = self._slots
        if known is None or known[0] != snapshot.version:
            known = self._slots = (snapshot.version, self._slots_of(snapshot))
        return known[1]

    def _slots_of(self, snapshot: Any) -> int:
        """Calls of this executor the nodes the policy can use run at once: each node's CPUs
        over the calls' ``num_cpus``; twice the CPUs for calls that take none."""
        policy = self._policy
        if policy.needs.caller:  # on the caller's node: its CPUs only
            node = snapshot.by_id.get(current_node_id())
            nodes = [node] if node is not None else []
        else:
            where = policy.where
            nodes = [n for n in snapshot.live if where is None or where.matches(n.labels)]
        per_call = self._ray_options.get("num_cpus", 1)
        if not isinstance(per_call, (int, float)) or per_call <= 0:
            return max(2, 2 * int(sum(n.cpus for n in nodes)))
        return max(1, sum(int(n.cpus // per_call + 1e-9) for n in nodes))

    def _handle_for(self, fn: Callable[..., Any]) -> tuple[Any, bool]:
        """The placed handle that runs ``fn``, and whether ``fn`` goes as its first argument."""
        if isinstance(fn, RemoteFunction):
            returns = _ray.remote_defaults(fn).get("num_returns", 1)
            if returns not in (1, None):
                raise TypeError(
                    f"submit needs a function with one result, and this Ray remote function has "
                    f"num_returns={returns!r}: submit a function that returns a tuple instead")
            placed = self._placed.get(fn)
            if placed is None:
                placed = self._placed[fn] = self._policy.place(fn, **self._ray_options)
            return placed, False
        if isinstance(fn, ActorClass):
            raise TypeError(
                "submit takes a function or a class, not a Ray actor class: submit the plain "
                "class (its constructor runs in a task), or place actors with policy.place(cls)")
        if not callable(fn):
            raise TypeError(
                f"submit needs a callable, got {type(fn).__name__}: pass the function itself, "
                "not the result of calling it")
        return self._placed_call, True

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)`` and return its future at once; the policy places it
        when the dispatcher hands it to Ray."""
        return self._enqueue(fn, [(0.0, args, kwargs)])[0]

    def submit_with_cost(self, cost: float, fn: Callable[..., Any], /, *args: Any,
                         **kwargs: Any) -> Future[Any]:
        """``submit`` with a cost (a number >= 0: a size, rows, expected seconds): queued calls
        are handed to Ray costliest first, calls of equal cost in the order they came; calls
        without one cost 0.

        >>> with PlacementExecutor(LeastLoaded()) as pool:                 # doctest: +SKIP
        ...     big = pool.submit_with_cost(len(rows), process, rows)
        """
        return self._enqueue(fn, [(check_cost(cost), args, kwargs)])[0]

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, cost: Callable[..., float] | None = None) -> Iterator[Any]:
        """``Executor.map``: calls submitted at once, results yielded in input order.
        ``cost(*args)`` gives each call a cost (a number >= 0), and the queued calls are handed
        to Ray costliest first: long calls do not start last.

        >>> with PlacementExecutor(LeastLoaded()) as pool:                 # doctest: +SKIP
        ...     sizes = list(pool.map(process, files, cost=os.path.getsize))
        """
        if cost is not None and not callable(cost):
            raise TypeError(f"cost must be a function of a call's arguments returning a number, "
                            f"e.g. cost=len, got {cost!r:.40}")
        end = None if timeout is None else time.monotonic() + timeout
        calls: list[tuple[float, tuple[Any, ...], dict[str, Any]]] = [
            (0.0 if cost is None else check_cost(cost(*args)), args, {})
            for args in zip(*iterables, strict=False)]  # every cost before any is queued
        return _in_order(self._enqueue(fn, calls), end)

    def _enqueue(self, fn: Callable[..., Any],
                 calls: list[tuple[float, tuple[Any, ...], dict[str, Any]]]) -> list[RayFuture]:
        """Queue the calls of ``fn`` at once (so that the costliest goes first) and wake the
        dispatcher."""
        placed, wrapped = self._handle_for(fn)  # a bad fn raises here, before anything queues
        futures = [RayFuture(self) for _ in calls]
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            limit = self._limit()
            for future, (cost, args, kwargs) in zip(futures, calls, strict=True):
                item = (future, placed, (fn, *args) if wrapped else args, kwargs)
                heapq.heappush(self._queue, (-cost, next(self._turns), item))
            if self._dispatcher is None:
                self._completer = ThreadPoolExecutor(
                    max_workers=limit, thread_name_prefix="placement-complete")
                self._dispatcher = threading.Thread(
                    target=self._dispatch, name="placement-executor", daemon=True)
                self._dispatcher.start()
            self._wake.notify()
        return futures

    def refs_in_flight(self) -> list[Any]:
        """The Ray results of the calls handed to Ray and not finished."""
        with self._lock:
            return [f.object_ref for f in self._in_flight if f.object_ref is not None]

    def _dispatch(self) -> None:
        """The dispatcher thread: hands queued calls to Ray while slots are free, and ends once
        the executor is shut down and its queue is empty."""
        while True:
            with self._wake:
                while not self._queue or len(self._in_flight) >= self._limit():
                    if self._shutdown and not self._queue:
                        return
                    self._wake.wait()
                future, placed, args, kwargs = heapq.heappop(self._queue)[2]
                if not future.set_running_or_notify_cancel():
                    continue  # cancelled while queued: it never runs
                self._in_flight.add(future)
                if self._pending_timeout is not None:
                    self._items[future] = (future, placed, args, kwargs)
            try:
                future.object_ref, future.decision = placed.submit(*args, **kwargs)
                future.object_ref.future().add_done_callback(
                    lambda ray_future, future=future: self._hand_over(future, ray_future))
            except BaseException as error:  # noqa: BLE001 - it belongs to the caller's future
                self._settle(future, error)

    def _hand_over(self, future: RayFuture, ray_future: Future[Any]) -> None:
        """Called on Ray's one callback thread: settle the future on one of this executor's
        completion threads instead, so a done-callback that waits (even on another future of
        this executor) blocks only its own thread, as with a thread pool's workers."""
        completer = self._completer
        try:
            if completer is None:
                raise RuntimeError("no completion threads")
            completer.submit(self._complete, future, ray_future)
        except RuntimeError:  # the interpreter is exiting: settle it here
            self._complete(future, ray_future)

    def _complete(self, future: RayFuture, ray_future: Future[Any]) -> None:
        decision = future.decision
        if decision is not None and decision.tracked:
            # Its node's load goes down before its slot is handed out again, so the next call
            # is placed knowing where a slot is free (release is idempotent: Ray's own
            # completion callback may come first).
            self._policy.release(decision)
        error = ray_future.exception()
        if error is not None and _node_gone(error):
            cache_of(self._policy).invalidate()  # the next placement reads the cluster
        if error is not None and self._pending_timeout is not None:
            refused = refusal(str(future.object_ref.task_id().hex()))
            if refused is not None:
                if decision is not None and decision.soft and future not in self._replaced \
                        and self._again(future, decision):
                    return
                error = refused
        self._settle(future, error, None if error is not None else ray_future.result())

    def _again(self, future: RayFuture, decision: Decision) -> bool:
        """Submit a call refused at its deadline once more (a soft placement), with no node
        named: Ray runs it on any node with room that the policy's ``where=`` keeps. Whether it
        was submitted."""
        with self._lock:
            item = self._items.get(future)
        if item is None:
            return False
        self._replaced.add(future)
        _, placed, args, kwargs = item
        try:
            future.object_ref = placed.unplaced(decision.where).remote(*args, **kwargs)
        except BaseException:  # noqa: BLE001 - refused now: the first refusal is reported
            return False
        future.object_ref.future().add_done_callback(
            lambda ray_future, future=future: self._hand_over(future, ray_future))
        return True

    def _settle(self, future: RayFuture, error: BaseException | None, value: Any = None) -> None:
        # The slot comes back before the future is set, so a done-callback may submit again.
        with self._wake:
            self._in_flight.discard(future)
            self._items.pop(future, None)
            self._replaced.discard(future)
            self._wake.notify()
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(_original_exception(error))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; with ``wait``, wait for the calls handed to Ray, and with
        ``cancel_futures``, cancel the queued ones first (idempotent)."""
        with self._wake:
            self._shutdown = True
            if cancel_futures:
                queued = [entry[2][0] for entry in sorted(self._queue)]
                self._queue.clear()
            else:
                queued = []
            dispatcher = self._dispatcher
            self._wake.notify()
        for future in queued:
            future.cancel()
        if wait:
            # The dispatcher ends once the queue is empty: every call was handed to Ray. Inside a
            # Ray worker, wait through ray.wait meanwhile (a plain join would keep this task's
            # CPUs from the calls it waits for).
            while dispatcher is not None and dispatcher.is_alive():
                refs = self.refs_in_flight() if _ray.in_ray_worker() else []
                if refs:
                    ray.wait(refs, num_returns=1, timeout=_WAIT_SLICE_SECONDS)
                else:
                    dispatcher.join(timeout=_WAIT_SLICE_SECONDS)
            with self._lock:
                in_flight = list(self._in_flight)
            for future in in_flight:
                future.exception()  # waits for the call; its outcome stays with its future
            if self._completer is not None:
                self._completer.shutdown(wait=False)  # every future it settles is settled


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
