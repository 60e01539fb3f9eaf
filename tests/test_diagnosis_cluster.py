"""``placement.explain`` and ``placement pending`` on the session cluster: a task pinned to a node
whose CPUs a long task holds is explained as pending there, with the missing CPU named; once the
node frees, it runs there (read inside)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import ray
from ray.exceptions import TaskCancelledError

import placement
from placement import Affinity, AntiAffinity, Audit, PlacementError, PlacementExecutor, errors
from placement.audit import SOFT_FALLBACK
from placement.diagnosis import Explanation

from .conftest import REPO, clean_env
from .test_policies_cluster import held


@ray.remote(num_cpus=0)
def takes(_: object) -> str:
    return ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=1)
def waiting_for_a_cpu() -> str:
    return ray.get_runtime_context().get_node_id()


def explained(ref, state: str, timeout: float = 30.0) -> Explanation:
    """explain(ref) once Ray's task events (about a second behind) show ``state``."""
    deadline = time.monotonic() + timeout
    while True:
        explanation = placement.explain(ref)
        if explanation.state == state:
            return explanation
        assert time.monotonic() < deadline, f"not {state} after {timeout:.0f} s: {explanation}"
        time.sleep(0.2)


def test_explain_names_the_busy_node_and_the_missing_cpu(ray_cluster, tmp_path):
    release = tmp_path / "go"
    node1 = Affinity("node1")
    holder = node1.place(held, num_cpus=2).remote(str(release))  # every CPU of node1
    explained(holder, "running")
    pinned = node1.place(waiting_for_a_cpu).remote()
    try:
        why = explained(pinned, "pending")
        assert why.node == "node1" and why.asked.get("CPU") == 1
        assert why.free is not None and why.free.get("CPU", 0) == 0
        assert "node1 is busy" in why.why and "CPU 0 of the 1 asked" in why.why
        assert "soft=True" in why.fix and "node0" in why.fix  # a node with room is named
        assert "pinned to node1" in str(why)
        needs_the_holder = Affinity("node0").place(takes).remote(holder)
        assert "its arguments are not ready" in explained(needs_the_holder, "pending").why
        listed = subprocess.run(
            [sys.executable, "-m", "placement.cli", "pending", "--state-dir",
             str(ray_cluster.state_dir)], capture_output=True, text=True, timeout=120,
            env=clean_env(), cwd=REPO, stdin=subprocess.DEVNULL)
        assert listed.returncode == 0, listed.stderr[-3000:]
        assert "waiting_for_a_cpu: pending" in listed.stdout, listed.stdout
    finally:
        release.write_text("")
    ran = ray.get(pinned, timeout=120)
    assert ran == ray.get(holder, timeout=120)  # it ran on node1, read inside
    done = explained(pinned, "finished")
    assert done.node == "node1" and "finished" in str(done)


@ray.remote(num_cpus=1)
def leaves_a_mark(mark: str) -> str:
    with open(mark, "a") as out:
        out.write("ran\n")
    return ray.get_runtime_context().get_node_id()


