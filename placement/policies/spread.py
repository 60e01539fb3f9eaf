"""AntiAffinity (spread over nodes or topology values) and the ``strict=`` base it shares with
Packing.

>>> from placement.snapshot import ClusterSnapshot
>>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
...                                    {"id": "b", "label": "node1"}])
>>> apart = AntiAffinity()
>>> first, second = apart.decide(snap), apart.decide(snap)
>>> first.node_name, second.node_name
('node0', 'node1')
>>> apart.decide(snap)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
placement.errors.PlacementError: 3 placements asked, 2 nodes with room for 1 each (rule: ...
>>> apart.release(first)  # the replica on node0 ended
>>> apart.decide(snap).node_name
'node0'
"""
from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from .. import errors
from ..errors import PlacementError
from ..naming import natural_key
from ..snapshot import NodeInfo
from .base import Hold, Policy
from .candidates import Candidates
from .decision import DEFAULT_PIN_AMOUNT, Decision, node_name
from .request import NOTHING, Demand, Request
from .rotation import Floor, Ledger, Rotation


class StrictPolicy(Policy):
    """A policy configured with ``strict=`` (soft is its opposite): AntiAffinity and Packing."""

    releases = True

    def __init__(self, *, strict: bool, backend: str | None, pin_amount: float,
                 cache: Any, where: Mapping[str, str] | None = None,
                 wait_for_nodes: float | None = None, live: bool = False) -> None:
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        if not isinstance(live, bool):
            raise TypeError(f"live must be True or False, got {live!r}")
        super().__init__(soft=not strict, backend=backend, pin_amount=pin_amount, cache=cache,
                         where=where, wait_for_nodes=wait_for_nodes)
        # live: work that ended (a task done, an actor dead) stops counting with no release()
        self.tracks_completion = live

    @property
    def live(self) -> bool:
        return self.tracks_completion

    @property
    def strict(self) -> bool:
        return not self.soft

    def _config(self) -> dict[str, Any]:
        config = super()._config()
        config["strict"] = not config.pop("soft")
        config["live"] = self.live
        return config

    def _repr(self, own: list[str]) -> str:
        shown = own + (["strict=False"] if self.soft else [])
        shown += [f"backend={self.backend!r}"] if self.backend != self.default_backend else []
        shown += [f"where={self.where!r}"] if self.where is not None else []
        shown += [f"wait_for_nodes={self.wait_for_nodes:g}"] if self.wait_for_nodes else []
        shown += ["live=True"] if self.live else []
        return f"{type(self).__name__}({', '.join(shown)})"


