"""The vocabulary of deciding, shared by every policy: backends, candidate nodes, feasibility
checks that name the fix, and the Decision value a policy returns. Pure: no Ray here.
"""
from __future__ import annotations

import bisect
import math
from typing import Any, Callable, Hashable, Mapping, NamedTuple, Sequence

from . import errors
from .errors import PlacementError
from .naming import LABEL_KEY, natural_key
from .snapshot import ClusterSnapshot, NodeInfo

RESOURCE = "resource"  # {"node3": pin_amount}: hard, needs a labelled node
NODE_ID = "node_id"  # NodeAffinitySchedulingStrategy(node_id): any live node
LABEL = "label"  # label_selector={"placement.node": "node3"}: nodes with the Ray label
BACKENDS = (RESOURCE, NODE_ID, LABEL)

RAY_RESOURCE_RESOLUTION = 1e-4  # Ray truncates custom resource amounts to this
DEFAULT_PIN_AMOUNT = 0.001

Demand = Mapping[str, float]


def demand_key(demand: Demand | None) -> tuple:
    return tuple(sorted(demand.items())) if demand else ()


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown backend {backend!r}: use 'resource' (custom resource node<i>, the default), "
            "'node_id' (NodeAffinitySchedulingStrategy) or 'label' (label_selector)"
        )
    return backend


def check_pin_amount(amount: float) -> float:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
        raise ValueError(f"pin_amount must be a finite number, got {amount!r}")
    if amount < RAY_RESOURCE_RESOLUTION:
        raise ValueError(
            f"pin_amount {amount!r} is below Ray's resource resolution of {RAY_RESOURCE_RESOLUTION} "
            "(Ray would truncate it to 0 and pin nothing): use pin_amount >= 0.0001"
        )
    return float(amount)


class Decision(NamedTuple):
    """Where one placement goes, why, and how to tell Ray (backend, soft, pin amount).

    A NamedTuple, not a dataclass: one is made per placement, and a frozen dataclass costs
    about 1.4 us to build, most of the decision budget.
    """

    node: NodeInfo
    reason: str
    policy: str
    backend: str = RESOURCE
    soft: bool = False
    pin_amount: float = DEFAULT_PIN_AMOUNT
    fallback: bool = False  # a soft rule or a fallback policy took a node the first rule would not
    group: Hashable | None = None

    @property
    def node_name(self) -> str:
        return node_name(self.node)


def node_name(node: NodeInfo) -> str:
    """How people see a node: its label, else its address, else a short id."""
    return node.label or node.address or node.node_id[:8]


def _node_order(node: NodeInfo) -> tuple:
    # Labelled nodes first in natural label order, then the rest by address and id.
    return (0, natural_key(node.label)) if node.label else (1, natural_key(node.address), node.node_id)


def _names(nodes: Sequence[NodeInfo], limit: int = 8) -> str:
    shown = ", ".join(node_name(n) for n in nodes[:limit])
    return shown + (f" and {len(nodes) - limit} more" if len(nodes) > limit else "")


