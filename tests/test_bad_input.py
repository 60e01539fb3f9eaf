"""Bad input: every case raises an error that names the fix, and nothing is submitted to Ray.

"Nothing submitted" is checked where it is decided: PlacedRemote._send_* are the only paths to
Ray's submit, and no case may reach it.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

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
    local_cluster,
)
from placement.cli import main as cli_main
from placement.errors import PIN_EXCEEDS_LABEL
from placement.local_cluster import ClusterSpec, add_node, check_timeout, stop_cluster
from placement.options import check_user_options

from .conftest import free_port, write_cluster_record

TWO_NODES = ClusterSnapshot.from_dicts([
    {"id": "a" * 56, "label": "node0", "resources": {"CPU": 2}},
    {"id": "b" * 56, "label": "node1", "resources": {"CPU": 2}},
    {"id": "d" * 56, "label": "node2", "alive": False},
])
NO_LABELS = ClusterSnapshot.from_dicts([{"id": "c" * 56, "resources": {"CPU": 4}}])
# node0 has the usual 1000 units of its label resource, node1 only 500.
UNEVEN = ClusterSnapshot.from_dicts([
    {"id": "a" * 56, "label": "node0", "resources": {"CPU": 2}},
    {"id": "b" * 56, "label": "node1", "resources": {"CPU": 2, "node1": 500}},
])


def _work() -> int:
    return 1


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
    ("node CPUs negative", lambda: ClusterSpec(nodes=2, node_cpus=(1, -1)).validate(),
     LocalClusterError, "node_cpus=(1, 2, 3, 4)"),
    ("node label key reserved",
     lambda: ClusterSpec(nodes=1, node_labels=({"ray.io/zone": "z1"},)).validate(),
     LocalClusterError, "e.g. zone=z1"),
    ("label selector not Ray's syntax",
     lambda: RoundRobin().place(lambda: None, label_selector={"zone": "=z1"}),
     ValueError, "label_selector['zone'] = '=z1' is not a Ray label selector"),
    ("label selector against where=",
     lambda: RoundRobin(where={"zone": "z1"}).place(lambda: None,
                                                    label_selector={"zone": "!z1"}),
     PlacementError, "put the condition on 'zone' in one of them"),
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
    ("no labelled nodes", lambda: RoundRobin(backend="resource").decide(NO_LABELS),
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
    ("soft not a bool", lambda: RoundRobin(soft="yes"), TypeError, "'busy' or 'gone'"),
    ("Affinity target an int", lambda: Affinity(3), TypeError, "label such as 'node1'"),
    ("Affinity target empty", lambda: Affinity(""), ValueError, "label such as 'node1'"),
    ("topology empty", lambda: AntiAffinity(topology=""), ValueError, "such as 'zone'"),
    ("Packing topology a list", lambda: Packing(topology=["zone"]), ValueError, "label key"),
    ("max_skew zero", lambda: AntiAffinity(max_skew=0), ValueError, "max_skew must be"),
    ("max_skew True", lambda: AntiAffinity(max_skew=True), ValueError, "whole number >= 1"),
    ("seed not an int", lambda: RoundRobin(seed="x"), TypeError, "seed must be an int"),
    ("fallback of a non-policy", lambda: Fallback(RoundRobin(), "x"), TypeError, "takes policies"),
    ("fallback of one policy", lambda: Fallback(RoundRobin()), ValueError, "first | second"),
    ("plan of negative n", lambda: RoundRobin().plan(TWO_NODES, -1), ValueError, "whole number"),
    # local cluster values given from Python
    ("cpus per node negative", lambda: ClusterSpec(nodes=1, cpus_per_node=-3).validate(),
     LocalClusterError, "(--cpus) must be >= 0"),
    ("cpus per node fractional", lambda: ClusterSpec(nodes=1, cpus_per_node=1.5).validate(),
     LocalClusterError, "e.g. --cpus 1"),
    ("port as a string", lambda: ClusterSpec(nodes=1, port="6390").validate(),
     LocalClusterError, "e.g. --port 6390"),
    ("label amount zero", lambda: ClusterSpec(nodes=1, label_amount=0).validate(),
     LocalClusterError, "(--label-amount) must be >= 1"),
    ("timeout NaN", lambda: check_timeout(math.nan), LocalClusterError, "at most 86400"),
    ("timeout negative to add_node",
     lambda: add_node("/tmp/pl-no-such-cluster", timeout=-5),
     LocalClusterError, "more than 0 and at most 86400"),
    ("stop on a file, not a directory",
     lambda: stop_cluster(Path(__file__)),
     LocalClusterError, "pass the --state-dir that `placement cluster start` printed"),
    # snapshots from dicts: each refusal names the node, the field and the fix
    ("alive the string 'false'",
     lambda: ClusterSnapshot.from_dicts([{"id": "a", "alive": "false"}]),
     ValueError, '"alive": false, without quotes'),
    ("alive a number", lambda: ClusterSnapshot.from_dicts([{"id": "a", "alive": 0}]),
     ValueError, 'write "alive": true or "alive": false'),
    ("is_head a string", lambda: ClusterSnapshot.from_dicts([{"id": "a", "is_head": "yes"}]),
     ValueError, 'write "is_head": true or "is_head": false'),
    ("duplicate ids",
     lambda: ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
                                         {"id": "a", "label": "node1"}]),
     ValueError, "give every node its own id"),
    ("duplicate live labels",
     lambda: ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
                                         {"id": "b", "label": "node0"}]),
     ValueError, "give each live node its own label"),
    ("negative total", lambda: ClusterSnapshot.from_dicts([{"id": "a", "resources": {"CPU": -1}}]),
     ValueError, "give a finite number >= 0"),
    ("NaN total",
     lambda: ClusterSnapshot.from_dicts([{"id": "a", "resources": {"CPU": math.nan}}]),
     ValueError, "give a finite number >= 0"),
    ("infinite total",
     lambda: ClusterSnapshot.from_dicts([{"id": "a", "resources": {"accel": math.inf}}]),
     ValueError, "give a finite number >= 0"),
    ("negative available",
     lambda: ClusterSnapshot.from_dicts([{"id": "a", "available": {"CPU": -0.5}}]),
     ValueError, "give a finite number >= 0"),
    ("infinite available",
     lambda: ClusterSnapshot.from_dicts([{"id": "a", "available": {"CPU": -math.inf}}]),
     ValueError, "give a finite number >= 0"),
    ("amount a string",
     lambda: ClusterSnapshot.from_dicts([{"id": "a", "resources": {"CPU": "2"}}]),
     ValueError, "give a number such as 2"),
    ("id a number", lambda: ClusterSnapshot.from_dicts([{"id": 3}]),
     ValueError, 'quote it, e.g. "id"'),
    ("label a number", lambda: ClusterSnapshot.from_dicts([{"id": "a", "label": 3}]),
     ValueError, 'quote it, e.g. "label"'),
    ("label empty", lambda: ClusterSnapshot.from_dicts([{"id": "a", "label": ""}]),
     ValueError, "leave 'label' out (or null)"),
    ("id missing", lambda: ClusterSnapshot.from_dicts([{"label": "node0"}]),
     ValueError, "give every node dict an 'id'"),
    ("key with a typo", lambda: ClusterSnapshot.from_dicts([{"id": "a", "lable": "node0"}]),
     ValueError, "did you mean 'label'?"),
    ("node not a dict", lambda: ClusterSnapshot.from_dicts(["node0"]),
     ValueError, "give each node as a dict"),
    ("resources a list", lambda: ClusterSnapshot.from_dicts([{"id": "a", "resources": ["CPU"]}]),
     ValueError, "give a dict of resource name to amount"),
    ("Ray labels not strings",
     lambda: ClusterSnapshot.from_dicts([{"id": "a", "labels": {"zone": 1}}]),
     ValueError, "give a dict of strings to strings"),
    # snapshots from JSON: say what was expected
    ("JSON empty", lambda: ClusterSnapshot.from_json(""),
     ValueError, "expected a snapshot as JSON text or the path of a JSON file"),
    ("JSON blank", lambda: ClusterSnapshot.from_json("  \n "),
     ValueError, "expected a snapshot as JSON text or the path of a JSON file"),
    ("JSON path missing", lambda: ClusterSnapshot.from_json("/no/such/snapshot.json"),
     ValueError, "expected a snapshot as JSON text or the path of a JSON file"),
    ("JSON path a directory", lambda: ClusterSnapshot.from_json(Path(tempfile.gettempdir())),
     ValueError, "expected a snapshot as JSON text or the path of a JSON file"),
    ("JSON malformed", lambda: ClusterSnapshot.from_json("{bad"),
     ValueError, "`placement status --json` writes it"),
    ("JSON without nodes", lambda: ClusterSnapshot.from_json('{"node": []}'),
     ValueError, "`placement status --json` writes it"),
    ("JSON taken_at not a number",
     lambda: ClusterSnapshot.from_json('{"nodes": [], "taken_at": "yesterday"}'),
     ValueError, "give seconds since the epoch"),
    ("JSON node alive as a string",
     lambda: ClusterSnapshot.from_json('[{"id": "a", "alive": "false"}]'),
     ValueError, '"alive": false, without quotes'),
    # a pin larger than a node's label resource: refused before submit, in the decide layer
    ("pin above node<i>", lambda: RoundRobin(pin_amount=2000, soft=False).decide(TWO_NODES),
     PlacementError, "use pin_amount <= 1000"),
    ("pin above node<i>, Affinity", lambda: Affinity("node0", pin_amount=1500).decide(TWO_NODES),
     PlacementError, "use pin_amount <= 1000"),
    ("pin above node<i>, Packing",
     lambda: Packing(pin_amount=2000).decide(TWO_NODES, group="p"),
     PlacementError, "use pin_amount <= 1000"),
    ("pin above node<i>, AntiAffinity", lambda: AntiAffinity(pin_amount=1000.5).decide(TWO_NODES),
     PlacementError, "backend='node_id'"),
    ("pin above node<i>, Local",
     lambda: Local(backend="resource", pin_amount=2000).decide(TWO_NODES, caller_node_id="a" * 56),
     PlacementError, "use pin_amount <= 1000"),
    ("pin above one node's node<i>", lambda: RoundRobin(pin_amount=800, soft=False).decide(UNEVEN),
     PlacementError, "use pin_amount <= 500"),
    # Ray options: unknown names with a suggestion, ill-typed values with the expected type
    ("option num_cpu", lambda: check_user_options({"num_cpu": 1}),
     TypeError, "did you mean num_cpus=?"),
    ("option max_retry", lambda: check_user_options({"max_retry": 3}),
     TypeError, "did you mean max_retries=?"),
    ("option resource", lambda: check_user_options({"resource": {"accel": 1}}),
     TypeError, "did you mean resources=?"),
    ("option runtimeenv", lambda: check_user_options({"runtimeenv": {}}),
     TypeError, "did you mean runtime_env=?"),
    ("option gpus", lambda: check_user_options({"gpus": 1}), TypeError, "did you mean num_gpus=?"),
    ("option unlike any", lambda: check_user_options({"xyzzy": 1}),
     TypeError, "use Ray's own options (num_cpus"),
    ("actor option for a task", lambda: check_user_options({"max_restarts": 1}, kind="task"),
     TypeError, "tasks retry with max_retries="),
    ("task option for an actor", lambda: check_user_options({"max_retries": 1}, kind="actor"),
     TypeError, "actors retry with max_restarts="),
    ("num_cpus a string", lambda: check_user_options({"num_cpus": "2"}),
     TypeError, "must be a number (int or float)"),
    ("num_gpus a bool", lambda: check_user_options({"num_gpus": True}),
     TypeError, "e.g. num_gpus=1"),
    ("memory a string", lambda: check_user_options({"memory": "1GB"}),
     TypeError, "e.g. memory=1"),
    ("num_cpus negative", lambda: check_user_options({"num_cpus": -1}),
     ValueError, "must be a finite number >= 0"),
    ("max_retries a float", lambda: check_user_options({"max_retries": 2.5}),
     TypeError, "e.g. max_retries=3"),
    ("max_restarts a string", lambda: check_user_options({"max_restarts": "3"}),
     TypeError, "e.g. max_restarts=3"),
    ("max_task_retries below -1", lambda: check_user_options({"max_task_retries": -5}),
     ValueError, "must be -1 (forever), 0 or more"),
    ("name a number", lambda: check_user_options({"name": 3}),
     TypeError, "e.g. name='worker-1'"),
    ("namespace bytes", lambda: check_user_options({"namespace": b"ns"}),
     TypeError, "e.g. namespace='team-a'"),
    ("lifetime misspelt", lambda: check_user_options({"lifetime": "detatched"}),
     ValueError, "use lifetime='detached', 'non_detached' or None"),
    ("lifetime a bool", lambda: check_user_options({"lifetime": True}),
     TypeError, "use lifetime='detached', 'non_detached' or None"),
    ("resources a list", lambda: check_user_options({"resources": ["accel"]}),
     TypeError, "e.g. resources={'accel': 1}"),
    ("resources amount a string", lambda: check_user_options({"resources": {"accel": "1"}}),
     TypeError, "e.g. resources={'accel': 1}"),
    ("resources name a number", lambda: check_user_options({"resources": {1: 1}}),
     TypeError, "resource names must be strings"),
    ("runtime_env a string", lambda: check_user_options({"runtime_env": "env"}),
     TypeError, "runtime_env={'env_vars'"),
    # refused by place() itself, before any .remote(); needs no cluster
    ("place with num_cpu", lambda: RoundRobin().place(_work, num_cpu=1),
     TypeError, "did you mean num_cpus=?"),
    ("place with num_cpus a string", lambda: RoundRobin().place(_work, num_cpus="2"),
     TypeError, "e.g. num_cpus=1"),
    ("place Packing without a group", lambda: Packing().place(_work),
     ValueError, "policy.place(fn, group='partition-3')"),
    ("place a fallback with Packing without a group",
     lambda: (Packing() | RoundRobin()).place(_work),
     ValueError, "policy.place(fn, group='partition-3')"),
    ("place with an unhashable group", lambda: Packing().place(_work, group=["p"]),
     TypeError, "e.g. group='partition-3'"),
]


@pytest.mark.parametrize("name, make, error, fix", CASES, ids=[c[0] for c in CASES])
def test_bad_input_names_the_fix(name, make, error, fix):
    with pytest.raises(error) as raised:
        make()
    assert fix in str(raised.value), f"{name}: {raised.value}"


@pytest.fixture
def submissions(monkeypatch):
    """Every submission that reaches Ray, counted at its only gate."""
    from placement import handle

    seen = []
    for name in ("_send_plain", "_send_gated"):
        real = getattr(handle.PlacedRemote, name)

        def spy(self, decision, args, kwargs, real=real):
            seen.append(decision)
            return real(self, decision, args, kwargs)

        monkeypatch.setattr(handle.PlacedRemote, name, spy)
    return seen


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
    # strict numbers: int() would take " 4" and "1_0", float() "nan" and "inf"
    (["cluster", "start", " 4"], "positive whole number of nodes, in digits only"),
    (["cluster", "start", "1_0"], "positive whole number of nodes, in digits only"),
    (["cluster", "start", "4.0"], "positive whole number of nodes, in digits only"),
    (["cluster", "start", "-2"], "N must be at least 1"),
    (["cluster", "start", "2", "--timeout", "-5"], "more than 0 and at most 86400"),
    (["cluster", "start", "2", "--timeout", "nan"], "more than 0 and at most 86400"),
    (["cluster", "start", "2", "--timeout", "inf"], "more than 0 and at most 86400"),
    (["cluster", "start", "2", "--timeout", "0"], "more than 0 and at most 86400"),
    (["cluster", "start", "2", "--timeout", "1_0"], "e.g. --timeout 120"),
    (["cluster", "start", "2", "--cpus", "-3"], "--cpus must be >= 0"),
    (["cluster", "start", "2", "--cpus", "1.5"], "--cpus must be a whole number >= 0"),
    (["cluster", "start", "2", "--port", " 6390"], "--port must be a whole number from 1024"),
    (["cluster", "start", "2", "--port", "80"], "--port must be from 1024 to 65535"),
    (["cluster", "start", "2", "--object-store-mb", "10"], "--object-store-mb must be >= 80"),
    (["cluster", "start", "2", "--label-amount", "0"], "--label-amount must be >= 1"),
    (["cluster", "add", "--timeout", "nan"], "more than 0 and at most 86400"),
    (["demo", "--nodes", " 4"], "positive whole number of nodes, in digits only"),
    (["demo", "--port", "1_0000"], "e.g. --port 6390"),
])
def test_cli_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


# -- placement cluster stop never deletes a user's files ---------------------------------------


def _user_files(state_dir: Path) -> None:
    """What a user may keep in a directory given as --state-dir by mistake."""
    (state_dir / "ray" / "results").mkdir(parents=True)
    (state_dir / "ray" / "results" / "run1.csv").write_text("a,b\n1,2\n")
    (state_dir / "token").write_text("my api token")
    (state_dir / "notes.txt").write_text("keep me")


def _tree(root: Path) -> dict[str, object]:
    """Every path under root with its content (None for a directory)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(root.rglob("*"))}


