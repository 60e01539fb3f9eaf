"""Placement-group bundles from a plan, and why a group of them could not be reserved. Pure: no
Ray here (the submit layer, ``placement/reserve.py``, creates the group).

Bundle i holds what one placement of the demand needs and is pinned to the node the plan chose
for placement i by Ray's own node label, ``ray.io/node-id`` (Ray 2.60 puts it on every node, so
this works on clusters the toolkit did not set up, and it holds no capacity of its own).

>>> from placement.snapshot import ClusterSnapshot
>>> from placement.policies import AntiAffinity, Demand
>>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0", "resources": {"CPU": 2}},
...                                    {"id": "b", "label": "node1", "resources": {"CPU": 2}}])
>>> plan = AntiAffinity().plan(snap, 2, {"CPU": 1})
>>> bundles_of(plan, Demand({"CPU": 1}))
([{'CPU': 1.0}, {'CPU': 1.0}], [{'ray.io/node-id': 'a'}, {'ray.io/node-id': 'b'}])
>>> bundle_resources(Demand({"CPU": 0}))         # Ray needs some resource in every bundle
{'memory': 1.0}
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from .. import errors
from ..errors import PlacementError
from ..snapshot import ClusterSnapshot, NodeInfo
from .decision import check_seconds, node_name
from .plan import Plan
from .request import Demand

# The label Ray 2.60 gives every node: its id. A bundle selecting it lands on that node only
# (measured: tests/test_reserve.py), whatever the group's strategy.
NODE_ID_LABEL = "ray.io/node-id"

# What a bundle holds when the demand asks for nothing (num_cpus=0): Ray refuses a bundle of no
# resources, and one byte of memory is the least any node has that nobody else would miss (a
# fraction of a CPU would keep a task asking for a node's every CPU off it).
ZERO_DEMAND_BUNDLE: Mapping[str, float] = {"memory": 1.0}


def check_reservation(n: Any, timeout: Any, groups: Sequence[Hashable] | None = None) -> None:
    """Refuse, before anything is created, a count, timeout or group list that cannot work.

    >>> check_reservation(0, 30)
    Traceback (most recent call last):
    ...
    ValueError: n must be a whole number of bundles >= 1, got 0: e.g. policy.reserve(4)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number of bundles >= 1, got {n!r}: "
                         "e.g. policy.reserve(4)")
    check_seconds("timeout", timeout, "timeout=30", optional=False)
    if groups is not None:
        if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence):
            raise TypeError(f"groups must be a list with one group key per bundle, got "
                            f"{type(groups).__name__}: e.g. groups=['a', 'a', 'b', 'b']")
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} keys for {n} bundles: give one key per "
                             "bundle")


def bundle_resources(demand: Demand) -> dict[str, float]:
    """What one bundle holds: the demand's resources, or ``ZERO_DEMAND_BUNDLE`` if it has none."""
    return demand.as_dict() or dict(ZERO_DEMAND_BUNDLE)


def bundles_of(plan: Plan, demand: Demand) -> tuple[list[dict[str, float]], list[dict[str, str]]]:
    """Bundles and their label selectors for a plan, in plan order (bundle i: decision i).
    A refused plan has no bundles: raise its refusal."""
    if plan.refused is not None:
        raise plan.refused
    resources = bundle_resources(demand)
    return ([dict(resources) for _ in plan.decisions],
            [{NODE_ID_LABEL: d.node.node_id} for d in plan.decisions])


def shortfall(need: Mapping[str, float], have: Mapping[str, float]) -> dict[str, float]:
    """The resources of ``need`` that ``have`` lacks, with the amount asked.

    >>> shortfall({"CPU": 2, "accel": 1}, {"CPU": 1.0, "accel": 1})
    {'CPU': 2}
    """
    return {name: amount for name, amount in need.items()
            if amount > have.get(name, 0.0) + 1e-9}


def missing(nodes: Sequence[NodeInfo], bundles: Sequence[Mapping[str, float]],
            snapshot: ClusterSnapshot) -> tuple[list[str], list[str]]:
    """Why a group of ``bundles`` (bundle i on ``nodes[i]``) was not reserved, as ``snapshot``
    sees the nodes now: one line per node that is gone or lacks the room its bundles ask for
    together, and the names of those nodes. Empty when every node has the room as read.

    >>> from placement.snapshot import ClusterSnapshot
    >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0", "resources": {"CPU": 2}}])
    >>> node = snap.live[0]
    >>> missing([node, node], [{"CPU": 2}, {"CPU": 2}], snap)[0]
    ["node0 (bundles 0, 1) asks {'CPU': 4.0} and has {'CPU': 2.0} free"]
    """
    by_node: dict[str, tuple[NodeInfo, list[int], dict[str, float]]] = {}
    for index, (node, bundle) in enumerate(zip(nodes, bundles, strict=True)):
        _, indexes, asked = by_node.setdefault(node.node_id, (node, [], {}))
        indexes.append(index)
        for name, amount in bundle.items():
            asked[name] = asked.get(name, 0.0) + float(amount)
    lines, names = [], []
    live = {n.node_id: n for n in snapshot.live}
    for node_id, (node, indexes, asked) in by_node.items():
        which = f"{node_name(node)} (bundle{'s' if len(indexes) > 1 else ''} " \
                f"{', '.join(map(str, indexes))})"
        now = live.get(node_id)
        if now is None:
            lines.append(f"{which} is gone")
        else:
            free = snapshot.free(now)
            short = shortfall(asked, free)
            if not short:
                continue
            shown = {name: round(float(free.get(name, 0.0)), 4) for name in asked}
            lines.append(f"{which} asks {asked} and has {shown} free")
        names.append(node_name(node))
    return lines, names


def timeout_error(seconds: float, nodes: Sequence[NodeInfo],
                  bundles: Sequence[Mapping[str, float]], snapshot: ClusterSnapshot
                  ) -> PlacementError:
    """The refusal of a group that was not ready in time: what each short node asked for and
    has free now, or, when every node has the room as read, that it was freed since."""
    lines, names = missing(nodes, bundles, snapshot)
    what = (f"{len(bundles)} bundle{'s' if len(bundles) > 1 else ''} of {dict(bundles[0])} "
            f"on {', '.join(dict.fromkeys(node_name(n) for n in nodes))}")
    if lines:
        detail = (f"the placement group ({what}) was not ready after {seconds:g} s: "
                  f"{'; '.join(lines)}; nothing was reserved")
        fix = ("free that capacity (other actors, tasks or placement groups hold it), ask for "
               "less per bundle, or raise timeout=")
    else:
        detail = (f"the placement group ({what}) was not ready after {seconds:g} s, though every "
                  "planned node has the room now (it was freed, or Ray was slow); nothing was "
                  "reserved")
        fix = "reserve again, or raise timeout="
        names = list(dict.fromkeys(node_name(n) for n in nodes))
    return PlacementError(errors.RESERVATION_TIMEOUT, detail, fix, names)
