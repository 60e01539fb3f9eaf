"""`placement cluster join`: a node on "another host" (here another loopback address) joins a
running cluster with the next free node<i> label, the user's Ray labels and the token from a file.

The first tests need no Ray (the unit layer): parsing, the label choice, the race rule, and every
refusal happening before anything starts. The rest start real clusters on 127.0.0.70-79 and join
them through the command line; where work ran is read inside it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from placement import join as join_mod
from placement import local_cluster as lc
from placement.cli import main
from placement.errors import LocalClusterError
from placement.join import (
    LABEL_NONE,
    JoinSpec,
    choose_label,
    label_holders,
    parse_head,
    parse_labels,
    ray_start_args,
)
from placement.local_cluster import ClusterSpec, cluster_processes, start_cluster, stop_cluster
from placement.naming import label_pattern

from .conftest import REPO, clean_env, free_port, new_state_dir, run_python

# -- no Ray ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, labels", [
    ("zone=z1,rack=r2", {"zone": "z1", "rack": "r2"}),
    ("example.com/team=ml", {"example.com/team": "ml"}),
    ("zone=", {"zone": ""}),  # Ray takes an empty value
    (" zone = z1 ", {"zone": "z1"}),
    ("", {}),
])
def test_labels_in_rays_syntax_are_taken(text, labels):
    assert parse_labels(text) == labels


@pytest.mark.parametrize("text, fix", [
    ("zone", "key=value"),
    ("zone=z 1", "not a Ray label value"),
    ("zone=-z1", "not a Ray label value"),
    ("zone=z1=z2", "key=value"),
    ("=z1", "key=value"),
    ("zo ne=z1", "not a Ray label key"),
    ("-a/zone=z1", "DNS subdomain"),
    ("zone=" + "a" * 64, "not a Ray label value"),
    ("ray.io/availability-zone=z1", "reserved for Ray"),
    ("placement.node=node7", "set by join itself"),
    ("zone=z1,zone=z2", "given twice"),
], ids=lambda v: v if len(v) < 30 else v[:30])
def test_bad_labels_are_refused_naming_the_fix(text, fix):
    with pytest.raises(ValueError, match=fix):
        parse_labels(text)


def test_label_syntax_agrees_with_rays_own_parser():
    """Every label Ray's `ray start --labels` parser refuses, join refuses too, and the reverse
    (for keys Ray does not reserve)."""
    from ray._private.label_utils import parse_node_labels_string

    cases = ["zone=z1", "a/b=c", "a.b.c/d=e", "x=y.z_w-1", "-a=b", "a=b-", "a_=b", "a=b c",
             "a=" + "b" * 63, "a=" + "b" * 64, "k" * 63 + "=v", "k" * 64 + "=v", "a-/b=c",
             "a..b/c=d", "-a/c=d", "/c=d", "a=b,c=d", "1=2", "a=%", "a=", "a=b,", "a=b=c"]
    for text in cases:
        try:
            parse_node_labels_string(text)
            ray_ok = True
        except ValueError:
            ray_ok = False
        try:
            parse_labels(text)
            ours = True
        except ValueError:
            ours = False
        assert ours == ray_ok, text


@pytest.mark.parametrize("text", ["10.0.0.5", "10.0.0.5:", ":6379", "10.0.0.5:99999",
                                  "10.0.0.5:63a", "http://10.0.0.5:6379", "a b:6379",
                                  "10.0.0.5:6379:6379", "x[y]:6379", "[::1]]:6379", "a,b:6379",
                                  "[zz]:6379", "head:0"])
def test_a_head_address_without_host_and_port_is_refused(text):
    with pytest.raises(ValueError, match="host:port"):
        parse_head(text)


@pytest.mark.parametrize("text, expected", [("10.0.0.5:6379", "10.0.0.5:6379"),
                                            ("[fd00::5]:6379", "[fd00::5]:6379"),
                                            (" head-a.example:6380 ", "head-a.example:6380")])
def test_head_addresses_are_taken_as_written(text, expected):
    assert parse_head(text) == expected


@pytest.mark.parametrize("labels", [{"zone": "z1,rack=r2"}, {"zone": 5}, {"zone": None},
                                    {5: "z1"}, {"ray.io/zone": "z1"}])
def test_labels_given_from_python_are_checked_one_by_one(labels, token):
    spec = JoinSpec(head="127.0.0.70:6390", token_file=token, labels=labels,
                    node_ip_address="127.0.0.72", state_dir="/tmp/pl-j")
    with pytest.raises(LocalClusterError, match="--labels"):
        spec.validate()


def _node(label=None, amount=1000.0, resource=True, node_id="x"):
    resources = {"CPU": 1.0}
    labels = {}
    if label:
        if resource:
            resources[label] = amount
        labels["placement.node"] = label
    return {"id": node_id, "resources": resources, "labels": labels}


def test_the_lowest_label_no_alive_node_holds_is_chosen_with_the_clusters_amount():
    nodes = [_node("node0", 500), _node("node1", 500), _node("node3", 500)]
    assert choose_label(nodes) == ("node2", 500)
    assert choose_label(nodes[:2]) == ("node2", 500)
    # a node holding the Ray label only (no resource) still holds it
    assert choose_label([_node("node0"), _node("node1", resource=False)]) == ("node2", 1000)
    assert choose_label([_node("node0", 100), _node("node1", 300)]) == ("node2", 300)


def test_no_label_on_a_plain_cluster_or_when_asked():
    assert choose_label([_node(), _node()]) == (None, 0)
    assert choose_label([_node("node0")], mode=LABEL_NONE) == (None, 0)


def test_label_holders_find_the_label_by_resource_or_ray_label():
    nodes = [_node("node2", node_id="a"), _node("node2", resource=False, node_id="b"),
             _node("node3", node_id="c")]
    assert label_holders(nodes, "node2") == ["a", "b"]


def test_the_token_never_reaches_the_command_line():
    spec = JoinSpec(head="127.0.0.70:6390", token_file="/tmp/t", labels={"zone": "z1"},
                    node_ip_address="127.0.0.72", cpus=1, object_store_mb=100,
                    resources={"accel": 1})
    args = ray_start_args(spec, "node2", 1000)
    assert not any("token" in a.lower() for a in args)
    assert args[args.index("--labels") + 1] == "zone=z1,placement.node=node2"
    assert json.loads(args[args.index("--resources") + 1]) == {"accel": 1, "node2": 1000}
    assert args[args.index("--address") + 1] == "127.0.0.70:6390"
    unlabelled = ray_start_args(spec, None, 0)
    assert unlabelled[unlabelled.index("--labels") + 1] == "zone=z1"


@pytest.fixture
def short_dir():
    """A short directory (Ray's socket paths must fit) this test made, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="plj-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def token(short_dir):
    path = short_dir / "tok"
    path.write_text("a" * 64)
    path.chmod(0o600)
    return path


@pytest.fixture
def nothing_starts(monkeypatch):
    """Reading the cluster or starting Ray fails the test: the refusals must come first."""
    def never(*args, **kwargs):
        raise AssertionError("join got as far as reading the cluster or starting Ray")

    for name in ("run_ray_start", "probe_nodes", "write_state"):
        monkeypatch.setattr(lc, name, never)


@pytest.mark.parametrize("extra, fix", [
    (["--labels", "zone=z 1"], "not a Ray label value"),
    (["--labels", "ray.io/node-id=x"], "reserved for Ray"),
    (["--cpus", "-1"], "--cpus"),
    (["--resources", '{"node4": 1}'], "cannot set 'node4'"),
    (["--resources", '{"CPU": 2}'], "use --cpus"),
    (["--node-ip-address", "host-b"], "must be this host's IP address"),
    (["--node-ip-address", "127.0.0.1"], "a loopback address of its own"),
    (["--node-ip-address", "10.0.0.6"], "a loopback address of its own"),
    (["--timeout", "0"], "--timeout"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_input_is_refused_before_anything_starts(nothing_starts, short_dir, token, capsys,
                                                     extra, fix):
    state_dir = short_dir / "j"
    argv = ["cluster", "join", "127.0.0.70:6390", "--token-file", str(token),
            "--state-dir", str(state_dir), "--node-ip-address", "127.0.0.72", *extra]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse: usage and message, status 2
        code = exit_.code
    assert code in (1, 2)
    assert fix in capsys.readouterr().err
    assert not state_dir.exists()


def test_a_loopback_node_address_is_refused_for_a_head_on_the_network(nothing_starts, token,
                                                                      capsys):
    code = main(["cluster", "join", "10.0.0.5:6379", "--token-file", str(token),
                 "--node-ip-address", "127.0.0.72"])
    assert code == 1 and "other hosts cannot reach it" in capsys.readouterr().err


@pytest.mark.parametrize("problem, fix", [
    ("missing", "does not exist"),
    ("readable by others", "chmod 600"),
    ("empty", "does not hold one token"),
    ("a directory", "is not a file"),
])
def test_a_bad_token_file_is_refused_naming_the_fix(nothing_starts, short_dir, capsys, problem,
                                                    fix):
    path = short_dir / "tok"
    if problem == "readable by others":
        path.write_text("a" * 64)
        path.chmod(0o644)
    elif problem == "empty":
        path.write_text("\n")
        path.chmod(0o600)
    elif problem == "a directory":
        path.mkdir(mode=0o700)
    code = main(["cluster", "join", "127.0.0.70:6390", "--token-file", str(path),
                 "--node-ip-address", "127.0.0.72", "--state-dir", str(short_dir / "j")])
    assert code == 1 and fix in capsys.readouterr().err
    assert not (short_dir / "j").exists()


def test_a_state_dir_too_long_for_rays_sockets_is_refused(nothing_starts, token, capsys):
    code = main(["cluster", "join", "127.0.0.70:6390", "--token-file", str(token),
                 "--node-ip-address", "127.0.0.72", "--state-dir", "/tmp/" + "d" * 50])
    assert code == 1 and "too long" in capsys.readouterr().err


def test_a_state_dir_holding_a_users_files_is_refused(monkeypatch, short_dir, token):
    """The cluster is read (faked here), then the directory is checked before anything starts."""
    monkeypatch.setattr(lc, "probe_nodes", lambda *a, **k: [_node("node0")])
    monkeypatch.setattr(join_mod, "_start_node", lambda *a, **k: pytest.fail("started"))
    state_dir = short_dir / "j"
    state_dir.mkdir()
    (state_dir / "token").write_text("my api token")
    with pytest.raises(LocalClusterError, match="placement did not write it"):
        join_mod.join_cluster(JoinSpec(head="127.0.0.70:6390", token_file=token,
                                       state_dir=state_dir, node_ip_address="127.0.0.72"))
    assert (state_dir / "token").read_text() == "my api token"
    assert not (state_dir / "cluster.json").exists()


def _fake_join(monkeypatch, rivals):
    """join_cluster with the cluster and `ray start` faked: attempt i's node finds ``rivals[i]``
    (another node's id) holding its label, or nobody (None). Returns the labels it started."""
    started: list[str | None] = []
    cluster = [_node("node0", node_id="n0"), _node("node1", node_id="n1")]

    def start(spec, label, amount, env, deadline, say):
        started.append(label)
        me = {**_node(label, amount, node_id=f"me{len(started)}"), "address": "127.0.0.72"}
        rival = rivals[len(started) - 1]
        if rival:
            cluster.append(_node(label, node_id=rival))
        return {"id": me["id"], "alive": [*cluster, me]}

    monkeypatch.setattr(lc, "probe_nodes", lambda *a, **k: list(cluster))
    monkeypatch.setattr(join_mod, "_start_node", start)
    monkeypatch.setattr(lc, "end_processes", lambda procs: [])
    monkeypatch.setattr(join_mod.time, "sleep", lambda s: None)
    return started


def test_a_node_that_finds_its_label_taken_stops_and_takes_the_next(monkeypatch, short_dir,
                                                                    token):
    started = _fake_join(monkeypatch, ["other-host", None])
    node = join_mod.join_cluster(JoinSpec(head="127.0.0.70:6390", token_file=token,
                                          state_dir=short_dir / "j",
                                          node_ip_address="127.0.0.72"))
    assert started == ["node2", "node3"]
    assert node.label == "node3"
    assert lc.load_state(short_dir / "j").nodes[0]["label"] == "node3"


def test_join_gives_up_when_its_label_is_taken_on_every_try(monkeypatch, short_dir, token):
    started = _fake_join(monkeypatch, [f"rival{i}" for i in range(join_mod.JOIN_ATTEMPTS)])
    with pytest.raises(LocalClusterError, match="one host at a time"):
        join_mod.join_cluster(JoinSpec(head="127.0.0.70:6390", token_file=token,
                                       state_dir=short_dir / "j", node_ip_address="127.0.0.72"))
    assert len(started) == join_mod.JOIN_ATTEMPTS


# -- real Ray ---------------------------------------------------------------------------------


def _join_cli(head: str, token: Path, state_dir: Path, address: str, *extra: str,
              timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "placement.cli", "cluster", "join", head, "--token-file",
         str(token), "--state-dir", str(state_dir), "--node-ip-address", address, "--cpus", "1",
         "--object-store-mb", "100", *extra],
        capture_output=True, text=True, timeout=timeout, env=clean_env(), cwd=REPO,
        stdin=subprocess.DEVNULL)


_READ = """
import json, ray, placement
from placement import Affinity, RoundRobin
placement.connect(state_dir={head_dir!r})

@ray.remote(num_cpus=0)
def where():
    return ray.get_runtime_context().get_node_id()

nodes = {{n["NodeID"]: {{"alive": n["Alive"], "address": n["NodeManagerAddress"],
          "labels": n.get("Labels") or {{}}, "resources": n.get("Resources") or {{}}}}
         for n in ray.nodes()}}
ran = {{}}
for target in {targets!r}:
    ran[target] = ray.get([Affinity(target).place(where).remote() for _ in range(3)])
for zone in {zones!r}:
    ran[zone] = ray.get([RoundRobin(where={{"zone": zone}}).place(where).remote()
                         for _ in range(3)])
print(json.dumps({{"nodes": nodes, "ran": ran}}))
"""


def _read(head_dir: Path, targets=(), zones=()) -> dict:
    done = run_python(_READ.format(head_dir=str(head_dir), targets=list(targets),
                                   zones=list(zones)), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _alive_at(seen: dict, address: str) -> dict:
    [node] = [n for n in seen["nodes"].values() if n["alive"] and n["address"] == address]
    return node


@pytest.fixture(scope="module")
def labelled_head():
    yield from _head_and_join_dirs("jhead", ("j72", "j73"), nodes=2, first_address="127.0.0.70",
                                   label_amount=500)


@pytest.mark.slow
def test_joined_nodes_take_the_next_labels_carry_the_users_labels_and_run_pinned_work(
        labelled_head):
    state, (j72, j73) = labelled_head
    first = _join_cli(state.address, state.token_path, j72, "127.0.0.72",
                      "--labels", "zone=z1,rack=r2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "label node2" in first.stdout
    assert f"placement cluster stop --state-dir {j72}" in first.stdout
    second = _join_cli(state.address, state.token_path, j73, "127.0.0.73", "--labels", "zone=z2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "label node3" in second.stdout

    seen = _read(state.state_dir, targets=["node2", "node3"], zones=["z1"])
    node2, node3 = _alive_at(seen, "127.0.0.72"), _alive_at(seen, "127.0.0.73")
    assert node2["labels"]["placement.node"] == "node2"
    assert node2["labels"]["zone"] == "z1" and node2["labels"]["rack"] == "r2"
    assert node3["labels"]["placement.node"] == "node3" and node3["labels"]["zone"] == "z2"
    assert node2["resources"]["node2"] == 500  # the amount the cluster's nodes have
    ids = {n["address"]: i for i, n in seen["nodes"].items() if n["alive"]}
    assert set(seen["ran"]["node2"]) == {ids["127.0.0.72"]}  # read inside the work
    assert set(seen["ran"]["node3"]) == {ids["127.0.0.73"]}
    assert set(seen["ran"]["z1"]) == {ids["127.0.0.72"]}
    # The join's own state directory: its processes name it, the head's do not.
    assert cluster_processes(j72) and cluster_processes(j73)
    assert not {p.pid for p in cluster_processes(j72)} & {p.pid for p in
                                                          cluster_processes(state.state_dir)}


@pytest.mark.slow
def test_stopping_a_joined_node_ends_exactly_that_node(labelled_head):
    state, (j72, j73) = labelled_head
    if not cluster_processes(j72):
        pytest.skip("needs the nodes joined by the test before")
    head_pids = {p.pid for p in cluster_processes(state.state_dir)}
    done = subprocess.run([sys.executable, "-m", "placement.cli", "cluster", "stop",
                           "--state-dir", str(j72)], capture_output=True, text=True,
                          env=clean_env(), cwd=REPO, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert cluster_processes(j72) == []
    assert {p.pid for p in cluster_processes(state.state_dir)} == head_pids
    assert cluster_processes(j73)
    assert sorted(p.name for p in j72.iterdir()) == ["lock", "logs"]  # what join created, gone
    assert state.token_path.exists()  # the token it was given stays
    seen = _read(state.state_dir)
    alive = sorted(n["address"] for n in seen["nodes"].values() if n["alive"])
    assert alive == ["127.0.0.70", "127.0.0.71", "127.0.0.73"]


@pytest.mark.slow
def test_a_wrong_token_fails_clearly_and_leaves_nothing_running(labelled_head, tmp_path):
    state, _ = labelled_head
    wrong = tmp_path / "wrong-token"
    wrong.write_text("0" * 64)
    wrong.chmod(0o600)
    state_dir = new_state_dir("j74")
    try:
        done = _join_cli(state.address, wrong, state_dir, "127.0.0.74")
        assert done.returncode == 1
        assert "refused the auth token" in done.stderr and str(wrong) in done.stderr
        assert cluster_processes(state_dir) == []
        assert not state_dir.exists()
    finally:
        stop_cluster(state_dir)


@pytest.fixture(scope="module")
def plain_head():
    yield from _head_and_join_dirs("jplain", ("j77", "j78"), nodes=1, first_address="127.0.0.76",
                                   labelled=False)


def _head_and_join_dirs(name: str, joins: tuple[str, ...], **spec: Any):
    """A small head cluster and state dirs for the nodes a test joins to it; stops all of them."""
    state_dir = new_state_dir(name)
    state = start_cluster(ClusterSpec(state_dir=state_dir, port=free_port(), cpus_per_node=1,
                                      object_store_mb=100, **spec))
    joined = [new_state_dir(join) for join in joins]
    try:
        yield state, joined
    finally:
        for directory in joined:
            stop_cluster(directory)
        stop_cluster(state_dir)


@pytest.mark.slow
def test_on_a_plain_cluster_a_node_joins_without_a_node_label(plain_head):
    state, (j77, j78) = plain_head
    default = _join_cli(state.address, state.token_path, j77, "127.0.0.77", "--labels", "zone=zp")
    assert default.returncode == 0, default.stderr[-3000:]
    explicit = _join_cli(state.address, state.token_path, j78, "127.0.0.78", "--no-label",
                         "--labels", "zone=zq")
    assert explicit.returncode == 0, explicit.stderr[-3000:]
    seen = _read(state.state_dir, zones=["zp", "zq"])
    for address, zone in (("127.0.0.77", "zp"), ("127.0.0.78", "zq")):
        node = _alive_at(seen, address)
        assert node["labels"].get("zone") == zone and "placement.node" not in node["labels"]
        assert not [r for r in node["resources"] if label_pattern("node").match(r)]
        node_id = next(i for i, n in seen["nodes"].items() if n["alive"]
                       and n["address"] == address)
        assert set(seen["ran"][zone]) == {node_id}
    assert "label (none" in default.stdout


def test_the_join_script_wraps_the_command():
    script = REPO / "scripts" / "join_cluster.sh"
    assert os.access(script, os.X_OK)
    assert 'cluster join "$@"' in script.read_text()
