"""Outlier ejection without Ray: the table (failures in a row, back-off, coming back), the probe
on real sockets (a listener that never accepts still answers: a busy raylet is reachable), the
snapshot reader leaving ejected nodes out, and which raylets a round probes (never the cluster).
On real hosts: tests/test_hosts.py."""
from __future__ import annotations

import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import placement.cluster as cluster_module
from placement import Affinity, AntiAffinity, PlacementError, RoundRobin, ejection
from placement.connect import DRIVER_KEEPALIVE, _driver_keepalive
from placement.diagnosis import RECENT
from placement.policies.base import left_out_note
from placement.reachability import (
    FAILURES,
    MAX_BACK_OFF_SECONDS,
    REMEMBERED,
    Reachability,
    tcp_probe,
)
from placement.snapshot import ClusterSnapshot


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_node_is_ejected_after_failures_in_a_row_and_back_after_its_back_off():
    clock = Clock()
    table = Reachability(clock=clock, back_off=10)
    assert not table.observe({"a": False}) and not table.observe({"a": True})  # one lost probe
    assert not table.observe({"a": False})
    assert table.observe({"a": False, "b": True})  # FAILURES == 2 in a row
    assert list(table.ejected()) == ["a"] and "did not answer 2 probes" in table.ejected()["a"].why
    clock.now = 9.9
    assert not table.observe({"a": True}) and "a" in table.ejected()  # answers, back-off not over
    clock.now = 10.0
    assert table.observe({"a": True}) and table.ejected() == {}
    # Ejected again soon after: the back-off doubles, up to its cap (never an overflow).
    for times in range(2, 1100):
        for _ in range(FAILURES):
            table.observe({"a": False})
        ejected = table.ejected()["a"]
        assert ejected.times == times
        assert ejected.until - clock.now == min(10 * 2 ** min(times - 1, 64),
                                                MAX_BACK_OFF_SECONDS)
        clock.now = ejected.until
        assert table.observe({"a": True})
    clock.now += MAX_BACK_OFF_SECONDS  # it answered for a whole back-off: forgiven
    table.observe({"a": True})
    for _ in range(FAILURES):
        table.observe({"a": False})
    assert table.ejected()["a"].times == 1


def test_after_its_back_off_a_node_needs_failures_in_a_row_to_stay_out_longer():
    clock = Clock()
    table = Reachability(clock=clock, back_off=10)
    for _ in range(FAILURES):
        table.observe({"a": False})
    clock.now = 10.0
    assert not table.observe({"a": False})  # one lost probe: still out, not for longer
    assert table.ejected()["a"].until == 10.0
    assert not table.observe({"a": False})  # twice in a row: out for twice as long
    assert table.ejected()["a"].until == 30.0 and table.ejected()["a"].times == 2


def test_a_flapping_node_keeps_doubling_its_back_off():
    clock = Clock()
    table = Reachability(clock=clock, back_off=10)
    spans = []
    for _ in range(5):
        for _ in range(FAILURES):
            table.observe({"a": False})
        ejected = table.ejected()["a"]
        spans.append(ejected.until - clock.now)
        clock.now = ejected.until
        table.observe({"a": True})  # back, answers once, then fails again
        clock.now += 1
        table.observe({"a": True})
    assert spans == [10, 20, 40, 80, 160]


def test_nodes_ray_no_longer_lists_alive_are_dropped():
    table = Reachability(clock=Clock())
    for _ in range(FAILURES):
        table.observe({"a": False, "b": False})
    table.keep_only(["b"])
    assert list(table.ejected()) == ["b"]


@pytest.mark.parametrize("back_off", [0, -1, float("nan"), float("inf"), "10"])
def test_a_bad_back_off_is_refused(back_off):
    with pytest.raises(ValueError, match="back_off"):
        Reachability(back_off=back_off)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.booleans()), max_size=3000))
def test_the_tables_stay_bounded_whatever_the_nodes(rounds):
    table = Reachability(clock=Clock())
    for node, ok in rounds:
        table.observe({f"n{node}": ok})
    assert len(table._failed) <= REMEMBERED and len(table._ejected) <= REMEMBERED
    assert len(table._times) <= REMEMBERED


