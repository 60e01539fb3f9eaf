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
