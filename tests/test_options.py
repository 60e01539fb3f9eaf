"""Decision -> Ray options, and the checks on user options (pure)."""
from __future__ import annotations

import pytest

from placement import ClusterSnapshot, PlacementError
from placement.options import check_user_options, demand_of, merged_options, placement_options
from placement.policies.decision import LABEL, NODE_ID, RESOURCE, Decision

SNAP = ClusterSnapshot.from_dicts([
    {"id": "a" * 56, "label": "node0", "labels": {"placement.node": "node0"}},
    {"id": "b" * 56, "label": "node1"},  # labelled by resource only, no Ray label
])


def decision(label: str, backend: str, soft: bool | str) -> Decision:
    return Decision(SNAP.by_label[label], "test", "test", backend, soft, 0.001)


@pytest.mark.parametrize("backend, own", [
    (RESOURCE, {"resources": {"node0": 0.001}}),
    (NODE_ID, {}),
    (LABEL, {"label_selector": {"placement.node": "node0"}}),
])
def test_hard_backends_also_carry_hard_node_affinity(backend, own):
    # Without it a resource demand or label selector for a node that died waits forever.
    options = placement_options(decision("node0", backend, False))
    strategy = options.pop("scheduling_strategy")
    assert (strategy.node_id, strategy.soft) == ("a" * 56, False)
    assert options == own


@pytest.mark.parametrize("backend", [RESOURCE, NODE_ID, LABEL])
def test_soft_uses_label_selector_with_fallback_on_labelled_nodes(backend):
    assert placement_options(decision("node0", backend, True)) == {
        "label_selector": {"placement.node": "node0"},
        "fallback_strategy": [{"label_selector": {"placement.node": "!node0"}}],
    }
    strategy = placement_options(decision("node1", backend, True))["scheduling_strategy"]
    # no Ray label at all: soft node affinity that also spills while the node is busy
    assert (strategy.node_id, strategy.soft, strategy._spill_on_unavailable) == \
        ("b" * 56, True, True)


def test_soft_names_an_unlabelled_node_by_rays_node_id_label():
    snap = ClusterSnapshot.from_dicts([
        {"id": "c" * 56, "address": "127.0.0.12", "labels": {"ray.io/node-id": "c" * 56}}])
    soft = Decision(snap.live[0], "test", "test", NODE_ID, True, 0.001)
    assert placement_options(soft) == {
        "label_selector": {"ray.io/node-id": "c" * 56},
        "fallback_strategy": [{"label_selector": {"ray.io/node-id": "!" + "c" * 56}}],
    }


@pytest.mark.parametrize("label", ["node0", "node1"])
def test_soft_gone_waits_while_the_node_is_busy(label):
    strategy = placement_options(decision(label, NODE_ID, "gone"))["scheduling_strategy"]
    assert (strategy.soft, strategy._spill_on_unavailable) == (True, False)


def test_merge_keeps_user_options_and_resources():
    merged = merged_options({"num_cpus": 2, "resources": {"disk": 1}, "name": "x"},
                            decision("node0", RESOURCE, False))
    merged.pop("scheduling_strategy")
    assert merged == {"num_cpus": 2, "resources": {"disk": 1, "node0": 0.001}, "name": "x"}


def test_demand_and_option_checks():
    assert demand_of({"num_cpus": 0}).as_dict() == {}
    assert demand_of({"num_gpus": 1, "memory": 10}).as_dict() == {
        "CPU": 1.0, "GPU": 1.0, "memory": 10.0}
    check_user_options({"placement_group": "default", "num_cpus": 1})
    with pytest.raises(PlacementError, match="drop scheduling_strategy="):
        check_user_options({"scheduling_strategy": "SPREAD"})
    with pytest.raises(ValueError, match="num_cpus"):
        check_user_options({"resources": {"CPU": 2}})
    with pytest.raises(ValueError, match="at least 0.0001"):
        check_user_options({"resources": {"x": 5e-5}})
