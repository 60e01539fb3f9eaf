"""The live ledger's actor watcher, driven here with a fake actor table (no Ray); the real one is
tested on the session cluster in tests/test_policies_cluster.py (a killed replica's node takes
the next replica, read inside it)."""
from __future__ import annotations

import pytest

import placement.liveness as liveness
from placement import errors
from placement.errors import PlacementError
from placement.policies import AntiAffinity
from placement.snapshot import ClusterSnapshot

TWO = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}, {"id": "b", "label": "node1"}])


@pytest.fixture
def spread():
    apart = AntiAffinity(live=True)
    placed = [apart.propose(TWO) for _ in range(2)]
    for decision in placed:
        apart.commit(decision)
    yield apart, placed
    liveness._watched.clear()


def test_dead_actors_are_released_and_the_watcher_stops_when_none_is_left(spread):
    apart, (first, second) = spread
    liveness._watched.update({"x1": (apart, first), "x2": (apart, second)})
    reads = iter([set(), {"x1", "other"}, {"x1", "x2"}])
    liveness._watch_loop(lambda: next(reads), wait=lambda _: None, connected=lambda: True)
    assert liveness.watched() == 0
    assert {apart.decide(TWO).node_name for _ in range(2)} == {"node0", "node1"}  # both free
    with pytest.raises(PlacementError) as full:
        apart.decide(TWO)
    assert full.value.rule == errors.SPREAD_EXHAUSTED


def test_a_failed_read_is_tried_again_and_a_lost_connection_ends_the_watch(spread):
    apart, (first, _) = spread
    liveness._watched["x1"] = (apart, first)
    calls = []

    def flaky() -> set[str]:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("GCS restarting")
        return {"x1"}

    liveness._watch_loop(flaky, wait=lambda _: None, connected=lambda: True)
    assert len(calls) == 2 and liveness.watched() == 0
    assert apart.decide(TWO).node_name == "node0"  # released on the second read
    liveness._watched["x2"] = (apart, first)
    liveness._watch_loop(lambda: pytest.fail("read after shutdown"), wait=lambda _: None,
                         connected=lambda: False)
    assert liveness.watched() == 0 and liveness._watcher is None


def test_live_is_configuration_that_survives_a_clone():
    assert AntiAffinity(live=True).clone().live and "live=True" in repr(AntiAffinity(live=True))
    with pytest.raises(TypeError, match="live must be True or False"):
        AntiAffinity(live="yes")


def test_one_failing_release_does_not_end_the_watch(spread):
    apart, (first, second) = spread

    class Broken:
        def release(self, decision):
            raise RuntimeError("a policy of the user's that fails")

    liveness._watched.update({"x0": (Broken(), first), "x1": (apart, second)})
    liveness._watch_loop(lambda: {"x0", "x1"}, wait=lambda _: None, connected=lambda: True)
    assert liveness.watched() == 0 and apart.decide(TWO).node_name == "node1"
