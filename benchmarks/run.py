"""All benchmarks in one command: a table of ratios and a JSON file.

    scripts/run_benchmarks.sh            # full run, starts its own 4-node local cluster
    scripts/run_benchmarks.sh --quick    # small sizes: what CI runs so the benchmarks keep working

Contenders are alternated round by round within one run, and ratios are taken from that run, so
machine noise hits them alike. Uses the cluster at RAY_ADDRESS or in the default state directory
when one is running; otherwise starts one and stops it at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import ray
from tabulate import tabulate

import placement
from placement import (
    PlacementError,
    RoundRobin,
)
from placement.cluster import default_cache
from placement.local_cluster import (
    ClusterSpec,
    cluster_processes,
    load_state,
    start_cluster,
    stop_cluster,
)
from placement.options import merged_options

HERE = Path(__file__).resolve().parent
# The locality benchmark reuses the tree-reduce example; decide.py sits beside this file.
sys.path.insert(0, str(HERE.parent / "examples"))
sys.path.insert(0, str(HERE))
import data_locality  # noqa: E402  (needs the path above)
import decide  # noqa: E402  (needs the path above)
import late_binding  # noqa: E402  (needs the path above)
import makespan  # noqa: E402  (needs the path above)
import pending_deadline  # noqa: E402  (needs the path above)
import refresh  # noqa: E402  (needs the path above)
import shared_ledger  # noqa: E402  (needs the path above)

SIZES = {
    "full": {"submit": 2000, "rounds": 10, "balance": (400, 2000), "infeasible_wait": 10.0,
             "reads_seconds": 10.0, "soft_rounds": 4},
    "quick": {"submit": 200, "rounds": 5, "balance": (400,), "infeasible_wait": 1.0,
              "reads_seconds": 4.5, "soft_rounds": 1},
}
SETTLE_SECONDS = 0.3


# One CPU, not zero: zero-CPU tasks make Ray start a worker process for nearly every queued task
# (load average above 60 on 2 cores), and that churn, not submission, is then what gets measured.
@ray.remote(num_cpus=1)
def noop() -> None:
    return None


@ray.remote(num_cpus=0)
def where() -> str:
    return ray.get_runtime_context().get_node_id()


Row = dict[str, Any]


def row(benchmark: str, contender: str, value: float, unit: str, note: str = "") -> Row:
    return {"benchmark": benchmark, "contender": contender, "value": value, "unit": unit,
            "note": note}


# -- 1. submit --------------------------------------------------------------------------------


def bench_submit(labels: list[str], n: int, rounds: int) -> list[Row]:
    """Tasks submitted per second, contenders alternated round by round in one run."""
    policy = RoundRobin()
    snap = placement.current_snapshot(refresh=True)
    # What the policy itself sends for each node: the honest limit of any placed submission.
    same = [noop.options(**merged_options({}, d)) for d in RoundRobin().plan(snap, len(labels))
            .decisions]
    resources_only = [noop.options(resources={label: 0.001}) for label in labels]
    handle = policy.place(noop)
    contenders: dict[str, Callable[[int], Any]] = {
        "plain .remote()": lambda i: noop.remote(),
        "hand-written .options(resources=) per call":
            lambda i: noop.options(resources={labels[i % len(labels)]: 0.001}).remote(),
        "pre-bound handles, resources= only": lambda i: resources_only[i % len(labels)].remote(),
        "pre-bound handles, the policy's own options": lambda i: same[i % len(labels)].remote(),
        "policy.place(fn) reused": lambda i: handle.remote(),
        "policy.place(fn, num_cpus=1).remote() per call":
            lambda i: policy.place(noop, num_cpus=1).remote(),
        "RoundRobin().place(fn).remote() inline": lambda i: RoundRobin().place(noop).remote(),
    }
    names = list(contenders)
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for round_index in range(rounds):
        order = names[round_index % len(names):] + names[: round_index % len(names)]
        for name in order:
            submit = contenders[name]
            began = time.perf_counter()
            refs = [submit(i) for i in range(n)]
            rates[name].append(n / (time.perf_counter() - began))
            ray.get(refs)  # drain outside the timing, then let the raylets settle
            time.sleep(SETTLE_SECONDS)
    rows = [row("submit", name, round(statistics.median(r)), "tasks/s", "median of rounds")
            for name, r in rates.items()]
    # Rates swing 2-4x between rounds on a small machine; the ratio of the runs within one round
    # (same conditions) is steadier than the ratio of medians.
    pairs = (
        ("policy.place(fn) reused", "pre-bound handles, the policy's own options", ">= 1.0"),
        ("policy.place(fn) reused", "pre-bound handles, resources= only", ">= 0.9"),
        ("policy.place(fn, num_cpus=1).remote() per call", "pre-bound handles, resources= only",
         "none (a new handle per call)"),
        ("RoundRobin().place(fn).remote() inline", "pre-bound handles, resources= only",
         "none (a new policy per call)"),
    )
    for name, base, target in pairs:
        paired = [mine / theirs for mine, theirs in zip(rates[name], rates[base], strict=True)]
        rows.append(row("submit", f"{name} / {base}", round(statistics.median(paired), 2),
                        "ratio", f"target {target}; rounds {min(paired):.2f}-{max(paired):.2f}"))
    refs: list[Any] = []
    entered = modules_entered(lambda: refs.append(handle.remote()))  # a handle used above
    ray.get(refs)
    rows.append(row("submit", "modules of the package a reused handle's .remote() enters",
                    len(entered), "modules", f"target <= 6: {', '.join(entered)}"))
    return rows


def modules_entered(call: Callable[[], Any]) -> list[str]:
    """The modules of the package whose Python functions ``call`` runs, in this thread (counted
    with sys.setprofile: a function entered is a 'call' event with its code's file; C calls
    and Ray's own modules are not the package's)."""
    package = Path(placement.__file__).resolve().parent
    seen: set[str] = set()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            path = Path(frame.f_code.co_filename)
            if path.is_relative_to(package):
                seen.add(".".join(("placement", *path.relative_to(package).with_suffix("").parts)))

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return sorted(seen)


# -- 2. decide cost vs cluster size: benchmarks/decide.py (no Ray) --------------------------------


# -- 3. balance -------------------------------------------------------------------------------


def spread(counts: Counter, nodes: list[str]) -> float:
    values = [counts.get(node, 0) for node in nodes]
    return (max(values) - min(values)) / (sum(values) / len(values))


def bench_balance(sizes: tuple[int, ...]) -> list[Row]:
    snap = placement.current_snapshot(refresh=True)
    nodes = [n.node_id for n in snap.placeable]
    rows = []
    for n in sizes:
        handle = RoundRobin().place(where)
        runs = {
            "RoundRobin()": lambda handle=handle: handle.remote(),
            "Ray DEFAULT": lambda: where.remote(),
            "Ray SPREAD": lambda: where.options(scheduling_strategy="SPREAD").remote(),
        }
        for name, submit in runs.items():
            counts = Counter(ray.get([submit() for _ in range(n)]))
            rows.append(row("balance", f"{name}, {n} tasks", round(spread(counts, nodes), 3),
                            "(max-min)/mean"))
            # Tasks per node by label, in placement order (for benchmarks/plots.py); tasks that
            # ran on a node without a label (not placeable) are counted together.
            per_node = {node.label: counts.get(node.node_id, 0) for node in snap.placeable}
            elsewhere = n - sum(per_node.values())
            rows[-1]["per_node"] = {**per_node, **({"other nodes": elsewhere} if elsewhere else {})}
    weights = {node.label: i + 1 for i, node in enumerate(snap.placeable)}
    total_tasks = sizes[-1]
    weighted = RoundRobin(weights=weights).place(where)
    counts = Counter(ray.get([weighted.remote() for _ in range(total_tasks)]))
    by_label = {n.node_id: n.label for n in snap.placeable}
    worst = max(abs(counts.get(node, 0)
                    - total_tasks * weights[by_label[node]] / sum(weights.values()))
                for node in nodes)
    rows.append(row("balance", f"RoundRobin(weights={list(weights.values())}), {total_tasks} tasks",
                    round(worst, 3), "max |count - target share|", "bound: < 1"))
    return rows


# -- 4. infeasible requests -------------------------------------------------------------------


def bench_infeasible(wait: float) -> list[Row]:
    began = time.perf_counter()
    try:
        RoundRobin().place(noop, num_cpus=10_000).remote()
        refused = "not refused"
    except PlacementError as error:
        refused = error.rule
    toolkit_ms = (time.perf_counter() - began) * 1000
    ref = noop.options(num_cpus=10_000).remote()
    began = time.perf_counter()
    ready, _ = ray.wait([ref], timeout=wait)
    plain = "answered" if ready else f"no answer within {wait:g} s"
    ray.cancel(ref, force=True)
    return [
        row("infeasible", "placement: PlacementError before submit", round(toolkit_ms, 2), "ms",
            refused),
        row("infeasible", "plain Ray: task waits", round(time.perf_counter() - began, 2), "s",
            plain),
    ]


# -- 5. locality ------------------------------------------------------------------------------


def bench_locality() -> list[Row]:
    import _support
    import tree_reduce
    from ray import cloudpickle

    # Workers cannot import modules from examples/: send the example's code along by value.
    for module in (_support, tree_reduce):
        cloudpickle.register_pickle_by_value(module)
    names = {n.node_id: n.label for n in placement.current_snapshot().placeable}
    result = tree_reduce.measure(names)
    return [
        row("locality", "global-only reduce", result["global_bytes"] // 1000, "kB moved",
            f"{result['global_seconds']:.3f} s"),
        row("locality", "local combiners + global reduce", result["tree_bytes"] // 1000, "kB moved",
            f"{result['tree_seconds']:.3f} s; same result: {result['same_result']}"),
        row("locality", "bytes moved, tree / global",
            round(result["tree_bytes"] / result["global_bytes"], 3), "ratio"),
    ]


# -- 6. cluster reads -------------------------------------------------------------------------


def bench_reads(placements: int, seconds: float) -> list[Row]:
    """Real ``ray.nodes()`` calls while ``placements`` placements are paced over ``seconds``
    (several snapshot TTLs, so the cache's refreshes are what is counted)."""
    calls = {"n": 0}
    real_nodes = ray.nodes

    def counting_nodes() -> Any:
        calls["n"] += 1
        return real_nodes()

    ray.nodes = counting_nodes  # count the real calls, not what the cache thinks it did
    try:
        reads_before = default_cache().reads
        handle = RoundRobin().place(noop)
        began, refs = time.perf_counter(), []
        for i in range(placements):
            pause = began + seconds * i / placements - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            refs.append(handle.remote())
        elapsed = time.perf_counter() - began
        ray.get(refs)
    finally:
        ray.nodes = real_nodes
    ttl = default_cache().ttl
    return [row("reads", f"ray.nodes() calls per {placements} placements over {elapsed:.0f} s",
                calls["n"], "calls", f"cache reads {default_cache().reads - reads_before}, "
                f"TTL {ttl:g} s: at most {elapsed / ttl + 1:.0f} expected")]


# -- 7. soft node affinity for work that asks for no resources ---------------------------------


@ray.remote(num_cpus=0)
class Where:
    def node(self) -> str:
        return str(ray.get_runtime_context().get_node_id())


def bench_soft_affinity(rounds: int) -> list[Row]:
    """Ray's own soft NodeAffinitySchedulingStrategy for num_cpus=0 actors, one per node and
    round: how many did not land on the node they were sent to (read inside each actor). This is
    why placement's soft placements use label selectors instead (options.py)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n.node_id for n in placement.current_snapshot(refresh=True).placeable]
    misplaced, total = [], 0
    for _ in range(rounds):
        actors = [Where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node, soft=True)).remote() for node in nodes]
        ran = ray.get([a.node.remote() for a in actors], timeout=120)
        misplaced.append(sum(r != n for r, n in zip(ran, nodes, strict=True)))
        total += len(nodes)
        for actor in actors:
            ray.kill(actor)
    return [row("soft", f"Ray soft node affinity, num_cpus=0 actors, {rounds} rounds of "
                f"{len(nodes)}", sum(misplaced), f"misplaced of {total}",
                f"per round {min(misplaced)}-{max(misplaced)}")]


# -- 8. the local cluster itself -----------------------------------------------------------------


def bench_cluster(state_dir: Path | None, seconds: float | None) -> list[Row]:
    """Start time and resident memory of the cluster this run started (idle, after the runs)."""
    if state_dir is None or seconds is None:
        return [row("cluster", "start and memory", 0, "-",
                    "not measured: this run used a cluster it did not start")]
    procs = cluster_processes(state_dir)
    rss = 0
    for proc in procs:
        try:
            rss += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    nodes = len(placement.current_snapshot(refresh=True).live)
    return [row("cluster", f"{nodes} nodes start", round(seconds, 1), "s",
                "scripts/start_cluster.sh path (start_cluster)"),
            row("cluster", f"{nodes} nodes resident memory, idle", round(rss / 2**30, 2), "GiB",
                f"{len(procs)} processes")]


# -- running ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "ray": ray.__version__,
            "placement": placement.__version__}


def ensure_cluster(nodes: int) -> tuple[Path | None, float | None]:
    """Connect to a running cluster, or start one; returns the state dir to stop, if started,
    and how long its start took."""
    state = load_state()
    if os.environ.get("RAY_ADDRESS") or (state is not None and cluster_processes(state.state_dir)):
        placement.connect()
        return None, None
    state_dir = Path(tempfile.mkdtemp(prefix="plb-", dir="/tmp"))
    print(f"starting a {nodes}-node local cluster in {state_dir}", file=sys.stderr)
    began = time.perf_counter()
    start_cluster(ClusterSpec(nodes=nodes, state_dir=state_dir, cpus_per_node=2))
    seconds = time.perf_counter() - began
    placement.connect(state_dir=state_dir)
    return state_dir, seconds


def run_alone(rows_of: Callable[[], list[Row]], json_path: Path | None,
              started: Path | None = None) -> int:
    """One benchmark module on its own: on the running local cluster or a 4-node one it starts
    (or ``started``, one the caller started for it); prints the table, stops what was started
    and deletes the state folder made for it."""
    if started is None:
        started, _ = ensure_cluster(4)
    try:
        decide.report(rows_of(), "contender", json_path)
    finally:
        ray.shutdown()
        if started is not None:
            stop_cluster(started)
            shutil.rmtree(started, ignore_errors=True)  # made by mkdtemp, for this run
    return 0


def main_alone(description: str | None, run: Callable[[bool], list[Row]],
               argv: list[str] | None = None) -> int:
    """The command line of a benchmark module run alone: ``--quick`` and ``--json``."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small run (CI)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    return run_alone(lambda: run(args.quick), args.json)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--nodes", type=int, default=4,
                        help="nodes of the cluster it starts (default 4)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "latest.json",
                        help="where to write JSON")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    started, start_seconds = ensure_cluster(args.nodes)
    try:
        labels = [n.label for n in placement.current_snapshot(refresh=True).placeable]
        rows: list[Row] = []
        steps = [
            ("submit", lambda: bench_submit(labels, size["submit"], size["rounds"])),
            ("decide", lambda: decide.run(args.quick)),
            ("refresh", lambda: refresh.run(args.quick)),
            ("balance", lambda: bench_balance(size["balance"])),
            ("infeasible", lambda: bench_infeasible(size["infeasible_wait"])),
            ("locality", bench_locality),
            ("reads", lambda: bench_reads(1000, size["reads_seconds"])),
            ("soft", lambda: bench_soft_affinity(size["soft_rounds"])),
            ("makespan", lambda: makespan.run(args.quick)),
            ("late binding", lambda: late_binding.run(args.quick)),
            ("data locality", lambda: data_locality.run(args.quick)),
            ("shared ledger", lambda: shared_ledger.run(args.quick)),
            ("pending deadline", lambda: pending_deadline.run(args.quick)),
            ("cluster", lambda: bench_cluster(started, start_seconds)),
        ]
        for name, step in steps:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            rows += step()
        print(tabulate([[r["benchmark"], r["contender"], r["value"], r["unit"], r["note"]]
                        for r in rows],
                       headers=["benchmark", "contender", "value", "unit", "note"]))
        report = {"machine": machine(), "nodes": len(labels), "quick": args.quick, "results": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nmachine: {report['machine']}\nJSON: {args.json}")
        return 0
    finally:
        ray.shutdown()
        if started is not None:
            stop_cluster(started)
            shutil.rmtree(started, ignore_errors=True)  # made by mkdtemp here, for this run


if __name__ == "__main__":
    sys.exit(main())
