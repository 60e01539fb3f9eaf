"""Placement policies: RoundRobin, Affinity, AntiAffinity, Packing, Local, and their fallbacks.

A policy turns a snapshot plus its own ledger of past placements into a Decision. Deciding is pure
and thread-safe; ``policy.place(fn)`` (in ``placement.handle``) is where Ray comes in.

>>> from placement import ClusterSnapshot, RoundRobin
>>> snap = ClusterSnapshot.from_dicts([{"id": f"n{i}", "label": f"node{i}"} for i in range(3)])
>>> rr = RoundRobin()
>>> [rr.decide(snap).node_name for _ in range(4)]
['node0', 'node1', 'node2', 'node0']
"""
from __future__ import annotations

import heapq
import math
import random
import threading
from typing import Any, Hashable, Mapping

from . import errors
from .decision import (
    DEFAULT_PIN_AMOUNT,
    NODE_ID,
    RESOURCE,
    Candidates,
    Decision,
    Demand,
    check_backend,
    check_pin_amount,
    demand_key,
    node_name,
    resources_error,
    unknown_target_error,
)
from .cluster import default_cache as _default_cache
from .errors import PlacementError
from .naming import natural_key
from .snapshot import ClusterSnapshot, NodeInfo

_MAX_CACHED_HANDLES = 1024

__all__ = ["Policy", "RoundRobin", "Affinity", "AntiAffinity", "Packing", "Local", "Fallback"]


class Policy:
    """Base of all policies: configuration, candidate caching, locking, and ``place``/``plan``."""

    default_backend = RESOURCE

    def __init__(
        self,
        *,
        soft: bool = False,
        backend: str | None = None,
        pin_amount: float = DEFAULT_PIN_AMOUNT,
        cache: Any = None,
    ) -> None:
        if not isinstance(soft, bool):
            raise TypeError(f"soft must be True or False, got {soft!r}")
        self.soft = soft
        self.backend = check_backend(self.default_backend if backend is None else backend)
        self.pin_amount = check_pin_amount(pin_amount)
        self._cache = cache  # a SnapshotCache; None means the process-wide one
        self._lock = threading.RLock()
        self._candidates: Candidates | None = None
        self._name: str | None = None
        self._handles: dict[tuple, Any] = {}  # (fn, group) -> handle, for place(fn) without options

    # -- what subclasses provide ----------------------------------------------------------------

    def _choose(self, cands: Candidates, demand: Demand | None, group: Hashable | None,
                caller_node_id: str | None) -> Decision:
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        """Constructor arguments, for clone() and repr()."""
        return {"soft": self.soft, "backend": self.backend, "pin_amount": self.pin_amount}

    needs_group = False
    needs_caller = False

    # -- deciding -------------------------------------------------------------------------------

    def decide(
        self,
        snapshot: ClusterSnapshot,
        demand: Demand | None = None,
        *,
        group: Hashable | None = None,
        caller_node_id: str | None = None,
    ) -> Decision:
        """Choose a node for one placement and record it in this policy's ledger.

        Raises PlacementError (rule, nodes, fix) when the placement cannot happen.
        """
        if self.needs_group and group is None:
            raise ValueError(f"{type(self).__name__} needs a group key: policy.place(fn, group='partition-3')")
        with self._lock:
            cands = self._candidates_for(snapshot)
            return self._choose(cands, demand, group, caller_node_id)

    def _candidates_for(self, snapshot: ClusterSnapshot) -> Candidates:
        # Rebuilt once per snapshot, not per decision: decisions stay O(1) at 10,000 nodes.
        if self._candidates is None or self._candidates.snapshot is not snapshot:
            previous = self._candidates
            self._candidates = Candidates(snapshot, self.backend)
            self._on_new_candidates(previous, self._candidates)
        return self._candidates

    def _on_new_candidates(self, previous: Candidates | None, current: Candidates) -> None:
        """Hook: carry the ledger over to a new snapshot."""

    def _decision(self, node: NodeInfo, reason: str, *, fallback: bool = False,
                  group: Hashable | None = None) -> Decision:
        if self._name is None:  # repr once: decisions are on the submit path
            self._name = repr(self)
        return Decision(node, reason, self._name, self.backend, self.soft, self.pin_amount, fallback, group)

    # -- using ----------------------------------------------------------------------------------

    def snapshot_cache(self):
        """The SnapshotCache this policy reads: its own, else the process-wide one."""
        return self._cache or _default_cache()

    def snapshot(self, refresh: bool = False) -> ClusterSnapshot:
        """The snapshot this policy decides from."""
        cache = self.snapshot_cache()
        return cache.refresh() if refresh else cache.get()

    def place(self, fn: Any, *, group: Hashable | None = None, **ray_options: Any):
        """Wrap a Ray remote function, actor class, or plain function/class so that each
        ``.remote()`` is placed by this policy. ``ray_options`` are kept and merged.

        >>> ref = RoundRobin().place(work, num_cpus=1).remote(42)    # doctest: +SKIP
        """
        from .handle import PlacedRemote

        if ray_options:
            return PlacedRemote(self, fn, ray_options, group)
        # place(fn).remote() in a loop: reuse the checked handle instead of building it per call.
        key = (fn, group)
        handle = self._handles.get(key)
        if handle is None:
            if len(self._handles) >= _MAX_CACHED_HANDLES:
                self._handles.clear()
            handle = self._handles[key] = PlacedRemote(self, fn, ray_options, group)
        return handle

    def plan(self, snapshot: ClusterSnapshot, n: int, demand: Demand | None = None, *,
             groups: list[Hashable] | None = None, caller_node_id: str | None = None):
        """Dry run: ``n`` placements of a fresh copy of this policy against ``snapshot``, no Ray.

        >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}, {"id": "b", "label": "node1"}])
        >>> AntiAffinity().plan(snap, 3).counts()
        {'node0': 1, 'node1': 1}
        """
        from .plan import make_plan

        return make_plan(self.clone(), snapshot, n, demand, groups, caller_node_id)

    def clone(self) -> "Policy":
        """A policy with the same configuration and an empty ledger."""
        return type(self)(**self._config())

    def __or__(self, other: "Policy") -> "Fallback":
        return Fallback(self, other)

    def __repr__(self) -> str:
        defaults = {"soft": False, "backend": self.default_backend, "pin_amount": DEFAULT_PIN_AMOUNT}
        shown = [f"{k}={v!r}" for k, v in self._config().items() if defaults.get(k, object()) != v and v is not None]
        return f"{type(self).__name__}({', '.join(shown)})"


