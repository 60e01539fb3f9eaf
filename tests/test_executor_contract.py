"""One contract suite for ThreadPoolExecutor and the placement executors: they are drop-in."""
from __future__ import annotations

import functools
import threading
import time
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ThreadPoolExecutor,
    TimeoutError,
    as_completed,
    wait,
)

import pytest
import ray

from placement import LocalExecutor, PlacementExecutor, RoundRobin

pytestmark = pytest.mark.cluster


class Boom(ValueError):
    """A user exception type: it must reach result() as itself."""


def square(x: int) -> int:
    return x * x


# A keyword called fn: submit's fn is positional-only.
def add(a: int, b: int, *, fn: int = 0) -> int:
    return a + b + fn


def fail(message: str) -> None:
    raise Boom(message)


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def touch(path: str) -> str:
    with open(path, "w") as marker:
        marker.write("ran")
    return path


class Scaler:
    def __init__(self, factor: int = 3) -> None:
        self.factor = factor

    def scale(self, x: int) -> int:
        return self.factor * x

    def __call__(self, x: int) -> int:
        return self.factor * x + 1


# Every kind of callable a thread pool takes: (callable, arguments, expected result).
CALLABLES = {
    "builtin": (pow, (2, 5), 32),
    "partial": (functools.partial(pow, 2), (5,), 32),
    "bound-method": (Scaler(4).scale, (5,), 20),
    "lambda": (lambda x: x + 1, (41,), 42),
    "callable-object": (Scaler(2), (5,), 11),
    "module-function": (square, (7,), 49),
}


def wait_until_running(future: Future, bound: float = 60.0) -> None:
    deadline = time.monotonic() + bound
    while not future.running() and not future.done():
        assert time.monotonic() < deadline, f"the call did not start within {bound} s"
        time.sleep(0.02)


@ray.remote(num_cpus=0)
class Gauge:
    """Counts calls running at once, from threads or Ray tasks alike."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    def leave(self) -> None:
        self.now -= 1

    def peak(self) -> int:
        return self.most


def gauged(name: str, seconds: float) -> None:
    gauge = ray.get_actor(name)
    ray.get(gauge.enter.remote())
    time.sleep(seconds)
    ray.get(gauge.leave.remote())


FACTORIES = {
    "threads": lambda n=4: ThreadPoolExecutor(max_workers=n),
    "round-robin": lambda n=4: PlacementExecutor(RoundRobin(), max_workers=n, num_cpus=0),
    "local": lambda n=4: LocalExecutor(max_workers=n, num_cpus=0),
}


@pytest.fixture(params=list(FACTORIES))
def make(request, ray_cluster):
    return FACTORIES[request.param]


def test_submit_returns_a_future_with_the_result(make):
    with make() as pool:
        future = pool.submit(add, 1, 2, fn=3)
        assert isinstance(future, Future)
        assert future.result(timeout=60) == 6
        assert future.done() and not future.cancelled()


def test_as_completed_and_wait(make):
    with make() as pool:
        futures = [pool.submit(square, i) for i in range(8)]
        finished = sorted(f.result() for f in as_completed(futures, timeout=60))
        assert finished == [i * i for i in range(8)]
        done, not_done = wait([pool.submit(square, 3)], timeout=60)
        assert len(done) == 1 and not not_done
        done, _ = wait([pool.submit(square, 4), pool.submit(nap, 0)],
                       return_when=FIRST_COMPLETED, timeout=60)
        assert done


@pytest.mark.parametrize("kind", CALLABLES)
def test_submit_takes_any_picklable_callable(make, kind):
    fn, args, expected = CALLABLES[kind]
    with make() as pool:
        assert pool.submit(fn, *args).result(timeout=60) == expected


def test_submit_a_class_runs_its_constructor_and_shutdown_returns(make):
    with make() as pool:  # leaving the block waits for every call: it must return
        built = pool.submit(Scaler, 5).result(timeout=60)
    assert isinstance(built, Scaler) and built.factor == 5


def test_cancel_succeeds_only_while_a_call_waits_in_the_queue(make, tmp_path):
    pool = make(1)
    first = pool.submit(nap, 1.5)
    wait_until_running(first)
    assert not first.cancel() and not first.cancelled()
    marker = tmp_path / "second-ran"
    second = pool.submit(touch, str(marker))
    assert not second.running()
    assert second.cancel() and second.cancelled()
    assert first.result(timeout=60) == 1.5
    pool.shutdown(wait=True)
    assert not marker.exists(), "a cancelled call ran"


def test_a_done_callback_may_wait_for_another_future(make):
    """Callbacks run on the executor's own threads: one that waits does not stop the others."""
    with make(2) as pool:
        slow = pool.submit(nap, 1.0)
        seen: list[float] = []
        called = threading.Event()

        def callback(_: Future) -> None:
            seen.append(slow.result(timeout=60))
            called.set()

        pool.submit(nap, 0.1).add_done_callback(callback)
        assert called.wait(90) and seen == [1.0]


