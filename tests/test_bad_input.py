"""Bad input: every case raises an error that names the fix, and nothing is submitted to Ray.

"Nothing submitted" is checked where it is decided: PlacedRemote._bound_for is the only path to
Ray's submit, and no case may reach it.
"""
from __future__ import annotations

import math

import pytest

from placement import (
    Affinity,
    AntiAffinity,
    ClusterSnapshot,
    Fallback,
    Local,
    LocalClusterError,
    Packing,
    PlacementError,
    PlacementExecutor,
    RoundRobin,
)
from placement.cli import main as cli_main
from placement.local_cluster import ClusterSpec

TWO_NODES = ClusterSnapshot.from_dicts([
    {"id": "a" * 56, "label": "node0", "resources": {"CPU": 2}},
    {"id": "b" * 56, "label": "node1", "resources": {"CPU": 2}},
    {"id": "d" * 56, "label": "node2", "alive": False},
])
NO_LABELS = ClusterSnapshot.from_dicts([{"id": "c" * 56, "resources": {"CPU": 4}}])


def exhaust(policy, n, **kw):
    for _ in range(n):
        policy.decide(TWO_NODES, **kw)
    return policy.decide(TWO_NODES, **kw)


def pack_groups(policy, groups):
    return [policy.decide(TWO_NODES, group=g) for g in range(groups)]


# (name, callable, exception type, text the message must contain: the fix or the rule)
CASES = [
    # local cluster script arguments
    ("N zero", lambda: ClusterSpec(nodes=0).validate(),
     LocalClusterError, "scripts/start_cluster.sh 4"),
    ("N negative", lambda: ClusterSpec(nodes=-3).validate(),
     LocalClusterError, "positive whole number"),
    ("N not a number", lambda: ClusterSpec(nodes="four").validate(),
     LocalClusterError, "positive whole number"),
    ("N absurdly large", lambda: ClusterSpec(nodes=10_000).validate(),
     LocalClusterError, "use fewer nodes"),
    ("N a float", lambda: ClusterSpec(nodes=2.5).validate(),
     LocalClusterError, "positive whole number"),
    ("port out of range", lambda: ClusterSpec(nodes=1, port=80).validate(),
     LocalClusterError, "between 1024"),
    ("address not loopback", lambda: ClusterSpec(nodes=1, first_address="192.168.1.5").validate(),
     LocalClusterError, "use --first-address 127.0.0.10"),
    ("address not an IP", lambda: ClusterSpec(nodes=1, first_address="localhost").validate(),
     LocalClusterError, "use e.g. 127.0.0.10"),
    ("state dir too long", lambda: ClusterSpec(nodes=1, state_dir="/tmp/" + "d" * 80).validate(),
     LocalClusterError, "--state-dir of at most"),
    ("CPU as extra resource", lambda: ClusterSpec(nodes=1, extra_resources={"CPU": 2}).validate(),
     LocalClusterError, "use --cpus"),
    ("fractional extra resource",
     lambda: ClusterSpec(nodes=1, extra_resources={"accel": 0.5}).validate(),
     LocalClusterError, "whole number"),
    # cluster contents
    ("no labelled nodes", lambda: RoundRobin().decide(NO_LABELS),
     PlacementError, "start_cluster.sh 4"),
    ("no live nodes", lambda: RoundRobin().decide(ClusterSnapshot.from_dicts([])), PlacementError,
     "start a cluster"),
    ("unknown label", lambda: Affinity("node7").decide(TWO_NODES),
     PlacementError, "use one of node0, node1"),
    ("unknown node id", lambda: Affinity("e" * 56, backend="node_id").decide(TWO_NODES),
     PlacementError, "placement status"),
    ("dead node id", lambda: Affinity("d" * 56).decide(TWO_NODES), PlacementError, "soft=True"),
    ("dead node label", lambda: Affinity("node2").decide(TWO_NODES), PlacementError, "soft=True"),
    ("resources beyond every node", lambda: RoundRobin().decide(TWO_NODES, {"CPU": 64}),
     PlacementError, "ask for less"),
    ("strict anti-affinity beyond nodes", lambda: exhaust(AntiAffinity(), 2), PlacementError,
     "AntiAffinity(strict=False)"),
    ("strict packing beyond nodes", lambda: pack_groups(Packing(), 3),
     PlacementError, "Packing(strict=False)"),
    ("weights name no live node", lambda: RoundRobin(weights={"node9": 1}).decide(TWO_NODES),
     PlacementError, "fix the names in weights="),
    ("weights key with a typo",
     lambda: RoundRobin(weights={"node0": 1, "Node1": 1}).decide(TWO_NODES),
     PlacementError, "fix the names in weights="),
    ("Local without a caller", lambda: Local().decide(TWO_NODES),
     PlacementError, "call from a Ray driver"),
    # policy construction
    ("negative weight", lambda: RoundRobin(weights={"node0": -1}), ValueError, "positive finite"),
    ("zero weight", lambda: RoundRobin(weights={"node0": 0}), ValueError, "leave a node out"),
    ("NaN weight", lambda: RoundRobin(weights={"node0": math.nan}), ValueError, "positive finite"),
    ("unknown weights mode", lambda: RoundRobin(weights="cpu"),
     ValueError, "use 'capacity', 'label'"),
    ("empty weights", lambda: RoundRobin(weights={}), TypeError, "non-empty mapping"),
    ("unknown backend", lambda: RoundRobin(backend="gpu"), ValueError, "'resource'"),
    ("pin below resolution", lambda: RoundRobin(pin_amount=1e-5),
     ValueError, "pin_amount >= 0.0001"),
    ("pin NaN", lambda: Affinity(pin_amount=math.nan), ValueError, "finite number"),
    ("max_per_node zero", lambda: AntiAffinity(max_per_node=0), ValueError, ">= 1"),
    ("groups_per_node float", lambda: Packing(groups_per_node=1.5), ValueError, "whole number"),
    ("soft not a bool", lambda: RoundRobin(soft="yes"), TypeError, "True or False"),
    ("Affinity target an int", lambda: Affinity(3), TypeError, "label such as 'node1'"),
    ("Affinity target empty", lambda: Affinity(""), ValueError, "label such as 'node1'"),
    ("topology empty", lambda: AntiAffinity(topology=""), ValueError, "such as 'zone'"),
    ("seed not an int", lambda: RoundRobin(seed="x"), TypeError, "seed must be an int"),
    ("fallback of a non-policy", lambda: Fallback(RoundRobin(), "x"), TypeError, "takes policies"),
    ("fallback of one policy", lambda: Fallback(RoundRobin()), ValueError, "first | second"),
    ("plan of negative n", lambda: RoundRobin().plan(TWO_NODES, -1), ValueError, "whole number"),
]


