"""Load-aware balancing: a node held by a long task gets less new work under LeastLoaded, beside
RoundRobin (blind to time) and Ray's DEFAULT.

One long task holds a node while short tasks stream through, as many in flight as there are
other nodes. The table shows where the short tasks ran (read inside each); the promise is that
LeastLoaded sent fewer of them to the busy node than to any other (none, unless a completion
is heard late). With more in flight than idle nodes, each node keeps the same number of short
tasks running (the busy one has one more in all), and they finish, and are replaced, at the
same rate: the long task then costs the busy node nothing, as it costs it nothing in Ray.
"""
from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import ray
from _support import connect, here, show, verdict

from placement import LeastLoaded, RoundRobin

SHORT_TASKS = 32
# Long enough that Ray's completion callback (which releases a task, on Ray's own thread) is
# quick beside it: with 50 ms tasks on a loaded 2-core CI machine the callbacks lagged enough
# that LeastLoaded saw every node equally full and placed as round robin does.
SHORT_SECONDS = 0.3


@ray.remote(num_cpus=0)
def hold(until_exists: str) -> str:
    """A long task: runs until the file exists (at most 120 s)."""
    for _ in range(1200):
        if Path(until_exists).exists():
            break
        time.sleep(0.1)
    return here()


@ray.remote(num_cpus=0)
def short() -> str:
    time.sleep(SHORT_SECONDS)
    return here()


def stream(submit, n: int, in_flight: int) -> list[str]:
    """Run n short tasks, ``in_flight`` at a time; the nodes they ran on."""
    pending, done = [], []
    for _ in range(n):
        if len(pending) >= in_flight:
            finished, pending = ray.wait(pending, num_returns=1, timeout=120)
            done += ray.get(finished)
        pending.append(submit())
    return done + ray.get(pending, timeout=120)


def run(policy_name: str, names: dict[str, str]) -> tuple[str, Counter]:
    """The busy node and where the short tasks ran, for one contender."""
    with tempfile.TemporaryDirectory(prefix="pl-example-") as scratch:
        go = str(Path(scratch) / "go")
        if policy_name == "LeastLoaded()":
            policy = LeastLoaded(weights="equal")
            long_ref = policy.place(hold).remote(go)
            submit = policy.place(short).remote
        elif policy_name == "RoundRobin()":
            policy = RoundRobin()
            long_ref = policy.place(hold).remote(go)
            submit = policy.place(short).remote
        else:
            long_ref, submit = hold.remote(go), short.remote
        ran = Counter(stream(submit, SHORT_TASKS, len(names) - 1))
        Path(go).write_text("")
        return ray.get(long_ref, timeout=150), ran


def main() -> int:
    names = connect()
    results = {name: run(name, names) for name in ("LeastLoaded()", "RoundRobin()", "Ray DEFAULT")}
    rows = []
    for name, (busy, ran) in results.items():
        rows.append([name, names[busy], ran[busy],
                     " ".join(f"{names[n]}:{ran[n]}" for n in sorted(names, key=names.get)
                              if n != busy)])
    show(f"{SHORT_TASKS} short tasks ({len(names) - 1} in flight) while one long task holds a node",
         rows, ["policy", "busy node", "short tasks there", "short tasks elsewhere"])
    busy, ran = results["LeastLoaded()"]
    others = [ran[n] for n in names if n != busy]
    return verdict(ran[busy] < min(others),
                   "LeastLoaded sent fewer short tasks to the busy node than to any other")


if __name__ == "__main__":
    sys.exit(main())
