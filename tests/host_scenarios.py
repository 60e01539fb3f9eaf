"""Scenarios on separate hosts, run as a driver on host 0:

    ip netns exec <host 0> python -m tests.host_scenarios DESCRIPTION [SCENARIO ...]

DESCRIPTION is what ``HostsCluster.describe()`` printed. Prints one JSON object (scenario name ->
what it saw); tests/test_hosts.py asserts on it. Where work ran is read inside the work: the
address of the host it ran on.
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter
from concurrent.futures import wait
from pathlib import Path

import ray

import placement
from placement import (
    Affinity,
    AntiAffinity,
    LeastLoaded,
    Local,
    Locality,
    Packing,
    PlacementError,
    PlacementExecutor,
    RoundRobin,
    ejection,
)

from .hosts_cluster import HostsCluster, attach, zone_of

STREAM_PER_SECOND = 5
DEATH_WAIT_SECONDS = 300  # Ray marking a cut host dead: about 1-3 minutes here
RESULT_WAIT_SECONDS = 180  # then the calls it held: run elsewhere (a minute or more), or failed
EVENTS_WAIT_SECONDS = 20


@ray.remote(num_cpus=1, max_retries=3)
def where(i: int = 0, hold: float = 0.0) -> tuple[int, str]:
    time.sleep(hold)
    return i, ray.util.get_node_ip_address()


@ray.remote(num_cpus=1)
def produce(size: int) -> bytes:
    return b"x" * size


@ray.remote(num_cpus=1)
def consume(data: bytes) -> tuple[int, str]:
    return len(data), ray.util.get_node_ip_address()


def addresses_of(refs: list, timeout: float = 60) -> Counter:
    return Counter(address for _, address in ray.get(refs, timeout=timeout))


def basics(cluster: HostsCluster) -> dict:
    """Every policy over the hosts, read inside the work; label filters; the executor;
    status and explain."""
    live = placement.current_snapshot(refresh=True).placeable
    zones = {a: zone_of(i) for i, a in enumerate(cluster.hosts.addresses)}
    seen: dict = {"nodes": sorted((n.label, n.address, n.labels.get("zone")) for n in live)}
    joined = len(live)
    rr = RoundRobin().place(where)
    seen["round_robin"] = sorted(addresses_of([rr.remote(i) for i in range(2 * joined)]).values())
    skew = AntiAffinity(topology="zone", max_skew=1).place(where)
    by_zone = Counter(zones[a] for a in addresses_of([skew.remote(i) for i in range(4)]).elements())
    seen["zone_skew"] = dict(sorted(by_zone.items()))
    only_z2 = RoundRobin(where={"zone": "z2"}).place(where)
    seen["where_z2"] = sorted({zones[a] for a in addresses_of(
        [only_z2.remote(i) for i in range(4)]).elements()})
    pinned = Affinity("node2").place(where)
    seen["affinity_node2"] = sorted(addresses_of([pinned.remote(i) for i in range(3)]))
    spread = AntiAffinity(max_per_node=1)
    actors = [spread.place(Probe).remote() for _ in range(joined)]
    seen["anti_affinity_actors"] = len({ray.get(a.address.remote(), timeout=60) for a in actors})
    try:
        spread.place(Probe).remote()
        seen["anti_affinity_refused"] = None
    except PlacementError as refusal:
        seen["anti_affinity_refused"] = refusal.rule
    for actor in actors:
        ray.kill(actor)
    packed = Packing()
    groups = {g: addresses_of([packed.place(where, group=g).remote(i) for i in range(2)])
              for g in ("a", "b")}
    seen["packing"] = {g: sorted(c.values()) for g, c in groups.items()}
    seen["packing_apart"] = not set(groups["a"]) & set(groups["b"])
    source = RoundRobin(where={"placement.node": "node2"}).place(produce).remote(4_000_000)
    ray.wait([source], timeout=60, fetch_local=False)
    near = (Locality() | RoundRobin()).place(consume)
    seen["locality"] = sorted(addresses_of([near.remote(source) for _ in range(3)]))
    seen["node2_address"] = cluster.hosts.addresses[2]
    local = Local().place(where)
    seen["local"] = sorted(addresses_of([local.remote(i) for i in range(2)]))  # the driver's
    least = LeastLoaded().place(where)
    seen["least_loaded"] = len(addresses_of([least.remote(i, 1.0) for i in range(joined)]))
    with AntiAffinity().reserve(joined, num_cpus=1, timeout=60) as gang:
        seen["reservation"] = len(addresses_of(
            [gang.place(where, num_cpus=1).remote(i) for i in range(joined)]))
    with PlacementExecutor(LeastLoaded()) as pool:
        futures = [pool.submit(_address) for _ in range(2 * joined)]
        wait(futures, timeout=120)
        seen["executor"] = sorted(Counter(f.result() for f in futures).values())
    ref = rr.remote(99)
    ray.get(ref, timeout=60)
    seen["explain"] = _explained(ref)
    status = cluster.hosts.run(0, [str(Path(sys.executable).parent / "placement"), "status",
                                   "--address", cluster.head], env=cluster.env(), timeout=60)
    seen["status"] = status.stdout
    return seen


def _explained(ref) -> str:
    """explain(ref) once Ray's task events have it (they lag about a second); bounded."""
    deadline = time.monotonic() + EVENTS_WAIT_SECONDS
    while True:
        told = placement.explain(ref)
        if told.state != "unknown" or time.monotonic() > deadline:
            return str(told)
        time.sleep(0.5)


