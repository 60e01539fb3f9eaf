"""One contract suite for ThreadPoolExecutor and the placement executors: they are drop-in."""
from __future__ import annotations

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


def test_shutdown_cancel_futures_cancels_what_has_not_finished(make):
    pool = make(1)
    running = pool.submit(nap, 2)
    queued = (
        [pool.submit(nap, 30) for _ in range(2)] if isinstance(pool, ThreadPoolExecutor) else []
    )
    pool.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    assert running.done()


def test_max_workers_bounds_calls_in_flight(make, request):
    name = f"gauge-{request.node.callspec.id}"
    gauge = Gauge.options(name=name).remote()
    try:
        with make(2) as pool:
            list(pool.map(gauged, [name] * 6, [0.3] * 6))
        assert 1 <= ray.get(gauge.peak.remote()) <= 2
    finally:
        ray.kill(gauge)


def test_cancel_of_a_running_placed_task_cancels_it_in_ray(ray_cluster):
    pool = PlacementExecutor(RoundRobin(), max_workers=2, num_cpus=0)
    future = pool.submit(nap, 60)
    assert future.cancel() and future.cancelled()
    with pytest.raises((ray.exceptions.TaskCancelledError, ray.exceptions.RayTaskError)):
        ray.get(future.object_ref, timeout=60)
    # The slot came back: two more calls run although max_workers is 2.
    more = [pool.submit(square, 5), pool.submit(square, 6)]
    assert [f.result(timeout=60) for f in more] == [25, 36]
    pool.shutdown()


def test_bad_arguments(ray_cluster):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        PlacementExecutor(RoundRobin(), max_workers=0)
    with pytest.raises(TypeError, match="placement policy"):
        PlacementExecutor("round robin")  # type: ignore[arg-type]
    with PlacementExecutor(RoundRobin()) as pool:
        with pytest.raises(TypeError, match="not the result of calling it"):
            pool.submit(42)


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
