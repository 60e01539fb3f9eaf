"""Dry runs: what a policy would do with n placements against a snapshot, explained, no Ray."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

from tabulate import tabulate

from ..errors import PlacementError
from ..snapshot import ClusterSnapshot
from .decision import Decision
from .request import DemandLike, Request, make_request


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


def make_plan(name: str, propose: Callable[[ClusterSnapshot, Request], Decision],
              commit: Callable[[Decision], None], snapshot: ClusterSnapshot, n: int,
              demand: DemandLike, groups: Sequence[Hashable] | None,
              caller_node_id: str | None, targets: Mapping[int, str] | None = None) -> Plan:
    """``n`` placements proposed and committed one after another (by a fresh policy: its
    ``propose`` and ``commit``), stopping at the first refusal."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a whole number of placements >= 0, got {n!r}")
    if groups is not None and (isinstance(groups, (str, bytes)) or
                               not isinstance(groups, Sequence)):
        raise TypeError(f"groups must be a list with one group key per placement, got "
                        f"{type(groups).__name__}: e.g. groups=['a', 'a', 'b']")
    if groups is not None and len(groups) != n:
        raise ValueError(f"groups has {len(groups)} keys for {n} placements: give one key per "
                         "placement")
    make_request(demand, None if not groups else groups[0], caller_node_id, None, targets)
    decisions = []
    try:
        for i in range(n):  # a request at a time: a plan of 10**8 stops at its first refusal
            request = make_request(demand, None if groups is None else groups[i],
                                   caller_node_id, None, targets)
            decision = propose(snapshot, request)
            commit(decision)
            decisions.append(decision)
    except PlacementError as refusal:
        return Plan(name, tuple(decisions), refusal)
    return Plan(name, tuple(decisions))
