"""The executor's late binding and cost order on the real 4-node session cluster (2 CPUs a node):
where and in which order calls ran is read inside them."""
from __future__ import annotations

import asyncio
import math
from collections import Counter
from decimal import Decimal
from fractions import Fraction

import pytest
import ray

from placement import LeastLoaded, PlacementExecutor, RoundRobin, current_snapshot
from placement.executor import check_cost

from .conftest import SESSION_NODES

pytestmark = pytest.mark.cluster


@ray.remote(num_cpus=0)
class Order:
    """Hands out 0, 1, 2, ...: the order in which calls began, told inside each call."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next - 1


@ray.remote(num_cpus=0)
class Gates:
    """One gate per node id: the calls on a node wait until its gate opens."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.waiting = 0

    def _gate(self, node_id: str) -> asyncio.Event:
        return self.gates.setdefault(node_id, asyncio.Event())

    async def wait(self, node_id: str) -> None:
        self.waiting += 1
        await self._gate(node_id).wait()

    def gate_names(self) -> list[str]:
        return list(self.gates)

    def open(self, node_id: str) -> None:
        self._gate(node_id).set()

    def open_all(self, node_ids: list[str]) -> None:
        for node_id in node_ids:
            self._gate(node_id).set()

    async def count_waiting(self, at_least: int, timeout: float) -> int:
        """The calls that reached their gate, once at least ``at_least`` did (or ``timeout``
        seconds passed: the caller's assertion then says how many)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.waiting < at_least and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return self.waiting


def order_taken(order, cost: float) -> tuple[float, int]:
    return cost, ray.get(order.take.remote(), timeout=60)


def gated(gates) -> str:
    here = ray.get_runtime_context().get_node_id()
    ray.get(gates.wait.remote(here), timeout=120)
    return here


def test_map_hands_the_costliest_calls_out_first_and_yields_in_input_order(ray_cluster):
    """One call at a time (max_workers=1): the order the calls began in, told inside each, is
    their cost order, largest first; equal costs keep their input order; results come back in
    input order."""
    order = Order.remote()
    costs = [3, 9, 1, 9, 5, 0, 7]
    with PlacementExecutor(RoundRobin(), max_workers=1) as pool:
        # The first call may be handed over before the others are queued only if map queued
        # them one by one: it queues all of them at once.
        results = list(pool.map(order_taken, [order] * len(costs), costs, cost=lambda _, c: c))
    assert [cost for cost, _ in results] == costs  # input order
    began = [cost for cost, _ in sorted(results, key=lambda r: r[1])]
    assert began == sorted(costs, reverse=True)
    first_nine = [i for i, (cost, _) in enumerate(results) if cost == 9]
    assert results[first_nine[0]][1] < results[first_nine[1]][1]  # a tie keeps input order
    ray.kill(order)


def test_submit_with_cost_orders_queued_calls_and_plain_submit_costs_zero(ray_cluster):
    """A gated call holds the one slot while three more are queued one by one: they begin in
    cost order (told inside each), the plain submit last, as cost 0."""
    order, gates = Order.remote(), Gates.remote()
    with PlacementExecutor(RoundRobin(), max_workers=1) as pool:
        blocker = pool.submit(gated, gates)
        assert ray.get(gates.count_waiting.remote(1, 60), timeout=90) == 1
        plain = pool.submit(order_taken, order, 0)
        costly = pool.submit_with_cost(50, order_taken, order, 50)
        middling = pool.submit_with_cost(5, order_taken, order, 5)
        ray.get(gates.open_all.remote(ray.get(gates.gate_names.remote())), timeout=30)
        blocker.result(timeout=60)
        took = {f.result(timeout=60)[0]: f.result()[1] for f in (plain, costly, middling)}
    assert took[50] < took[5] < took[0], took
    ray.kill(order)
    ray.kill(gates)



def test_calls_wait_in_the_executor_and_go_where_a_slot_frees(ray_cluster):
    """Late binding: 8 gated calls fill the 8 slots of the 4 nodes; 8 more wait in the executor
    (its default max_workers is the slots), not in a node's queue. When one node's gate opens,
    its two calls end, and every one of the 8 waiting calls runs on that node (read inside):
    the only node with a free slot each time a call is handed over. Handed to Ray early, as
    before, they were spread over every node and 6 of them waited behind closed gates."""
    snapshot = current_snapshot(refresh=True)
    nodes = [n.node_id for n in snapshot.live]
    assert len(nodes) == SESSION_NODES
    gates = Gates.remote()
    with PlacementExecutor(LeastLoaded()) as pool:
        assert pool.max_workers == 2 * SESSION_NODES
        first = [pool.submit(gated, gates) for _ in range(2 * SESSION_NODES)]
        reached = ray.get(gates.count_waiting.remote(len(first), 60), timeout=90)
        assert reached == len(first), f"only {reached} of {len(first)} calls began"
        later = [pool.submit(gated, gates) for _ in range(2 * SESSION_NODES)]
        opened = nodes[1]
        ray.get(gates.open.remote(opened), timeout=30)
        ran = [f.result(timeout=120) for f in later]
        ray.get(gates.open_all.remote(nodes), timeout=30)
        began = Counter(f.result(timeout=120) for f in first)
    assert began == {node: 2 for node in nodes}  # the first 8: two per node
    assert ran == [opened] * len(later), Counter(ran)
    ray.kill(gates)


def test_default_max_workers_counts_the_slots_of_the_calls(ray_cluster):
    cpus = sum(int(n.cpus) for n in current_snapshot(refresh=True).live)
    with PlacementExecutor(RoundRobin()) as one:
        assert one.max_workers == cpus
    with PlacementExecutor(RoundRobin(), num_cpus=2) as two:
        assert two.max_workers == cpus // 2
    with PlacementExecutor(RoundRobin(), num_cpus=0) as none:
        assert none.max_workers == 2 * cpus  # calls that take no CPU: twice the CPUs


def test_costs_are_any_real_number_at_least_zero():
    """Any numbers.Real (numpy's register as one), Decimal; integers past a float's range are
    the costliest; the message for a huge negative one is still built."""
    good = [(3, 3.0), (Fraction(5, 2), 2.5), (Decimal("2.5"), 2.5), (10**400, math.inf),
            (math.inf, math.inf), (-0.0, 0.0), (Decimal("-0"), 0.0)]
    for cost, value in good:
        assert check_cost(cost) == value and math.copysign(1, check_cost(cost)) == 1
    for bad in (math.nan, -1, Decimal("-0.1"), Decimal("NaN"), Decimal("sNaN"), -10**5000,
                Decimal("-1E-400"), Fraction(-1, 10**400), Fraction(-10**5000, 1)):
        with pytest.raises(ValueError, match="a cost must be a number >= 0"):
            check_cost(bad)
    for bad in (True, "1", [1], None, 1j):
        with pytest.raises(TypeError, match="a cost must be a number"):
            check_cost(bad)


def test_bad_costs_are_refused_before_anything_is_queued(ray_cluster):
    with PlacementExecutor(RoundRobin()) as pool:
        for bad in (-1, float("nan"), -10**400, Decimal("sNaN"), "5", None, True):
            with pytest.raises((TypeError, ValueError), match="cost"):
                pool.submit_with_cost(bad, abs, 1)
            with pytest.raises((TypeError, ValueError), match="cost"):
                list(pool.map(abs, [1, 2], cost=lambda x, bad=bad: bad))
        with pytest.raises(TypeError, match="cost must be a function"):
            pool.map(abs, [1], cost=3)
