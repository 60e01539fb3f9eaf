"""What to ask Ray's autoscaler for when no node can take a placement. Pure: no Ray here.

Work pinned to one node (node affinity, a ``ray.io/node-id`` selector, a ``node<i>`` resource) is
invisible to Ray's autoscaler: it never adds a node for it. A policy with ``wait_for_nodes=``
turns its refusal into the resource bundles (and label selectors) Ray's ``request_resources``
takes, so that a new node the placement fits is asked for explicitly (autoscale.py sends them
and waits).

>>> from placement.policies import AntiAffinity, Demand
>>> from placement.snapshot import ClusterSnapshot
>>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0", "resources": {"CPU": 4}}])
>>> spread = AntiAffinity(wait_for_nodes=60); _ = spread.decide(snap)
>>> try:
...     spread.decide(snap, {"CPU": 1})
... except PlacementError as refusal:
...     print(capacity_ask(spread, snap, Request(Demand({"CPU": 1})), refusal).describe())
2 bundles of {'CPU': 4.0} (one more node than the 1 in use)
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .. import errors
from ..errors import PlacementError
from ..naming import natural_key
from ..snapshot import ClusterSnapshot, NodeInfo
from .base import Policy
from .request import Request
from .selector import LabelFilter

# Refusals a new node can end: nothing fits the demand or its labels, or every node (value)
# already holds its share. A refusal of max_skew is not one: a new node starts a new, empty
# domain and makes the skew worse.
GROWABLE = frozenset({errors.RESOURCES_EXCEED_NODES, errors.NO_MATCHING_NODES,
                      errors.SPREAD_EXHAUSTED, errors.GROUPS_EXHAUSTED})


@dataclass(frozen=True)
class CapacityAsk:
    """Bundles for ``ray.autoscaler.sdk.request_resources`` with one label selector each."""

    bundles: tuple[Mapping[str, float], ...]
    selectors: tuple[Mapping[str, str], ...]
    why: str

    def describe(self) -> str:
        shown = f"{len(self.bundles)} bundle{'s' if len(self.bundles) > 1 else ''} of " \
                f"{dict(self.bundles[0])}"
        if self.selectors[0]:
            shown += f" on nodes with {dict(self.selectors[0])}"
        return f"{shown} ({self.why})"


def capacity_ask(policy: Policy, snapshot: ClusterSnapshot, request: Request,
                 refusal: PlacementError) -> CapacityAsk | None:
    """What would let ``policy`` place ``request`` after ``refusal`` on ``snapshot``: None when
    no new node can help (a placement bound to a node, a refusal of another kind)."""
    member = policy.patient()
    if refusal.rule not in GROWABLE or not member.can_grow(request):
        return None
    demand = request.demand
    selector = {**(member.where.selector if member.where is not None else {}),
                **(demand.where.selector if demand.where is not None else {})}
    # A bundle needs some resource to ask for: a zero-CPU placement asks for 1 CPU.
    unit = demand.as_dict() or {"CPU": 1.0}
    if refusal.rule in (errors.RESOURCES_EXCEED_NODES, errors.NO_MATCHING_NODES):
        return CapacityAsk((unit,), (selector,), "no node can hold it")
    # The nodes the policy may use for this demand: every one already holds its share.
    asked = LabelFilter(selector, "label_selector") if selector else None
    fitting = [n for n in snapshot.live
               if n.fits(unit.items()) and (asked is None or asked.matches(n.labels))]
    topology = member.topology
    if topology is not None:
        return _other_value(topology, fitting, unit, selector, asked)
    if not fitting:
        return CapacityAsk((unit,), (selector,), "no node can hold it")
    # One more node than those in use: bundles the size of the smallest of them, as many as the
    # nodes there can hold, plus one. Ray's request is the capacity the cluster should have (not
    # capacity on top of what runs), so only a new node can satisfy it.
    smallest = min(fitting, key=lambda n: [n.total.get(name, 0.0) for name in unit])
    shape = {name: smallest.total[name] for name in unit}
    count = 1 + sum(int(min(n.total.get(name, 0.0) // amount for name, amount in shape.items()))
                    for n in fitting)
    return CapacityAsk((shape,) * count, (selector,) * count,
                       f"one more node than the {len(fitting)} in use")


def _other_value(topology: str, fitting: list[NodeInfo], unit: Mapping[str, float],
                 selector: dict[str, str], asked: LabelFilter | None) -> CapacityAsk | None:
    """A node with a value of ``topology`` not yet in use that the placement's own conditions
    allow (``in(...)`` of what is left, else ``!in(...)`` of what is used)."""
    used = {n.labels[topology] for n in fitting if topology in n.labels}
    condition = asked.condition(topology) if asked is not None else None
    if condition is not None and not condition[0]:  # a positive condition: what is left of it
        left = sorted(condition[1] - used, key=natural_key)
        if not left:
            return None  # every value it allows is in use: no new node can help
        selector = {**selector, topology: f"in({','.join(left)})"}
        why = f"a {topology} of {', '.join(left)}"
    else:
        excluded = sorted(used | (condition[1] if condition is not None else set()),
                          key=natural_key)
        if excluded:
            selector = {**selector, topology: f"!in({','.join(excluded)})"}
        why = f"a {topology} other than {', '.join(excluded) or 'none'}"
    return CapacityAsk((dict(unit),), (selector,), why)
