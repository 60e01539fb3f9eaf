"""AntiAffinity (spread over nodes or topology values) and the ``strict=`` base it shares with
Packing.

The ledger counts placements per slot (a node id, or a value of the topology label); a
placement goes to the first slot in order holding the fewest, found by a least-used index
(ledger.py), never by a pass over the nodes; with a topology, to the node of that value holding
the fewest (a ledger per value). The skew floor of ``max_skew`` is the same index over every
candidate domain, with the number of domains at each count.

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

import abc
import re
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

from .. import errors
from ..errors import PlacementError
from ..naming import RAY_LABEL_NAME, natural_key
from ..snapshot import ClusterSnapshot, NodeInfo
from .base import Choice, Hold, Outcome, Policy, Refusal
from .bounded import NODE_SETS_PER_LEDGER, PER_NODE_INDEXES, Bounded
from .candidates import Candidates, NodeSet, not_here, shown
from .decision import DEFAULT_PIN_AMOUNT
from .ledger import LeastIndex, Ledger
from .needs import Needs
from .rebalance import Move, Rebalance, plan_moves
from .request import Demand, Request


class StrictPolicy(Policy):
    """A policy configured with ``strict=`` (soft is its opposite): AntiAffinity and Packing."""

    keeps = True

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
        self.live = live
        self._tracked = live
        self.needs = self.needs | Needs(completion=live)
        self._spaces: Bounded[NodeSet, Domains] = Bounded(NODE_SETS_PER_LEDGER)
        # With a topology: placements per node, and an index per value's nodes (a value holds a
        # few nodes of many: more indexes are kept than per node set).
        self._per_node = Ledger(cap=PER_NODE_INDEXES)

    @property
    def strict(self) -> bool:
        return not self.soft

    def _config(self) -> dict[str, Any]:
        config = super()._config()
        config["strict"] = not config.pop("soft")
        config["live"] = self.live
        return config

    def _repr(self, own: list[str]) -> str:
        parts = own + (["strict=False"] if self.soft else [])
        parts += [f"backend={self.backend!r}"] if self.backend != self.default_backend else []
        parts += [f"where={self.where!r}"] if self.where is not None else []
        parts += [f"wait_for_nodes={self.wait_for_nodes:g}"] if self.wait_for_nodes else []
        parts += ["live=True"] if self.live else []
        return f"{type(self).__name__}({', '.join(parts)})"

    # -- the slots of a node set ------------------------------------------------------------------

    def _space(self, nodes: NodeSet) -> Domains | Refusal:
        """The slots of ``nodes`` (built once per node set, kept for the last few)."""
        found = self._spaces.get(nodes)
        if found is not None:
            self._spaces.move_to_end(nodes)
        else:
            if self.topology is not None and not any(
                    self.topology in n.labels for n in nodes.nodes):
                return Refusal.of(PlacementError(
                    errors.UNKNOWN_LABEL,
                    f"no live candidate node has the Ray label {self.topology!r}",
                    f"start nodes with `ray start --labels {self.topology}=<value>`, or drop "
                    "topology=", shown(nodes.nodes)))
            found = Domains(nodes, self.topology)
            self._spaces.put(nodes, found)
        return found

    def _least(self, cands: Candidates, demand: Demand) -> tuple[Domains, int, int] | Refusal:
        """The slots of the nodes that fit ``demand``, and the position and count of the first
        of them holding the fewest (a refusal when nothing fits)."""
        try:
            nodes = cands.node_set(demand)
        except PlacementError as refusal:
            return Refusal.of(refusal)
        space = self._space(nodes)
        if isinstance(space, Refusal):
            return space
        found = space.index(self._ledger()).least()
        assert found is not None  # a node set is never empty
        return space, found[0], found[1]

    def _member(self, space: Domains, slot: Hashable) -> tuple[NodeInfo, Ledger]:
        """With a topology: the node of value ``slot`` holding the fewest of this policy's
        placements, and the ledger of placements per node (one for every value: a node whose
        label changed keeps its count)."""
        members = space.members[slot]
        found = self._per_node.index(members, members.ids, members.position).least()
        assert found is not None  # a domain has at least one node
        return members.nodes[found[0]], self._per_node

    def _count_member(self, ledger: Ledger | None, node_id: str, by: int) -> None:
        if ledger is not None:
            ledger.change(node_id, by)

    def _follow(self, cands: Candidates) -> None:
        """Build the slots and indexes of the node sets used last as the new candidates have
        them, off the submit path."""
        for old in [cands.all, *self._spaces]:
            nodes = cands.successor(old)
            space = self._space(nodes) if nodes is not None else None
            if not isinstance(space, Domains):
                continue
            space.index(self._ledger())
            for members in space.members.values():
                self._per_node.index(members, members.ids, members.position)

    @abc.abstractmethod
    def _ledger(self) -> Ledger:
        """The ledger whose slots the policy spreads or packs over."""


def check_whole(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def check_min_domains(min_domains: Any, max_skew: int | None, strict: bool) -> int | None:
    """``min_domains``: None, or a whole number >= 1 beside max_skew on a strict spread (as
    Kubernetes allows minDomains only with whenUnsatisfiable: DoNotSchedule)."""
    if min_domains is None:
        return None
    found = check_whole("min_domains", min_domains)
    if max_skew is None or not strict:
        raise ValueError("min_domains bounds the skew of a strict spread: give max_skew= too "
                         "and keep strict=True, e.g. AntiAffinity(topology='zone', max_skew=1, "
                         "min_domains=3)")
    return found


_SHARED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_TOPOLOGY = re.compile(rf"(?:{RAY_LABEL_NAME}(?:\.{RAY_LABEL_NAME})*/)?{RAY_LABEL_NAME}")


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
    """``topology``: None or a Ray node label key (checked as Ray checks it)."""
    if topology is None:
        return None
    if (not isinstance(topology, str) or not _TOPOLOGY.fullmatch(topology)
            or len(topology.rpartition("/")[0]) > 253):
        raise ValueError(f"topology must be a Ray node label key such as 'zone' or "
                         f"'ray.io/availability-zone' (letters, digits, - _ . and one prefix/), "
                         f"got {topology!r}")
    return topology


class Domains:
    """The slots of one node set: its node ids, or the values of the topology label its nodes
    carry (nodes without that label belong to no value, as in Kubernetes), in order, with each
    value's nodes."""

    __slots__ = ("members", "nodes", "position", "slots")

    def __init__(self, nodes: NodeSet, topology: str | None) -> None:
        self.nodes = nodes
        self.members: dict[Hashable, NodeSet] = {}
        if topology is None:
            self.slots: Sequence[Any] = nodes.ids
            self.position: Mapping[Any, int] = nodes.position
            return
        grouped: dict[Hashable, list[NodeInfo]] = {}
        for node in nodes.nodes:
            value = node.labels.get(topology)
            if value is not None:
                grouped.setdefault(value, []).append(node)
        self.slots = tuple(sorted(grouped, key=lambda d: natural_key(str(d))))
        self.position = {slot: i for i, slot in enumerate(self.slots)}
        self.members = {slot: NodeSet(tuple(grouped[slot])) for slot in self.slots}

    def index(self, ledger: Ledger) -> LeastIndex:
        return ledger.index(self, self.slots, self.position)

    def node_lists(self) -> Iterator[NodeInfo]:
        """The nodes of every slot, slot by slot (for a refusal: read lazily)."""
        if not self.members:
            yield from self.nodes.nodes
            return
        for slot in self.slots:
            yield from self.members[slot].nodes