def _address() -> str:
    return str(ray.util.get_node_ip_address())


@ray.remote(num_cpus=0)
class Probe:
    def address(self) -> str:
        return str(ray.util.get_node_ip_address())


def stream(cluster: HostsCluster, make_policy, victim: int, fault: str, seconds: float = 24.0,
           fault_at: float = 6.0, heal_after: float | None = None,
           busy: int | None = None, hold: float = 0.0) -> dict:
    """Submit ``where`` STREAM_PER_SECOND a second for ``seconds``; at ``fault_at`` cut host
    ``victim`` off (or kill its processes); with ``busy``, that host's CPUs are held by long
    tasks all along (busy, not unreachable). Returns when every result came or failed."""
    hosts = cluster.hosts
    victim_address = hosts.addresses[victim]
    victim_id = next(n.node_id for n in placement.current_snapshot(refresh=True).placeable
                     if n.address == victim_address)
    holders = []
    if busy is not None:
        held = RoundRobin(where={"placement.node": f"node{busy}"}).place(where)
        holders = [held.remote(-1, seconds + 10) for _ in range(2)]
    policy = make_policy()
    handle = policy.place(where) if policy is not None else _RayDefault()
    refs, placed = [], []
    began = time.monotonic()
    cut_at = ejected_at = readmitted_at = None
    healed_at = None
    i = 0
    while time.monotonic() - began < seconds:
        now = time.monotonic() - began
        if cut_at is None and now >= fault_at:
            if fault == "cut":
                hosts.cut(victim)
            else:
                hosts.kill(victim)
            cut_at = now
        if cut_at is not None and heal_after is not None and healed_at is None \
                and now >= cut_at + heal_after:
            hosts.heal(victim)
            healed_at = now
        left_out = victim_id in ejection.left_out()
        if ejected_at is None and left_out:
            ejected_at = now
        if ejected_at is not None and readmitted_at is None and not left_out:
            readmitted_at = now
        submitted = handle.submit(i, hold)
        refs.append(submitted.result)
        if submitted.decision is not None:  # Ray's own decisions are not known when made
            placed.append((round(now, 2), submitted.decision.node.address))
        i += 1
        time.sleep(max(0.0, began + i / STREAM_PER_SECOND - time.monotonic()))
    results: dict[int, str] = {}
    last_result_at = None
    errors: Counter = Counter()
    # Calls pinned to a cut host wait for Ray to mark it dead (then soft ones run elsewhere):
    # wait for that, at most DEATH_WAIT_SECONDS, then RESULT_WAIT_SECONDS more.
    deadline = time.monotonic() + DEATH_WAIT_SECONDS + RESULT_WAIT_SECONDS
    dead_after = None
    pending = list(refs)
    while pending and time.monotonic() < deadline:
        if dead_after is None and cut_at is not None and heal_after is None \
                and not _alive_to_ray(victim_id):
            dead_after = time.monotonic() - began - cut_at
            deadline = min(deadline, time.monotonic() + RESULT_WAIT_SECONDS)
        done, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0,
                                 fetch_local=True)
        if done:
            last_result_at = time.monotonic() - began
        for ref in done:
            try:
                index, address = ray.get(ref)
                results[index] = address
            except Exception as error:  # noqa: BLE001 - counted by type
                errors[type(error).__name__] += 1
    on_victim = [t for t, a in placed if a == victim_address]
    after_cut = [t for t in on_victim if cut_at is not None and t >= cut_at]
    seen = {
        "submitted": len(refs), "finished": len(results), "errors": dict(errors),
        "pending": len(pending), "cut_at": cut_at, "healed_at": healed_at,
        "ejected_after": None if ejected_at is None or cut_at is None else ejected_at - cut_at,
        "placed_on_victim": len(on_victim),
        "last_placement_after_cut": (max(after_cut) - cut_at) if after_cut else None,
        "placed_on_victim_after_heal": len([t for t in on_victim
                                            if healed_at is not None and t >= healed_at]),
        "readmitted_after": None if readmitted_at is None or cut_at is None
        else readmitted_at - cut_at,
        "placed_while_left_out": len([t for t in on_victim if ejected_at is not None
                                      and ejected_at <= t < (readmitted_at or seconds)]),
        "ran_on": dict(Counter(results.values())),
        "victim": victim_address, "ray_marked_dead_after": dead_after,
        "last_result_at": last_result_at, "stream_seconds": seconds,
        "busy_ejected": busy is not None and any(
            n.address == hosts.addresses[busy] for n in _left_out_nodes()),
    }
    for ref in holders:
        ray.cancel(ref, force=True)
    return seen


