"""The nodes a backend can target in one snapshot, and the feasibility refusals that name the fix.

Built once per (snapshot, backend) by a policy; every decision on that snapshot reuses it, so a
decision stays O(1) at 10,000 nodes. Pure: no Ray here.

>>> from placement.snapshot import ClusterSnapshot
>>> snap = ClusterSnapshot.from_dicts([{"id": "b", "label": "node1", "resources": {"CPU": 1}},
...                                    {"id": "a", "label": "node0", "resources": {"CPU": 4}}])
>>> cands = Candidates(snap, RESOURCE)
>>> [node_name(node) for node in cands.fitting(Demand({"CPU": 2}))]
['node0']
"""
from __future__ import annotations

from collections.abc import Sequence

from .. import errors
from ..errors import PlacementError
from ..naming import DEFAULT_LABEL_PREFIX, LABEL_KEY
from ..snapshot import ClusterSnapshot, NodeInfo
from .decision import DEFAULT_PIN_AMOUNT, LABEL, RESOURCE, node_name, node_order
from .request import Demand


class Candidates:
    """The live nodes ``backend`` can target, in placement order, with cached fit checks.

    For the resource backend, ``pin_amount`` (None: the placements pin nothing, e.g. soft ones)
    must fit every candidate's label resource: a pin above a node's ``node<i>`` total would wait
    forever in Ray, so it is refused here rather than that node being left out unsaid.
    """

    def __init__(self, snapshot: ClusterSnapshot, backend: str,
                 pin_amount: float | None = DEFAULT_PIN_AMOUNT) -> None:
        self.snapshot = snapshot
        self.backend = backend
        if backend == RESOURCE:
            nodes = [n for n in snapshot.placeable if n.label in n.total]
            if pin_amount is not None and nodes:
                check_pin_fits(pin_amount, nodes, snapshot.label_prefix)
        elif backend == LABEL:
            nodes = [n for n in snapshot.placeable if n.labels.get(LABEL_KEY) == n.label]
        else:
            nodes = sorted(snapshot.live, key=node_order)
        self.nodes: tuple[NodeInfo, ...] = tuple(nodes)
        self.position = {n.node_id: i for i, n in enumerate(self.nodes)}
        self._fitting: dict[Demand, tuple[NodeInfo, ...]] = {}
        if not self.nodes:
            raise no_candidates_error(snapshot, backend)

    def fitting(self, demand: Demand) -> tuple[NodeInfo, ...]:
        """The nodes (in order) whose totals can hold ``demand``; raises when none can."""
        found = self._fitting.get(demand)
        if found is None:
            found = tuple(n for n in self.nodes if n.fits(demand))
            if not found:
                raise resources_error(demand, self.nodes)
            self._fitting[demand] = found
        return found

    def get(self, node_id: str) -> NodeInfo | None:
        """The candidate node with this id, or None (dead, gone, or not targetable)."""
        pos = self.position.get(node_id)
        return None if pos is None else self.nodes[pos]


def _names(nodes: Sequence[NodeInfo], limit: int = 8) -> str:
    shown = ", ".join(node_name(n) for n in nodes[:limit])
    return shown + (f" and {len(nodes) - limit} more" if len(nodes) > limit else "")


def no_candidates_error(snapshot: ClusterSnapshot, backend: str) -> PlacementError:
    live = snapshot.live
    if not live:
        return PlacementError(
            errors.NO_CLUSTER_NODES, "the cluster has no live node",
            "start a cluster with scripts/start_cluster.sh 4 and connect to it with "
            "placement.connect()",
        )
    prefix = snapshot.label_prefix
    what = (f"a '{prefix}<i>' custom resource" if backend == RESOURCE
            else f"the Ray label {LABEL_KEY}")
    return PlacementError(
        errors.NO_LABELLED_NODES,
        f"none of the {len(live)} live nodes ({_names(live)}) carries {what}",
        "start a labelled cluster with scripts/start_cluster.sh 4, start nodes with "
        f"`ray start --resources '{{\"{prefix}0\": 1000}}' --labels {LABEL_KEY}={prefix}0`, "
        "or use backend='node_id'",
        [node_name(n) for n in live],
    )


def check_pin_fits(pin_amount: float, nodes: Sequence[NodeInfo],
                   label_prefix: str = DEFAULT_LABEL_PREFIX) -> None:
    """Refuse a pin larger than the label resource of any of ``nodes`` (labelled, with the
    resource): Ray would hold a placement pinned to such a node forever.

    >>> from placement.snapshot import ClusterSnapshot
    >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}])   # node0: 1000
    >>> try:  # doctest: +ELLIPSIS
    ...     check_pin_fits(2000, snap.placeable)
    ... except PlacementError as refusal:
    ...     print(refusal.rule, "|", refusal.fix)
    pin-exceeds-label-resource | use pin_amount <= 1000 (the smallest label resource; ...
    """
    short = [n for n in nodes if n.total.get(n.label or "", 0.0) < pin_amount]
    if not short:
        return
    smallest = min(n.total.get(n.label or "", 0.0) for n in nodes)
    shown = ", ".join(f"{node_name(n)} ({n.total.get(n.label or '', 0.0):g})" for n in short[:8])
    more = f" and {len(short) - 8} more" if len(short) > 8 else ""
    raise PlacementError(
        errors.PIN_EXCEEDS_LABEL,
        f"pin_amount={pin_amount:g} is more than the {label_prefix}<i> resource of {shown}{more}: "
        "Ray could never run a placement pinned there",
        f"use pin_amount <= {smallest:g} (the smallest label resource; the default is "
        f"{DEFAULT_PIN_AMOUNT}), or backend='node_id'",
        [node_name(n) for n in short],
    )


def resources_error(demand: Demand, nodes: Sequence[NodeInfo]) -> PlacementError:
    largest = {name: max((n.total.get(name, 0.0) for n in nodes), default=0.0)
               for name, _ in demand}
    return PlacementError(
        errors.RESOURCES_EXCEED_NODES,
        f"no candidate node can ever hold {demand.as_dict()}: the largest have {largest}",
        "ask for less (num_cpus=, num_gpus=, memory=, resources=) or add a node that large",
        [node_name(n) for n in nodes],
    )


def unknown_target_error(target: str, snapshot: ClusterSnapshot) -> PlacementError:
    known = snapshot.by_id.get(target) or next(
        (n for n in snapshot.nodes if not n.alive and n.label == target
         and target not in snapshot.by_label), None)
    if known is not None and not known.alive:
        return PlacementError(
            errors.DEAD_NODE, f"node {node_name(known)} ({target[:8]}) is dead",
            "place on a live node (placement status lists them), or use soft=True to fall back",
            [node_name(known)],
        )
    live = [node_name(n) for n in snapshot.placeable] or [node_name(n) for n in snapshot.live]
    rule = errors.UNKNOWN_NODE if _looks_like_node_id(target) else errors.UNKNOWN_LABEL
    what = "with id" if rule == errors.UNKNOWN_NODE else "labelled"
    return PlacementError(
        rule, f"no live node is {what} {target!r}",
        f"use one of {', '.join(live[:8]) or 'none (no live node)'}; `placement status` lists them",
        live,
    )


def _looks_like_node_id(text: str) -> bool:
    return len(text) >= 32 and all(c in "0123456789abcdef" for c in text.lower())