def _edit_record(**changes: object):
    """A setup that writes a record of ours for the directory, then changes its fields."""
    def setup(state_dir: Path) -> None:
        write_cluster_record(state_dir, created=("token", "ray"))
        path = state_dir / "cluster.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return setup


def _legacy_record(state_dir: Path) -> None:
    """A record in every field like one of this toolkit's, but without its marker."""
    _edit_record()(state_dir)
    path = state_dir / "cluster.json"
    record = json.loads(path.read_text())
    del record["written_by"]
    path.write_text(json.dumps(record))


_STOP_FIX = "pass the --state-dir that `placement cluster start` printed"

# (name, what else the directory holds, a phrase of the fix)
STOP_CASES = [
    ("foreign cluster.json",
     lambda d: (d / "cluster.json").write_text('{"cluster": "prod", "nodes": 3}'), _STOP_FIX),
    ("cluster.json not JSON", lambda d: (d / "cluster.json").write_text("hello"), _STOP_FIX),
    ("cluster.json a directory", lambda d: (d / "cluster.json").mkdir(), _STOP_FIX),
    ("record without the toolkit's marker", _legacy_record, '"written_by": "ray-placement'),
    ("record of another directory", _edit_record(state_dir="/tmp/elsewhere"), _STOP_FIX),
    ("record listing a user's file", _edit_record(created=["notes.txt"]), _STOP_FIX),
    ("record listing a path outside", _edit_record(created=["../notes.txt"]), _STOP_FIX),
    ("record with a token elsewhere", _edit_record(token_path="/tmp/elsewhere/token"), _STOP_FIX),
    ("record of an unknown format", _edit_record(format=99), _STOP_FIX),
    ("no record at all", lambda d: None, "if you stopped this cluster already"),
]


