"""The benchmarks keep working: quick mode against the session cluster. No timing assertions:
speed is reported by benchmarks/run.py, never asserted here."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO, clean_env, new_state_dir

pytestmark = pytest.mark.cluster


def test_quick_benchmarks_run_and_report_every_section(local_cluster):
    out = new_state_dir("bench") / "bench.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=900, env=clean_env(**local_cluster.env()),
        cwd=REPO, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    sections = {r["benchmark"] for r in report["results"]}
    assert sections == {"submit", "decide", "refresh", "balance", "infeasible", "locality",
                        "reads", "soft", "cluster", "makespan", "late binding", "data locality",
                        "shared ledger", "pending deadline"}
    assert report["machine"]["ray"] and report["quick"] is True
    by_name = {(r["benchmark"], r["contender"]): r for r in report["results"]}
    infeasible = by_name[("infeasible", "placement: PlacementError before submit")]
    assert infeasible["note"] == "resources-exceed-every-node"
    # counted, not timed: the modules a reused handle's .remote() runs functions of
    entered = by_name[("submit", "modules of the package a reused handle's .remote() enters")]
    assert entered["value"] <= 6, entered["note"]
    # exact balance is a property, not speed
    assert by_name[("balance", "RoundRobin(), 400 tasks")]["value"] == 0
