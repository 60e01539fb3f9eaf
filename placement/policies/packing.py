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
from typing import Any, cast

from .. import errors
from ..errors import PlacementError
from ..snapshot import NodeInfo
from .base import Hold
from .candidates import Candidates, demand_error, holds
from .decision import DEFAULT_PIN_AMOUNT, Decision, node_name
from .request import Demand, Request
from .rotation import Ledger, Rotation
from .spread import StrictPolicy, Taken, _check_whole, _Domains, all_domains, check_topology, untake

_OPENED = "a new group, on a node with no group yet"
_JOINED = "its group's node"
_MOVED = "its group (re)placed on the node with the fewest groups"
_STRAYED = "its group's node cannot hold it: soft packing places it on the node with the fewest"


class _Group:
    __slots__ = ("members", "nodes", "slot")

    def __init__(self, slot: Hashable) -> None:
        self.slot = slot  # its node id, or with topology= its label value
        self.members = 1  # open and committed placements not yet released, the first included
        self.nodes: dict[Hashable, int] = {}  # with topology: its members per node (release_group)


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

    needs_group = True

    def __init__(self, *, strict: bool = True, groups_per_node: int = 1,
                 topology: str | None = None, backend: str | None = None,
                 pin_amount: float = DEFAULT_PIN_AMOUNT, cache: Any = None,
                 where: Mapping[str, str] | None = None,
                 wait_for_nodes: float | None = None, live: bool = False) -> None:
        super().__init__(strict=strict, backend=backend, pin_amount=pin_amount, cache=cache,
                         where=where, wait_for_nodes=wait_for_nodes, live=live)
        self.groups_per_node = _check_whole("groups_per_node", groups_per_node)
        self.topology = check_topology(topology)
        self._used = Ledger()  # groups per slot (node, or topology value)
        self._per_node = Ledger()  # with topology: members per node inside a value
        self._groups: dict[Hashable, _Group] = {}
        self._classes: dict[Demand, _Domains] = {}

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
            if found is not None:
                self._used.give_back(found.slot)
                for node_id, count in found.nodes.items():
                    for _ in range(count):
                        self._per_node.give_back(node_id)

    def _choose(self, cands: Candidates, request: Request) -> tuple[Decision, Hold]:
        group, demand = request.group, request.demand
        packed = self._groups.get(group)
        if packed is not None:
            member: Taken | None = None  # with topology: the count of this member on its node
            reason = _JOINED
            try:
                if self.topology is None:
                    node = cands.get(cast(str, packed.slot))
                    if node is not None and demand and not holds(node, demand):
                        raise demand_error(demand, [node])
                else:
                    node, member = self._member_node(cands, demand, packed.slot)
            except PlacementError:
                if not self.soft:
                    raise
                # Soft: this member goes where it fits; the group stays where it is.
                node, member = self._least_used_fitting(cands, demand)
                reason = _STRAYED
            if node is not None:
                _count(packed, member)
                packed.members += 1
                joined: Hold = (group, packed, None, 0, None, member)
                return self._decision(node, reason, fallback=reason is _STRAYED,
                                      group=group), joined
            if not self.soft:
                raise self._gone_error(cands, packed.slot)
        state = self._state(cands, demand)
        rotation = state.rotation
        i = rotation.take_next()
        moved = packed is not None
        if i is None:
            if not self.soft:
                raise self._exhausted(cands, state, group)
            i = rotation.least_used()
            rotation.take_at(i)
            moved = True
        slot = state.slots[i]
        if self.topology is None:
            node, member = state.nodes[i], None
        else:
            node, member = state.member(slot)
        left: Hashable | None = None  # the slot a soft group left, to return to on rollback
        if packed is None:
            packed = self._groups[group] = _Group(slot)
        else:
            left = packed.slot
            self._used.give_back(left)  # the soft group leaves its dead node
            packed.slot = slot
            packed.members += 1
        # Constant reasons: the group and the node are in the decision already, and formatting
        # them here would cost about 0.5 us per placement.
        reason = _MOVED if moved else _OPENED
        taken = rotation if packed.members == 1 or left is not None else None
        _count(packed, member)
        hold = (group, packed, taken, i, left, member)
        return self._decision(node, reason, fallback=moved, group=group), hold

    def can_grow(self, request: Request) -> bool:
        return request.group not in self._groups  # a placed group's members go to its node

    def _state(self, cands: Candidates, demand: Demand) -> _Domains:
        state = self._classes.get(demand)
        if state is None or state.cands is not cands:
            state = self._classes[demand] = _Domains(cands, demand, self.topology, self._used,
                                                     self.groups_per_node, self._per_node)
        return state

    def _member_node(self, cands: Candidates, demand: Demand,
                     slot: Hashable) -> tuple[NodeInfo | None, Taken | None]:
        """With topology: the node of value ``slot`` a new member goes to (counted), or None
        when no candidate carries that value any more; raises when some do but none fits
        ``demand``."""
        try:
            state: _Domains | None = self._state(cands, demand)
        except PlacementError:  # no node with the label fits demand: is the value still there?
            state = None
        if state is not None and state.members.get(slot):
            return state.member(slot)
        if slot in all_domains(cands, self.topology):  # O(nodes): an error path
            raise demand_error(demand, [n for n in cands.nodes
                                        if n.labels.get(self.topology or "") == slot])
        return None, None

    def _least_used_fitting(self, cands: Candidates,
                            demand: Demand) -> tuple[NodeInfo, Taken | None]:
        """The node (of the value) with the fewest groups that can hold ``demand``: where a soft
        group's member goes when the group's own node cannot hold it (O(nodes), rare)."""
        state = self._state(cands, demand)  # raises when no node can
        i = state.rotation.least_used()
        if self.topology is None:
            return state.nodes[i], None
        return state.member(state.slots[i])

    def _gone_error(self, cands: Candidates, slot: Hashable) -> PlacementError:
        if self.topology is None:
            return cands.target_error(str(slot))
        return PlacementError(
            errors.DEAD_NODE,
            f"no live candidate node has {self.topology}={slot} any more, the value its group is "
            "packed on", "release the group (release_group) and place it again, or use "
            "Packing(strict=False) to move it", [node_name(n) for n in cands.nodes][:64])

    def _follow(self, cands: Candidates) -> None:
        for demand in list(self._classes):
            try:
                self._classes[demand] = _Domains(cands, demand, self.topology, self._used,
                                                 self.groups_per_node, self._per_node)
            except PlacementError:
                del self._classes[demand]  # nothing fits it now: its next decision says so

    def _exhausted(self, cands: Candidates, state: _Domains, group: Hashable) -> PlacementError:
        where = "nodes" if self.topology is None else f"values of {self.topology!r}"
        return PlacementError(
            errors.GROUPS_EXHAUSTED,
            f"group {group!r} is group {len(self._groups) + 1} but only {len(state.slots)} "
            f"{where} can take {self.groups_per_node} group(s) each",
            f"start more nodes (scripts/start_cluster.sh {len(cands.nodes) + 1}), raise "
            "groups_per_node, release finished groups, or use Packing(strict=False)",
            [node_name(n) for nodes in state.node_sets() for n in nodes],
        )

    def _rollback(self, hold: Hold) -> None:
        group, packed, taken, i, left, member = hold
        if left is None or taken is None or packed.slot != taken.slots[i]:
            self._undo(hold)
            return
        # This placement moved a soft group off its dead node: move it back, so the ledger is
        # as if the placement never happened (a release keeps the group where it went).
        self._uncount(group, packed, member)
        packed.members -= 1
        taken.untake(i)
        self._used.add(left)
        packed.slot = left
        if packed.members <= 0 and self._groups.get(group) is packed:
            del self._groups[group]
            self._used.give_back(left)

    def _undo(self, hold: Hold) -> None:
        group: Hashable
        packed: _Group
        taken: Rotation | None  # the rotation that opened or moved the group, and its index
        i: int
        left: Hashable | None  # the slot a moved group left
        member: Taken | None  # with topology: the count of the member on its node
        group, packed, taken, i, left, member = hold
        self._uncount(group, packed, member)
        packed.members -= 1
        opened = taken if left is None else None
        if packed.members <= 0 and self._groups.get(group) is packed:
            del self._groups[group]
            if opened is not None and opened.slots[i] == packed.slot:
                opened.untake(i)  # the group never opened: as if never decided
            else:
                self._used.give_back(packed.slot)

    def _uncount(self, group: Hashable, packed: _Group, member: Taken | None) -> None:
        """Give back a member's count on its node, unless release_group gave back the group's."""
        if member is None or self._groups.get(group) is not packed:
            return
        untake(member)
        node_id = member[0].slots[member[1]]
        left = packed.nodes[node_id] - 1
        if left:
            packed.nodes[node_id] = left
        else:
            del packed.nodes[node_id]


def _count(packed: _Group, member: Taken | None) -> None:
    """Note a member's node in its group (topology only), for release_group."""
    if member is not None:
        node_id = member[0].slots[member[1]]
        packed.nodes[node_id] = packed.nodes.get(node_id, 0) + 1
