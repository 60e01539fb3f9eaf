"""Rebalance plans: the moves that would restore a spread after nodes joined or left. Pure.

Nothing moves on its own. A plan lists which placement (its decision's ``ticket``) would go from
which node to which; the caller starts the new work there, ends the old, and records the move
in the policy's ledger (``AntiAffinity.record_move``), as the Kubernetes descheduler proposes
evictions and leaves the replacements to the scheduler. A plan reads every placement the policy
holds and every domain once: it is made on request, never on a decision's path.

>>> from placement.snapshot import ClusterSnapshot
>>> a, b = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
...                                    {"id": "b", "label": "node1"}]).nodes
>>> moves, stranded = plan_moves([(1, "a", "a"), (2, "a", "a")], ("a", "b"),
...                              {"a": (a,), "b": (b,)}, cap=None, skew=1)
>>> [(m.ticket, m.from_node, m.to.label) for m in moves], stranded
([(2, 'a', 'node1')], ())
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from tabulate import tabulate

from ..snapshot import NodeInfo
from .decision import node_name


class Move(NamedTuple):
    """Placement ``ticket`` (its decision's) would go from node id ``from_node`` to ``to``."""

    ticket: int
    from_node: str
    to: NodeInfo
    why: str


@dataclass(frozen=True)
class Rebalance:
    """The moves of a rebalance plan, and the placements on nodes that left for which no node
    has room (``stranded``, by ticket)."""

    policy: str
    moves: tuple[Move, ...]
    stranded: tuple[int, ...] = ()

    def table(self) -> str:
        rows = [[m.ticket, m.from_node[:8], node_name(m.to), m.why] for m in self.moves]
        text: str = tabulate(rows, headers=["ticket", "from", "to", "why"])
        if self.stranded:
            text += f"\nno room for: {', '.join(map(str, self.stranded))}"
        return text


_LEFT = "its node left"
_EVEN = "restores the spread"


def plan_moves(placed: Sequence[tuple[int, str, Hashable]], slots: Sequence[Hashable],
               members: Mapping[Hashable, Sequence[NodeInfo]], cap: int | None,
               skew: int) -> tuple[tuple[Move, ...], tuple[int, ...]]:
    """Moves for placements ``(ticket, node id, slot)`` over candidate ``slots`` (in order,
    each with its member nodes): first those whose node is no longer a candidate, each to the
    least-used slot with room; then, while the most-used slot is more than ``skew`` above the
    least-used, the newest placement of the most-used slot's busiest node goes to the
    least-used slot's least-used node. Slots hold at most ``cap``."""
    candidate = {node.node_id: slot for slot in slots for node in members[slot]}
    by_slot: dict[Hashable, list[tuple[int, str]]] = {slot: [] for slot in slots}
    per_node: dict[str, int] = {}
    left: list[int] = []
    for ticket, node_id, slot in sorted(placed):
        if candidate.get(node_id) != slot:
            left.append(ticket)
            continue
        by_slot[slot].append((ticket, node_id))
        per_node[node_id] = per_node.get(node_id, 0) + 1
    from_node = {ticket: node_id for ticket, node_id, _ in placed}
    moves: list[Move] = []
    stranded: list[int] = []

    def least_slot() -> Hashable | None:
        slot = min(slots, key=lambda s: len(by_slot[s]), default=None)
        return None if slot is None or (cap is not None and len(by_slot[slot]) >= cap) \
            else slot

    def take(ticket: int, slot: Hashable, why: str) -> None:
        node = min(members[slot], key=lambda n: per_node.get(n.node_id, 0))
        per_node[node.node_id] = per_node.get(node.node_id, 0) + 1
        by_slot[slot].append((ticket, node.node_id))
        moves.append(Move(ticket, from_node[ticket], node, why))

    for ticket in left:
        slot = least_slot()
        if slot is None:
            stranded.append(ticket)
        else:
            take(ticket, slot, _LEFT)
    while slots:
        low = least_slot()
        high = max(slots, key=lambda s: len(by_slot[s]))
        if low is None or len(by_slot[high]) - len(by_slot[low]) <= skew:
            break
        busiest = max(by_slot[high], key=lambda p: (per_node[p[1]], p[0]))
        by_slot[high].remove(busiest)
        per_node[busiest[1]] -= 1
        moves = [m for m in moves if m.ticket != busiest[0]]  # a ticket moves once
        take(busiest[0], low, _EVEN)
    return tuple(moves), tuple(stranded)
