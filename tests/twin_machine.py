"""The twin run, as a stateful hypothesis machine over the public pure API (no Ray).

Two copies of one policy see the same cluster: snapshots that churn (nodes join, die, change
zone or size, free resources move; refreshed by difference or read anew; followed or not),
decisions on mixed demands (label demands among them), groups, callers, argument data, and
releases. One of them, the real one, also sees proposals that are refused (Ray refused the
submission) at any point: rolled back at once, or only after the cluster changed under them.
After every step the real one decides exactly as its twin that never saw them: the same node,
the same reason, the same fallback, or the same refusal.

tests/test_twin.py runs the machine in the unit layer (few examples) and the slow layer (at
least 500 per configuration family).
"""
from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from placement.errors import PlacementError
from placement.policies import (
    Affinity,
    AntiAffinity,
    Demand,
    LeastLoaded,
    Local,
    Locality,
    Packing,
    Policy,
    Request,
    RoundRobin,
)
from placement.snapshot import ClusterSnapshot

from .test_policy_churn import Node

# The demands decisions ask for: CPU, CPU with an accelerator few nodes have, a large CPU ask,
# nothing, a label demand (zones z0 or z1), and memory asks that make ever new demands.
DEMANDS = (Demand({"CPU": 1}), Demand({"CPU": 1, "accel": 1}), Demand({"CPU": 6}), Demand(),
           Demand({"CPU": 1}, labels={"zone": "in(z0,z1)"}), Demand({"CPU": 1, "memory": 1e6}),
           Demand({"CPU": 2, "memory": 2e6}))

# Every policy and option the machine drives, by family (a family is one hypothesis run).
FAMILIES: dict[str, list] = {
    "round_robin": [
        lambda: RoundRobin(), lambda: RoundRobin(seed=3), lambda: RoundRobin(weights="capacity"),
        lambda: RoundRobin(weights="label", seed=1), lambda: RoundRobin(backend="node_id"),
        lambda: RoundRobin(weights={"node0": 2.5, "node1": 1, "node3": 0.25}),
        lambda: RoundRobin(where={"zone": "!z3"}), lambda: RoundRobin(soft=True),
    ],
    "least_loaded": [
        lambda: LeastLoaded(), lambda: LeastLoaded(weights="equal"),
        lambda: LeastLoaded(choices=2, seed=5), lambda: LeastLoaded(choices=2, seed=11,
                                                                    weights="equal"),
        lambda: LeastLoaded(weights={"node0": 0, "node2": 3}),
    ],
    "spread": [
        lambda: AntiAffinity(), lambda: AntiAffinity(max_per_node=2),
        lambda: AntiAffinity(strict=False), lambda: AntiAffinity(max_per_node=2, strict=False),
        lambda: AntiAffinity(topology="zone"), lambda: AntiAffinity(topology="zone", strict=False),
        lambda: AntiAffinity(max_skew=1), lambda: AntiAffinity(max_skew=1, strict=False),
        lambda: AntiAffinity(topology="zone", max_skew=1, strict=False),
        lambda: AntiAffinity(topology="zone", max_skew=2, max_per_node=2),
        lambda: AntiAffinity(topology="zone", max_skew=1, min_domains=3),
        lambda: AntiAffinity(max_skew=2, min_domains=4),
        lambda: AntiAffinity(shared="web", max_per_node=2),
    ],
    "packing": [
        lambda: Packing(), lambda: Packing(strict=False), lambda: Packing(groups_per_node=2),
        lambda: Packing(topology="zone"), lambda: Packing(topology="zone", strict=False),
    ],
    "affinity": [
        lambda: Affinity(), lambda: Affinity(soft=True), lambda: Affinity("node1", soft=True),
        lambda: Affinity("node2"), lambda: Local(), lambda: Locality(),
        lambda: Locality(soft=False),
    ],
    "fallback": [
        lambda: AntiAffinity() | RoundRobin(),
        lambda: AntiAffinity(topology="zone") | LeastLoaded(),
        lambda: Locality() | RoundRobin(seed=2), lambda: Affinity("node2") | AntiAffinity(),
        lambda: Packing() | Packing(strict=False), lambda: AntiAffinity(max_skew=1) | Affinity(),
        lambda: LeastLoaded(choices=2, seed=1) | RoundRobin(weights="capacity"),
    ],
    "all of": [
        lambda: AntiAffinity(topology="zone", max_skew=1) & AntiAffinity(max_per_node=2),
        lambda: RoundRobin(seed=3) & AntiAffinity(max_per_node=2),
        lambda: LeastLoaded(choices=2, seed=4) & AntiAffinity(max_per_node=3, strict=False),
        lambda: (AntiAffinity() & LeastLoaded()) | RoundRobin(),
        lambda: Packing() & AntiAffinity(topology="zone", max_skew=2, min_domains=2),
        lambda: (Locality() | RoundRobin(seed=5)) & AntiAffinity(max_per_node=2),
        lambda: AntiAffinity(max_skew=1) & RoundRobin(weights="capacity", seed=6),
    ],
}


def outcome(policy: Policy, snapshot: ClusterSnapshot, request: Request) -> tuple:
    """What a policy decided, as comparable values: the node, reason and fallback, or the rule
    of its refusal; and the decision itself (to commit or release)."""
    try:
        decision = policy.propose(snapshot, request)
    except PlacementError as refusal:
        return ("refused", refusal.rule), None
    return (decision.node.node_id, decision.reason, decision.fallback), decision