def _check_weight(label: str, weight: Any) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
        raise ValueError(
            f"weight of {label!r} must be a positive finite number, got {weight!r}: "
            "leave a node out of the mapping instead of giving it 0"
        )
    return float(weight)


class RoundRobin(Policy):
    """Load balancing: cycle over the candidate nodes in natural label order.

    After k placements per-node counts differ by at most 1. ``weights="capacity"`` (CPUs),
    ``weights="label"`` (the node<i> resource amount) or a mapping ``{"node0": 2, "node1": 1}`` gives
    smooth weighted round robin, each node within 1 of its target share. ``seed`` picks the
    starting node (spreads several drivers); the same seed gives the same sequence.

    >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}, {"id": "b", "label": "node1"}])
    >>> rr = RoundRobin(weights={"node0": 3, "node1": 1})
    >>> [rr.decide(snap).node_name for _ in range(4)]
    ['node0', 'node0', 'node1', 'node0']
    """

    def __init__(self, weights: str | Mapping[str, float] | None = None, *, seed: int | None = None,
                 soft: bool = False, backend: str | None = None, pin_amount: float = DEFAULT_PIN_AMOUNT,
                 cache: Any = None) -> None:
        super().__init__(soft=soft, backend=backend, pin_amount=pin_amount, cache=cache)
        if isinstance(weights, str):
            if weights not in ("capacity", "label"):
                raise ValueError(f"weights={weights!r} is unknown: use 'capacity', 'label' or a mapping {{label: weight}}")
        elif weights is not None:
            if not isinstance(weights, Mapping) or not weights:
                raise TypeError("weights must be 'capacity', 'label', or a non-empty mapping {label: weight}")
            weights = {str(k): _check_weight(str(k), v) for k, v in weights.items()}
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.weights = weights
        self.seed = seed
        self._last: int | None = None  # position of the last choice in the current candidates
        self._weighted: dict[tuple, list] = {}  # demand -> stride-scheduling heap

    def _config(self) -> dict[str, Any]:
        return {"weights": self.weights, "seed": self.seed, **super()._config()}

    def _on_new_candidates(self, previous: Candidates | None, current: Candidates) -> None:
        # Unweighted continues after the last node chosen; weighted restarts over the new node set.
        if previous is not None and self._last is not None:
            self._last = current.position_of_key(previous.keys[self._last])
        self._weighted.clear()

    def _choose(self, cands, demand, group, caller_node_id):
        if self.weights is None:
            return self._next_unweighted(cands, demand)
        return self._next_weighted(cands, demand)

    def _next_unweighted(self, cands: Candidates, demand: Demand | None) -> Decision:
        fitting = cands.fitting(demand)
        if self._last is None and self.seed is not None:
            pos = fitting[random.Random(self.seed).randrange(len(fitting))]
        else:
            pos = cands.next_after(fitting, self._last)
        self._last = pos
        return self._decision(cands.nodes[pos], "next in round-robin order")

    def _weight_of(self, node: NodeInfo) -> float:
        if self.weights == "capacity":
            return node.cpus
        if self.weights == "label":
            return float(node.total.get(node.label or "", 0.0))
        return float(self.weights.get(node.label or "", self.weights.get(node.node_id, 0.0)))  # type: ignore[union-attr]

    def _next_weighted(self, cands: Candidates, demand: Demand | None) -> Decision:
        key = demand_key(demand)
        sequence = self._weighted.get(key)
        if sequence is None:
            sequence = self._weighted[key] = self._new_sequence(cands, demand)
        return self._decision(cands.nodes[sequence.next()], "next in weighted round-robin order")

    def _new_sequence(self, cands: Candidates, demand: Demand | None) -> "_ChairmanSequence":
        weighted = [(pos, self._weight_of(cands.nodes[pos])) for pos in cands.fitting(demand)]
        weighted = [(pos, w) for pos, w in weighted if w > 0]
        if not weighted:
            raise PlacementError(
                errors.UNKNOWN_LABEL,
                f"no candidate node has a positive weight under weights={self.weights!r}",
                "name live nodes in the weights (placement status lists them) or give nodes CPUs",
                [node_name(n) for n in cands.nodes],
            )
        return _ChairmanSequence(weighted)


