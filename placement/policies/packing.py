"""Packing: placements with the same group key share one node; groups go to different nodes.

>>> from placement.snapshot import ClusterSnapshot
>>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
...                                    {"id": "b", "label": "node1"}])
>>> pack = Packing()
>>> [pack.decide(snap, group=g).node_name for g in ["p0", "p1", "p0", "p1"]]
['node0', 'node1', 'node0', 'node1']
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from .. import errors
from ..errors import PlacementError
from ..snapshot import NodeInfo
from .base import Hold
from .candidates import Candidates, resources_error
from .decision import DEFAULT_PIN_AMOUNT, Decision, node_name
from .request import Demand, Request
from .rotation import Ledger, Rotation
from .spread import StrictPolicy, _check_whole

_OPENED = "a new group, on a node with no group yet"
_JOINED = "its group's node"
_MOVED = "its group (re)placed on the node with the fewest groups"


class _Group:
    __slots__ = ("members", "node_id")

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.members = 1  # open and committed placements not yet released, the first included


class _Nodes:
    """The nodes fitting one demand in one snapshot, as slots of a rotation (the candidates' own
    tuples: nothing is built per snapshot)."""

    __slots__ = ("cands", "nodes", "rotation")

    def __init__(self, cands: Candidates, demand: Demand, ledger: Ledger, cap: int) -> None:
        self.cands = cands
        self.nodes: tuple[NodeInfo, ...] = cands.fitting(demand)
        self.rotation = Rotation(cands.fitting_ids(demand), ledger, cap)


class Packing(StrictPolicy):
    """Group affinity: placements with the same group key share one node; different groups go to
    different nodes while nodes remain. Strict raises when groups outnumber nodes; soft puts the
    new group on the node with the fewest groups. A group's node is freed when its last member is
    released (``release(decision)``) or at once by ``release_group(group)``.
    """

    needs_group = True

    def __init__(self, *, strict: bool = True, groups_per_node: int = 1,
                 backend: str | None = None, pin_amount: float = DEFAULT_PIN_AMOUNT,
                 cache: Any = None, where: Mapping[str, str] | None = None) -> None:
        super().__init__(strict=strict, backend=backend, pin_amount=pin_amount, cache=cache,
                         where=where)
        self.groups_per_node = _check_whole("groups_per_node", groups_per_node)
        self._used = Ledger()  # groups per node
        self._groups: dict[Hashable, _Group] = {}
        self._classes: dict[Demand, _Nodes] = {}

    def _config(self) -> dict[str, Any]:
        return {"groups_per_node": self.groups_per_node, **super()._config()}

    def __repr__(self) -> str:
        gpn = self.groups_per_node
        return self._repr([f"groups_per_node={gpn}"] if gpn != 1 else [])

    def node_of(self, group: Hashable) -> str | None:
        """The node id a group is packed on, or None when it has no placement."""
        with self._lock:
            found = self._groups.get(group)
            return None if found is None else found.node_id

    def release_group(self, group: Hashable) -> None:
        """Forget a group at once (all its members ended): its node can take a new group.
        Idempotent."""
        with self._lock:
            found = self._groups.pop(group, None)
            if found is not None:
                self._used.give_back(found.node_id)

    def _choose(self, cands: Candidates, request: Request) -> tuple[Decision, Hold]:
        group, demand = request.group, request.demand
        packed = self._groups.get(group)
        if packed is not None:
            node = cands.get(packed.node_id)
            if node is not None:
                if demand and not node.fits(demand):
                    raise resources_error(demand, [node])
                packed.members += 1
                return self._decision(node, _JOINED, group=group), (group, packed, None, 0, None)
            if not self.soft:
                raise cands.target_error(packed.node_id)
        state = self._classes.get(demand)
        if state is None or state.cands is not cands:
            state = self._classes[demand] = _Nodes(cands, demand, self._used, self.groups_per_node)
        rotation = state.rotation
        i = rotation.take_next()
        moved = packed is not None
        if i is None:
            if not self.soft:
                raise self._exhausted(cands, state, group)
            i = rotation.least_used()
            rotation.take_at(i)
            moved = True
        node = state.nodes[i]
        left: str | None = None  # the node a soft group left, to return to on rollback
        if packed is None:
            packed = self._groups[group] = _Group(node.node_id)
        else:
            left = packed.node_id
            self._used.give_back(left)  # the soft group leaves its dead node
            packed.node_id = node.node_id
            packed.members += 1
        # Constant reasons: the group and the node are in the decision already, and formatting
        # them here would cost about 0.5 us per placement.
        reason = _MOVED if moved else _OPENED
        taken = rotation if packed.members == 1 or left is not None else None
        hold = (group, packed, taken, i, left)
        return self._decision(node, reason, fallback=moved, group=group), hold

    def _follow(self, cands: Candidates) -> None:
        for demand in list(self._classes):
            try:
                self._classes[demand] = _Nodes(cands, demand, self._used, self.groups_per_node)
            except PlacementError:
                del self._classes[demand]  # nothing fits it now: its next decision says so

    def _exhausted(self, cands: Candidates, state: _Nodes, group: Hashable) -> PlacementError:
        return PlacementError(
            errors.GROUPS_EXHAUSTED,
            f"group {group!r} is group {len(self._groups) + 1} but only {len(state.nodes)} nodes "
            f"can take {self.groups_per_node} group(s) each",
            f"start more nodes (scripts/start_cluster.sh {len(cands.nodes) + 1}), raise "
            "groups_per_node, release finished groups, or use Packing(strict=False)",
            [node_name(n) for n in state.nodes],
        )

    def _rollback(self, hold: Hold) -> None:
        group, packed, taken, i, left = hold
        if left is None or taken is None or packed.node_id != taken.slots[i]:
            self._undo(hold)
            return
        # This placement moved a soft group off its dead node: move it back, so the ledger is
        # as if the placement never happened (a release keeps the group where it went).
        packed.members -= 1
        taken.untake(i)
        self._used.add(left)
        packed.node_id = left
        if packed.members <= 0 and self._groups.get(group) is packed:
            del self._groups[group]
            self._used.give_back(left)

    def _undo(self, hold: Hold) -> None:
        group: Hashable
        packed: _Group
        taken: Rotation | None  # the rotation that opened or moved the group, and its index
        i: int
        left: str | None  # the node a moved group left
        group, packed, taken, i, left = hold
        packed.members -= 1
        opened = taken if left is None else None
        if packed.members <= 0 and self._groups.get(group) is packed:
            del self._groups[group]
            if opened is not None and opened.slots[i] == packed.node_id:
                opened.untake(i)  # the group never opened: as if never decided
            else:
                self._used.give_back(packed.node_id)