class TwinMachine(RuleBasedStateMachine):
    """Set ``family`` on a subclass: the policies it draws from."""

    family = "round_robin"

    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[Node] = []
        self.snapshot: ClusterSnapshot | None = None
        self.real: Policy | None = None
        self.twin: Policy | None = None
        self.committed: list[tuple] = []  # (real decision, twin decision)
        self.open: list = []  # the real one's proposals not yet rolled back

    @initialize(data=st.data(), count=st.integers(1, 7), incremental=st.booleans(),
                follow=st.booleans())
    def start(self, data: st.DataObject, count: int, incremental: bool, follow: bool) -> None:
        make = data.draw(st.sampled_from(FAMILIES[self.family]))
        for i in range(count):
            self.nodes.append(Node(i, data.draw(st.integers(0, 8)), data.draw(st.booleans()),
                                   data.draw(st.integers(0, 3)),
                                   labelled=i == 0 or data.draw(st.booleans())))
        proto = make()
        # Clones: each its own empty ledger (and round robin its own copy of the process's
        # positions, so the two never meet there).
        self.real, self.twin = proto.clone(), proto.clone()
        self.incremental, self.follow = incremental, follow
        self._refresh(0.0)

    def _refresh(self, busy: float) -> None:
        previous = self.snapshot if self.incremental else None
        self.snapshot = ClusterSnapshot.from_dicts([n.as_dict(busy) for n in self.nodes],
                                                   previous=previous)
        if self.follow:
            self.real.follow(self.snapshot)
            self.twin.follow(self.snapshot)

    def _request(self, data: st.DataObject) -> Request:
        demand = data.draw(st.sampled_from(DEMANDS))
        placed = [d.group for d, _ in self.committed]
        # Half the time a group already placed: where joins, moves and strays happen.
        group = (data.draw(st.sampled_from(placed)) if placed and data.draw(st.booleans())
                 else data.draw(st.integers(0, 4)))
        live = [n for n in self.nodes if n.alive]
        caller = f"{data.draw(st.sampled_from(live)).ident:056x}"
        holders = data.draw(st.lists(st.sampled_from(self.nodes), max_size=3,
                                     unique_by=lambda n: n.ident))
        pairs = {f"{n.ident:056x}": data.draw(st.integers(0, 3)) * 1_000_000 for n in holders}
        data_pairs = tuple(sorted(pairs.items(), key=lambda p: (-p[1], p[0])))
        return Request(demand, group, caller, data_pairs)

    # -- what both see ----------------------------------------------------------------------------

    @rule(data=st.data())
    @precondition(lambda self: self.real is not None and not self.open)
    def decide(self, data: st.DataObject) -> None:
        self._both_decide(self._request(data))

    def _both_decide(self, request: Request) -> None:
        seen, decision = outcome(self.real, self.snapshot, request)
        expected, twin_decision = outcome(self.twin, self.snapshot, request)
        assert seen == expected, (request, seen, expected)
        if decision is not None:
            self.real.commit(decision)
            self.twin.commit(twin_decision)
            self.committed.append((decision, twin_decision))

    @rule(pick=st.integers(0, 10**6))
    @precondition(lambda self: self.committed and not self.open)
    def release(self, pick: int) -> None:
        real, twin = self.committed.pop(pick % len(self.committed))
        self.real.release(real)
        self.twin.release(twin)

    @rule(kind=st.sampled_from(["kill", "join", "rezone", "resize", "busy", "relabel"]),
          pick=st.integers(0, 10**6), value=st.integers(0, 8), busy=st.floats(0, 1))
    @precondition(lambda self: self.real is not None)
    def churn(self, kind: str, pick: int, value: int, busy: float) -> None:
        alive = [n for n in self.nodes if n.alive]
        node = self.nodes[pick % len(self.nodes)]
        if kind == "kill" and len(alive) > 1:
            alive[pick % len(alive)].alive = False
        elif kind == "join" and len(self.nodes) < 12:
            self.nodes.append(Node(len(self.nodes), value, bool(pick % 2), pick % 4,
                                   labelled=bool(pick % 3)))
        elif kind == "rezone":
            node.zone = value % 4
        elif kind == "resize":
            node.cpus = value
        elif kind == "relabel":
            node.labelled = not node.labelled or node.ident == 0
        self._refresh(busy if kind == "busy" else 0.0)

    @rule(pick=st.integers(0, 10**6), incremental=st.booleans())
    @precondition(lambda self: self.committed)
    def kill_a_placed_node(self, pick: int, incremental: bool) -> None:
        """The node of a committed placement dies: bindings move, groups move, spreads refill."""
        node_id = self.committed[pick % len(self.committed)][0].node.node_id
        alive = [n for n in self.nodes if n.alive]
        for node in alive:
            if f"{node.ident:056x}" == node_id and len(alive) > 1:
                node.alive = False
        self.incremental = incremental
        self._refresh(0.0)

    # -- what only the real one sees ------------------------------------------------------------

    @rule(data=st.data(), at_once=st.booleans())
    @precondition(lambda self: self.real is not None)
    def refused(self, data: st.DataObject, at_once: bool) -> None:
        """A proposal Ray refused: rolled back now, or after later steps (churn between)."""
        request = self._request(data)
        _, decision = outcome(self.real, self.snapshot, request)
        if decision is None:
            return
        if at_once:
            self.real.rollback(decision)
            self.real.rollback(decision)  # idempotent
            if not self.open:  # the same request again, at once: the sharpest comparison
                self._both_decide(request)
        else:
            self.open.append(decision)

    @rule(data=st.data())
    @precondition(lambda self: self.open)
    def roll_back(self, data: st.DataObject) -> None:
        """In any order: several threads' submissions fail in the order they fail."""
        for decision in data.draw(st.permutations(self.open)):
            self.real.rollback(decision)
        self.open.clear()
