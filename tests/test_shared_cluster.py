"""A ledger shared across drivers on the session cluster: two driver processes racing, the
drivers' exit, a restarted holder, a killed live replica. Where every replica ran is read
inside it."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
import ray

from placement import errors, liveness
from placement.errors import PlacementError
from placement.policies import AntiAffinity
from placement.shared import NAMESPACE, holder_name, remove_shared_ledger, shared_counts
from tests.conftest import REPO, SESSION_NODES, clean_env

NAME = "frontend-test"

DRIVER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import ray, placement

    state_dir, name, folder, me = sys.argv[1:5]
    folder = Path(folder)
    placement.connect(state_dir=state_dir)

    @ray.remote(num_cpus=0)
    class Probe:
        def where(self):
            return ray.get_runtime_context().get_node_id()

    web = placement.AntiAffinity(shared=name)
    (folder / f"ready-{me}").touch()
    deadline = time.monotonic() + 120
    while not (folder / "go").exists():  # both drivers place at the same moment
        assert time.monotonic() < deadline, "no go within 120 s"
        time.sleep(0.005)
    replicas = [web.place(Probe).remote() for _ in range(2)]
    nodes = ray.get([r.where.remote() for r in replicas], timeout=120)
    (folder / f"nodes-{me}").write_text(json.dumps(nodes))
    while not (folder / "done").exists():  # the replicas live until the test has looked
        assert time.monotonic() < deadline, "no done within 120 s"
        time.sleep(0.05)
""")


@ray.remote(num_cpus=0)
class Probe:
    def where(self) -> str:
        return ray.get_runtime_context().get_node_id()


def wait_for(what: str, check, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s for {what}"
        time.sleep(0.05)


def placed_nodes(policy: AntiAffinity, n: int) -> tuple[list, list[str]]:
    replicas = [policy.place(Probe).remote() for _ in range(n)]
    return replicas, ray.get([r.where.remote() for r in replicas], timeout=120)


@pytest.fixture
def clean_ledger(ray_cluster):
    remove_shared_ledger(NAME)
    yield
    remove_shared_ledger(NAME)


def test_two_drivers_racing_keep_their_replicas_on_distinct_nodes(ray_cluster, clean_ledger,
                                                                   tmp_path):
    drivers = [subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(ray_cluster.state_dir), NAME, str(tmp_path), me],
        env=clean_env(), cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for me in ("a", "b")]
    try:
        wait_for("both drivers connected",
                 lambda: all((tmp_path / f"ready-{me}").exists() for me in "ab")
                 or any(d.poll() is not None for d in drivers))
        (tmp_path / "go").touch()
        wait_for("both drivers' replicas",
                 lambda: all((tmp_path / f"nodes-{me}").exists() for me in "ab")
                 or any(d.poll() is not None for d in drivers))
        assert not any(d.poll() for d in drivers), [d.communicate()[0][-3000:] for d in drivers]
        theirs = [json.loads((tmp_path / f"nodes-{me}").read_text()) for me in "ab"]
        ran = theirs[0] + theirs[1]
        assert len(set(ran)) == SESSION_NODES == len(ran), theirs  # read inside each replica
        assert shared_counts(NAME) == {node: 1 for node in ran}
        with pytest.raises(PlacementError) as fifth:  # a third driver: every node is taken
            AntiAffinity(shared=NAME).place(Probe).remote()
        assert fifth.value.rule == errors.SPREAD_EXHAUSTED
        assert "4 placed by other drivers sharing 'frontend-test'" in fifth.value.detail
    finally:
        (tmp_path / "done").touch()
        outputs = [d.communicate(timeout=120)[0] for d in drivers]
    assert all(d.returncode == 0 for d in drivers), [o[-3000:] for o in outputs]
    # The drivers ended, and their replicas with them: their claims are dropped.
    wait_for("the ended drivers' claims to be dropped", lambda: shared_counts(NAME) == {})
    replicas, nodes = placed_nodes(AntiAffinity(shared=NAME), SESSION_NODES)
    assert sorted(nodes) == sorted(ran)
    for actor in replicas:
        ray.kill(actor)


def test_a_restarted_holder_keeps_the_claims_and_a_killed_live_replica_frees_its_node(
        ray_cluster, clean_ledger):
    mine = AntiAffinity(shared=NAME, live=True)
    replicas, nodes = placed_nodes(mine, 2)
    holder = ray.get_actor(holder_name(NAME), namespace=NAMESPACE)
    ray.kill(holder, no_restart=False)  # Ray restarts it; it reads its claims back
    other = AntiAffinity(shared=NAME)  # another driver's policy (its own owner id)
    others, other_nodes = placed_nodes(other, 2)
    assert len(set(nodes + other_nodes)) == SESSION_NODES  # read inside each replica
    assert shared_counts(NAME) == {node: 1 for node in nodes + other_nodes}
    with pytest.raises(PlacementError) as full:
        mine.place(Probe).remote()
    assert full.value.rule == errors.SPREAD_EXHAUSTED
    ray.kill(replicas[0])  # live=True: its claim is given back, no release() by anyone
    wait_for("the killed replica's claim to be released",
             lambda: nodes[0] not in shared_counts(NAME), timeout=30 * liveness.WATCH_SECONDS)
    late, late_nodes = placed_nodes(other, 1)
    assert late_nodes == [nodes[0]]
    remove_shared_ledger(NAME)  # a holder ended for good is made again, from no claims
    again, again_nodes = placed_nodes(AntiAffinity(shared=NAME), 1)
    assert shared_counts(NAME) == {again_nodes[0]: 1}
    for actor in [*replicas, *others, *late, *again]:
        ray.kill(actor)