class _ChairmanSequence:
    """Tijdeman's solution of the chairman assignment problem: with shares s_i, after every step t
    each node's count x_i stays within 1 - 1/(2n-2) of s_i * t.

    Node i is released once s_i * t - x_i >= C and is due by (x_i + 1 - C) / s_i; each step takes
    the released node due first. Two heaps make a step O(log n).
    """

    _EPS = 1e-9

    def __init__(self, weighted: list[tuple[int, float]]) -> None:
        total = sum(w for _, w in weighted)
        self._c = 1.0 / (2 * len(weighted) - 2) if len(weighted) > 1 else 0.0
        self._t = 0
        self._count = {pos: 0 for pos, _ in weighted}
        self._pending = [(self._c * total / w, pos, w / total) for pos, w in weighted]  # by release time
        heapq.heapify(self._pending)
        self._ready: list[tuple[float, int, float]] = []  # by deadline

    def next(self) -> int:
        self._t += 1
        while self._pending and self._pending[0][0] <= self._t + self._EPS:
            _, pos, share = heapq.heappop(self._pending)
            heapq.heappush(self._ready, ((self._count[pos] + 1 - self._c) / share, pos, share))
        if not self._ready:  # pragma: no cover - Tijdeman's theorem says a node is always released
            _, pos, share = heapq.heappop(self._pending)
        else:
            _, pos, share = heapq.heappop(self._ready)
        self._count[pos] += 1
        heapq.heappush(self._pending, ((self._count[pos] + self._c) / share, pos, share))
        return pos