def test_work_not_started_by_its_deadline_is_refused_and_never_runs(ray_cluster, tmp_path):
    """node2's CPUs are held: hard work there with pending_timeout=2 is cancelled at its
    deadline (a handle) or fails with PlacementError (an executor), and never runs, even once
    node2 frees; soft work runs elsewhere (read inside), and Audit flags it a fallback."""
    release, mark = tmp_path / "go", tmp_path / "ran"
    node2 = Affinity("node2")
    holder = node2.place(held, num_cpus=2).remote(str(release))
    busy = explained(holder, "running").node
    assert busy == "node2"
    late = node2.place(leaves_a_mark, pending_timeout=2).remote(str(mark))
    try:
        with pytest.raises(TaskCancelledError):
            ray.get(late, timeout=120)
        with pytest.raises(PlacementError) as told:  # placement.get says why
            placement.get([late], timeout=120)
        assert told.value.rule == errors.PENDING_TIMEOUT and "node2 is busy" in told.value.detail
        assert isinstance(told.value.__cause__, TaskCancelledError)
        why = placement.explain(late)
        assert why.state == "refused" and why.node == "node2"
        assert "pending-timeout after 2s: node2 is busy" in why.why, why
        with PlacementExecutor(node2, pending_timeout=2) as pool:
            refused = pool.submit(leaves_a_mark, str(mark)).exception(timeout=120)
        assert isinstance(refused, PlacementError), refused
        assert refused.rule == errors.PENDING_TIMEOUT and "node2 is busy" in refused.detail
        # soft="gone" waits while the node is busy: the deadline submits it once more, unpinned
        with PlacementExecutor(Affinity("node2", soft="gone"), pending_timeout=2) as pool:
            elsewhere = pool.submit(lambda: ray.get_runtime_context().get_node_id())
            ran_on = elsewhere.result(timeout=120)
        with Audit() as audit:
            soft = audit.place(Affinity("node2", soft=True), leaves_a_mark, pending_timeout=2)
            spilled = ray.get(soft.remote(str(tmp_path / "soft")), timeout=120)
            flagged = audit.report().fallbacks
    finally:
        release.write_text("")
    node2_id = ray.get(holder, timeout=120)
    assert ran_on != node2_id and spilled != node2_id  # read inside each
    assert len(flagged) == 1 and flagged[0].verdict == SOFT_FALLBACK
    # node2 is free again: work queued there now runs; the refused work never does
    ray.get(node2.place(held, num_cpus=2).remote(str(release)), timeout=120)
    assert not mark.exists()


@ray.remote(num_cpus=2, num_returns=2, max_retries=2)
def crashes_once(mark: str) -> tuple[float, str]:
    """Its first attempt kills its worker; Ray retries it. Returns the CPUs it was given."""
    import os
    if not os.path.exists(mark):
        open(mark, "w").close()
        os._exit(1)
    return ray.get_runtime_context().get_assigned_resources().get("CPU", 0), "retried"


@ray.remote(num_cpus=1)
class SlowToStart:
    def __init__(self, seconds: float) -> None:
        time.sleep(seconds)  # the constructor runs past the deadline

    def where(self) -> str:
        return ray.get_runtime_context().get_node_id()


def test_a_deadline_keeps_the_functions_options_and_never_ends_started_work(ray_cluster,
                                                                           tmp_path):
    """With pending_timeout, the function's own options hold (2 CPUs, 2 results, retries): a
    retried task that started in time runs again. An actor whose constructor outlasts the
    deadline lives; one that cannot start is ended, and its spread slot is given back."""
    cpus, said = Affinity("node3").place(crashes_once, pending_timeout=30).remote(
        str(tmp_path / "crashed"))
    assert ray.get([cpus, said], timeout=120) == [2.0, "retried"]
    slow = Affinity("node3").place(SlowToStart, pending_timeout=1).remote(4)
    assert ray.get(slow.where.remote(), timeout=120)  # alive, never ended
    release = tmp_path / "go"
    holder = Affinity("node3").place(held, num_cpus=1).remote(str(release))  # the last CPU
    explained(holder, "running")
    one = AntiAffinity(where={"ray.io/node-id": "in(" + ray.get(slow.where.remote()) + ")"})
    try:
        blocked = one.place(SlowToStart, pending_timeout=1).remote(0)
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(blocked.where.remote(), timeout=120)
        why = placement.explain(blocked)
        assert why.state == "refused" and "node3 is busy" in str(why), str(why)
    finally:
        release.write_text("")
    ray.get(holder, timeout=120)
    again = one.place(SlowToStart).remote(0)  # the ended actor's node is free in the ledger
    assert ray.get(again.where.remote(), timeout=120) == ray.get(slow.where.remote())
    for actor in (slow, again):
        ray.kill(actor)
