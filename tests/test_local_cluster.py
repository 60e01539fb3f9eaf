"""The local cluster scripts on a real machine: start, status, stop, refusals, token auth."""
from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from placement.local_cluster import ClusterSpec, LocalClusterError, cluster_processes, load_state

from .conftest import REPO, clean_env, free_port, new_state_dir

pytestmark = pytest.mark.slow


def run_script(
    name: str, *args: str, timeout: float = 180, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / name), *args],
        capture_output=True, text=True, timeout=timeout, env=env or clean_env(),
        stdin=subprocess.DEVNULL,
    )


def test_script_starts_labelled_nodes_and_stop_ends_only_that_cluster(local_cluster):
    state_dir = new_state_dir("script")
    port = free_port()
    other_cluster = {p.pid for p in cluster_processes(local_cluster.state_dir)}
    assert other_cluster, "the session cluster should be running beside this one"

    started = run_script("start_cluster.sh", "3", "--state-dir", str(state_dir),
                         "--port", str(port), "--first-address", "127.0.0.30")
    try:
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.30:{port}" in started.stdout
        assert f"RAY_AUTH_TOKEN_PATH={state_dir}/token" in started.stdout  # the one line to connect
        token_path = state_dir / "token"
        token = token_path.read_text()
        assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
        assert token not in started.stdout + started.stderr

        status = run_script("cluster_status.sh", "--state-dir", str(state_dir), "--json")
        assert status.returncode == 0, status.stderr
        nodes = json.loads(status.stdout)["nodes"]
        by_label = {n["label"]: n for n in nodes if n["alive"]}
        assert sorted(by_label) == ["node0", "node1", "node2"]
        for i in range(3):
            node = by_label[f"node{i}"]
            assert node["address"] == f"127.0.0.{30 + i}"
            assert node["labels"]["placement.node"] == f"node{i}"
            assert node["resources"][f"node{i}"] == 1000
        assert token not in status.stdout + status.stderr

        table = run_script("cluster_status.sh", "--state-dir", str(state_dir))
        assert table.returncode == 0 and "node2" in table.stdout and "127.0.0.32" in table.stdout

        mine = cluster_processes(state_dir)
        assert len(mine) >= 3 and not {p.pid for p in mine} & other_cluster
    finally:
        stopped = run_script("stop_cluster.sh", "--state-dir", str(state_dir))
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout and "raylet" in stopped.stdout
    assert cluster_processes(state_dir) == []
    assert not any(psutil.pid_exists(p.pid) and p.status() != psutil.STATUS_ZOMBIE for p in mine)
    # The cluster beside it is untouched.
    assert all(psutil.pid_exists(pid) for pid in other_cluster)
    assert {p.pid for p in cluster_processes(local_cluster.state_dir)} >= other_cluster
    assert load_state(state_dir) is None and not (state_dir / "token").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["0"], "N must be at least 1"),
        (["-2"], "N must be"),
        (["four"], "N must be a positive whole number"),
        (["1.5"], "N must be a positive whole number"),
        (["100000"], "more than one machine should run"),
        (["2", "--first-address", "10.0.0.5"], "loopback addresses only"),
        (["2", "--first-address", "127.0.0.0"], "127.0.0.1 or an address ending"),
        (["2", "--state-dir", "/tmp/" + "x" * 60], "too long for Ray's unix sockets"),
        (["2", "--cpus", "-1"], "--cpus must be >= 0"),
        (["2", "--object-store-mb", "10"], "--object-store-mb must be"),
    ],
)
def test_script_refuses_bad_arguments(args, message):
    before = {p.pid for p in psutil.process_iter() if p.name() in ("raylet", "gcs_server")}
    done = run_script("start_cluster.sh", *args)
    assert done.returncode != 0
    assert message in done.stderr
    after = {p.pid for p in psutil.process_iter() if p.name() in ("raylet", "gcs_server")}
    assert after <= before, "a refused start must not start anything"


def test_script_refuses_port_in_use():
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        done = run_script("start_cluster.sh", "1", "--state-dir", str(new_state_dir("busy")),
                          "--port", str(port))
    assert done.returncode == 1
    assert f"port {port} is already in use" in done.stderr and "--port" in done.stderr


def test_script_refuses_second_cluster_in_same_state_dir(local_cluster):
    done = run_script("start_cluster.sh", "1", "--state-dir", str(local_cluster.state_dir),
                      "--port", str(free_port()))
    assert done.returncode == 1
    assert "already running" in done.stderr and "stop_cluster.sh" in done.stderr


def test_spec_validation_names_the_fix():
    with pytest.raises(LocalClusterError, match="positive whole number"):
        ClusterSpec(nodes=True).validate()
    with pytest.raises(LocalClusterError, match="label-prefix"):
        ClusterSpec(nodes=1, label_prefix="no de").validate()


_CONNECT = "import ray; ray.init(address='{address}'); print('CONNECTED')"


def _try_connect(address: str, **auth: str) -> subprocess.CompletedProcess:
    # Ray retries a refused GCS connection for a while; a short timeout keeps the test quick.
    env = clean_env(RAY_gcs_rpc_server_connect_timeout_s="5", **auth)
    return subprocess.run([sys.executable, "-c", _CONNECT.format(address=address)],
                          capture_output=True, text=True, timeout=120, env=env,
                          stdin=subprocess.DEVNULL)


def test_driver_without_token_or_with_wrong_token_is_refused(local_cluster):
    address = local_cluster.address
    with ThreadPoolExecutor(3) as pool:
        without = pool.submit(_try_connect, address)
        wrong = pool.submit(_try_connect, address, RAY_AUTH_MODE="token",
                            RAY_AUTH_TOKEN="not-the-token")
        right = pool.submit(_try_connect, address, RAY_AUTH_MODE="token",
                            RAY_AUTH_TOKEN_PATH=str(local_cluster.token_path))
    for refused in (without.result(), wrong.result()):
        assert refused.returncode != 0
        assert "CONNECTED" not in refused.stdout
        assert "Authentication token is missing or incorrect" in refused.stderr
    assert right.result().returncode == 0 and "CONNECTED" in right.result().stdout


def test_cluster_reached_only_over_loopback(local_cluster):
    """Every connection a cluster process has is between loopback addresses."""
    checked = 0
    for proc in cluster_processes(local_cluster.state_dir):
        try:
            connections = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue  # it ended meanwhile (a worker): nothing left to check
        # AccessDenied is not caught: these are this user's own processes, so it would be a bug.
        checked += bool(connections)
        for conn in connections:
            for end in (conn.laddr, conn.raddr):
                if not end:
                    continue
                ip = end.ip.removeprefix("::ffff:")
                if conn.status == psutil.CONN_LISTEN and ip in ("0.0.0.0", "::"):
                    continue  # Ray 2.60 listens on the wildcard address; peers are checked below
                assert ip.startswith("127.") or ip == "::1", f"{proc.name()} uses {ip}: {conn}"
    assert checked >= 4, f"only {checked} cluster processes had connections to check"