_FEWEST = "holds the fewest from this policy"
_REUSED = "every node is full or skewed: soft spread reuses the least-used"


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
    >>> web.learn_others("frontend", {"a": 1})  # another driver's replica runs on node0
    >>> web.decide(snap).node_name
    'node1'

    ``min_domains=k`` (with ``max_skew``, strict), as Kubernetes' ``minDomains``: while fewer than
    k candidate domains exist, the least-used domain counts as holding 0: at most ``max_skew``
    per domain until more domains join, rather than piling into the ones there.

    >>> three = AntiAffinity(topology="zone", max_skew=1, min_domains=3)
    >>> [three.decide(snap).node.labels["zone"] for _ in range(2)]
    ['z1', 'z2']
    >>> try:  # 2 zones of the 3 asked: one each until a third zone joins
    ...     three.decide(snap)
    ... except PlacementError as refusal:
    ...     print(refusal.rule, "|", refusal.detail[-58:])
    max-skew-exceeded | 2 domains exist of min_domains=3, so the least counts as 0
    """

    def __init__(self, max_per_node: int | None = None, *, topology: str | None = None,
                 max_skew: int | None = None, min_domains: int | None = None,
                 strict: bool = True, backend: str | None = None,
                 pin_amount: float = DEFAULT_PIN_AMOUNT, cache: Any = None,
                 where: Mapping[str, str] | None = None,
                 wait_for_nodes: float | None = None, live: bool = False,
                 shared: str | None = None) -> None:
        super().__init__(strict=strict, backend=backend, pin_amount=pin_amount, cache=cache,
                         where=where, wait_for_nodes=wait_for_nodes, live=live)
        self.max_skew = None if max_skew is None else check_whole("max_skew", max_skew)
        self.min_domains = check_min_domains(min_domains, self.max_skew, strict)
        self.topology = check_topology(topology)
        self.shared = check_shared(shared, self.topology, max_skew)
        if self.shared is not None:
            self.needs = self.needs | Needs(shared=(self.shared,))
            self._claims = self._claim
        self._others: dict[str, int] = {}  # shared: other drivers' placements per node id
        # None: no cap. The default is one per node, unless max_skew bounds the spread instead.
        self.max_per_node: int | None = (
            check_whole("max_per_node", max_per_node) if max_per_node is not None
            else None if self.max_skew is not None else 1)
        self._used = Ledger()  # placements per slot, shared by every demand
        self._placed = 0  # reserved and not given back

    def _ledger(self) -> Ledger:
        return self._used

    def _config(self) -> dict[str, Any]:
        return {"max_per_node": self.max_per_node, "topology": self.topology,
                "max_skew": self.max_skew, "min_domains": self.min_domains,
                **super()._config(), "shared": self.shared}

    def __repr__(self) -> str:
        default_cap = None if self.max_skew is not None else 1
        own = ([f"max_per_node={self.max_per_node}"] if self.max_per_node != default_cap
               else [])
        own += [f"topology={self.topology!r}"] if self.topology else []
        own += [f"max_skew={self.max_skew}"] if self.max_skew is not None else []
        own += [f"min_domains={self.min_domains}"] if self.min_domains is not None else []
        own += [f"shared={self.shared!r}"] if self.shared is not None else []
        return self._repr(own)

    def learn_others(self, name: str, counts: Mapping[str, int]) -> None:
        """Set the placements per node id of the other drivers sharing the ledger ``name`` (what
        the shared holder last reported): they count against ``max_per_node`` like this
        policy's own, and a count that went down frees its slot."""
        if name != self.shared:
            return
        if not isinstance(counts, Mapping) or not all(
                isinstance(k, str) and type(v) is int and v >= 0 for k, v in counts.items()):
            raise ValueError(f"counts must map node ids (str) to whole numbers >= 0 of "
                             f"placements, got {counts!r:.80}")
        with self._lock:
            before = self._others
            for node in before.keys() | counts.keys():
                self._used.change(node, counts.get(node, 0) - before.get(node, 0))
            self._others = {node: n for node, n in counts.items() if n > 0}

    def _choose(self, cands: Candidates, request: Request) -> Outcome:
        least = self._least(cands, request.demand)
        if isinstance(least, Refusal):
            return least
        space, pos, count = least
        fallback = False
        cap = self.max_per_node
        if cap is not None and count >= cap:
            if not self.soft:
                return Refusal(errors.SPREAD_EXHAUSTED, lambda: self._exhausted(cands, space))
            fallback = True
        skew = self.max_skew
        if skew is not None and self._over_skew(cands, space, count, skew):
            if not self.soft:
                return Refusal(errors.SKEW_EXCEEDED,
                               lambda: self._skew_error(cands, request.demand, space, pos, skew))
            fallback = True
        if self.topology is None:
            node, ledger = space.nodes.nodes[pos], None
        else:
            node, ledger = self._member(space, space.slots[pos])
        return (node, _REUSED if fallback else _FEWEST, fallback, (space.slots[pos], ledger), 0)

    judges = True

    def _choose_at(self, cands: Candidates, request: Request, node: NodeInfo) -> Outcome:
        """Allow ``node`` (another member's choice) while its slot is under the cap and placing
        there keeps the skew: the same rules as a choice of its own, for that one slot."""
        wrong = not_here(cands, request.demand, node)
        if wrong is not None:
            return Refusal.of(wrong)
        if self.topology is None:
            slot: Hashable = node.node_id
        else:
            slot = node.labels.get(self.topology)
            if slot is None:
                return Refusal.of(PlacementError(
                    errors.UNKNOWN_LABEL,
                    f"node {shown([node])[0]} has no Ray label {self.topology!r}",
                    f"start it with `ray start --labels {self.topology}=<value>`",
                    shown([node])))
        count = self._used.counts.get(slot, 0)
        fallback = False
        cap = self.max_per_node
        if cap is not None and count >= cap:
            if not self.soft:
                return Refusal.of(PlacementError(
                    errors.SPREAD_EXHAUSTED,
                    f"{self._where_of(node, slot)} already holds {count} (max_per_node={cap})",
                    "choose among more nodes, raise max_per_node, or use strict=False",
                    shown([node])))
            fallback = True
        skew = self.max_skew
        if skew is not None:
            floor = 0 if self._short_of_domains(cands) else self._floor_index(cands).floor()
            if count + 1 - floor > skew:
                if not self.soft:
                    return Refusal.of(PlacementError(
                        errors.SKEW_EXCEEDED,
                        f"placing on {self._where_of(node, slot)} would give it {count + 1} "
                        f"placements while the least-used domain holds {floor} "
                        f"(max_skew={skew})",
                        "raise max_skew, add nodes to the domains behind, or use strict=False",
                        shown([node])))
                fallback = True
        ledger = None if self.topology is None else self._per_node
        return (node, _REUSED if fallback else _FEWEST, fallback, (slot, ledger), 0)

    def _where_of(self, node: NodeInfo, slot: Hashable) -> str:
        return shown([node])[0] if self.topology is None else f"{self.topology}={slot}"

    def _floor_index(self, cands: Candidates) -> LeastIndex:
        """The least-used index over every candidate domain (the skew floor)."""
        space = self._space(cands.all)
        assert isinstance(space, Domains)  # some node fits: the floor's node set has the label
        return space.index(self._used)

    def _over_skew(self, cands: Candidates, space: Domains, count: int, skew: int) -> bool:
        """Whether placing on the least-used slot of ``space`` (now at ``count``) leaves it more
        than max_skew above the least-used domain of every candidate. (When that slot is at the
        floor itself, the placement is at most 1 above it: never over.)"""
        if self._short_of_domains(cands):  # the floor counts as 0
            return count + 1 > skew
        if space.nodes is cands.all:  # the demand fits every candidate: its floor is the floor
            return False
        return count + 1 - self._floor_index(cands).floor() > skew

    def _short_of_domains(self, cands: Candidates) -> bool:
        """Whether fewer candidate domains exist than ``min_domains`` asks."""
        wanted = self.min_domains
        if wanted is None:
            return False
        every = self._space(cands.all)
        return isinstance(every, Domains) and len(every.slots) < wanted

    def _claim(self, choice: Choice) -> tuple[str, int | None]:
        assert self.shared is not None  # set as the claim of shared policies only
        # Only a soft spread's own reuse past the cap claims without the cap.
        return self.shared, None if choice[2] and self.soft else self.max_per_node

    def _reserve(self, request: Request, choice: Choice) -> Hold:
        slot, ledger = choice[3]
        return self._take(slot, ledger, choice[0].node_id)

    def _take(self, slot: Hashable, ledger: Ledger | None, node_id: str) -> Hold:
        self._used.change(slot, +1)
        self._count_member(ledger, node_id, +1)
        self._placed += 1
        return slot, ledger, node_id

    # -- rebalancing ------------------------------------------------------------------------------

    def rebalance_plan(self, snapshot: ClusterSnapshot) -> Rebalance:
        """The moves that would restore this spread on ``snapshot`` (nodes joined or left):
        placements on nodes that left go to the least-used slot with room, then placements
        move from the most-used slot to the least-used while they differ by more than
        ``max_skew`` (1 without it). Pure: nothing moves and the ledger does not change;
        apply a move with ``record_move`` once its new work runs.

        >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}])
        >>> apart = AntiAffinity(max_per_node=2)
        >>> first, second = apart.decide(snap), apart.decide(snap)
        >>> grown = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
        ...                                     {"id": "b", "label": "node1"}], previous=snap)
        >>> plan = apart.rebalance_plan(grown)
        >>> [(m.ticket == second.ticket, m.to.label) for m in plan.moves]
        [(True, 'node1')]
        >>> apart.record_move(plan.moves[0])     # the new replica runs on node1, the old ended
        >>> apart.decide(grown).node_name
        'node0'
        """
        if not isinstance(snapshot, ClusterSnapshot):
            raise TypeError(f"rebalance_plan() takes a ClusterSnapshot, got "
                            f"{type(snapshot).__name__}: placement.current_snapshot(refresh=True)")
        if self.live or self.shared is not None:
            raise ValueError(
                "rebalance_plan() moves placements this driver's ledger holds until released: "
                "with live=True a replica's slot follows its work (end it, and the next "
                "placement takes the least-used node); with shared= other drivers hold slots too")
        pin = None if self.soft else self.pin_amount
        with self._lock:
            placed = [(ticket, node_id, slot) for ticket, (slot, _, node_id)
                      in self._kept.items()]
        try:
            cands = Candidates.of(snapshot, self.backend, pin, self.where)
        except PlacementError:
            return Rebalance(repr(self), (), tuple(sorted(t for t, _, _ in placed)))
        space = Domains(cands.all, self.topology)
        members: dict[Hashable, Sequence[NodeInfo]] = (
            {slot: nodes.nodes for slot, nodes in space.members.items()}
            if self.topology is not None else {node.node_id: (node,) for node in cands.all.nodes})
        moves, stranded = plan_moves(placed, tuple(space.slots), members, self.max_per_node,
                                     self.max_skew or 1)
        return Rebalance(repr(self), moves, stranded)

    def record_move(self, move: Move) -> None:
        """Record in the ledger that placement ``move.ticket`` now runs on ``move.to`` (its new
        work started there and the old one ended): its decision keeps its ticket, and its
        ``release`` gives back the new slot.

        Raises ValueError when the placement is not held (released, or another policy's) or is
        no longer where the plan found it (make a new plan)."""
        if not isinstance(move, Move):
            raise TypeError(f"record_move() takes a Move from rebalance_plan(), got "
                            f"{type(move).__name__}")
        with self._lock:
            hold = self._kept.get(move.ticket)
            if hold is None:
                raise ValueError(f"placement {move.ticket} is not held by {self!r}: released, "
                                 "or placed by another policy")
            if hold[2] != move.from_node:
                raise ValueError(f"placement {move.ticket} is no longer on node "
                                 f"{move.from_node[:8]}: make a new rebalance_plan()")
            if self.topology is None:
                slot: Hashable | None = move.to.node_id
            else:
                slot = move.to.labels.get(self.topology)
                if slot is None:
                    raise ValueError(f"node {shown([move.to])[0]} has no label "
                                     f"{self.topology!r}: make a new rebalance_plan()")
            self._unreserve(hold)
            ledger = None if self.topology is None else self._per_node
            self._kept[move.ticket] = self._take(slot, ledger, move.to.node_id)

    def _unreserve(self, hold: Hold) -> None:
        slot, ledger, node_id = hold
        self._used.change(slot, -1)
        self._count_member(ledger, node_id, -1)
        self._placed -= 1

    def _exhausted(self, cands: Candidates, space: Domains) -> PlacementError:
        where = "nodes" if self.topology is None else f"values of {self.topology!r}"
        others = sum(self._others.values())
        by_others = (f" ({others} placed by other drivers sharing {self.shared!r})" if others
                     else "")
        return PlacementError(
            errors.SPREAD_EXHAUSTED,
            f"{self._placed + others + 1} placements asked{by_others}, {len(space.slots)} "
            f"{where} with room for {self.max_per_node} each",
            f"start more nodes (scripts/start_cluster.sh {len(cands.nodes) + 1}), raise "
            "max_per_node, or use AntiAffinity(strict=False)",
            shown(space.node_lists()),
        )

    def _skew_error(self, cands: Candidates, demand: Demand, space: Domains, pos: int,
                    skew: int) -> PlacementError:
        every = self._space(cands.all)
        assert isinstance(every, Domains)
        index = every.index(self._used)
        least = index.least()
        assert least is not None  # the candidates are never empty
        floor, first = least[1], every.slots[least[0]]  # the first domain behind: no scan
        short = self._short_of_domains(cands)
        if short:
            floor = 0
        counts = self._used.counts
        slot = space.slots[pos]
        taken = counts.get(slot, 0) + 1
        if self.topology is None:
            chosen = shown([space.nodes.nodes[pos]])[0]
            behind = names = shown([every.nodes.nodes[least[0]]])
            behind_name = behind[0]
        else:
            chosen, behind_name = f"{self.topology}={slot}", f"{self.topology}={first}"
            names = shown(every.members[first].nodes)
        more = f" (and {index.hist.get(floor, 1) - 1} more)" if index.hist.get(floor, 1) > 1 \
            else ""
        needs = f"{demand!r} fits" if demand else "the candidates are"
        if short:
            return PlacementError(
                errors.SKEW_EXCEEDED,
                f"placing on {chosen} would give it {taken} placements (max_skew={skew}) while "
                f"only {len(every.slots)} domains exist of min_domains={self.min_domains}, so "
                "the least counts as 0",
                ("start more nodes" if self.topology is None else
                 f"add nodes with new values of {self.topology!r} (ray start --labels "
                 f"{self.topology}=<new value>)") + ", or lower min_domains",
                names)
        return PlacementError(
            errors.SKEW_EXCEEDED,
            f"placing on {chosen} would give it {taken} placements while {behind_name}{more} holds "
            f"{floor} (max_skew={skew}); {needs} only {len(space.slots)} of "
            f"{len(every.slots)} domains",
            "add nodes that hold this demand to the domains behind, release ended placements, "
            "raise max_skew, or use strict=False to place anyway",
            names,
        )