def test_the_probe_answers_for_a_listener_that_never_accepts_and_not_for_a_closed_port():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(8)  # never accept(): as a raylet whose process is busy
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        assert tcp_probe([("127.0.0.1", busy.getsockname()[1]),
                          ("127.0.0.1", closed_port)], timeout=5) == [True, False]
        assert tcp_probe([], timeout=5) == []
        # Not probed, never raising: a name (no lookup), a bad port; IPv6 loopback is probed.
        assert tcp_probe([("not-an-ip", 80), ("127.0.0.1", 70000), ("127.0.0.1", -1),
                          ("::1", closed_port)], timeout=5) == [False] * 4
    finally:
        busy.close()


def _records(n: int) -> list[dict]:
    return [{"NodeID": f"{i:056x}", "Alive": True, "NodeManagerAddress": f"127.0.0.{i + 2}",
             "NodeManagerPort": 40000 + i, "Resources": {"CPU": 2.0, f"node{i}": 1000.0},
             "Labels": {"placement.node": f"node{i}"}} for i in range(n)]


def test_the_reader_reads_an_ejected_node_as_gone(monkeypatch):
    records = _records(3)
    monkeypatch.setattr(cluster_module.ray, "is_initialized", lambda: True)
    monkeypatch.setattr(cluster_module.ray, "nodes", lambda: records)
    monkeypatch.setattr(cluster_module._ray, "available_resources_per_node", lambda: {})
    table = Reachability(clock=Clock())
    monkeypatch.setattr(cluster_module, "REACHABILITY", table)
    assert [n.label for n in cluster_module.read_snapshot().placeable] == [
        "node0", "node1", "node2"]
    for _ in range(FAILURES):
        table.observe({records[1]["NodeID"]: False})
    snapshot = cluster_module.read_snapshot()
    assert [n.label for n in snapshot.placeable] == ["node0", "node2"]
    assert records[1]["Alive"]  # Ray's own records are not changed
    assert snapshot.left_out == (records[1]["NodeID"],)
    for policy in (RoundRobin(), RoundRobin() & AntiAffinity(), AntiAffinity() | RoundRobin()):
        reason = policy.decide(snapshot).reason
        assert reason.endswith("; left out, not answering: node1"), (policy, reason)
    assert "left out" not in RoundRobin().decide(ClusterSnapshot.from_ray(records)).reason
    with pytest.raises(PlacementError) as refusal:
        Affinity("node1").decide(snapshot)
    assert refusal.value.rule == "dead-node"


def test_a_round_probes_the_nodes_recent_placements_went_to_and_the_ejected_ones(monkeypatch):
    snapshot = ClusterSnapshot.from_ray(_records(50))
    monkeypatch.setattr(ejection, "RECENT", type(RECENT)(maxlen=10_000))
    monkeypatch.setattr(ejection, "PROBE_NODES", 4)
    table = Reachability(clock=Clock())
    monkeypatch.setattr(ejection, "REACHABILITY", table)
    assert ejection.targets(snapshot) == {}  # nothing placed: nothing probed
    policy = RoundRobin(seed=0)
    for _ in range(3):
        decision = policy.decide(snapshot)
        ejection.RECENT.append((None, decision))
    placed = [d.node.node_id for _, d in ejection.RECENT]
    found = ejection.targets(snapshot)
    assert set(found) == set(placed)
    node = snapshot.by_id[placed[0]]
    assert found[placed[0]] == (node.address, 40000 + int(placed[0], 16))
    far = f"{40:056x}"
    for _ in range(FAILURES):
        table.observe({far: False})
    assert far in ejection.targets(snapshot)
    for _ in range(20):
        ejection.RECENT.append((None, policy.decide(snapshot)))
    assert len(ejection.targets(snapshot)) == 4  # at most PROBE_NODES, ejected ones first
    assert far in ejection.targets(snapshot)
    for i in range(10, 30):  # many ejected: half the round stays for recent placements
        for _ in range(FAILURES):
            table.observe({f"{i:056x}": False})
    newest = ejection.RECENT[-1][1].node.node_id
    assert newest in ejection.targets(snapshot) and len(ejection.targets(snapshot)) == 4
    empty = ClusterSnapshot.from_dicts([{"id": "x", "label": "node0"}])  # no ports: skipped
    assert newest in ejection.targets(empty, snapshot)