class Candidates:
    """The nodes a backend can target in one snapshot, in placement order, with cached fit checks.

    >>> snap = ClusterSnapshot.from_dicts([{"id": "b", "label": "node1", "resources": {"CPU": 1}},
    ...                                    {"id": "a", "label": "node0", "resources": {"CPU": 4}}])
    >>> cands = Candidates(snap, RESOURCE)
    >>> [node_name(cands.nodes[i]) for i in cands.fitting({"CPU": 2})]
    ['node0']
    """

    def __init__(self, snapshot: ClusterSnapshot, backend: str) -> None:
        self.snapshot = snapshot
        self.backend = backend
        if backend == RESOURCE:
            nodes = [n for n in snapshot.placeable if n.label in n.total]
        elif backend == LABEL:
            nodes = [n for n in snapshot.placeable if n.labels.get(LABEL_KEY) == n.label]
        else:
            nodes = sorted(snapshot.live, key=_node_order)
        self.nodes: tuple[NodeInfo, ...] = tuple(nodes)
        self.keys = [_node_order(n) for n in self.nodes]
        self.position = {n.node_id: i for i, n in enumerate(self.nodes)}
        self._fitting: dict[tuple, list[int]] = {}
        self._memo: dict[Hashable, Any] = {}
        self._last_demand: tuple[Any, list[int]] | None = None
        if not self.nodes:
            raise self._none_error()

    def _none_error(self) -> PlacementError:
        live = self.snapshot.live
        if not live:
            return PlacementError(
                errors.NO_CLUSTER_NODES, "the cluster has no live node",
                "start a cluster with scripts/start_cluster.sh 4 and connect to it with placement.connect()",
            )
        what = {
            RESOURCE: f"a '{self.snapshot.label_prefix}<i>' custom resource",
            LABEL: f"the Ray label {LABEL_KEY}",
        }[self.backend]
        return PlacementError(
            errors.NO_LABELLED_NODES,
            f"none of the {len(live)} live nodes ({_names(live)}) carries {what}",
            "start a labelled cluster with scripts/start_cluster.sh 4, start nodes with "
            f"`ray start --resources '{{\"{self.snapshot.label_prefix}0\": 1000}}' --labels {LABEL_KEY}="
            f"{self.snapshot.label_prefix}0`, or use backend='node_id'",
            [node_name(n) for n in live],
        )

    def fitting(self, demand: Demand | None) -> list[int]:
        """Positions (ascending) of the nodes whose totals can hold ``demand``; raises when none can."""
        # A handle passes the same demand object every time: skip re-sorting it.
        same = self._last_demand
        if same is not None and same[0] is demand:
            return same[1]
        found = self._fitting_for(demand)
        self._last_demand = (demand, found)
        return found

    def _fitting_for(self, demand: Demand | None) -> list[int]:
        key = demand_key(demand)
        found = self._fitting.get(key)
        if found is None:
            found = [i for i, n in enumerate(self.nodes) if n.fits(demand or {})]
            if not found:
                raise resources_error(demand or {}, self.nodes)
            self._fitting[key] = found
        return found

    def memo(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """Policies' per-snapshot derived data (slot lists), built once per key."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    @staticmethod
    def next_after(fitting: list[int], last: int | None) -> int:
        """The first fitting position after position ``last``, wrapping around."""
        if last is None:
            return fitting[0]
        i = bisect.bisect_right(fitting, last)
        return fitting[i] if i < len(fitting) else fitting[0]

    def position_of_key(self, key: tuple) -> int:
        """The position of the last node ordered at or before ``key`` (-1: before the first)."""
        return bisect.bisect_right(self.keys, key) - 1


def resources_error(demand: Demand, nodes: Sequence[NodeInfo]) -> PlacementError:
    largest = {name: max((n.total.get(name, 0.0) for n in nodes), default=0.0) for name in demand}
    return PlacementError(
        errors.RESOURCES_EXCEED_NODES,
        f"no candidate node can ever hold {dict(demand)}: the largest have {largest}",
        "ask for less (num_cpus=, num_gpus=, memory=, resources=) or add a node that large",
        [node_name(n) for n in nodes],
    )


def unknown_target_error(target: str, snapshot: ClusterSnapshot) -> PlacementError:
    known = snapshot.by_id.get(target) or next(
        (n for n in snapshot.dead if n.label == target and target not in snapshot.by_label), None)
    if known is not None and not known.alive:
        return PlacementError(
            errors.DEAD_NODE, f"node {node_name(known)} ({target[:8]}) is dead",
            "place on a live node (placement status lists them), or use soft=True to fall back",
            [node_name(known)],
        )
    live = [node_name(n) for n in snapshot.placeable] or [node_name(n) for n in snapshot.live]
    rule = errors.UNKNOWN_LABEL if not _looks_like_node_id(target) else errors.UNKNOWN_NODE
    return PlacementError(
        rule, f"no live node is {'labelled' if rule == errors.UNKNOWN_LABEL else 'with id'} {target!r}",
        f"use one of {', '.join(live[:8]) or 'none (no live node)'}; `placement status` lists them",
        live,
    )


def _looks_like_node_id(text: str) -> bool:
    return len(text) >= 32 and all(c in "0123456789abcdef" for c in text.lower())
