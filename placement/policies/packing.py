"""Packing: placements with the same group key share one node; groups go to different nodes.

>>> from placement.snapshot import ClusterSnapshot
>>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
...                                    {"id": "b", "label": "node1"}])
>>> pack = Packing()
>>> [pack.decide(snap, group=g).node_name for g in ["p0", "p1", "p0", "p1"]]
['node0', 'node1', 'node0', 'node1']

With ``topology=`` a group shares a value of that Ray label (a zone) instead of a node, and its
members spread over that zone's nodes:

>>> zoned = ClusterSnapshot.from_dicts(
...     [{"id": i, "label": f"node{n}", "labels": {"zone": z}}
...      for n, (i, z) in enumerate([("a", "z1"), ("b", "z1"), ("c", "z2")])])
>>> pack = Packing(topology="zone")
>>> [pack.decide(zoned, group=g).node_name for g in ["p0", "p1", "p0", "p1"]]
['node0', 'node2', 'node1', 'node2']
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from .. import errors
from ..errors import PlacementError
from ..snapshot import NodeInfo
from .base import Choice, Hold, Outcome, Refusal
from .bounded import Bounded
from .candidates import Candidates, demand_error, holds, shown
from .decision import DEFAULT_PIN_AMOUNT
from .ledger import Ledger
from .needs import Needs
from .request import Demand, Request
from .spread import Domains, StrictPolicy, check_topology, check_whole

_OPENED = "a new group, on a node with no group yet"
_JOINED = "its group's node"
_MOVED = "its group (re)placed on the node with the fewest groups"
_STRAYED = "its group's node cannot hold it: soft packing places it on the node with the fewest"

# What a placement did to its group (the first field of its hold).
_JOIN, _OPEN, _MOVE = "join", "open", "move"


class _Group:
    __slots__ = ("members", "nodes", "slot")

    def __init__(self, slot: Hashable) -> None:
        self.slot = slot  # its node id, or with topology= its label value
        self.members = 0  # reserved placements not given back
        self.nodes: dict[str, int] = {}  # with topology: members per node (release_group)


class Packing(StrictPolicy):
    """Group affinity: placements with the same group key share one node; different groups go to
    different nodes while nodes remain. Strict raises when groups outnumber nodes; soft puts the
    new group on the node with the fewest groups, and a member its group's node cannot hold (a
    larger demand) on the node with the fewest groups that can, leaving the group where it is. A
    group's node is freed when its last member is released (``release(decision)``) or at once by
    ``release_group(group)``.

    ``topology="zone"`` (any Ray node label, e.g. ``"ray.io/availability-zone"``) packs at the
    granularity of that label: a group shares one value (all its members in one zone, each on
    the zone's node with the fewest members of this policy), different groups take different
    values, and ``groups_per_node`` counts groups per value.
    """

    needs = Needs(group=True)

    def __init__(self, *, strict: bool = True, groups_per_node: int = 1,
                 topology: str | None = None, backend: str | None = None,
                 pin_amount: float = DEFAULT_PIN_AMOUNT, cache: Any = None,
                 where: Mapping[str, str] | None = None,
                 wait_for_nodes: float | None = None, live: bool = False) -> None:
        super().__init__(strict=strict, backend=backend, pin_amount=pin_amount, cache=cache,
                         where=where, wait_for_nodes=wait_for_nodes, live=live)
        self.groups_per_node = check_whole("groups_per_node", groups_per_node)
        self.topology = check_topology(topology)
        self._used = Ledger()  # groups per slot (node, or topology value)
        self._groups: dict[Hashable, _Group] = {}
        # too-large refusals of the current candidates only: an old snapshot is not kept alive
        self._refusals: Bounded[tuple[Hashable, Demand], Refusal] = Bounded(64)
        self._refusals_of: Candidates | None = None

    def _ledger(self) -> Ledger:
        return self._used

    def _config(self) -> dict[str, Any]:
        return {"groups_per_node": self.groups_per_node, "topology": self.topology,
                **super()._config()}

    def __repr__(self) -> str:
        gpn = self.groups_per_node
        own = [f"groups_per_node={gpn}"] if gpn != 1 else []
        return self._repr(own + ([f"topology={self.topology!r}"] if self.topology else []))

    def node_of(self, group: Hashable) -> Hashable | None:
        """The node id a group is packed on (with ``topology=``, its label value), or None when
        it has no placement."""
        with self._lock:
            found = self._groups.get(group)
            return None if found is None else found.slot

    def release_group(self, group: Hashable) -> None:
        """Forget a group at once (all its members ended): its node can take a new group.
        Idempotent."""
        with self._lock:
            found = self._groups.pop(group, None)
            if found is None:
                return
            self._used.change(found.slot, -1)
            for node_id, count in found.nodes.items():
                self._count_member(self._per_node, node_id, -count)
            found.nodes.clear()

    def can_grow(self, request: Request) -> bool:
        return request.group not in self._groups  # a placed group's members go to its node

    # -- choosing ---------------------------------------------------------------------------------

    def _choose(self, cands: Candidates, request: Request) -> Outcome:
        group, demand = request.group, request.demand
        try:
            packed = self._groups.get(group)
        except TypeError:
            raise TypeError(f"group must be hashable (a str, int or tuple), got "
                            f"{type(group).__name__}: e.g. group='partition-3'") from None
        if packed is not None:
            joined = self._join(cands, request, packed)
            if joined is not None:
                return joined
        least = self._least(cands, demand)
        if isinstance(least, Refusal):
            return least
        space, pos, count = least
        moved = packed is not None
        if count >= self.groups_per_node:
            if not self.soft:
                return Refusal(errors.GROUPS_EXHAUSTED,
                               lambda: self._exhausted(cands, space, group))
            moved = True
        slot = space.slots[pos]
        node, ledger = ((space.nodes.nodes[pos], None) if self.topology is None
                        else self._member(space, slot))
        kind = _OPEN if packed is None else _MOVE
        # Constant reasons: the group and the node are in the decision already.
        return (node, _MOVED if moved else _OPENED, moved, (kind, slot, ledger), 0)

    def _join(self, cands: Candidates, request: Request, packed: _Group) -> Outcome | None:
        """A member of a placed group: its group's node (or value), a stray elsewhere (soft, too
        large for it), a refusal, or None when the group must move (soft, its node is gone)."""
        demand = request.demand
        if self.topology is None:
            node = cands.get(str(packed.slot))
            if node is not None:
                if not demand or holds(node, demand):
                    return (node, _JOINED, False, (_JOIN, packed.slot, None), 0)
                if not self.soft:
                    return Refusal.of(demand_error(demand, [node]))
                return self._stray(cands, request)
        else:
            refused: PlacementError | None = None
            try:
                nodes = cands.node_set(demand)
            except PlacementError as refusal:
                nodes, refused = None, refusal
            space = self._space(nodes) if nodes is not None else None
            if isinstance(space, Domains) and packed.slot in space.members:
                node, ledger = self._member(space, packed.slot)
                return (node, _JOINED, False, (_JOIN, packed.slot, ledger), 0)
            everywhere = self._space(cands.all)
            if isinstance(everywhere, Domains) and packed.slot in everywhere.members:
                # The value is there, but none of its nodes can hold this member.
                if not self.soft:
                    return self._too_large(cands, everywhere, packed.slot, demand)
                if refused is not None:
                    return Refusal.of(refused)
                return self._stray(cands, request)
        if not self.soft:
            return Refusal(errors.DEAD_NODE, lambda: self._gone_error(cands, packed.slot))
        return None

    def _stray(self, cands: Candidates, request: Request) -> Outcome:
        """A soft group's member its group's node cannot hold: the fitting node (of the value)
        with the fewest groups; the group stays where it is."""
        least = self._least(cands, request.demand)
        if isinstance(least, Refusal):
            return least
        space, pos, _ = least
        slot = space.slots[pos]
        node, ledger = ((space.nodes.nodes[pos], None) if self.topology is None
                        else self._member(space, slot))
        return (node, _STRAYED, True, (_JOIN, slot, ledger), 0)

    # -- the ledger -------------------------------------------------------------------------------

    def _reserve(self, request: Request, choice: Choice) -> Hold:
        kind, slot, ledger = choice[3]
        node: NodeInfo = choice[0]
        group = request.group
        packed = self._groups.get(group)
        left: Hashable | None = None
        if kind == _OPEN:
            packed = self._groups[group] = _Group(slot)
            self._used.change(slot, +1)
        elif kind == _MOVE:
            assert packed is not None  # a move is of a placed group
            left = packed.slot
            self._used.change(left, -1)  # the soft group leaves its node
            self._used.change(slot, +1)
            packed.slot = slot
        assert packed is not None
        packed.members += 1
        if ledger is not None:
            self._count_member(ledger, node.node_id, +1)
            packed.nodes[node.node_id] = packed.nodes.get(node.node_id, 0) + 1
        return kind, group, packed, slot, left, ledger, node.node_id

    def _unreserve(self, hold: Hold) -> None:
        packed: _Group
        kind, group, packed, slot, left, ledger, node_id = hold
        self._give_member(group, packed, slot, ledger, node_id)
        if kind == _MOVE and packed.slot == slot and self._groups.get(group) is packed:
            # It moved the group: move it back, as if the placement never happened.
            self._used.change(slot, -1)
            self._used.change(left, +1)
            packed.slot = left
        if packed.members <= 0 and self._groups.get(group) is packed:
            del self._groups[group]
            self._used.change(packed.slot, -1)

    def _release(self, hold: Hold) -> None:
        packed: _Group
        kind, group, packed, slot, left, ledger, node_id = hold
        self._give_member(group, packed, slot, ledger, node_id)
        if packed.members <= 0 and self._groups.get(group) is packed:
            del self._groups[group]  # a released move keeps the group where it went
            self._used.change(packed.slot, -1)

    def _give_member(self, group: Hashable, packed: _Group, slot: Hashable,
                     ledger: Ledger | None, node_id: str) -> None:
        packed.members -= 1
        if ledger is None or self._groups.get(group) is not packed:
            return  # release_group gave the members' counts back already
        self._count_member(ledger, node_id, -1)
        if packed.nodes[node_id] > 1:
            packed.nodes[node_id] -= 1
        else:
            del packed.nodes[node_id]

    # -- refusals ---------------------------------------------------------------------------------

    def _too_large(self, cands: Candidates, space: Domains, slot: Hashable,
                   demand: Demand) -> Refusal:
        """Why no node of value ``slot`` can hold ``demand``: worked out once per candidates,
        value and demand (a pass over the value's nodes), then looked up."""
        if self._refusals_of is not cands:
            self._refusals.clear()
            self._refusals_of = cands
        key = (slot, demand)
        found = self._refusals.get(key)
        if found is None:
            found = Refusal.of(demand_error(demand, space.members[slot].nodes))
            self._refusals.put(key, found)
        return found

    def _gone_error(self, cands: Candidates, slot: Hashable) -> PlacementError:
        if self.topology is None:
            return cands.target_error(str(slot))
        return PlacementError(
            errors.DEAD_NODE,
            f"no live candidate node has {self.topology}={slot} any more, the value its group is "
            "packed on", "release the group (release_group) and place it again, or use "
            "Packing(strict=False) to move it", shown(cands.nodes))

    def _exhausted(self, cands: Candidates, space: Domains, group: Hashable) -> PlacementError:
        where = "nodes" if self.topology is None else f"values of {self.topology!r}"
        return PlacementError(
            errors.GROUPS_EXHAUSTED,
            f"group {group!r} is group {len(self._groups) + 1} but only {len(space.slots)} "
            f"{where} can take {self.groups_per_node} group(s) each",
            f"start more nodes (scripts/start_cluster.sh {len(cands.nodes) + 1}), raise "
            "groups_per_node, release finished groups, or use Packing(strict=False)",
            shown(space.node_lists()),
        )
