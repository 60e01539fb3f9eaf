"""Dry runs: what a policy would do with n placements against a snapshot, explained, no Ray."""
from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tabulate import tabulate

from ..errors import PlacementError
from ..snapshot import ClusterSnapshot
from .decision import Decision
from .request import DemandLike

if TYPE_CHECKING:  # the policy's type only: base.py imports this module
    from .base import Policy


@dataclass(frozen=True)
class Plan:
    """The decisions of a dry run, and the refusal that ended it early, if any."""

    policy: str
    decisions: tuple[Decision, ...]
    refused: PlacementError | None = None

    def counts(self) -> dict[str, int]:
        """Placements per node name, in the order nodes were first used."""
        return dict(Counter(d.node_name for d in self.decisions))

    def table(self) -> str:
        rows = [[i, d.node_name, "" if d.group is None else d.group, "yes" if d.fallback else "",
                 d.reason] for i, d in enumerate(self.decisions)]
        text: str = tabulate(rows, headers=["#", "node", "group", "fallback", "why"])
        if self.refused is not None:
            text += f"\n#{len(self.decisions)}: refused: {self.refused}"
        return text


def make_plan(policy: Policy, snapshot: ClusterSnapshot, n: int, demand: DemandLike,
              groups: list[Hashable] | None, caller_node_id: str | None) -> Plan:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a whole number of placements >= 0, got {n!r}")
    if groups is not None and len(groups) != n:
        raise ValueError(f"groups has {len(groups)} keys for {n} placements: give one key per "
                         "placement")
    decisions = []
    try:
        for i in range(n):
            group = groups[i] if groups is not None else None
            decisions.append(policy.decide(snapshot, demand, group=group,
                                           caller_node_id=caller_node_id))
    except PlacementError as refusal:
        return Plan(repr(policy), tuple(decisions), refusal)
    return Plan(repr(policy), tuple(decisions))
