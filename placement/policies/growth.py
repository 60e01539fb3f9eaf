"""What to ask Ray's autoscaler for when no node can take a placement. Pure: no Ray here.

Work pinned to one node (node affinity, a ``ray.io/node-id`` selector, a ``node<i>`` resource) is
invisible to Ray's autoscaler: it never adds a node for it. A policy with ``wait_for_nodes=``
turns its refusal into the resource bundles (and label selectors) Ray's ``request_resources``
takes, so that a new node the placement fits is asked for explicitly (autoscale.py sends them
and waits).

>>> from placement.policies import AntiAffinity
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
from ..snapshot import ClusterSnapshot
from .base import Fallback, Policy
from .request import Demand, Request

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
    no new node can help."""
    if refusal.rule not in GROWABLE:
        return None
    member = _patient_member(policy)
    demand = request.demand
    selector = {**(member.where.selector if member.where is not None else {}),
                **(demand.where.selector if demand.where is not None else {})}
    # A bundle needs some resource to ask for: a zero-CPU placement asks for 1 CPU.
    need = demand.as_dict() or {"CPU": 1.0}
    if refusal.rule in (errors.RESOURCES_EXCEED_NODES, errors.NO_MATCHING_NODES):
        return CapacityAsk((need,), (selector,), "no node can hold it")
    topology: str | None = getattr(member, "topology", None)
    if topology is not None:  # a node with a value not yet used (or, as Ray reads it, none)
        values = sorted({n.labels[topology] for n in snapshot.live if topology in n.labels})
        return CapacityAsk((need,), ({**selector, topology: f"!in({','.join(values)})"},),
                           f"a {topology} other than {', '.join(values)}")
    # One more node than the policy's nodes: a bundle as large as the largest of them per node,
    # so that the ones there cannot take two.
    kept = [n for n in snapshot.live if _matches(n.labels, member, demand)]
    largest = max((n.total.get("CPU", 0.0) for n in kept), default=0.0)
    shape = {**need, "CPU": max(need.get("CPU", 0.0), largest)}
    return CapacityAsk((shape,) * (len(kept) + 1), (selector,) * (len(kept) + 1),
                       f"one more node than the {len(kept)} in use")


def _patient_member(policy: Policy) -> Policy:
    """The policy whose shape is asked for: in a fallback, the first member that waits."""
    if isinstance(policy, Fallback):
        return next((p for p in policy.policies if p.wait_for_nodes), policy.policies[0])
    return policy


def _matches(labels: Mapping[str, str], member: Policy, demand: Demand) -> bool:
    return ((member.where is None or member.where.matches(labels))
            and (demand.where is None or demand.where.matches(labels)))
