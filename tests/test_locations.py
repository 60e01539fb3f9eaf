"""Where a call's arguments are (placement/locations.py), read as Locality reads them at
``.remote()``: right after ``ray.wait`` a result's node is known, on a real cluster, and the
re-read that makes it so is bounded and spares results that have no node to wait for."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import ray

from placement import locations
from placement.locations import INLINE_LIMIT, argument_data

BIG = 2 * 2**20


@ray.remote(num_cpus=0, num_returns=2)
def made_here() -> tuple[str, bytes]:
    return ray.get_runtime_context().get_node_id(), b"x" * BIG


@pytest.mark.cluster
def test_a_result_read_right_after_ray_wait_names_the_node_that_made_it(ray_cluster):
    """Ray can answer ray.wait a moment before the owner records the result's node (without
    the re-read, a few of these 800 reads found no node): every read here must name the node
    that made the result (read inside the task)."""
    misses = []
    for _ in range(400):
        pairs = [made_here.remote() for _ in range(2)]
        blobs = [blob for _, blob in pairs]
        ray.wait(blobs, num_returns=len(blobs), timeout=60, fetch_local=False)
        seen = [argument_data((blob,), {}) for blob in blobs]
        made = ray.get([node for node, _ in pairs], timeout=60)
        misses += [(node, data) for node, data in zip(made, seen, strict=True)
                   if set(data) != {node} or data[node] < BIG]
    assert not misses, misses[:5]


class ScriptedLocations:
    """Ray's ``get_local_object_locations`` answering from a script: each read of a ref takes
    its next answer (the last one repeats), as Ray answered in the race above."""

    def __init__(self, script: Mapping[Any, list[dict[str, Any]]]) -> None:
        self.script = {ref: list(answers) for ref, answers in script.items()}
        self.reads: list[Any] = []

    def __call__(self, refs: list[Any]) -> dict[Any, dict[str, Any]]:
        answers = {}
        for ref in refs:
            self.reads.append(ref)
            queue = self.script[ref]
            answers[ref] = queue.pop(0) if len(queue) > 1 else queue[0]
        return answers


def ref(i: int) -> ray.ObjectRef:
    return ray.ObjectRef(bytes([i]) * 28)


def info(size: int | None, *nodes: str, spilled: bool = False) -> dict[str, Any]:
    return {"node_ids": list(nodes), "object_size": size, "did_spill": spilled}


def test_a_big_result_with_no_node_yet_is_read_again_until_its_node_shows(monkeypatch):
    big = ref(1)
    scripted = ScriptedLocations({big: [info(BIG), info(BIG), info(BIG, "n1")]})
    monkeypatch.setattr(locations, "get_local_object_locations", scripted)
    assert argument_data((big,), {}) == {"n1": BIG}
    assert scripted.reads == [big, big, big]


def test_results_with_no_node_to_wait_for_are_read_once(monkeypatch):
    """Inlined (no larger than Ray's inline limit), not computed yet (no size) or spilled (maybe
    in external storage): none is read again, and a big one with its node is not either."""
    inlined, pending, spilled, placed = ref(2), ref(3), ref(4), ref(5)
    scripted = ScriptedLocations({
        inlined: [info(INLINE_LIMIT), info(INLINE_LIMIT, "never")],
        pending: [info(None), info(BIG, "never")],
        spilled: [info(BIG, spilled=True), info(BIG, "never")],
        placed: [info(BIG, "n2"), info(BIG, "never")],
    })
    monkeypatch.setattr(locations, "get_local_object_locations", scripted)
    assert argument_data((inlined, pending), {"s": spilled, "p": placed}) == {"n2": BIG}
    assert len(scripted.reads) == 4 and set(scripted.reads) == {inlined, pending, spilled, placed}


def test_a_big_result_that_never_shows_a_node_is_given_up_on(monkeypatch):
    """All its copies lost, say: the read ends (SETTLE_S) and counts it for nothing, and the
    other arguments still count."""
    lost, placed = ref(6), ref(7)
    scripted = ScriptedLocations({lost: [info(BIG)], placed: [info(BIG, "n3")]})
    monkeypatch.setattr(locations, "get_local_object_locations", scripted)
    monkeypatch.setattr(locations, "SETTLE_S", 0.02)
    assert argument_data((lost, placed), {}) == {"n3": BIG}
    assert scripted.reads.count(lost) > 1 and scripted.reads.count(placed) == 1
