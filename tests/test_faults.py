"""Faults on a real cluster of their own: node death mid-run, strict placement to a dead node,
replicas re-placed, a node joining; and stopping a cluster never ends anyone else's processes."""
from __future__ import annotations

import os
import subprocess

import psutil
import pytest

from placement.local_cluster import ClusterSpec, cluster_processes, start_cluster, stop_cluster

from .conftest import (
    free_port,
    new_state_dir,
    run_scenarios,
    write_cluster_record,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def faults():
    """Run every fault scenario once against a fresh 3-node cluster; its JSON output."""
    state_dir = new_state_dir("faults")
    start_cluster(ClusterSpec(nodes=3, state_dir=state_dir, port=free_port(),
                              first_address="127.0.0.40", cpus_per_node=2))
    try:
        return run_scenarios("fault_scenarios", state_dir, timeout=1200)
    finally:
        stop_cluster(state_dir)


def test_a_node_that_joins_is_used_after_a_refresh(faults):
    assert faults["joins"] == {"nodes_before": 3, "nodes_after": 4, "after_counts": [2, 2, 2, 2]}
    assert faults["state_nodes"] == 5


def test_node_death_mid_run_loses_nothing_and_later_placements_skip_it(faults):
    death = faults["death"]
    assert death["results"] == 1000 and death["distinct"] == 1000
    assert death["chosen_dead_after_refresh"] == 0
    counts = death["after_refresh_counts"]
    assert counts and max(counts) - min(counts) <= 1
    assert death["ran_on_dead_after_kill"] == 0


def test_audit_flags_soft_fallbacks_and_no_violations(faults):
    death = faults["death"]
    assert death["audit_violations"] == 0
    assert death["audit"].get("soft fallback", 0) >= 1  # work aimed at the dead node ran elsewhere
    assert sum(death["audit"].values()) == 1000


def test_strict_placement_to_a_dead_node_fails_fast_and_never_hangs(faults):
    strict = faults["strict"]
    assert strict["refused_rule"] == "dead-node"
    failed_fast = ("TaskUnschedulableError", "RayTaskError", "NodeDiedError")
    assert set(strict["stale_outcomes"]) == {"resource", "node_id"}
    for backend, outcome in strict["stale_outcomes"].items():
        assert outcome in failed_fast, f"{backend}: {outcome}"


def test_placement_get_names_the_gone_node_of_a_hard_placement(faults):
    """Where Ray says only TaskUnschedulableError, placement.get says which node, and the fix."""
    strict = faults["strict"]
    for backend, said in strict["get_says"].items():
        if strict["stale_outcomes"][backend] != "TaskUnschedulableError":
            continue  # another error: Ray's own, passed on
        assert said.startswith("dead-node: ") and strict["victim_label"] in said, said
        assert "soft='gone'" in said, said
    assert "TaskUnschedulableError" in strict["stale_outcomes"].values(), strict


def test_anti_affinity_replicas_lost_with_a_node_are_replaced_on_a_survivor(faults):
    anti = faults["anti"]
    assert anti["distinct"] == anti["replicas"]
    assert anti["replacement_distinct"] and anti["replacement_alive"]


def test_a_rebalance_plan_moves_replicas_to_a_node_that_joined(faults):
    """Replicas two per node, then a node joins: the plan's one move goes to the new node, the
    replicas (read inside) end up within one of each other after starting the new before
    killing the old, and the policy's next placements fill the nodes holding fewer: two on
    every node (a ledger that missed the moves would put them on the new node)."""
    moved = faults["rebalance"]
    assert moved["before"] == [2] * len(moved["before"])
    assert moved["moves"] >= 1 and moved["moved_to_new"] and moved["on_new_node"] >= 1
    assert max(moved["after"]) - min(moved["after"]) <= 1, moved
    assert moved["final"] == [2] * len(moved["final"]), moved


def _decoy(cmdline_path: str, user: str | None = None) -> subprocess.Popen:
    def become() -> None:
        if user:
            import pwd

            entry = pwd.getpwnam(user)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)

    # "; true" keeps sh from exec-ing sleep, so the path stays on this process's command line.
    return subprocess.Popen(["/bin/sh", "-c", "sleep 120; true", f"--temp-dir={cmdline_path}"],
                            preexec_fn=become, stdin=subprocess.DEVNULL)


def test_stop_ends_only_its_own_cluster_processes():
    """A process of this user naming a *similar* directory survives a stop; one naming the
    directory (and its child) is ended."""
    _stop_scope(other_user=False)


@pytest.mark.skipif(os.getuid() != 0, reason="only root can run a decoy as another user")
def test_stop_spares_another_users_process_naming_the_same_directory():
    _stop_scope(other_user=True)


def _stop_scope(other_user: bool) -> None:
    state_dir = new_state_dir("stop-scope-other" if other_user else "stop-scope")
    state_dir.mkdir(parents=True, exist_ok=True)
    write_cluster_record(state_dir)  # stop acts only where start left its record
    similar = _decoy(str(state_dir) + "x/ray")
    others = [_decoy(str(state_dir / "ray"), user="nobody")] if other_user else []
    mine = _decoy(str(state_dir / "ray"))
    try:
        def family(proc):
            return {proc.pid} | {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}

        found = {p.pid for p in cluster_processes(state_dir)}
        assert found == family(mine)  # the decoy's sleep child counts: descendants belong to it
        untouchable = family(similar).union(*(family(p) for p in others))
        ended = stop_cluster(state_dir)
        assert any(f"pid {mine.pid} " in line for line in ended) and not untouchable & found
        mine.wait(timeout=10)
        assert similar.poll() is None and all(p.poll() is None for p in others)
    finally:
        for proc in [similar, mine, *others]:
            proc.kill()
            proc.wait()


def test_token_never_reaches_logs(local_cluster):
    token = local_cluster.token_path.read_text().strip()
    for path in local_cluster.state_dir.rglob("*"):
        if path.is_file() and path != local_cluster.token_path and path.stat().st_size < 50_000_000:
            assert token.encode() not in path.read_bytes(), f"token found in {path}"
    for proc in psutil.process_iter(["cmdline"]):
        assert token not in " ".join(proc.info["cmdline"] or [])