def _check_whole(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


_SHARED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def check_shared(shared: Any, topology: str | None, max_skew: int | None) -> str | None:
    if shared is None:
        return None
    if not isinstance(shared, str) or not _SHARED_NAME.fullmatch(shared):
        raise ValueError(f"shared must be a name of letters, digits, '_', '.' or '-' (at most 63, "
                         f"e.g. shared='frontend'), got {shared!r}")
    if topology is not None or max_skew is not None:
        raise ValueError("shared= spreads over nodes with max_per_node: drop topology= and "
                         "max_skew=, or drop shared= to keep them within this driver")
    return shared


def check_topology(topology: Any) -> str | None:
    if topology is not None and (not isinstance(topology, str) or not topology):
        raise ValueError(f"topology must be a Ray node label key such as 'zone' or "
                         f"'ray.io/availability-zone', got {topology!r}")
    return topology


def all_domains(cands: Candidates, topology: str | None) -> Sequence[Hashable]:
    """Every slot of the candidates whatever the demand: their node ids, or the values of
    ``topology`` they carry (nodes without that label belong to no domain, as in Kubernetes)."""
    if topology is None:
        return cands.fitting_ids(NOTHING)
    values = {node.labels.get(topology) for node in cands.nodes}
    values.discard(None)
    return sorted(values, key=lambda d: natural_key(str(d)))


# A take of a rotation: undone by ``rotation.untake(index)``, which restores its cursor too when
# nothing was taken since (a rollback then leaves the next choice as if it never happened).
Taken = tuple[Rotation, int]


def untake(taken: Taken) -> None:
    rotation, index = taken
    rotation.untake(index)


class _Domains:
    """The slots (nodes, or topology values) fitting one demand in one snapshot, in order.

    Spread over nodes, the slots are the candidates' own tuple of node ids: nothing is built per
    snapshot. Over a topology label, the nodes are grouped by value (O(nodes), once per snapshot).
    """

    __slots__ = ("cands", "inner", "members", "nodes", "per_node", "rotation", "slots")

    def __init__(self, cands: Candidates, demand: Demand, topology: str | None, ledger: Ledger,
                 cap: int | None, per_node: Ledger | None = None) -> None:
        self.cands = cands
        self.per_node = per_node if per_node is not None else Ledger()
        self.inner: dict[Hashable, Rotation] = {}  # per domain, over its nodes (built on use)
        fitting = self.nodes = cands.fitting(demand)
        self.members: dict[Hashable, list[NodeInfo]] = {}
        if topology is None:
            self.slots: Sequence[Hashable] = cands.fitting_ids(demand)
        else:
            for node in fitting:
                domain = node.labels.get(topology)
                if domain is not None:
                    self.members.setdefault(domain, []).append(node)
            if not self.members:
                raise PlacementError(
                    errors.UNKNOWN_LABEL,
                    f"no live candidate node has the Ray label {topology!r}",
                    f"start nodes with `ray start --labels {topology}=<value>`, or drop topology=",
                    [node_name(n) for n in fitting],
                )
            self.slots = sorted(self.members, key=lambda d: natural_key(str(d)))
        self.rotation = Rotation(self.slots, ledger, cap)

    def member(self, slot: Hashable) -> tuple[NodeInfo, Taken]:
        """Count and return the node of domain ``slot`` holding the fewest placements (counted
        in ``per_node``), with what undoes the count (``untake``): a rotation over the domain's
        nodes, amortised O(1), not a scan."""
        rotation = self.inner.get(slot)
        if rotation is None:
            ids = tuple(n.node_id for n in self.members[slot])
            rotation = self.inner[slot] = Rotation(ids, self.per_node)
        i = rotation.take_next()
        if i is None:  # pragma: no cover
            raise AssertionError("unreachable: a rotation without a cap always takes")
        return self.members[slot][i], (rotation, i)

    def node_sets(self) -> list[list[NodeInfo]]:
        """The nodes of each slot, in slot order."""
        if not self.members:
            return [[n] for n in self.nodes]
        return [self.members[slot] for slot in self.slots]


class AntiAffinity(StrictPolicy):
    """Spreading: each placement goes to a node holding none from this policy yet.

    ``max_per_node`` allows more per node (filled evenly); ``topology="zone"`` (any Ray node
    label, e.g. ``"ray.io/availability-zone"``) spreads across the values of that label instead
    of across nodes, and ``max_per_node`` then counts per value. Strict (the default) raises
    PlacementError once no node is left; ``strict=False`` falls back to the least-used node.
    ``release(decision)`` gives a replica's slot back when it ended.

    ``max_skew=k`` bounds the imbalance instead, as Kubernetes' topologySpreadConstraints: no cap
    per node (unless ``max_per_node`` is given too), and a placement may not leave its domain
    more than ``k`` above the least-used domain of the candidates, counted over every candidate
    domain whatever the demand (a demand that fits only some domains cannot pile into them).
    Strict refuses such a placement (``whenUnsatisfiable: DoNotSchedule``); ``strict=False``
    places it on the least-used domain that fits and flags the fallback (``ScheduleAnyway``).

    >>> from placement.snapshot import ClusterSnapshot
    >>> snap = ClusterSnapshot.from_dicts(
    ...     [{"id": "a", "label": "node0", "labels": {"zone": "z1"}, "resources": {"accel": 1}},
    ...      {"id": "b", "label": "node1", "labels": {"zone": "z2"}}])
    >>> even = AntiAffinity(topology="zone", max_skew=1)
    >>> [even.decide(snap).node.labels["zone"] for _ in range(3)]
    ['z1', 'z2', 'z1']
    >>> try:  # only z1 holds an accel: a third there would be 2 above z2
    ...     even.decide(snap, {"accel": 1})
    ... except PlacementError as refusal:
    ...     print(refusal.rule, "|", refusal.detail[:59])
    max-skew-exceeded | placing on zone=z1 would give it 3 placements while zone=z2

    ``shared="frontend"`` keeps the spread across every driver whose AntiAffinity has that name:
    each placement is claimed in one named Ray actor before it is submitted, so two drivers
    never take a node's last slot (placement/shared.py); ``learn_others`` is how the counts of
    the other drivers reach this ledger.

    >>> web = AntiAffinity(shared="frontend")
    >>> web.learn_others({"a": 1})  # another driver's replica runs on node0
    >>> web.decide(snap).node_name
    'node1'
    """

    def __init__(self, max_per_node: int | None = None, *, topology: str | None = None,
                 max_skew: int | None = None, strict: bool = True, backend: str | None = None,
                 pin_amount: float = DEFAULT_PIN_AMOUNT, cache: Any = None,
                 where: Mapping[str, str] | None = None,
                 wait_for_nodes: float | None = None, live: bool = False,
                 shared: str | None = None) -> None:
        super().__init__(strict=strict, backend=backend, pin_amount=pin_amount, cache=cache,
                         where=where, wait_for_nodes=wait_for_nodes, live=live)
        self.max_skew = None if max_skew is None else _check_whole("max_skew", max_skew)
        self.shared = check_shared(shared, topology, max_skew)
        self._others: dict[str, int] = {}  # shared: other drivers' placements per node id
        # None: no cap. The default is one per node, unless max_skew bounds the spread instead.
        self.max_per_node: int | None = (
            _check_whole("max_per_node", max_per_node) if max_per_node is not None
            else None if self.max_skew is not None else 1)
        self.topology = check_topology(topology)
        self._used = Ledger()  # placements per slot, shared by every demand
        self._per_node = Ledger()  # with topology: placements per node inside a domain
        self._classes: dict[Demand, _Domains] = {}
        self._floor: Floor | None = None  # with max_skew: the least-used of every domain
        self._floor_of: Candidates | None = None  # the candidates that floor was built on
        self._placed = 0

    def _config(self) -> dict[str, Any]:
        return {"max_per_node": self.max_per_node, "topology": self.topology,
                "max_skew": self.max_skew, **super()._config(), "shared": self.shared}

    def __repr__(self) -> str:
        default_cap = None if self.max_skew is not None else 1
        own = ([f"max_per_node={self.max_per_node}"] if self.max_per_node != default_cap
               else [])
        own += [f"topology={self.topology!r}"] if self.topology else []
        own += [f"max_skew={self.max_skew}"] if self.max_skew is not None else []
        own += [f"shared={self.shared!r}"] if self.shared is not None else []
        return self._repr(own)

    def learn_others(self, counts: Mapping[str, int]) -> None:
        """Set the placements per node id of the other drivers sharing this ledger (what the
        shared holder last reported): they count against ``max_per_node`` like this policy's
        own, and a count that went down frees its slot."""
        with self._lock:
            before = self._others
            for node in before.keys() | counts.keys():
                self._used.adjust(node, counts.get(node, 0) - before.get(node, 0))
            self._others = {node: n for node, n in counts.items() if n > 0}

    def _choose(self, cands: Candidates, request: Request) -> tuple[Decision, Hold]:
        demand = request.demand
        state = self._classes.get(demand)
        if state is None or state.cands is not cands:
            state = self._classes[demand] = _Domains(cands, demand, self.topology, self._used,
                                                     self.max_per_node, self._per_node)
        rotation = state.rotation
        i = rotation.take_next()
        fallback = i is None
        if i is None:
            if not self.soft:
                raise self._exhausted(cands, state)
            i = rotation.least_used()
            rotation.take_at(i)
        skew = self.max_skew
        if skew is not None and self._over_skew(cands, rotation, i, skew):
            if not self.soft:
                rotation.untake(i)
                raise self._skew_error(cands, demand, state, i, skew)
            fallback = True
        inner: Taken | None = None  # with topology: the take of a node inside the domain
        if self.topology is None:
            node = state.nodes[i]
        else:  # the least-used node of the domain
            node, inner = state.member(state.slots[i])
        self._placed += 1
        reason = ("every node is full or skewed: soft spread reuses the least-used" if fallback
                  else "holds the fewest from this policy")
        return self._decision(node, reason, fallback=fallback), (rotation, i, inner)

    def _over_skew(self, cands: Candidates, rotation: Rotation, i: int, skew: int) -> bool:
        """Whether the placement just taken at slot ``i`` leaves it more than max_skew above the
        least-used domain (its count is already raised: if it was the only least-used one, the
        skew is 1, never over the bound)."""
        floor = self._floor
        if floor is None or self._floor_of is not cands:  # once per snapshot
            floor = self._floor = Floor(all_domains(cands, self.topology), self._used)
            self._floor_of = cands
        over = rotation.counts.get(rotation.slots[i], 0) - skew
        return over > floor.bound() and over > floor.exact()

    def _skew_error(self, cands: Candidates, demand: Demand, state: _Domains, i: int,
                    skew: int) -> PlacementError:
        every = Floor(all_domains(cands, self.topology), self._used)
        floor, lagging = every.exact(), every.lowest()
        counts = self._used.counts
        taken = counts.get(state.slots[i], 0) + 1
        if self.topology is None:
            nodes = [n for n in (cands.get(str(slot)) for slot in lagging) if n is not None]
            chosen, behind = node_name(state.nodes[i]), node_name(nodes[0])
            names = [node_name(n) for n in nodes]
        else:
            chosen, behind = f"{self.topology}={state.slots[i]}", f"{self.topology}={lagging[0]}"
            names = [node_name(n) for n in cands.nodes if n.labels.get(self.topology) in lagging]
        more = f" (and {len(lagging) - 1} more)" if len(lagging) > 1 else ""
        needs = f"{demand!r} fits" if demand else "the candidates are"
        return PlacementError(
            errors.SKEW_EXCEEDED,
            f"placing on {chosen} would give it {taken} placements while {behind}{more} holds "
            f"{floor} (max_skew={skew}); {needs} only {len(state.slots)} of "
            f"{len(every.slots)} domains",
            "add nodes that hold this demand to the domains behind, release ended placements, "
            "raise max_skew, or use strict=False to place anyway",
            names[:64],
        )

    def _follow(self, cands: Candidates) -> None:
        for demand in list(self._classes):
            try:
                self._classes[demand] = _Domains(cands, demand, self.topology, self._used,
                                                 self.max_per_node, self._per_node)
            except PlacementError:
                del self._classes[demand]  # nothing fits it now: its next decision says so
        if self._floor is not None:
            self._floor = Floor(all_domains(cands, self.topology), self._used)
            self._floor_of = cands

    def _exhausted(self, cands: Candidates, state: _Domains) -> PlacementError:
        where = "nodes" if self.topology is None else f"values of {self.topology!r}"
        others = sum(self._others.values())
        by_others = (f" ({others} placed by other drivers sharing {self.shared!r})" if others
                     else "")
        return PlacementError(
            errors.SPREAD_EXHAUSTED,
            f"{self._placed + others + 1} placements asked{by_others}, {len(state.slots)} "
            f"{where} with room for {self.max_per_node} each",
            f"start more nodes (scripts/start_cluster.sh {len(cands.nodes) + 1}), raise "
            "max_per_node, or use AntiAffinity(strict=False)",
            [node_name(n) for nodes in state.node_sets() for n in nodes],
        )

    def _undo(self, hold: Hold) -> None:
        rotation: Rotation
        i: int
        inner: Taken | None
        rotation, i, inner = hold
        if inner is not None:
            untake(inner)
        rotation.untake(i)  # counts are shared: right even if a newer snapshot has its own
        self._placed -= 1