def test_map_is_ordered_and_takes_several_iterables(make):
    with make() as pool:
        assert list(pool.map(square, range(10))) == [i * i for i in range(10)]
        assert list(pool.map(add, [1, 2, 3], [10, 20, 30], timeout=60)) == [11, 22, 33]
        assert list(pool.map(square, [], chunksize=4)) == []


def test_map_timeout_raises(make):
    pool = make()
    results = pool.map(nap, [30, 30], timeout=0.5)
    with pytest.raises(TimeoutError):
        list(results)
    pool.shutdown(wait=True, cancel_futures=True)


def test_exception_reaches_result_as_its_own_type(make):
    with make() as pool:
        future = pool.submit(fail, "bad input")
        with pytest.raises(Boom, match="bad input"):
            future.result(timeout=60)
        assert type(future.exception()) is Boom


def test_shutdown_is_idempotent_and_submit_after_it_raises(make):
    pool = make()
    assert pool.submit(square, 2).result(timeout=60) == 4
    pool.shutdown()
    pool.shutdown()
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(RuntimeError):
        pool.submit(square, 3)


def test_shutdown_cancel_futures_cancels_only_calls_not_started(make):
    pool = make(1)
    running = pool.submit(nap, 2)
    wait_until_running(running)
    queued = [pool.submit(nap, 30) for _ in range(2)]
    pool.shutdown(wait=True, cancel_futures=True)
    assert [f.cancelled() for f in queued] == [True, True]
    assert not running.cancelled() and running.result(timeout=0) == 2


def test_max_workers_bounds_calls_in_flight(make, request):
    name = f"gauge-{request.node.callspec.id}"
    gauge = Gauge.options(name=name).remote()
    try:
        with make(2) as pool:
            list(pool.map(gauged, [name] * 6, [0.3] * 6))
        assert 1 <= ray.get(gauge.peak.remote()) <= 2
    finally:
        ray.kill(gauge)


@ray.remote(num_returns=2)
def two_results() -> tuple[int, int]:
    return 1, 2


def test_a_call_ray_refuses_fails_its_future_and_frees_its_slot(ray_cluster):
    with PlacementExecutor(RoundRobin(), max_workers=1, num_cpus=0) as pool:
        refused = pool.submit(square, threading.Lock())  # Ray cannot pickle the argument
        with pytest.raises(TypeError):
            refused.result(timeout=60)
        assert pool.submit(square, 6).result(timeout=60) == 36  # the slot came back


def test_bad_arguments(ray_cluster):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        PlacementExecutor(RoundRobin(), max_workers=0)
    with pytest.raises(TypeError, match="placement policy"):
        PlacementExecutor("round robin")  # type: ignore[arg-type]
    with PlacementExecutor(RoundRobin()) as pool:
        with pytest.raises(TypeError, match="not the result of calling it"):
            pool.submit(42)
        with pytest.raises(TypeError, match="not a Ray actor class"):
            pool.submit(Gauge)
        with pytest.raises(TypeError, match="num_returns=2"):
            pool.submit(two_results)


def child(x: int) -> tuple[str, int]:
    return ray.get_runtime_context().get_node_id(), x * x


def parent(chunk: list[int]) -> tuple[str, list[tuple[str, int]]]:
    # Children need 1 CPU each while the parent holds all 2 of its node's: this only finishes
    # because waiting on a RayFuture inside a task lends the parent's CPUs to its children.
    with LocalExecutor(num_cpus=1) as pool:
        results = list(pool.map(child, chunk))
    return ray.get_runtime_context().get_node_id(), results


def test_nested_global_then_local_parallelism(ray_cluster):
    from .conftest import SESSION_NODES

    chunks = [list(range(i * 10, i * 10 + 10)) for i in range(SESSION_NODES)]
    with PlacementExecutor(RoundRobin(), num_cpus=2) as outer:
        results = list(outer.map(parent, chunks, timeout=300))
    assert len({node for node, _ in results}) == SESSION_NODES  # one parent per node
    for (parent_node, children), chunk in zip(results, chunks, strict=True):
        assert {node for node, _ in children} == {parent_node}
        assert sum(value for _, value in children) == sum(x * x for x in chunk)
