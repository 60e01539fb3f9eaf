"""Every example, and the demo, run as a user runs them: a separate process, judged by exit code."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from placement.local_cluster import cluster_processes

from .conftest import REPO, clean_env, free_port, new_state_dir

EXAMPLES = sorted(p.name for p in (REPO / "examples").glob("*.py") if not p.name.startswith("_"))


def test_the_tutorial_lists_exactly_the_examples_that_exist():
    """The tutorial's list of examples and the examples/ folder agree: none undocumented, none
    missing (every example that exists is also run below)."""
    tutorial = (REPO / "docs" / "tutorial.rst").read_text()
    section = tutorial[tutorial.index("\nMore examples\n"):]
    listed = sorted(re.findall(r"^- ``(\w+\.py)``", section, flags=re.MULTILINE))
    assert listed == EXAMPLES


@pytest.mark.cluster
@pytest.mark.parametrize("example", EXAMPLES)
def test_example_passes_on_the_local_cluster(local_cluster, example):
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / example)], capture_output=True, text=True,
        timeout=600, env=clean_env(**local_cluster.env()), cwd=REPO, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{example} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "OK:" in done.stdout


@pytest.mark.slow
def test_demo_starts_a_cluster_checks_every_policy_and_stops_it():
    state_dir = new_state_dir("demo")
    done = subprocess.run(
        [sys.executable, "-m", "placement.cli", "demo", "--nodes", "2",
         "--state-dir", str(state_dir), "--port", str(free_port())],
        capture_output=True, text=True, timeout=600, env=clean_env(), cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "13 of 13 promises held" in done.stdout
    for policy in ("LeastLoaded()", "Locality() | RoundRobin()", "AntiAffinity(live=True)",
                   "AntiAffinity().reserve(2)"):
        assert policy in done.stdout, policy
    assert "starting 2 labelled nodes" in done.stderr
    assert "stopping the cluster the demo started" in done.stderr
    assert cluster_processes(state_dir) == []
