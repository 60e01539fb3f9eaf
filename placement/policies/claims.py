"""A ledger shared by several drivers: the claims on nodes that every ``AntiAffinity(shared=...)``
of the same name sees, and the claim that makes a local decision hold across drivers.

The book is plain data; the submit layer keeps it in one named Ray actor (placement/shared.py),
whose calls run one at a time, so a claim is atomic: it checks the node's count and records the
claim in one step, and two drivers can never both take a node's last slot.

>>> book = ClaimBook()
>>> book.claim("a/1", owner="a", job="01", node="n0", limit=1)
(True, {})
>>> book.claim("b/1", owner="b", job="02", node="n0", limit=1)  # n0 is taken by owner a
(False, {'n0': 1})
>>> book.release("a/1")
True
>>> book.claim("b/1", owner="b", job="02", node="n0", limit=1)
(True, {})
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from .. import errors
from ..errors import PlacementError


class Claim(NamedTuple):
    owner: str  # the policy object that placed it (one per driver's AntiAffinity)
    job: str  # the Ray job (driver) it belongs to: claims of ended jobs are dropped
    node: str


class ClaimBook:
    """Claims by id; counts per node derived from them, of all owners and per owner, so a claim
    costs O(nodes), whatever the number of claims."""

    __slots__ = ("claims", "counts", "mine")

    def __init__(self, claims: Mapping[str, Claim] | None = None) -> None:
        self.claims: dict[str, Claim] = {}
        self.counts: dict[str, int] = {}
        self.mine: dict[str, dict[str, int]] = {}  # owner -> node -> count
        for claim_id, claim in (claims or {}).items():
            self._add(claim_id, claim)

    def _add(self, claim_id: str, claim: Claim) -> None:
        self.claims[claim_id] = claim
        self.counts[claim.node] = self.counts.get(claim.node, 0) + 1
        own = self.mine.setdefault(claim.owner, {})
        own[claim.node] = own.get(claim.node, 0) + 1

    def claim(self, claim_id: str, *, owner: str, job: str, node: str,
              limit: int | None) -> tuple[bool, dict[str, int]]:
        """Record the claim unless ``node`` already holds ``limit`` (None: no limit); return
        whether it is held and every other owner's count per node. Claiming an id again is a
        no-op that succeeds (a call Ray retried after the holder restarted)."""
        if claim_id not in self.claims:
            if limit is not None and self.counts.get(node, 0) >= limit:
                return False, self.others(owner)
            self._add(claim_id, Claim(owner, job, node))
        return True, self.others(owner)

    def release(self, claim_id: str) -> bool:
        """Give a claim back; whether it was held."""
        claim = self.claims.pop(claim_id, None)
        if claim is None:
            return False
        _lower(self.counts, claim.node)
        own = self.mine[claim.owner]
        _lower(own, claim.node)
        if not own:
            del self.mine[claim.owner]
        return True

    def others(self, owner: str) -> dict[str, int]:
        """Claims per node of every owner but ``owner``."""
        own = self.mine.get(owner, {})
        return {node: count - own.get(node, 0) for node, count in self.counts.items()
                if count > own.get(node, 0)}

    def jobs(self) -> set[str]:
        return {claim.job for claim in self.claims.values()}

    def forget_jobs(self, ended: Iterable[str]) -> list[str]:
        """Drop the claims of ended jobs (their drivers exited: their tasks and non-detached
        actors ended with them); return their ids."""
        gone = set(ended)
        dropped = [claim_id for claim_id, claim in self.claims.items() if claim.job in gone]
        for claim_id in dropped:
            self.release(claim_id)
        return dropped


def _lower(counts: dict[str, int], node: str) -> None:
    count = counts[node] - 1
    if count:
        counts[node] = count
    else:
        del counts[node]


# What a claim returns: whether the node is held, and the other drivers' counts per node.
ClaimResult = tuple[bool, dict[str, int]]


class Proposal(NamedTuple):
    """A local proposal and what to claim for it: ``node`` None claims nothing (a policy that
    does not share its ledger decided it); ``settled`` False says a fresher view of the other
    drivers' claims might place it better (it fell back, or went to a member that does not
    share): the loop then looks once before keeping it."""

    decision: Any
    node: str | None
    limit: int | None
    settled: bool


def hold_across_drivers(propose: Callable[[], Proposal], claim: Callable[[Proposal], bool],
                        rollback: Callable[[Proposal], None], refresh: Callable[[], None],
                        attempts: int) -> Any:
    """Propose locally, then claim the chosen node in the shared book; when another driver took
    its last slot meanwhile (``claim`` returns False, having taught the policy their counts),
    roll the proposal back and propose again.

    What this driver knows of the others is as fresh as its last claim: a refusal (or a
    fallback) may come from claims released since, so before giving one, it ``refresh``es the
    others' counts once and proposes again. Each retry knows more of the others' claims, so a
    node refused once is not proposed again unless someone released it: ``attempts`` (the
    number of nodes, plus one) bounds the loop, and past it the placement is refused rather
    than retried forever.

    >>> book, mine = ClaimBook(), []
    >>> book.claim("b/1", owner="b", job="02", node="n0", limit=1)  # the other driver
    (True, {})
    >>> def propose():  # this driver believes n0 is free
    ...     node = "n1" if mine else "n0"
    ...     mine.append(node)
    ...     return Proposal(node, node, 1, True)
    >>> def claim(proposal):
    ...     held, others = book.claim("a/1", owner="a", job="01", node=proposal.node, limit=1)
    ...     print(proposal.node, held, others)  # a policy learns ``others`` here
    ...     return held
    >>> hold_across_drivers(propose, claim, rollback=lambda p: None, refresh=lambda: None,
    ...                     attempts=3)
    n0 False {'n0': 1}
    n1 True {'n0': 1}
    'n1'
    """
    refreshed = False
    for _ in range(attempts + 1):  # the one look at fresher counts is not an attempt
        try:
            proposal = propose()
        except PlacementError as refusal:
            if refreshed:
                raise
            refreshed = True
            try:
                refresh()
            except PlacementError:  # the holder did not answer: the refusal is what matters
                raise refusal from None
            continue
        if not proposal.settled and not refreshed:
            rollback(proposal)
            refresh()
            refreshed = True
            continue
        if proposal.node is None:
            return proposal.decision
        try:
            held = claim(proposal)
        except BaseException:
            rollback(proposal)
            raise
        if held:
            return proposal.decision
        rollback(proposal)
    raise PlacementError(
        errors.SHARED_CONTENDED,
        f"the nodes this policy chose were taken by other drivers {attempts} times in a row",
        "retry the placement: other drivers sharing this ledger placed and released meanwhile",
    )
