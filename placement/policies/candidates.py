"""The nodes a backend can target in one snapshot, the node sets that fit each demand, and the
feasibility refusals that name the fix.

Built once per (snapshot, backend, pin, filter) and shared by every policy deciding on that
snapshot; refreshed by the snapshot's difference. A demand's fitting nodes are a ``NodeSet``:
demands that fit the same nodes share one object (interned), so every per-set index of the
policies is built once for all of them, and the demand -> set table is bounded (least recently
used, ``bounded.DEMANDS_PER_CANDIDATES``). A demand every candidate can hold is answered from the
smallest total per resource, without looking at the nodes. Pure: no Ray here.

>>> from placement.snapshot import ClusterSnapshot
>>> snap = ClusterSnapshot.from_dicts([{"id": "b", "label": "node1", "resources": {"CPU": 1}},
...                                    {"id": "a", "label": "node0", "resources": {"CPU": 4}}])
>>> cands = Candidates(snap, RESOURCE)
>>> [node_name(node) for node in cands.fitting(Demand({"CPU": 2}))]
['node0']
>>> cands.node_set(Demand({"CPU": 1})) is cands.all     # every candidate fits: no scan
True
"""
from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Any

from .. import errors
from ..errors import PlacementError
from ..naming import DEFAULT_LABEL_PREFIX, LABEL_KEY
from ..snapshot import BY_ORDER, ClusterSnapshot, NodeInfo, SnapshotDiff, patch_sorted
from .bounded import DEMANDS_PER_CANDIDATES, Bounded
from .decision import AUTO, DEFAULT_PIN_AMOUNT, LABEL, NODE_ID, RESOURCE, node_name
from .request import Demand
from .selector import LabelFilter

# How many node names a refusal lists at most: its message is built per refusal, and a refusal
# (behind a fallback, once per call) must not cost a pass over 100,000 nodes.
SHOWN_NODES = 64


class NodeSet:
    """Nodes in placement order, as an immutable value: their ids, and each id's position
    (built on first use). Compared by identity: candidates intern them, so two demands that fit
    the same nodes get the same object, and a refresh that changes none of its nodes keeps it."""

    __slots__ = ("__weakref__", "_position", "ids", "nodes")

    def __init__(self, nodes: tuple[NodeInfo, ...], ids: tuple[str, ...] | None = None) -> None:
        self.nodes = nodes
        self.ids: tuple[str, ...] = tuple(map(_BY_ID, nodes)) if ids is None else ids
        self._position: dict[str, int] | None = None

    @property
    def position(self) -> dict[str, int]:
        """Node id -> index in ``nodes`` (one dict per set, built once)."""
        found = self._position
        if found is None:
            found = self._position = dict(zip(self.ids, range(len(self.ids)), strict=True))
        return found

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"NodeSet({_names(self.nodes, 8)})"


