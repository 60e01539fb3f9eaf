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
from operator import attrgetter

from .. import errors
from ..errors import PlacementError
from ..naming import DEFAULT_LABEL_PREFIX, LABEL_KEY
from ..snapshot import BY_ORDER, ClusterSnapshot, NodeInfo, SnapshotDiff, patch_sorted
from .decision import AUTO, DEFAULT_PIN_AMOUNT, LABEL, NODE_ID, RESOURCE, node_name
from .request import Demand
from .selector import LabelFilter


class Candidates:
    """The live nodes ``backend`` can target, in placement order, with cached fit checks.

    For the resource backend, ``pin_amount`` (None: the placements pin nothing, e.g. soft ones)
    must fit every candidate's label resource: a pin above a node's ``node<i>`` total would wait
    forever in Ray, so it is refused here rather than that node being left out unsaid.

    ``where`` (a LabelFilter) keeps only the nodes whose Ray labels satisfy it.

    ``backend="auto"`` resolves per snapshot: ``backend`` is then "resource" when every live node
    the filter keeps carries its ``node<i>`` resource (a cluster the toolkit labelled), else
    "node_id" (any Ray cluster); ``asked`` keeps what was asked for.

    ``follow(newer)`` gives the candidates of a refreshed snapshot by its difference: what a new
    ``Candidates(newer, ...)`` gives, at the cost of the nodes that changed.
    """

    def __init__(self, snapshot: ClusterSnapshot, backend: str,
                 pin_amount: float | None = DEFAULT_PIN_AMOUNT,
                 where: LabelFilter | None = None) -> None:
        self.snapshot = snapshot
        self.asked = backend
        self.pin_amount = pin_amount
        self.where = where
        live = snapshot.live if where is None else [n for n in snapshot.live
                                                   if where.matches(n.labels)]
        if not live and snapshot.live and where is not None:
            raise no_match_error(snapshot, where)
        # Live nodes (that the filter keeps) without their node<i> resource: while there are
        # none, auto means resource.
        self._unlabelled = sum(1 for n in live if not _has_label_resource(n)) \
            if backend == AUTO else 0
        if backend == AUTO:
            backend = NODE_ID if self._unlabelled or not live else RESOURCE
        self.backend = backend
        if backend == RESOURCE:
            nodes = [n for n in live if n.label and n.label in n.total]
            nodes.sort(key=BY_ORDER)
            if pin_amount is not None and nodes:
                check_pin_fits(pin_amount, nodes, snapshot.label_prefix)
        elif backend == LABEL:
            nodes = [n for n in live if n.label and n.labels.get(LABEL_KEY) == n.label]
            nodes.sort(key=BY_ORDER)
        else:
            nodes = sorted(live, key=BY_ORDER)
        self.nodes: tuple[NodeInfo, ...] = tuple(nodes)
        self.by_id: dict[str, NodeInfo] = dict(zip(map(_BY_ID, nodes), nodes, strict=True))
        # demand -> the fitting nodes in order and their ids (the slots of rotations)
        self._fitting: dict[Demand, tuple[tuple[NodeInfo, ...], tuple[str, ...]]] = {}
        if not self.nodes:
            raise no_candidates_error(snapshot, backend)

    @classmethod
    def of(cls, snapshot: ClusterSnapshot, backend: str,
           pin_amount: float | None = DEFAULT_PIN_AMOUNT, where: LabelFilter | None = None,
           base: Candidates | None = None) -> Candidates:
        """The candidates of ``snapshot`` for ``backend``, ``pin_amount`` and ``where``, built
        once per snapshot and shared by every policy deciding on it; from ``base`` (the same
        candidates of an earlier snapshot) by the difference when the snapshot was refreshed
        from base's."""
        def build() -> Candidates:
            if (base is not None and base.asked == backend and base.pin_amount == pin_amount
                    and base.where == where):
                return base._followed(snapshot)
            return cls(snapshot, backend, pin_amount, where)
        return snapshot.derived((Candidates, backend, pin_amount, where), build)

    def targets(self, node: NodeInfo) -> bool:
        """Whether this backend can target ``node`` (alive, kept by the filter, and labelled if
        the backend needs a label)."""
        if not node.alive or (self.where is not None and not self.where.matches(node.labels)):
            return False
        if self.backend == RESOURCE:
            return _has_label_resource(node)
        if self.backend == LABEL:
            return node.label is not None and node.labels.get(LABEL_KEY) == node.label
        return True

    def fitting(self, demand: Demand) -> tuple[NodeInfo, ...]:
        """The nodes (in order) whose totals can hold ``demand``; raises when none can."""
        found = self._fitting.get(demand)
        if found is None:
            found = self._fit(demand)
        return found[0]

    def fitting_ids(self, demand: Demand) -> tuple[str, ...]:
        """The ids of ``fitting(demand)``, in the same order."""
        found = self._fitting.get(demand)
        if found is None:
            found = self._fit(demand)
        return found[1]

    def _fit(self, demand: Demand) -> tuple[tuple[NodeInfo, ...], tuple[str, ...]]:
        nodes = tuple(n for n in self.nodes if holds(n, demand))
        if not nodes:
            raise demand_error(demand, self.nodes)
        found = self._fitting[demand] = (nodes, tuple(map(_BY_ID, nodes)))
        return found

    def get(self, node_id: str) -> NodeInfo | None:
        """The candidate node with this id, or None (dead, gone, or not targetable)."""
        return self.by_id.get(node_id)

    def target_error(self, target: str) -> PlacementError:
        """Why the node labelled or with id ``target`` is not a candidate: outside ``where``,
        dead, or unknown."""
        snapshot = self.snapshot
        node = snapshot.by_label.get(target) or snapshot.by_id.get(target)
        if (node is not None and node.alive and self.where is not None
                and not self.where.matches(node.labels)):
            shown = {k: v for k, v in node.labels.items() if k != "ray.io/node-id"}
            return PlacementError(
                errors.NO_MATCHING_NODES,
                f"node {node_name(node)} is live but outside where={self.where!r} (its labels: "
                f"{shown})", "widen where= to keep it, or aim at a node it keeps",
                [node_name(node)])
        return unknown_target_error(target, snapshot)

    def follow(self, newer: ClusterSnapshot) -> Candidates:
        """The candidates of ``newer``: patched by its difference when it was refreshed from this
        one's snapshot, built afresh otherwise; shared through ``Candidates.of``. Raises as the
        constructor does.

        >>> from placement.snapshot import ClusterSnapshot
        >>> old = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
        ...                                   {"id": "b", "label": "node1"}])
        >>> new = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
        ...                                   {"id": "c", "label": "node2"}], previous=old)
        >>> [node_name(n) for n in Candidates(old, RESOURCE).follow(new).nodes]
        ['node0', 'node2']
        """
        return Candidates.of(newer, self.asked, self.pin_amount, self.where, self)

    def _followed(self, newer: ClusterSnapshot) -> Candidates:
        diff = newer.diff
        if diff is None or diff.base_version != self.snapshot.version:
            return Candidates(newer, self.asked, self.pin_amount, self.where)
        unlabelled = self._unlabelled
        if self.asked == AUTO:
            unlabelled += (sum(1 for n in diff.added if self._kept(n))
                           - sum(1 for n in diff.removed if self._kept(n)))
            if (NODE_ID if unlabelled else RESOURCE) != self.backend:
                return Candidates(newer, AUTO, self.pin_amount, self.where)  # auto changed
        return self._patched(newer, diff, unlabelled)

    def _kept(self, node: NodeInfo) -> bool:
        """A live node the filter keeps that lacks its node<i> resource (auto's count)."""
        return (node.alive and not _has_label_resource(node)
                and (self.where is None or self.where.matches(node.labels)))

    def _patched(self, newer: ClusterSnapshot, diff: SnapshotDiff,
                 unlabelled: int) -> Candidates:
        by_id = self.by_id
        removed = [n for n in diff.removed if by_id.get(n.node_id) is n]
        added = [n for n in diff.added if self.targets(n)]
        if added and self.backend == RESOURCE and self.pin_amount is not None:
            check_pin_fits(self.pin_amount, added, newer.label_prefix)
        twin = object.__new__(Candidates)
        twin.snapshot, twin.backend, twin.pin_amount = newer, self.backend, self.pin_amount
        twin.asked, twin._unlabelled, twin.where = self.asked, unlabelled, self.where
        if not removed and not added:
            twin.nodes, twin.by_id, twin._fitting = self.nodes, by_id, dict(self._fitting)
            return twin
        twin.nodes = tuple(patch_sorted(self.nodes, removed, added))
        if not twin.nodes:  # none left: a fresh build raises, with the reason that applies
            return Candidates(newer, self.asked, self.pin_amount, self.where)
        twin.by_id = dict(by_id)
        for node in removed:
            del twin.by_id[node.node_id]
        twin.by_id.update(zip(map(_BY_ID, added), added, strict=True))
        twin._fitting = {}
        # A copy: policies sharing these candidates add demands from other threads (dict() copies
        # in C, under the interpreter lock).
        for demand, (nodes, _) in dict(self._fitting).items():
            patched = patch_sorted(nodes, removed, [n for n in added if holds(n, demand)])
            if patched:  # none left: fitting() raises for it again, naming the largest nodes
                twin._fitting[demand] = (tuple(patched), tuple(map(_BY_ID, patched)))
        return twin