@pytest.mark.parametrize("name, make, error, fix", CASES, ids=[c[0] for c in CASES])
def test_bad_input_names_the_fix(name, make, error, fix):
    with pytest.raises(error) as raised:
        make()
    assert fix in str(raised.value), f"{name}: {raised.value}"


def test_there_are_at_least_thirty_cases():
    assert len(CASES) + len(PLACE_TIME_CASES) >= 30


@pytest.fixture
def submissions(monkeypatch):
    """Every submission that reaches Ray, counted at its only gate."""
    from placement import handle

    seen = []
    real = handle.PlacedRemote._bound_for

    def spy(self, decision):
        seen.append(decision)
        return real(self, decision)

    monkeypatch.setattr(handle.PlacedRemote, "_bound_for", spy)
    return seen


def _work() -> int:
    return 1


PLACE_TIME_CASES = [
    ("not callable", lambda: RoundRobin().place(42).remote(),
     TypeError, "not the result of calling it"),
    ("placement_group with a policy",
     lambda: RoundRobin().place(_work, placement_group=object()).remote(),
     PlacementError, "drop placement_group="),
    ("scheduling_strategy with a policy",
     lambda: RoundRobin().place(_work, scheduling_strategy="SPREAD").remote(),
     PlacementError, "drop scheduling_strategy="),
    ("CPU inside resources", lambda: RoundRobin().place(_work, resources={"CPU": 1}).remote(),
     ValueError, "num_cpus="),
    ("amount below 1e-4", lambda: RoundRobin().place(_work, resources={"disk": 5e-5}).remote(),
     ValueError, "at least 0.0001"),
    ("num_cpus NaN", lambda: RoundRobin().place(_work, num_cpus=math.nan).remote(),
     ValueError, "finite"),
    ("too many CPUs", lambda: RoundRobin().place(_work, num_cpus=10_000).remote(),
     PlacementError, "ask for less"),
    ("unknown label at place", lambda: Affinity("node99").place(_work).remote(),
     PlacementError, "placement status"),
    ("packing without a group", lambda: Packing().place(_work).remote(), ValueError, "group="),
    ("executor max_workers zero", lambda: PlacementExecutor(RoundRobin(), max_workers=0),
     ValueError, "greater than 0"),
    ("executor without a policy", lambda: PlacementExecutor(None), TypeError, "RoundRobin()"),
]


@pytest.mark.cluster
@pytest.mark.parametrize("name, make, error, fix", PLACE_TIME_CASES,
                         ids=[c[0] for c in PLACE_TIME_CASES])
def test_bad_placement_raises_before_anything_is_submitted(
    ray_cluster, submissions, name, make, error, fix
):
    with pytest.raises(error) as raised:
        make()
    assert fix in str(raised.value), f"{name}: {raised.value}"
    assert submissions == []


@pytest.mark.parametrize("argv, message", [
    (["cluster", "start", "0"], "N must be at least 1"),
    (["cluster", "start", "x"], "positive whole number"),
    (["cluster", "start", "2", "--resources", "{bad"], "must be JSON"),
])
def test_cli_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