class Affinity(Policy):
    """Co-location: every placement goes to one node.

    ``target`` is a label (``"node1"``), a node id, an actor handle (the node it runs on), or None:
    then the first placement picks the node with the most free CPUs and every later one follows.
    Soft: when that node is gone, the next placement picks a new node and the rest follow it.

    >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}, {"id": "b", "label": "node1",
    ...                                     "resources": {"CPU": 8}}])
    >>> together = Affinity()
    >>> {together.decide(snap).node_name for _ in range(5)}
    {'node1'}
    """

    def __init__(self, target: Any = None, *, soft: bool = False, backend: str | None = None,
                 pin_amount: float = DEFAULT_PIN_AMOUNT, cache: Any = None) -> None:
        super().__init__(soft=soft, backend=backend, pin_amount=pin_amount, cache=cache)
        if isinstance(target, str):
            if not target:
                raise ValueError("target must not be empty: give a label such as 'node1', a node id, an actor or None")
        elif target is not None and not hasattr(target, "_actor_id"):
            raise TypeError(
                f"Affinity target must be a node label such as 'node1', a node id, an actor handle or None, "
                f"got {type(target).__name__}"
            )
        self.target = target
        self._bound: str | None = target if isinstance(target, str) else None  # label or node id

    @property
    def actor_target(self) -> Any:
        """The actor to follow, while its node is not yet known."""
        return self.target if self._bound is None and self.target is not None else None

    def bind_to_node(self, node_id: str) -> None:
        """Follow ``node_id`` from now on (``place`` calls it with an actor target's node)."""
        with self._lock:
            self._bound = node_id

    def _config(self) -> dict[str, Any]:
        return {"target": self.target, **super()._config()}

    def _choose(self, cands, demand, group, caller_node_id):
        if self.actor_target is not None:
            raise TypeError("Affinity(actor) needs the actor's node: use policy.place(fn), which looks it up")
        snapshot = cands.snapshot
        if self._bound is not None:
            node = snapshot.by_label.get(self._bound) or snapshot.by_id.get(self._bound)
            if node is not None and node.alive and node.node_id in cands.position:
                if demand and not node.fits(demand):
                    raise resources_error(demand, [node])
                return self._decision(node, "follows its node")
            if not self.soft:
                raise unknown_target_error(self._bound, snapshot)
            previous = self._bound
        else:
            previous = None
        fitting = cands.fitting(demand)
        pos = min(fitting, key=lambda p: (-cands.nodes[p].available.get("CPU", 0.0), p))
        node = cands.nodes[pos]
        self._bound = node.node_id
        if previous is None:
            return self._decision(node, "first placement: node with the most free CPUs; later ones follow")
        return self._decision(node, f"{previous} is gone: soft affinity moved to {node_name(node)}", fallback=True)


