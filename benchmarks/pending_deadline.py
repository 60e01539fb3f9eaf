"""How long after its deadline work that cannot start is refused, on a real cluster.

    python benchmarks/pending_deadline.py         # the running local cluster, or one it starts

node0's CPUs are held by a long task; one-CPU work pinned there with ``pending_timeout=1`` is
refused at its deadline. Measured from submission to the refusal the caller sees: a handle's
``ray.get`` raising TaskCancelledError, an executor's future failing with PlacementError. The
figure is that time minus the 1 s deadline, median of the rounds.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import TaskCancelledError

from placement import Affinity, PlacementExecutor
from placement._ray import available_resources_per_node

SIZES = {"full": {"rounds": 9}, "quick": {"rounds": 2}}
DEADLINE = 1.0


@ray.remote(num_cpus=0)
def hold(release: str) -> None:
    for _ in range(3000):  # at most 300 s
        if Path(release).exists():
            return
        time.sleep(0.1)


@ray.remote(num_cpus=1)
def never() -> None:
    return None


def wait_until_busy(label: str, timeout: float = 60.0) -> None:
    """Until the node labelled ``label`` has no CPU free (the holder runs), at most ``timeout``."""
    node_id = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get(label))
    deadline = time.monotonic() + timeout
    while available_resources_per_node().get(node_id, {}).get("CPU", 0) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{label} still had a CPU free after {timeout:.0f} s")
        time.sleep(0.05)


def handle_late(pinned: Affinity) -> float:
    began = time.perf_counter()
    ref = pinned.place(never, pending_timeout=DEADLINE).remote()
    try:
        ray.get(ref, timeout=120)
    except TaskCancelledError:
        return time.perf_counter() - began - DEADLINE
    raise AssertionError("the pinned task ran: node0 was not busy")


def executor_late(pool: PlacementExecutor) -> float:
    began = time.perf_counter()
    error = pool.submit(never).exception(timeout=120)
    assert error is not None, "the pinned call ran: node0 was not busy"
    return time.perf_counter() - began - DEADLINE


def run(quick: bool = False) -> list[dict[str, Any]]:
    size = SIZES["quick" if quick else "full"]
    pinned = Affinity("node0")
    with tempfile.TemporaryDirectory(prefix="pl-deadline-") as folder:
        release = Path(folder) / "go"
        node_cpus = next(n["Resources"].get("CPU", 0) for n in ray.nodes()
                         if n["Alive"] and n["Resources"].get("node0"))
        busy = pinned.place(hold, num_cpus=node_cpus).remote(str(release))
        samples: dict[str, list[float]] = {"handle": [], "executor": []}
        try:
            wait_until_busy("node0")
            with PlacementExecutor(pinned, pending_timeout=DEADLINE) as pool:
                for round_index in range(size["rounds"]):
                    order = ["handle", "executor"][round_index % 2:] + \
                        ["handle", "executor"][:round_index % 2]
                    for name in order:
                        late = handle_late(pinned) if name == "handle" else executor_late(pool)
                        samples[name].append(late)
        finally:
            release.write_text("")
            ray.get(busy, timeout=120)
    note = (f"node0 busy, pending_timeout={DEADLINE:g}; median of {size['rounds']} rounds; "
            "time from submit to the refusal, minus the deadline")
    return [{"benchmark": "pending deadline", "contender": f"{name}: refused after deadline",
             "value": round(statistics.median(values) * 1000, 1), "unit": "ms", "note": note}
            for name, values in samples.items()]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import main_alone  # run.py imports this module: not at the top
    return main_alone(__doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
