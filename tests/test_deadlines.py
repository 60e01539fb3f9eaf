"""Pending deadlines without Ray: the start-or-deadline race settled by one put-if-absent (a fake
GCS key-value store), and bad pending_timeout values. Real tasks held behind a busy node are
tested in tests/test_diagnosis_cluster.py."""
from __future__ import annotations

import pytest
import ray

import placement.deadlines as deadlines
from placement import Affinity, RoundRobin, errors
from placement.errors import PlacementError


class FakeKV:
    def __init__(self) -> None:
        self.store: dict[str, str] = {}

    def put_new(self, key: str, value: str) -> bool:
        if key in self.store:
            return False
        self.store[key] = value
        return True

    def put(self, key: str, value: str) -> None:
        self.store[key] = value

    def get(self, key: str) -> bytes | None:
        value = self.store.get(key)
        return None if value is None else value.encode()

    def delete(self, key: str, by_prefix: bool = False) -> None:
        self.store.pop(key, None)


class FakeRef:
    def __init__(self) -> None:
        self.cancelled = False

    def task_id(self):
        return type("TaskID", (), {"hex": lambda self: "t1"})()


@pytest.fixture
def kv(monkeypatch):
    fake = FakeKV()
    monkeypatch.setattr(deadlines._ray, "kv_put_new", fake.put_new)
    monkeypatch.setattr(deadlines._ray, "kv_put", fake.put)
    monkeypatch.setattr(deadlines._ray, "kv_get", fake.get)
    monkeypatch.setattr(deadlines._ray, "kv_del", fake.delete)
    monkeypatch.setattr(deadlines, "waiting_because",
                        lambda decision, asked, labels: "node1 is busy: CPU 0 of the 1 asked")
    cancelled = []
    monkeypatch.setattr(deadlines.ray, "cancel", cancelled.append)
    monkeypatch.setattr(deadlines, "_add", lambda seconds, item: None)  # no watcher thread
    return fake, cancelled


class Releases:
    def __init__(self) -> None:
        self.released: list = []

    def release(self, decision) -> None:
        self.released.append(decision)


KEY = deadlines.key_of("j1", "t1")


def watch(ref, policy=None):
    return deadlines._Watch("train", 2.0, policy or Releases(), "decision", {"CPU": 1}, {},
                            key=KEY, ref=ref)


def test_a_task_that_started_first_runs_and_its_deadline_forgets_it(kv):
    fake, cancelled = kv
    assert deadlines.settle(KEY, lambda x: x * 2, 21) == 42
    assert deadlines.settle(KEY, lambda x: x * 2, 4) == 8  # Ray retried it: it runs again
    policy = Releases()
    deadlines._expire(watch(FakeRef(), policy))
    assert cancelled == [] and fake.store == {}  # nothing refused, nothing left behind
    assert deadlines.refusal("t1") is None and policy.released == []


def test_a_deadline_that_came_first_cancels_the_task_and_a_late_start_refuses_to_run(kv):
    fake, cancelled = kv
    ref, policy = FakeRef(), Releases()
    deadlines._expire(watch(ref, policy))
    assert cancelled == [ref] and policy.released == ["decision"]  # its slot is free again
    ran = []
    for _ in range(2):  # the cancel lost the race: it starts anyway, and Ray retries it
        with pytest.raises(PlacementError) as late:
            deadlines.settle(KEY, ran.append, "side effect")
    assert ran == [] and late.value.rule == errors.PENDING_TIMEOUT
    assert "node1 is busy" in late.value.detail
    refused = deadlines.refusal("t1")
    assert refused is not None and refused.rule == errors.PENDING_TIMEOUT
    assert "after 2s: node1 is busy" in refused.detail


def train() -> None:
    return None


@pytest.mark.parametrize("bad", [0, -1, "2", True, float("nan"), float("inf"), 86_401])
def test_a_bad_pending_timeout_is_refused_before_anything_runs(bad):
    with pytest.raises(ValueError, match="pending_timeout must be None or seconds"):
        RoundRobin().place(train, pending_timeout=bad)
    with pytest.raises(ValueError, match="pending_timeout must be None or seconds"):
        RoundRobin().place(train, pending_timeout=2).options(pending_timeout=bad)
    with pytest.raises(ValueError, match="pending_timeout must be None or seconds"):
        deadlines.check_pending_timeout(bad)


def test_a_generator_task_cannot_have_a_deadline():
    @ray.remote(num_returns="streaming")
    def numbers():
        yield 1

    with pytest.raises(ValueError, match="does not apply to generator tasks"):
        Affinity("node0").place(numbers, pending_timeout=2)
    assert Affinity("node0").place(numbers, pending_timeout=None).demand == {"CPU": 1.0}


def test_the_keys_of_drivers_that_ended_are_deleted_once(kv, monkeypatch):
    fake, _ = kv
    fake.store.update({"pending/j1/a": "started", "pending/j1/b": "timed out",
                       "pending/j2/c": "started"})

    def delete(key: str, by_prefix: bool = False) -> None:
        for name in [k for k in fake.store if (k.startswith(key) if by_prefix else k == key)]:
            del fake.store[name]

    monkeypatch.setattr(deadlines._ray, "kv_del", delete)
    monkeypatch.setattr(deadlines._ray, "kv_keys",
                        lambda prefix: [k for k in fake.store if k.startswith(prefix)])
    monkeypatch.setattr(deadlines._ray, "ended_job_ids", lambda: {"j1", "j9"})
    monkeypatch.setattr(deadlines, "_swept", False)
    deadlines._forget_ended_jobs_once()
    assert fake.store == {"pending/j2/c": "started"}  # j2 still runs: its keys stay
    fake.store["pending/j1/late"] = "started"
    deadlines._forget_ended_jobs_once()  # once per process
    assert "pending/j1/late" in fake.store