class _CappedSpread:
    """Round robin over slots (nodes or topology domains) where each slot takes at most ``cap``:
    least-used first, natural order among equals. Shared by AntiAffinity and Packing.

    A cursor and the current fill level make a pick amortised O(1): a full scan happens only
    when a level is used up.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used: dict[Hashable, int] = {}
        self._level = 0  # no slot of the current list is used less than this
        self._cursor = 0
        self._slots: list | None = None

    def pick(self, slots: list[Hashable]) -> Hashable | None:
        """The next slot in ``slots`` (ordered) at the lowest fill, or None when all are full."""
        if slots is not self._slots:  # a new snapshot or demand: rescan from the start
            self._slots, self._cursor, self._level = slots, 0, 0
        n = len(slots)
        cursor = self._cursor if self._cursor < n else 0
        if self._level < self.cap and self.used.get(slots[cursor], 0) <= self._level:  # the usual case
            self._cursor = cursor + 1
            return slots[cursor]
        while self._level < self.cap:
            for step in range(n):
                i = (self._cursor + step) % n
                if self.used.get(slots[i], 0) <= self._level:
                    self._cursor = i + 1
                    return slots[i]
            self._level += 1
        return None

    def least_used(self, slots: list[Hashable]) -> Hashable:
        return min(slots, key=lambda slot: self.used.get(slot, 0))

    def take(self, slot: Hashable) -> None:
        self.used[slot] = self.used.get(slot, 0) + 1

    def release(self, slot: Hashable) -> None:
        if self.used.get(slot, 0) > 0:
            self.used[slot] -= 1
            self._level = min(self._level, self.used[slot])


class _StrictPolicy(Policy):
    """A policy configured with ``strict=`` (soft is its opposite): AntiAffinity and Packing."""

    def __init__(self, *, strict: bool, backend: str | None, pin_amount: float, cache: Any) -> None:
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        super().__init__(soft=not strict, backend=backend, pin_amount=pin_amount, cache=cache)

    @property
    def strict(self) -> bool:
        return not self.soft

    def _config(self) -> dict[str, Any]:
        config = super()._config()
        config["strict"] = not config.pop("soft")
        return config

    def _repr(self, own: list[str]) -> str:
        shown = own + (["strict=False"] if self.soft else [])
        shown += [f"backend={self.backend!r}"] if self.backend != self.default_backend else []
        return f"{type(self).__name__}({', '.join(shown)})"


class AntiAffinity(_StrictPolicy):
    """Spreading: each placement goes to a node holding none from this policy yet.

    ``max_per_node`` allows more per node (filled evenly); ``topology="zone"`` spreads across the
    values of that Ray node label instead of across nodes. Strict (the default) raises
    PlacementError once no node is left; ``strict=False`` falls back to the least-used node.

    >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}, {"id": "b", "label": "node1"}])
    >>> apart = AntiAffinity()
    >>> [apart.decide(snap).node_name for _ in range(2)]
    ['node0', 'node1']
    >>> apart.decide(snap)
    Traceback (most recent call last):
    ...
    placement.errors.PlacementError: 3 placements asked, 2 nodes with room for 1 each (rule: anti-affinity-exhausted). Fix: start more nodes (scripts/start_cluster.sh 3), raise max_per_node, or use AntiAffinity(strict=False)
    """

    def __init__(self, max_per_node: int = 1, *, topology: str | None = None, strict: bool = True,
                 backend: str | None = None, pin_amount: float = DEFAULT_PIN_AMOUNT, cache: Any = None) -> None:
        super().__init__(strict=strict, backend=backend, pin_amount=pin_amount, cache=cache)
        if isinstance(max_per_node, bool) or not isinstance(max_per_node, int) or max_per_node < 1:
            raise ValueError(f"max_per_node must be a whole number >= 1, got {max_per_node!r}")
        if topology is not None and (not isinstance(topology, str) or not topology):
            raise ValueError(f"topology must be a Ray node label key such as 'zone', got {topology!r}")
        self.max_per_node = max_per_node
        self.topology = topology
        self._spread = _CappedSpread(max_per_node)
        self._per_node: dict[str, int] = {}  # with topology: placements per node inside a domain
        self._placed = 0
        self._last_slots: tuple | None = None

    def _config(self) -> dict[str, Any]:
        return {"max_per_node": self.max_per_node, "topology": self.topology, **super()._config()}

    def __repr__(self) -> str:
        own = [f"max_per_node={self.max_per_node}"] if self.max_per_node != 1 else []
        return self._repr(own + ([f"topology={self.topology!r}"] if self.topology else []))

    def _domain(self, node: NodeInfo) -> Hashable | None:
        return node.node_id if self.topology is None else node.labels.get(self.topology)

    def _domains(self, cands: Candidates, demand: Demand | None) -> tuple[list, dict]:
        """Slots in order and the fitting nodes of each, built once per snapshot and demand."""
        fitting = [cands.nodes[p] for p in cands.fitting(demand)]
        domains: dict[Hashable, list[NodeInfo]] = {}
        for node in fitting:
            domain = self._domain(node)
            if domain is not None:
                domains.setdefault(domain, []).append(node)
        if not domains:
            raise PlacementError(
                errors.UNKNOWN_LABEL, f"no live candidate node has the Ray label {self.topology!r}",
                f"start nodes with `ray start --labels {self.topology}=<value>`, or drop topology=",
                [node_name(n) for n in fitting],
            )
        if self.topology is None:
            return list(domains), domains  # already in node order
        return sorted(domains, key=lambda d: natural_key(str(d))), domains

    def _choose(self, cands, demand, group, caller_node_id):
        last = self._last_slots  # the same handle passes the same demand object: skip the lookup
        if last is not None and last[0] is cands and last[1] is demand:
            slots, domains = last[2]
        else:
            slots, domains = cands.memo(("anti", demand_key(demand)), lambda: self._domains(cands, demand))
            self._last_slots = (cands, demand, (slots, domains))
        domain = self._spread.pick(slots)
        fallback = domain is None
        if domain is None:
            if not self.soft:
                where = "nodes" if self.topology is None else f"values of {self.topology!r}"
                raise PlacementError(
                    errors.SPREAD_EXHAUSTED,
                    f"{self._placed + 1} placements asked, {len(slots)} {where} with room for {self.max_per_node} each",
                    f"start more nodes (scripts/start_cluster.sh {len(cands.nodes) + 1}), raise max_per_node, "
                    "or use AntiAffinity(strict=False)",
                    [node_name(n) for nodes in domains.values() for n in nodes],
                )
            domain = self._spread.least_used(slots)
        members = domains[domain]
        node = members[0] if len(members) == 1 else min(
            members, key=lambda n: (self._per_node.get(n.node_id, 0), cands.position[n.node_id]))
        self._spread.take(domain)
        if self.topology is not None:  # without topology a domain is a node: the spread counts it
            self._per_node[node.node_id] = self._per_node.get(node.node_id, 0) + 1
        self._placed += 1
        reason = ("every node is full: soft spread reuses the least-used" if fallback
                  else "holds the fewest from this policy")
        return self._decision(node, reason, fallback=fallback)

    def release(self, decision: Decision) -> None:
        """Give back the slot of a placement that ended (e.g. a replica that was killed)."""
        with self._lock:
            self._spread.release(self._domain(decision.node))
            if self._per_node.get(decision.node.node_id, 0) > 0:
                self._per_node[decision.node.node_id] -= 1
            self._placed = max(0, self._placed - 1)


class Packing(_StrictPolicy):
    """Group affinity: placements with the same group key share one node; different groups go to
    different nodes while nodes remain. Strict raises when groups outnumber nodes; soft puts the
    new group on the node with the fewest groups.

    >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}, {"id": "b", "label": "node1"}])
    >>> pack = Packing()
    >>> [pack.decide(snap, group=g).node_name for g in ["p0", "p1", "p0", "p1"]]
    ['node0', 'node1', 'node0', 'node1']
    """

    needs_group = True

    def __init__(self, *, strict: bool = True, groups_per_node: int = 1, backend: str | None = None,
                 pin_amount: float = DEFAULT_PIN_AMOUNT, cache: Any = None) -> None:
        super().__init__(strict=strict, backend=backend, pin_amount=pin_amount, cache=cache)
        if isinstance(groups_per_node, bool) or not isinstance(groups_per_node, int) or groups_per_node < 1:
            raise ValueError(f"groups_per_node must be a whole number >= 1, got {groups_per_node!r}")
        self.groups_per_node = groups_per_node
        self._spread = _CappedSpread(groups_per_node)
        self._group_node: dict[Hashable, str] = {}

    def _config(self) -> dict[str, Any]:
        return {"groups_per_node": self.groups_per_node, **super()._config()}

    def __repr__(self) -> str:
        return self._repr([f"groups_per_node={self.groups_per_node}"] if self.groups_per_node != 1 else [])

    def node_of(self, group: Hashable) -> str | None:
        """The node id a group was packed on, or None before its first placement."""
        return self._group_node.get(group)

    def _choose(self, cands, demand, group, caller_node_id):
        snapshot = cands.snapshot
        node_id = self._group_node.get(group)
        moved = False
        if node_id is not None:
            node = snapshot.by_id.get(node_id)
            if node is not None and node.alive and node_id in cands.position:
                if demand and not node.fits(demand):
                    raise resources_error(demand, [node])
                return self._decision(node, "its group's node", group=group)
            if not self.soft:
                raise unknown_target_error(node_id, snapshot)
            self._spread.release(node_id)
            moved = True
        slots = cands.memo(("pack", demand_key(demand)), lambda: [cands.nodes[p].node_id for p in cands.fitting(demand)])
        chosen = self._spread.pick(slots)
        if chosen is None:
            if not self.soft:
                raise PlacementError(
                    errors.GROUPS_EXHAUSTED,
                    f"group {group!r} is group {len(self._group_node) + (0 if moved else 1)} but only "
                    f"{len(slots)} nodes can take {self.groups_per_node} group(s) each",
                    f"start more nodes (scripts/start_cluster.sh {len(cands.nodes) + 1}), raise groups_per_node, "
                    "or use Packing(strict=False)",
                    [node_name(snapshot.by_id[n]) for n in slots],
                )
            chosen = self._spread.least_used(slots)
            moved = True
        self._spread.take(chosen)
        self._group_node[group] = chosen
        node = snapshot.by_id[chosen]
        reason = (f"group {group!r} (re)placed on the node with the fewest groups, {node_name(node)}" if moved
                  else f"new group {group!r} on {node_name(node)}, a node with no group yet")
        return self._decision(node, reason, fallback=moved, group=group)


class Local(Policy):
    """Pin to the node of the calling process: the driver's node, or inside a task or actor its
    own node (local parallelism). Uses the node-id backend by default, so the node needs no label.

    >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}, {"id": "b", "label": "node1"}])
    >>> Local().decide(snap, caller_node_id="b").node_name
    'node1'
    """

    default_backend = NODE_ID
    needs_caller = True

    def _choose(self, cands, demand, group, caller_node_id):
        if caller_node_id is None:
            raise PlacementError(
                errors.NOT_IN_RAY, "Local needs the calling process's node, and none was given",
                "call from a Ray driver, task or actor (policy.place(fn) finds the node itself)",
            )
        node = cands.snapshot.by_id.get(caller_node_id)
        if node is None or not node.alive or caller_node_id not in cands.position:
            if node is not None and node.alive:
                raise PlacementError(
                    errors.NO_LABELLED_NODES, f"the current node {node_name(node)} has no label for the "
                    f"{self.backend!r} backend", "use Local() with its default backend='node_id'",
                    [node_name(node)],
                )
            raise unknown_target_error(caller_node_id, cands.snapshot)
        if demand and not node.fits(demand):
            raise resources_error(demand, [node])
        return self._decision(node, "the calling process's node")


class Fallback(Policy):
    """Try each policy in turn; the first that can place decides. ``a | b`` builds one.

    >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}])
    >>> policy = AntiAffinity() | RoundRobin()
    >>> [(d.node_name, d.fallback) for d in (policy.decide(snap), policy.decide(snap))]
    [('node0', False), ('node0', True)]
    """

    def __init__(self, *policies: Policy) -> None:
        flat: list[Policy] = []
        for policy in policies:
            if not isinstance(policy, Policy):
                raise TypeError(f"Fallback takes policies, got {type(policy).__name__}")
            flat.extend(policy.policies if isinstance(policy, Fallback) else [policy])
        if len(flat) < 2:
            raise ValueError("Fallback needs at least two policies: first | second")
        self.policies = tuple(flat)
        self._lock = threading.RLock()
        self._cache = flat[0]._cache
        self.soft = flat[0].soft
        self.backend = flat[0].backend
        self.pin_amount = flat[0].pin_amount
        self._candidates = None
        self._name = None
        self._handles = {}

    needs_group = property(lambda self: any(p.needs_group for p in self.policies))  # type: ignore[assignment]
    needs_caller = property(lambda self: any(p.needs_caller for p in self.policies))  # type: ignore[assignment]

    def decide(self, snapshot, demand=None, *, group=None, caller_node_id=None):
        refusals = []
        with self._lock:
            for index, policy in enumerate(self.policies):
                try:
                    decision = policy.decide(snapshot, demand, group=group, caller_node_id=caller_node_id)
                except PlacementError as refusal:
                    refusals.append(refusal)
                    continue
                if index == 0:
                    return decision
                return Decision(decision.node, f"{refusals[-1].rule}: fell back to {policy!r}: {decision.reason}",
                                repr(self), decision.backend, decision.soft, decision.pin_amount, True, decision.group)
        last = refusals[-1]
        raise PlacementError(last.rule, "; then ".join(r.detail for r in refusals), last.fix, last.nodes)

    def clone(self) -> "Fallback":
        return Fallback(*(p.clone() for p in self.policies))

    def __repr__(self) -> str:
        return " | ".join(repr(p) for p in self.policies)
