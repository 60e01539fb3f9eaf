"""Cluster snapshots: from a live cluster, from dicts, from JSON; caching; dead nodes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from placement import ClusterSnapshot, SnapshotCache, read_snapshot
from placement.status import status_table

from .conftest import (
    REPO,
    SESSION_FIRST_ADDRESS,
    SESSION_NODES,
    clean_env,
    new_state_dir,
    run_python,
)

RAY_NODE = {
    "NodeID": "aaaa",
    "NodeManagerAddress": "127.0.0.10",
    "Alive": True,
    "Labels": {"placement.node": "node0"},
    "Resources": {
        "CPU": 2.0, "node0": 1000.0, "node:127.0.0.10": 1.0, "node:__internal_head__": 1.0,
    },
}


def test_from_ray_reads_labels_resources_and_liveness():
    dead = {**RAY_NODE, "NodeID": "dddd", "Alive": False, "Labels": {},
            "Resources": {"node1": 1000.0}}
    unlabelled = {**RAY_NODE, "NodeID": "uuuu", "Labels": {}, "Resources": {"CPU": 4.0}}
    by_resource = {**RAY_NODE, "NodeID": "rrrr", "Labels": {},
                   "Resources": {"CPU": 1.0, "node12": 500.0}}
    snap = ClusterSnapshot.from_ray([RAY_NODE, dead, unlabelled, by_resource],
                                    {"aaaa": {"CPU": 0.5}})
    assert [n.label for n in snap.placeable] == ["node0", "node12"]
    assert snap.free(snap.by_label["node0"])["CPU"] == 0.5 and snap.by_label["node0"].is_head
    assert snap.by_id["dddd"].alive is False and "dddd" not in {n.node_id for n in snap.placeable}
    assert [n.node_id for n in snap.dead] == ["dddd"]
    assert snap.by_id["uuuu"] in snap.live and snap.by_id["uuuu"].label is None
    assert snap.totals()["CPU"] == 7.0  # live nodes only


def test_label_prefix_is_configurable():
    raw = {**RAY_NODE, "Labels": {}, "Resources": {"CPU": 1.0, "rack3": 10.0, "node0": 5.0}}
    assert ClusterSnapshot.from_ray([raw], label_prefix="rack").placeable[0].label == "rack3"


def test_natural_label_order():
    snap = ClusterSnapshot.from_dicts([{"id": str(i), "label": f"node{i}"} for i in (10, 2, 1, 0)])
    assert [n.label for n in snap.placeable] == ["node0", "node1", "node2", "node10"]


def test_json_round_trip_keeps_everything(tmp_path):
    snap = ClusterSnapshot.from_dicts([
        {"id": "a", "address": "127.0.0.10", "label": "node0", "resources": {"CPU": 2},
         "available": {"CPU": 1}, "labels": {"zone": "z1"}, "is_head": True},
        {"id": "b", "label": "node1", "alive": False},
    ])
    path = tmp_path / "snap.json"
    path.write_text(snap.to_json())
    for loaded in (ClusterSnapshot.from_json(path), ClusterSnapshot.from_json(snap.to_json())):
        assert loaded.to_dict() == snap.to_dict()


def test_from_dicts_names_a_missing_id():
    with pytest.raises(ValueError, match="give every node dict an 'id'"):
        ClusterSnapshot.from_dicts([{"label": "node0"}])


def test_snapshot_is_immutable():
    snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}])
    with pytest.raises(AttributeError):
        snap.nodes = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.by_label["node0"].total["CPU"] = 5  # type: ignore[index]


def test_cache_rereads_after_ttl_and_on_refresh():
    now = [0.0]
    reads = []

    def reader(previous):
        reads.append(now[0])
        return ClusterSnapshot.from_dicts([{"id": str(len(reads)), "label": "node0"}])

    cache = SnapshotCache(ttl=10, reader=reader, clock=lambda: now[0])
    assert cache.get().by_label["node0"].node_id == "1"
    now[0] = 9.9
    assert cache.get().by_label["node0"].node_id == "1"
    now[0] = 10.0
    assert cache.get().by_label["node0"].node_id == "2"
    assert cache.refresh().by_label["node0"].node_id == "3"
    assert cache.reads == 3
    with pytest.raises(ValueError, match="ttl"):
        SnapshotCache(ttl=float("nan"))


@pytest.mark.cluster
def test_live_snapshot_matches_where_tasks_run(ray_cluster):
    import ray

    snap = read_snapshot()
    labels = [n.label for n in snap.placeable]
    assert labels == [f"node{i}" for i in range(SESSION_NODES)]
    first = int(SESSION_FIRST_ADDRESS.rsplit(".", 1)[1])
    expected = [f"127.0.0.{first + i}" for i in range(SESSION_NODES)]
    assert [n.address for n in snap.placeable] == expected

    @ray.remote(num_cpus=0)
    def where():
        return ray.get_runtime_context().get_node_id()

    for node in snap.placeable:
        ran_on = ray.get(where.options(resources={node.label: 0.001}).remote())
        assert ran_on == node.node_id
    assert status_table(snap).count("yes") == SESSION_NODES


_CONNECT = """
import placement
try:
    placement.connect({args})
except placement.ClusterNotFoundError as e:
    print("REFUSED", e)
"""


def test_connect_without_any_cluster_names_the_fix():
    done = run_python(_CONNECT.format(args=""),
                      PLACEMENT_STATE_DIR=str(new_state_dir("nothing-here")))
    assert "REFUSED" in done.stdout
    assert "scripts/start_cluster.sh 4" in done.stdout and "RAY_ADDRESS" in done.stdout


def test_connect_to_silent_address_fails_fast():
    done = run_python(_CONNECT.format(args="'127.0.0.99:1'"), timeout=60)
    assert "REFUSED nothing answers at 127.0.0.99:1" in done.stdout


def test_connect_to_stopped_cluster_says_so():
    state_dir = new_state_dir("stale")
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "cluster.json").write_text(json.dumps({
        "state_dir": str(state_dir), "address": "127.0.0.99:1", "nodes": [{"label": "node0"}],
        "token_path": None, "started_at": 0, "start_seconds": 0, "spec": {},
    }))
    done = run_python(_CONNECT.format(args=f"state_dir={str(state_dir)!r}"))
    assert "REFUSED" in done.stdout
    assert "is not running" in done.stdout and "start_cluster.sh 1" in done.stdout


def test_status_command_without_cluster_exits_nonzero():
    env = clean_env(PLACEMENT_STATE_DIR=str(new_state_dir("nothing-here")))
    done = subprocess.run([sys.executable, "-m", "placement.cli", "status"], capture_output=True,
                          text=True, env=env, timeout=60, cwd=REPO)
    assert done.returncode == 1 and "placement: error: no Ray cluster" in done.stderr
    assert "Traceback" not in done.stderr