_BY_ID = attrgetter("node_id")


def holds(node: NodeInfo, demand: Demand) -> bool:
    """Whether ``node`` could ever hold ``demand``: its totals, and the labels it asks for."""
    if not node.fits(demand):
        return False
    where = demand.where
    return where is None or where.matches(node.labels)


def demand_error(demand: Demand, nodes: Sequence[NodeInfo]) -> PlacementError:
    """Why none of ``nodes`` can hold ``demand``: its labels, else its resources."""
    where = demand.where
    if where is not None and not any(where.matches(n.labels) for n in nodes):
        which = (f"node {node_name(nodes[0])}, the one this placement must use, does not"
                 if len(nodes) == 1 else "no candidate node")
        return PlacementError(
            errors.NO_MATCHING_NODES,
            f"{which} match{'' if len(nodes) == 1 else 'es'} label_selector={where!r}: "
            f"{'it has' if len(nodes) == 1 else 'they have'} "
            f"{where.describe(n.labels for n in nodes)}",
            "change label_selector= to values the nodes have (placement status shows each "
            "node's labels), or start nodes with `ray start --labels key=value`",
            [node_name(n) for n in nodes],
        )
    if where is not None:
        nodes = [n for n in nodes if where.matches(n.labels)]
    return resources_error(demand, nodes)


def _has_label_resource(node: NodeInfo) -> bool:
    return node.label is not None and node.label in node.total


def _names(nodes: Sequence[NodeInfo], limit: int = 8) -> str:
    shown = ", ".join(node_name(n) for n in nodes[:limit])
    return shown + (f" and {len(nodes) - limit} more" if len(nodes) > limit else "")


def no_match_error(snapshot: ClusterSnapshot, where: LabelFilter) -> PlacementError:
    live = snapshot.live
    return PlacementError(
        errors.NO_MATCHING_NODES,
        f"none of the {len(live)} live nodes matches where={where!r}: the live nodes have "
        f"{where.describe(n.labels for n in live)}",
        "change where= to values the nodes have (placement status shows each node's labels), "
        "or start nodes with `ray start --labels key=value`",
        [node_name(n) for n in live],
    )


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
               for name in demand.as_dict()}
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