@pytest.mark.parametrize("name, setup, fix", STOP_CASES, ids=[c[0] for c in STOP_CASES])
def test_stop_refuses_a_directory_it_did_not_start_and_deletes_nothing(
    tmp_path, capsys, name, setup, fix
):
    state_dir = tmp_path / "mine"
    state_dir.mkdir()
    _user_files(state_dir)
    setup(state_dir)
    before = _tree(state_dir)
    with pytest.raises(LocalClusterError) as raised:
        stop_cluster(state_dir)
    assert fix in str(raised.value) and "nothing was stopped or deleted" in str(raised.value)
    assert _tree(state_dir) == before, f"{name}: stop changed the directory"
    assert cli_main(["cluster", "stop", "--state-dir", str(state_dir)]) == 1
    assert fix in capsys.readouterr().err
    assert _tree(state_dir) == before, f"{name}: `placement cluster stop` changed the directory"


def test_stop_deletes_only_the_files_its_start_created(tmp_path):
    # A user's token and ray/ were there before start: the record does not list them.
    state_dir = tmp_path / "mine"
    state_dir.mkdir()
    _user_files(state_dir)
    write_cluster_record(state_dir, created=())
    assert stop_cluster(state_dir) == []
    assert not (state_dir / "cluster.json").exists()
    assert {"token", "ray/results/run1.csv", "notes.txt"} <= set(_tree(state_dir))


