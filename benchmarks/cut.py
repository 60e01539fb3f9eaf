"""A host cut off mid-stream, on separate hosts (network namespaces; needs root):

    python -m benchmarks.cut [--out FILE]

Four hosts (head with plain ``ray start``, three joined with ``placement cluster join``); for each
contender a fresh fifth host joins, a stream of one-CPU calls (5 a second for 24 s) runs through
the contender, and the fifth host's link is cut 6 s in. Printed per contender: seconds from the
cut to the last placement on the cut host (what the decisions named; Ray's own scheduler does not
say), calls lost (failed), calls still pending when the wait ended, and when the last result came
(the stream alone lasts 24 s). Contenders alternate in one run; one round each (a round waits for
Ray to mark the host dead, about a minute). Then the host's processes are ended and its link
healed for the next contender.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests import hosts_cluster
from tests.host_scenarios import RESULT_WAIT_SECONDS
from tests.netns import SeparateHosts, available

REPO = Path(__file__).resolve().parent.parent
VICTIM = 4
CONTENDERS = ['RoundRobin() (soft="gone", the default)', "RoundRobin(soft=False), hard",
              'LeastLoaded() (soft="gone", the default)',
              "RoundRobin(), Ray's gRPC keepalive (PLACEMENT_KEEPALIVE=off)",
              "RoundRobin(), ejection off", "Ray DEFAULT"]
# The contenders' drivers connect with placement.connect(), which shortens the driver's gRPC
# keepalive (placement/connect.py); this environment keeps Ray's own, or turns ejection off.
ENV = {CONTENDERS[3]: {"PLACEMENT_KEEPALIVE": "off"},
       "RoundRobin(), ejection off": {"PLACEMENT_EJECTION": "off"}}


def policy_of(name: str) -> Any:
    """A fresh policy for the contender ``name`` (None: Ray's own scheduler)."""
    from placement import LeastLoaded, RoundRobin

    return {'RoundRobin() (soft="gone", the default)': lambda: RoundRobin(),
            "RoundRobin(soft=False), hard": lambda: RoundRobin(soft=False),
            'LeastLoaded() (soft="gone", the default)': lambda: LeastLoaded(),
            CONTENDERS[3]: lambda: RoundRobin(),
            "RoundRobin(), ejection off": lambda: RoundRobin(),
            "Ray DEFAULT": lambda: None}[name]()


def driver(description: str, name: str) -> None:
    """One contender's stream, as a driver on host 0; prints its JSON."""
    import placement
    from tests.host_scenarios import stream

    cluster = hosts_cluster.attach(description)
    placement.connect()
    seen = stream(cluster, lambda: policy_of(name), VICTIM, "cut", hold=1.0)
    print(json.dumps(seen))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rounds", type=Path, default=None,
                        help="print the results of the rounds kept in a results file again")
    parser.add_argument("--wait", type=int, default=RESULT_WAIT_SECONDS,
                        help="with --rounds: the seconds those rounds waited after Ray marked "
                             "the host dead")
    parser.add_argument("--contender", action="append", choices=CONTENDERS,
                        help="run only these contenders (repeat it; default: all)")
    args = parser.parse_args()
    if args.rounds is not None:
        result = report(json.loads(args.rounds.read_text())["rounds"], args.wait)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1) + "\n")
        return 0
    why = available()
    if why is not None:
        print(why, file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="plcut-", dir="/tmp"))
    hosts = SeparateHosts(5)
    rows = []
    try:
        cluster = hosts_cluster.start(hosts, root, joined=4)
        for round_, name in enumerate(args.contender or CONTENDERS):
            cluster.join(VICTIM, root / f"victim-{round_}")
            env = cluster.env(**ENV.get(name, {}))
            done = hosts.run(0, [sys.executable, "-m", "benchmarks.cut", "--driver",
                                 cluster.describe(), name], env=env, timeout=600, cwd=REPO)
            if done.returncode:
                raise RuntimeError(done.stdout[-2000:] + done.stderr[-3000:])
            seen = json.loads(done.stdout.strip().splitlines()[-1])
            row = {"contender": name, **{k: seen[k] for k in (
                "submitted", "finished", "errors", "pending", "last_placement_after_cut",
                "ejected_after", "placed_on_victim", "last_result_at", "stream_seconds",
                "ray_marked_dead_after") if k in seen}}
            rows.append(row)
            print(json.dumps(row), flush=True)
            hosts.kill(VICTIM)
            hosts.heal(VICTIM)
    finally:
        hosts.close()
    result = report(rows, wait=RESULT_WAIT_SECONDS)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def report(rows: list[dict[str, Any]], wait: int) -> dict[str, Any]:
    """The results rows of the contenders' rounds, printed; ``wait``: the seconds the rounds
    waited after Ray marked the host dead."""
    results = []
    for row in rows:
        name, last = row["contender"], row["last_placement_after_cut"]
        lost = sum(row["errors"].values())
        note = f"{row['submitted']} calls, {row['placed_on_victim']} placed on the cut host"
        if name != "Ray DEFAULT":
            results.append({"benchmark": "cut", "contender": f"{name}: last placement on the "
                            "cut host, after the cut",
                            "value": "none" if last is None else round(last, 1),
                            "unit": "" if last is None else "s", "note": note})
        results += [
            {"benchmark": "cut", "contender": f"{name}: calls failed, or pending {wait} s after "
                          "Ray marked the host dead",
             "value": lost + row["pending"], "unit": "",
             "note": f"failed: {row['errors'] or 'none'}; pending: {row['pending']}"},
            {"benchmark": "cut", "contender": f"{name}: Ray marked the host dead, after the cut",
             "value": "not seen" if row.get("ray_marked_dead_after") is None
             else round(row["ray_marked_dead_after"], 1),
             "unit": "" if row.get("ray_marked_dead_after") is None else "s",
             "note": "read from ray.nodes() while waiting for the results" if
             row.get("ray_marked_dead_after") is not None else
             "read only while results are awaited: every call had come back or failed"},
            {"benchmark": "cut", "contender": f"{name}: last result, from the stream's start",
             "value": round(row["last_result_at"] or 0.0, 1), "unit": "s",
             "note": f"the stream lasts {row['stream_seconds']:g} s"}]
    for result in results:
        print(f"{result['contender']:75} {result['value']:>8} {result['unit']}")
    return {"benchmark": "cut", "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "when": time.strftime("%Y-%m-%d"), "wait_after_death": wait, "results": results,
            "rounds": rows}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--driver":
        driver(sys.argv[2], sys.argv[3])
        sys.exit(0)
    sys.exit(main())