class Candidates:
    """The live nodes ``backend`` can target, in placement order, and the node set that fits
    each demand.

    For the resource backend, ``pin_amount`` (None: the placements pin nothing, e.g. soft ones)
    must fit every candidate's label resource: a pin above a node's ``node<i>`` total would wait
    forever in Ray, so it is refused here rather than that node being left out unsaid.

    ``where`` (a LabelFilter) keeps only the nodes whose Ray labels satisfy it.

    ``backend="auto"`` resolves per snapshot: ``backend`` is then "resource" when every live node
    the filter keeps carries its ``node<i>`` resource (a cluster the toolkit labelled), else
    "node_id" (any Ray cluster); ``asked`` keeps what was asked for.

    ``follow(newer)`` gives the candidates of a refreshed snapshot by its difference: what a new
    ``Candidates(newer, ...)`` gives, at the cost of the nodes that changed and the node sets
    kept.
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
        if not nodes:
            raise no_candidates_error(snapshot, backend)
        self._start(snapshot, NodeSet(tuple(nodes)), {})

    def _start(self, snapshot: ClusterSnapshot, every: NodeSet,
               minimum: dict[str, float]) -> None:
        self.snapshot = snapshot
        self.all = every
        self.nodes: tuple[NodeInfo, ...] = every.nodes
        self.by_id: dict[str, NodeInfo] = dict(zip(every.ids, every.nodes, strict=True))
        # demand -> its fitting node set, or the refusal that no candidate can hold it (read
        # directly on the submit path; ``node_set`` fills it)
        self.fits: Bounded[Demand, NodeSet | PlacementError] = Bounded(DEMANDS_PER_CANDIDATES)
        # ids -> the node set with those ids, while some demand holds it (interning)
        self._sets: weakref.WeakValueDictionary[tuple[str, ...], NodeSet] = (
            weakref.WeakValueDictionary())
        self._sets[every.ids] = every
        self._minimum = minimum  # resource -> the smallest total among the candidates
        # id of a node set of the candidates this was patched from -> what it is here
        self._successors: dict[int, NodeSet | None] = {}

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

    def node_set(self, demand: Demand) -> NodeSet:
        """The candidates whose totals (and labels) can hold ``demand``, in order; raises
        PlacementError when none can. Repeated refusals of one demand cost nothing more."""
        fits = self.fits
        found = fits.get(demand)
        if found is None:
            found = self._fit(demand)
        else:
            fits.move_to_end(demand)  # a use: the least recently used demand goes first
        if found.__class__ is not NodeSet:
            raise found  # type: ignore[misc]
        return found

    def fitting(self, demand: Demand) -> tuple[NodeInfo, ...]:
        """The nodes (in order) whose totals can hold ``demand``; raises when none can."""
        return self.node_set(demand).nodes

    def fitting_ids(self, demand: Demand) -> tuple[str, ...]:
        """The ids of ``fitting(demand)``, in the same order."""
        return self.node_set(demand).ids

    def _fits_all(self, demand: Demand) -> bool:
        """Whether every candidate holds ``demand``, from the smallest totals (no scan)."""
        return demand.where is None and all(amount <= self._smallest(name)
                                            for name, amount in demand)

    def _fit(self, demand: Demand) -> NodeSet | PlacementError:
        if self._fits_all(demand):
            found: NodeSet | PlacementError = self.all  # every candidate holds it: no scan
        else:
            nodes = tuple(n for n in self.nodes if holds(n, demand))
            found = self._intern(nodes) if nodes else demand_error(demand, self.nodes)
        self.fits.put(demand, found)
        return found

    def _smallest(self, name: str) -> float:
        smallest = self._minimum.get(name)
        if smallest is None:
            smallest = self._minimum[name] = min(n.total.get(name, 0.0) for n in self.nodes)
        return smallest

    def _intern(self, nodes: tuple[NodeInfo, ...]) -> NodeSet:
        ids = tuple(map(_BY_ID, nodes))
        found = self._sets.get(ids)
        if found is None:
            found = self._sets[ids] = NodeSet(nodes, ids)
        return found

    def successor(self, old: NodeSet) -> NodeSet | None:
        """What node set ``old`` (of the candidates these were patched from) is here: the same
        object when none of its nodes changed; None when unknown or none of its nodes is left."""
        if old is self.all:
            return old
        return self._successors.get(id(old))

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
            labels = {k: v for k, v in node.labels.items() if k != "ray.io/node-id"}
            return PlacementError(
                errors.NO_MATCHING_NODES,
                f"node {node_name(node)} is live but outside where={self.where!r} (its labels: "
                f"{labels})", "widen where= to keep it, or aim at a node it keeps",
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
        twin.asked, twin.backend, twin.pin_amount = self.asked, self.backend, self.pin_amount
        twin.where, twin._unlabelled = self.where, unlabelled
        if not removed and not added:  # the same nodes: every set and refusal stays
            twin._start(newer, self.all, self._minimum)
            twin.fits, twin._sets = self.fits.copy(), self._sets
            twin._successors = {id(v): v for v in self.fits.values() if isinstance(v, NodeSet)}
            return twin
        nodes = tuple(patch_sorted(self.nodes, removed, added))
        if not nodes:  # none left: a fresh build raises, with the reason that applies
            return Candidates(newer, self.asked, self.pin_amount, self.where)
        # The smallest totals stay exact while no removed node had one of them.
        minimum = {name: min([low, *(n.total.get(name, 0.0) for n in added)])
                   for name, low in self._minimum.items()
                   if all(n.total.get(name, 0.0) > low for n in removed)}
        twin._start(newer, NodeSet(nodes), minimum)
        # Each set kept by some demand, patched once (sets are shared by demands), and kept as
        # the same object when none of its nodes changed. Refusals are asked again.
        # Demands sharing a set may not share the new nodes they fit: a set is patched once per
        # (set, new nodes that fit), and kept as the same object when none of its nodes changed.
        patched: dict[tuple[int, tuple[str, ...]], NodeSet | None] = {}
        successors: dict[int, NodeSet | None] = {}
        for demand, old in list(self.fits.items()):
            if isinstance(old, PlacementError):
                continue
            if old is self.all and twin._fits_all(demand):
                new: NodeSet | None = twin.all
            else:
                into = [n for n in added if holds(n, demand)]
                key = (id(old), tuple(n.node_id for n in into))
                new = patched.get(key, _UNSEEN)
                if new is _UNSEEN:
                    new = patched[key] = twin._patch_set(old, removed, into)
            successors.setdefault(id(old), new)
            if new is not None:
                twin.fits.put(demand, new)
        successors[id(self.all)] = twin.all
        twin._successors = successors
        return twin

    def _patch_set(self, old: NodeSet, removed: list[NodeInfo],
                   into: list[NodeInfo]) -> NodeSet | None:
        """``old`` (a demand's set before the refresh) without the ``removed`` nodes it had and
        with the new nodes ``into`` the demand fits, interned; None when none is left."""
        position = old.position
        out = [n for n in removed if n.node_id in position]
        if not out and not into:
            self._sets[old.ids] = old
            return old
        nodes = tuple(patch_sorted(old.nodes, out, into))
        return self._intern(nodes) if nodes else None


_BY_ID = attrgetter("node_id")
_UNSEEN: Any = object()


def holds(node: NodeInfo, demand: Demand) -> bool:
    """Whether ``node`` could ever hold ``demand``: its totals, and the labels it asks for."""
    if not node.fits(demand):
        return False
    where = demand.where
    return where is None or where.matches(node.labels)


def not_here(cands: Candidates, demand: Demand, node: NodeInfo) -> PlacementError | None:
    """Why ``node`` (another policy's choice) cannot take ``demand`` among these candidates, or
    None when it can. One node is read, never the others."""
    if cands.get(node.node_id) is None:
        return PlacementError(
            errors.NO_MATCHING_NODES,
            f"node {node_name(node)} is not one of its candidates (dead, outside where=, or "
            "without the label resource its backend pins)",
            "give both policies the same where= and backend", [node_name(node)])
    if demand and not holds(node, demand):
        return demand_error(demand, [node])
    return None


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
            shown(nodes),
        )
    if where is not None:
        nodes = [n for n in nodes if where.matches(n.labels)]
    return resources_error(demand, nodes)


def shown(nodes: Iterable[NodeInfo]) -> list[str]:
    """The names of at most SHOWN_NODES of ``nodes``, for a refusal (no pass over them all)."""
    return [node_name(n) for n in itertools.islice(nodes, SHOWN_NODES)]


def _has_label_resource(node: NodeInfo) -> bool:
    return node.label is not None and node.label in node.total


def _names(nodes: Sequence[NodeInfo], limit: int = 8) -> str:
    text = ", ".join(node_name(n) for n in nodes[:limit])
    return text + (f" and {len(nodes) - limit} more" if len(nodes) > limit else "")


def no_match_error(snapshot: ClusterSnapshot, where: LabelFilter) -> PlacementError:
    live = snapshot.live
    return PlacementError(
        errors.NO_MATCHING_NODES,
        f"none of the {len(live)} live nodes matches where={where!r}: the live nodes have "
        f"{where.describe(n.labels for n in live)}",
        "change where= to values the nodes have (placement status shows each node's labels), "
        "or start nodes with `ray start --labels key=value`",
        shown(live),
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
        shown(live),
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
    listed = ", ".join(f"{node_name(n)} ({n.total.get(n.label or '', 0.0):g})" for n in short[:8])
    more = f" and {len(short) - 8} more" if len(short) > 8 else ""
    raise PlacementError(
        errors.PIN_EXCEEDS_LABEL,
        f"pin_amount={pin_amount:g} is more than the {label_prefix}<i> resource of {listed}{more}: "
        "Ray could never run a placement pinned there",
        f"use pin_amount <= {smallest:g} (the smallest label resource; the default is "
        f"{DEFAULT_PIN_AMOUNT}), or backend='node_id'",
        shown(short),
    )


def resources_error(demand: Demand, nodes: Sequence[NodeInfo]) -> PlacementError:
    largest = {name: max((n.total.get(name, 0.0) for n in nodes), default=0.0)
               for name in demand.as_dict()}
    return PlacementError(
        errors.RESOURCES_EXCEED_NODES,
        f"no candidate node can ever hold {demand.as_dict()}: the largest have {largest}",
        "ask for less (num_cpus=, num_gpus=, memory=, resources=) or add a node that large",
        shown(nodes),
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
    live = shown(snapshot.placeable) or shown(snapshot.live)
    rule = errors.UNKNOWN_NODE if looks_like_node_id(target) else errors.UNKNOWN_LABEL
    what = "with id" if rule == errors.UNKNOWN_NODE else "labelled"
    return PlacementError(
        rule, f"no live node is {what} {target!r}",
        f"use one of {', '.join(live[:8]) or 'none (no live node)'}; `placement status` lists them",
        live,
    )


def looks_like_node_id(text: str) -> bool:
    return len(text) >= 32 and all(c in "0123456789abcdef" for c in text.lower())