def test_stop_deletes_its_own_token_and_ray_dir_and_stopping_again_is_a_no_op(tmp_path):
    state_dir = tmp_path / "ours"
    (state_dir / "ray" / "session_1").mkdir(parents=True)
    (state_dir / "logs").mkdir()
    (state_dir / "logs" / "start-node0.log").write_text("started")
    (state_dir / "token").write_text("secret")
    write_cluster_record(state_dir, created=("token", "ray"))
    assert stop_cluster(state_dir) == []
    assert set(_tree(state_dir)) == {"lock", "logs", "logs/start-node0.log"}
    assert stop_cluster(state_dir) == []  # what a stopped cluster leaves: nothing to do


def test_stop_keeps_its_ray_dir_with_keep_logs(tmp_path):
    state_dir = tmp_path / "ours"
    (state_dir / "ray").mkdir(parents=True)
    write_cluster_record(state_dir, created=("ray",))
    stop_cluster(state_dir, keep_logs=True)
    assert (state_dir / "ray").is_dir() and not (state_dir / "cluster.json").exists()


@pytest.fixture
def no_ray_start(monkeypatch):
    """start_cluster that fails loudly instead of starting Ray (the refusals come first)."""
    def never(*args, **kwargs):
        raise AssertionError("start_cluster got as far as starting Ray")

    for name in ("_wait_ray_start", "run_ray_start", "probe_nodes"):
        monkeypatch.setattr(local_cluster, name, never)


