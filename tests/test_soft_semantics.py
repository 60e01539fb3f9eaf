"""What "soft" means on Ray 2.60, settled on the real cluster: a soft placement whose node is
alive but busy (its CPUs held by actors) either runs elsewhere at once or waits for the node.
Where the work ran is read inside it."""
from __future__ import annotations

import pytest

from .conftest import run_scenarios

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def soft(local_cluster):
    return run_scenarios("soft_scenarios", local_cluster.state_dir, timeout=600)


@pytest.mark.parametrize("form", [
    "label selector + fallback", "soft node affinity, spill on unavailable",
    "toolkit soft=True", "toolkit soft='busy'",
])
def test_these_run_elsewhere_while_the_node_is_busy(soft, form):
    assert soft[form]["spilled"] and not soft[form]["ran_on_busy_node"], soft[form]


@pytest.mark.parametrize("form", ["soft node affinity", "toolkit soft='gone'"])
def test_these_wait_for_the_busy_node(soft, form):
    assert not soft[form]["spilled"] and soft[form]["ran_on_busy_node"], soft[form]


def test_soft_node_affinity_keeps_to_a_label_selector_beside_it(soft):
    """What soft="gone" with where= relies on: Ray's fallback stays inside the selector."""
    beside = soft["beside a label_selector"]
    assert beside["ran_on_target"] == 0 and len(beside["ran_on"]) == 4, beside


def test_gone_places_zero_cpu_actors_exactly(soft):
    """Ray ignores soft node affinity for actors asking no resources; the toolkit's form for
    them still puts each where RoundRobin's default decided."""
    actors = soft["zero-CPU actors, soft='gone'"]
    assert actors["where_planned"] == actors["placed"] == 8 and actors["nodes"] > 1, actors
