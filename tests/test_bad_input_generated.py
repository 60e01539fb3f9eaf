"""Generated bad input over every public constructor and method of the pure API (no Ray): each
case is refused with TypeError, ValueError or PlacementError, and never accepted silently nor
crashing inside (OverflowError, AttributeError, KeyError...).

The cases are the product of each parameter with the values that are wrong for it: None where
a value is needed, strings, lists and dicts where numbers go, NaN, infinities, integers too large
for a float, negatives, zero where it means nothing, bools where numbers go, malformed label
keys and selectors.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from placement.errors import PlacementError
from placement.policies import (
    Affinity,
    AntiAffinity,
    Demand,
    Fallback,
    LeastLoaded,
    Local,
    Locality,
    Packing,
    Request,
    RoundRobin,
    make_request,
)
from placement.snapshot import ClusterSnapshot

SNAP = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0", "resources": {"CPU": 4}},
                                   {"id": "b", "label": "node1", "resources": {"CPU": 4}}])
HUGE = 10**400
NAN, INF = math.nan, math.inf
THING = object()
BAD_LABEL_KEYS = ["zone name!", "", "a/b/c", "x" * 64, "-zone", "zone-"]

# A value wrong wherever a number goes.
NOT_A_NUMBER = [None, "1", [1], {"a": 1}, NAN, INF, -INF, HUGE, -HUGE, True, THING]
# Wrong wherever an optional duration goes (None is fine there).
BAD_SECONDS = [v for v in NOT_A_NUMBER if v is not None] + [0, -1, 86_401]
# Wrong wherever an optional whole number >= 1 goes.
BAD_WHOLE = ["1", 1.5, 0, -1, True, NAN, INF, [1], THING]
BAD_FLAG = ["yes", 1, None, [], 0.0]
BAD_SOFT = ["yes", 1, None, [], "maybe"]
BAD_WHERE = [{}, [], "zone=z1", {"zone": 1}, {"zone": "in(a"}, {1: "a"},
             *({key: "z1"} for key in BAD_LABEL_KEYS)]
BAD_TOPOLOGY = ["", 1, [], *BAD_LABEL_KEYS]
BAD_WEIGHT_VALUES = [NAN, INF, HUGE, -1, "1", None, True, THING]

CASES: list[tuple[str, Callable[[], Any]]] = []


def case(name: str, call: Callable[[], Any]) -> None:
    CASES.append((name, call))


def each(name: str, values: list[Any], call: Callable[[Any], Any]) -> None:
    for value in values:
        case(f"{name}={value!r:.40}", lambda value=value: call(value))


# -- constructors ---------------------------------------------------------------------------------

CONSTRUCTORS: dict[str, Callable[..., Any]] = {
    "RoundRobin": RoundRobin, "LeastLoaded": LeastLoaded, "AntiAffinity": AntiAffinity,
    "Packing": Packing, "Affinity": Affinity, "Local": Local, "Locality": Locality,
}
for policy_name, make in CONSTRUCTORS.items():
    each(f"{policy_name}(pin_amount)", NOT_A_NUMBER + [0, -1, 1e-9],
         lambda v, make=make: make(pin_amount=v))
    each(f"{policy_name}(wait_for_nodes)", BAD_SECONDS, lambda v, make=make: make(wait_for_nodes=v))
    each(f"{policy_name}(backend)", ["x", 1, "", ["auto"]], lambda v, make=make: make(backend=v))
    each(f"{policy_name}(where)", BAD_WHERE, lambda v, make=make: make(where=v))
    if policy_name in ("AntiAffinity", "Packing"):
        each(f"{policy_name}(strict)", BAD_FLAG, lambda v, make=make: make(strict=v))
        each(f"{policy_name}(live)", BAD_FLAG, lambda v, make=make: make(live=v))
        each(f"{policy_name}(topology)", BAD_TOPOLOGY, lambda v, make=make: make(topology=v))
    else:
        each(f"{policy_name}(soft)", BAD_SOFT, lambda v, make=make: make(soft=v))

each("RoundRobin(weights)", ["cap", 3, [], {}, {1: 2}, {"": 1}, THING], lambda v: RoundRobin(v))
each("RoundRobin(weights={node0: v})", BAD_WEIGHT_VALUES + [0],
     lambda v: RoundRobin({"node0": v}))
each("RoundRobin(seed)", ["1", 1.5, True, [1], NAN], lambda v: RoundRobin(seed=v))
each("LeastLoaded(weights)", ["cap", 3, [], {}, {1: 2}, THING], lambda v: LeastLoaded(v))
each("LeastLoaded(weights={node0: v})", BAD_WEIGHT_VALUES, lambda v: LeastLoaded({"node0": v}))
each("LeastLoaded(choices)", [1, 3, "2", True, 2.0, 0, -2], lambda v: LeastLoaded(choices=v))
each("LeastLoaded(seed)", ["1", 1.5, True, [1]], lambda v: LeastLoaded(seed=v))
each("AntiAffinity(max_per_node)", BAD_WHOLE, lambda v: AntiAffinity(max_per_node=v))
each("AntiAffinity(max_skew)", BAD_WHOLE, lambda v: AntiAffinity(max_skew=v))
each("AntiAffinity(shared)", ["", "a b", 3, "x" * 64, "-web"], lambda v: AntiAffinity(shared=v))
case("AntiAffinity(shared, topology)", lambda: AntiAffinity(shared="web", topology="zone"))
each("Packing(groups_per_node)", BAD_WHOLE + [None], lambda v: Packing(groups_per_node=v))
each("Affinity(target)", ["", 3, 1.5, True, [], {}, b"x", ("node0",)], lambda v: Affinity(v))
each("Fallback(...)", [(RoundRobin(),), (RoundRobin(), 3), (RoundRobin(), None), ()],
     lambda v: Fallback(*v))
case("a policy twice in one fallback", lambda: (lambda rr: rr | rr)(RoundRobin()))
each("RoundRobin() | x", [3, None, "RoundRobin()"], lambda v: RoundRobin() | v)

# -- values ---------------------------------------------------------------------------------------

each("Demand(resources)", [{"CPU": NAN}, {"CPU": -1}, {"CPU": HUGE}, {"CPU": "1"}, {1: 1},
                           {"": 1}, "CPU", [("CPU", 1)], {"CPU": INF}, {"CPU": True}],
     lambda v: Demand(v))
each("Demand(labels)", [{"zone name!": "a"}, {"zone": "in("}, [], "zone", {"zone": 3}],
     lambda v: Demand({"CPU": 1}, labels=v))
each("make_request(group)", [[], {}, {1}], lambda v: make_request(None, v))
each("make_request(caller_node_id)", [3, [], b"a"], lambda v: make_request(None, None, v))
each("make_request(data)", ["x", {"a": -1}, {"a": 1.5}, {1: 1}, {"a": True}, [("a", 1)]],
     lambda v: make_request(None, None, None, v))
each("make_request(targets)", [{"a": "n"}, {1: 2}, [(1, "n")]],
     lambda v: make_request(None, None, None, None, v))
each("ClusterSnapshot.from_dicts", [
    "x", {"id": "a"}, [{"id": 1}], [{"id": "a", "alive": "false"}],
    [{"id": "a", "resources": {"CPU": NAN}}], [{"id": "a", "resources": {"CPU": HUGE}}],
    [{"id": "a", "resources": {"CPU": -HUGE}}], [{"id": "a", "available": {"CPU": HUGE}}],
    [{"id": "a", "labels": {"k": 1}}], [{"id": "a"}, {"id": "a"}], [{"ident": "a"}], [None],
    [{"id": "a", "label": ""}], [{"id": ""}]], lambda v: ClusterSnapshot.from_dicts(v))

# -- methods --------------------------------------------------------------------------------------

POLICIES: dict[str, Callable[[], Any]] = {
    "RoundRobin": RoundRobin, "LeastLoaded": LeastLoaded, "AntiAffinity": AntiAffinity,
    "Packing": Packing, "Affinity": Affinity, "Locality": Locality,
    "AntiAffinity|RoundRobin": lambda: AntiAffinity() | RoundRobin(),
}
NOT_A_SNAPSHOT = [None, "snap", {}, [], SNAP.nodes]
NOT_A_DECISION = [None, "d", 1, (), ("node", "why")]
for policy_name, make in POLICIES.items():
    group = {"group": "g"} if policy_name == "Packing" else {}
    each(f"{policy_name}.decide(snapshot)", NOT_A_SNAPSHOT,
         lambda v, make=make, group=group: make().decide(v, **group))
    each(f"{policy_name}.decide(demand)", ["CPU", 3, [1], {"CPU": NAN}, {"CPU": HUGE}],
         lambda v, make=make, group=group: make().decide(SNAP, v, **group))
    each(f"{policy_name}.propose(request)", [{"CPU": 1}, "x", (), Demand({"CPU": 1}),
                                             Request(demand="CPU")],
         lambda v, make=make: make().propose(SNAP, v))
    for method in ("commit", "rollback", "release"):
        each(f"{policy_name}.{method}", NOT_A_DECISION,
             lambda v, make=make, method=method: getattr(make(), method)(v))
    each(f"{policy_name}.follow", NOT_A_SNAPSHOT[:3], lambda v, make=make: make().follow(v))
    each(f"{policy_name}.plan(n)", [-1, 1.5, "3", True, None],
         lambda v, make=make: make().plan(SNAP, v))
    each(f"{policy_name}.reserve(n)", [0, -1, 1.5, "2", True],
         lambda v, make=make: make().reserve(v))
    each(f"{policy_name}.reserve(timeout)", [0, NAN, INF, -1, "30", 86_401, HUGE],
         lambda v, make=make: make().reserve(2, timeout=v))
each("Packing.decide(group)", [None, [], {"a": 1}], lambda v: Packing().decide(SNAP, group=v))
each("Packing.plan(groups)", ["ab", ["a"], 3], lambda v: Packing().plan(SNAP, 2, groups=v))
each("Local.decide(caller_node_id)", [3, []], lambda v: Local().decide(SNAP, caller_node_id=v))
each("Locality(margin)", [-0.1, 1, 1.5, NAN, INF, HUGE, "0.1", True, None],
     lambda v: Locality(margin=v))
each("Locality.decide(data)", ["x", {"a": -1}, {1: 1}],
     lambda v: Locality().decide(SNAP, data=v))
each("AntiAffinity.learn_others(counts)", ["x", 3, [("a", 1)]],
     lambda v: AntiAffinity(shared="web").learn_others("web", v))
each("Policy.add_release_listener", [None, 3, "f"],
     lambda v: RoundRobin().add_release_listener(v))


@pytest.mark.parametrize("name, call", CASES, ids=[name for name, _ in CASES])
def test_bad_input_is_refused_with_a_clear_error(name, call):
    with pytest.raises((TypeError, ValueError, PlacementError)) as raised:
        call()
    assert str(raised.value), f"{name}: an error without a message"


def test_there_are_enough_generated_cases():
    assert len(CASES) >= 150, len(CASES)


def test_decisions_and_nodes_are_hashable():
    decision = RoundRobin().decide(SNAP)
    node = SNAP.by_id[decision.node.node_id]
    assert hash(decision) == hash(tuple(decision)) and hash(decision.node) == hash(node)
    assert len({decision, decision}) == 1