@pytest.mark.parametrize("name, setup, fix", [
    ("foreign cluster.json", lambda d: (d / "cluster.json").write_text('{"cluster": "prod"}'),
     "use another --state-dir"),
    ("foreign token", lambda d: (d / "token").write_text("my api token"),
     "move that file away"),
], ids=["foreign cluster.json", "foreign token"])
def test_start_refuses_to_overwrite_a_users_files(no_ray_start, name, setup, fix):
    state_dir = Path(tempfile.mkdtemp(prefix="plu-", dir="/tmp"))  # short: Ray's socket paths
    try:
        setup(state_dir)
        before = _tree(state_dir)
        with pytest.raises(LocalClusterError) as raised:
            local_cluster.start_cluster(ClusterSpec(nodes=1, state_dir=state_dir, port=free_port()))
        assert fix in str(raised.value)
        after = _tree(state_dir)
        after.pop("lock")
        assert after == before, f"{name}: start changed the user's files"
    finally:
        shutil.rmtree(state_dir)


def test_pin_refusal_names_its_rule_and_soft_or_node_id_placements_need_no_pin():
    with pytest.raises(PlacementError) as refusal:
        RoundRobin(pin_amount=2000, soft=False).decide(TWO_NODES)
    assert refusal.value.rule == PIN_EXCEEDS_LABEL and refusal.value.nodes == ("node0", "node1")
    for fits in (RoundRobin(pin_amount=1000), RoundRobin(pin_amount=2000),
                 RoundRobin(pin_amount=2000, soft=True),
                 RoundRobin(pin_amount=2000, backend="node_id")):
        assert fits.decide(TWO_NODES).node_name in ("node0", "node1")


def test_good_options_pass_and_ray_s_own_option_names_are_known():
    check_user_options({"num_cpus": 0.5, "num_gpus": 0, "memory": 2**20, "max_retries": -1,
                        "max_restarts": 3, "max_task_retries": 0, "name": "a", "namespace": "n",
                        "lifetime": "detached", "resources": {"accel": 1}, "runtime_env": {},
                        "retry_exceptions": True, "num_returns": 2, "max_concurrency": 4})
    check_user_options({"max_retries": None, "name": None, "lifetime": None, "resources": None})
