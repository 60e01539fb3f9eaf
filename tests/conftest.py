"""Shared fixtures: one real 4-node local cluster per session, isolated from the user's Ray.

Every cluster a test starts lives under ROOT; at the end of the session anything still running
there is stopped and reported, so no test leaves a Ray process behind unnoticed.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

# A Ray worker of the test clusters imports this module too (test modules import constants from
# it, and Ray imports test modules to run their functions). It inherits the session's
# environment: it must reuse the session's folders, not make new ones nobody removes.
_SESSION_ROOT = os.environ.get("PLACEMENT_TEST_ROOT")
if _SESSION_ROOT:
    _HOME = os.environ["HOME"]
    ROOT = Path(_SESSION_ROOT)
else:
    # Isolate from the user's Ray before anything imports it: Ray may read ~/.ray/auth_token,
    # and RAY_ADDRESS or RAY_AUTH_* would point the tests at another cluster.
    _HOME = tempfile.mkdtemp(prefix="plh-")
    os.environ["HOME"] = _HOME
    for _name in [n for n in os.environ if n.startswith("RAY_AUTH") or n == "RAY_ADDRESS"]:
        del os.environ[_name]
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Short: Ray's unix socket paths live under it.
    ROOT = Path(tempfile.mkdtemp(prefix="plt-", dir="/tmp"))
    os.environ["PLACEMENT_TEST_ROOT"] = str(ROOT)
    # No cluster here: connect() must not find one.
    os.environ["PLACEMENT_STATE_DIR"] = str(ROOT / "none")

from placement.errors import LocalClusterError  # noqa: E402
from placement.local_cluster import (  # noqa: E402
    ClusterSpec,
    ClusterState,
    cluster_processes,
    end_processes,
    start_cluster,
    stop_cluster,
    write_state,
)

REPO = Path(__file__).resolve().parent.parent
SESSION_FIRST_ADDRESS = "127.0.0.20"
SESSION_NODES = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child process, without the token this process may have picked up."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_python(code: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (no Ray initialised, no token) and capture its output."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=clean_env(**env), stdin=subprocess.DEVNULL,
                          cwd=REPO)


def run_scenarios(module: str, state_dir: Path, timeout: float) -> dict:
    """Run ``python -m tests.<module> STATE_DIR`` as a driver of its own (Ray keeps one cluster
    connection per process) and return the JSON object it prints last."""
    done = subprocess.run(
        [sys.executable, "-m", f"tests.{module}", str(state_dir)], capture_output=True,
        text=True, timeout=timeout, env=clean_env(), cwd=REPO, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def new_state_dir(name: str) -> Path:
    return ROOT / name


def write_cluster_record(state_dir: Path, created: tuple[str, ...] = ()) -> ClusterState:
    """The cluster.json start writes, for a cluster that is not running (stop tests use it)."""
    state_dir = Path(state_dir).absolute()
    state = ClusterState(
        state_dir=state_dir, address="127.0.0.99:1",
        nodes=({"label": "node0", "address": "127.0.0.99"},),
        token_path=state_dir / "token" if "token" in created else None,
        started_at=0.0, start_seconds=0.0, spec={}, created=created,
    )
    write_state(state)
    return state


@pytest.fixture(scope="session")
def local_cluster():
    """A real 4-node labelled cluster (node0..node3 on 127.0.0.20-23) for the whole session."""
    spec = ClusterSpec(
        nodes=SESSION_NODES,
        state_dir=new_state_dir("main"),
        port=free_port(),
        first_address=SESSION_FIRST_ADDRESS,
        cpus_per_node=2,
        extra_resources={"accel": 1},  # stands in for one GPU per node (grouped_actors example)
    )
    state = start_cluster(spec)
    try:
        yield state
    finally:
        stop_cluster(spec.state_dir)


@pytest.fixture(scope="session")
def ray_cluster(local_cluster):
    """This test process connected, as a driver, to the session cluster."""
    import ray

    import placement

    placement.connect(state_dir=local_cluster.state_dir)
    try:
        yield local_cluster
    finally:
        ray.shutdown()
        # The snapshot refresher (it looks every 0.1 s) and the probe rounds (every second, a
        # round lasting at most a second) must not outlive the connection.
        refreshers = [t for t in threading.enumerate()
                      if t.name in ("placement-snapshot-refresher", "placement-ejection")]
        for thread in refreshers:
            thread.join(5.0)
        left = [t.name for t in refreshers if t.is_alive()]
        assert not left, f"{left} still running 5 s after ray.shutdown()"


_RAY_FIXTURES = {"local_cluster", "ray_cluster"}


def pytest_collection_modifyitems(config, items):
    """Mark as ``unit`` every test that needs no Ray: no cluster fixture and no cluster, slow or
    gates marker. ``scripts/run_tests.sh -m unit`` runs that layer alone."""
    for item in items:
        needs_ray = _RAY_FIXTURES & set(getattr(item, "fixturenames", ()))
        marked = {m.name for m in item.iter_markers()} & {"cluster", "slow", "gates"}
        if needs_ray and "cluster" not in marked:
            item.add_marker(pytest.mark.cluster)
        if not needs_ray and not marked:
            item.add_marker(pytest.mark.unit)


def pytest_sessionfinish(session, exitstatus):
    leftovers = []
    for state_dir in sorted(p for p in ROOT.iterdir() if p.is_dir()):
        if cluster_processes(state_dir):
            leftovers.append(str(state_dir))
            try:
                stop_cluster(state_dir)
            except LocalClusterError:  # no cluster record there: end them, delete nothing
                end_processes(cluster_processes(state_dir))
    shutil.rmtree(ROOT, ignore_errors=True)
    shutil.rmtree(_HOME, ignore_errors=True)
    if leftovers:
        print(f"\nERROR: tests left Ray clusters running in {leftovers}; they were stopped now",
              file=sys.stderr)
        session.exitstatus = 1