def test_a_round_warns_when_it_leaves_a_node_out_and_when_the_node_is_back(monkeypatch, caplog):
    snapshot = ClusterSnapshot.from_ray(_records(3))
    clock = Clock()
    table = Reachability(clock=clock)
    monkeypatch.setattr(ejection, "REACHABILITY", table)
    monkeypatch.setattr(ejection, "RECENT", type(RECENT)(maxlen=100))
    cut = snapshot.placeable[1]
    ejection.RECENT.append((None, Affinity(cut.node_id).decide(snapshot)))
    answers = {"ok": False}
    monkeypatch.setattr(ejection, "tcp_probe",
                        lambda targets, timeout: [answers["ok"]] * len(targets))

    class Held:
        latest = snapshot
        refreshed = 0

        def refresh(self):
            self.refreshed += 1

    held = Held()
    caplog.set_level("WARNING", logger="placement")
    for _ in range(FAILURES):
        ejection._round([held])
    (left,) = [r.getMessage() for r in caplog.records]
    assert cut.node_id[:12] in left and f"{cut.address}:" in left and "for 10 s" in left
    assert "did not answer" in left and held.refreshed == 1
    caplog.clear()
    clock.now += 10
    answers["ok"] = True
    ejection._round([held])
    (back,) = [r.getMessage() for r in caplog.records]
    assert cut.node_id[:12] in back and "answers again" in back and held.refreshed == 2


def test_the_left_out_note_names_known_nodes_and_counts_the_rest():
    records = _records(5)
    ids = [r["NodeID"] for r in records]
    unknown = f"{999:056x}"
    snap = ClusterSnapshot.from_ray(records, left_out=[unknown, ids[1], ids[1], ids[2]])
    assert snap.left_out == (unknown, ids[1], ids[2])  # each once
    assert left_out_note(snap) == "; left out, not answering: node1, node2 and 1 more"
    assert left_out_note(ClusterSnapshot.from_ray(records, left_out=[unknown])) == (
        "; left out, not answering: 1 node(s)")
    with pytest.raises(TypeError, match="node ids"):
        ClusterSnapshot.from_ray(records, left_out=ids[0])


def test_a_node_the_table_forgot_is_not_said_to_answer_again(caplog):
    gone = Reachability(clock=Clock())
    for _ in range(FAILURES):
        gone.observe({"x": False})
    caplog.set_level("WARNING", logger="placement")
    ejection._say_changes(gone.ejected(), {}, {"x": ("10.0.0.1", 1)}, {})  # forgotten
    assert caplog.records == []
    ejection._say_changes(gone.ejected(), {}, {"x": ("10.0.0.1", 1)}, {"x": True})
    assert "answers again" in caplog.records[0].getMessage()


def test_the_driver_pings_silent_connections_sooner_only_while_ray_initialises(monkeypatch):
    names = list(DRIVER_KEEPALIVE)
    for name in [*names, "PLACEMENT_KEEPALIVE"]:
        monkeypatch.delenv(name, raising=False)
    with _driver_keepalive():
        assert {n: os.environ.get(n) for n in names} == DRIVER_KEEPALIVE
    assert not any(n in os.environ for n in names)  # no process started later inherits them
    monkeypatch.setenv(names[0], "60000")
    with _driver_keepalive():
        assert os.environ[names[0]] == "60000"  # the user's value wins
    assert os.environ[names[0]] == "60000"
    monkeypatch.delenv(names[0])
    for off in ("off", "OFF", "0", "false", "no"):
        monkeypatch.setenv("PLACEMENT_KEEPALIVE", off)
        with _driver_keepalive():
            assert not any(n in os.environ for n in names), off