def _alive_to_ray(node_id: str) -> bool:
    """Ray's own view (its node table), not the snapshot's: ejected nodes read as gone there."""
    return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())


class _RayDefault:
    """Ray's own scheduler as a contender: ``submit`` as a handle's, with no decision."""

    def submit(self, *args):
        return placement.Submitted(where.remote(*args), None)


def _left_out_nodes():
    snapshot = placement.current_snapshot()
    return [snapshot.by_id[i] for i in ejection.left_out() if i in snapshot.by_id]


def hard_after_cut(cluster: HostsCluster) -> dict:
    """Host 3 is cut off (the stream before left it so): hard placements there refuse at once,
    naming it; a strict spread counts only the hosts left."""
    seen = {}
    began = time.monotonic()
    try:
        Affinity("node3").place(where).remote()
        seen["affinity"] = None
    except PlacementError as refusal:
        seen["affinity"] = {"rule": refusal.rule, "names_node3": "node3" in str(refusal)}
    spread = AntiAffinity(max_per_node=1)
    placed = []
    try:
        for _ in range(5):
            placed.append(spread.place(where).remote())
        seen["spread_refused"] = None
    except PlacementError as refusal:
        seen["spread_refused"] = refusal.rule
    seen["spread_ran_on"] = sorted(addresses_of(placed))
    seen["seconds_to_refuse"] = round(time.monotonic() - began, 2)
    return seen


def fresh_host_joins(cluster: HostsCluster) -> dict:
    """Host 4 joins after the cut: a refresh later, RoundRobin places on it (read inside)."""
    cluster.join(4)
    placement.current_snapshot(refresh=True)
    handle = RoundRobin().place(where)
    return {"ran_on": sorted(addresses_of([handle.remote(i) for i in range(8)])),
            "fresh": cluster.hosts.addresses[4]}


SCENARIOS = {
    "basics": basics,
    # Cut host 2 off for 6 s (Ray does not mark it dead): left out, then back after its back-off.
    "cut_and_heal": lambda c: stream(c, lambda: RoundRobin(), 2, "cut", seconds=30,
                                     fault_at=4, heal_after=6),
    # Cut host 3 off for good while host 1's CPUs are held by long tasks (busy, not cut); the
    # calls last a second, so some are running on host 3 at the cut.
    "cut": lambda c: stream(c, lambda: RoundRobin(), 3, "cut", busy=1, hold=1.0),
    "hard_after_cut": hard_after_cut,
    "fresh_host_joins": fresh_host_joins,
    # Host 4's processes killed mid-stream (its raylet refuses connections at once).
    "killed": lambda c: stream(c, lambda: LeastLoaded(), 4, "kill", seconds=16,
                               fault_at=4, hold=1.0),
}


def main(argv: list[str]) -> int:
    cluster = attach(argv[0])
    names = argv[1:] or list(SCENARIOS)
    placement.connect()
    out = {}
    for name in names:
        began = time.monotonic()
        out[name] = SCENARIOS[name](cluster)
        out[name]["seconds"] = round(time.monotonic() - began, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
