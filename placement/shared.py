"""A ledger shared across drivers: ``AntiAffinity(shared="frontend")`` in several driver
processes keeps their placements on distinct nodes together.

The claims live in one named, detached Ray actor per name (``placement-ledger-<name>`` in the
``placement`` namespace, no CPU), created by whichever driver places first. A placement is
decided locally as always, then claimed in the holder before it is submitted: the holder runs one
call at a time, so checking a node's count and recording the claim is one step, and two drivers
never both take a node's last slot. A refused claim teaches the policy the others' counts and it
proposes again (policies/claims.py).

Cost: one call to the holder per placement (``benchmarks/shared_ledger.py`` measures it).

When the holder dies, Ray restarts it (``max_restarts=-1``) and it reads its claims back from
the GCS key-value store, where it writes them after every change; the call under way is retried
by Ray (``max_task_retries=-1``), and a claim is idempotent by id. A holder ended for good (by
``remove_shared_ledger`` or ``ray.kill``) is made again on the next placement, from the same
record. Claims of drivers that ended are dropped when a claim would be refused or the counts are
read: their tasks and non-detached actors ended with them (a detached replica's claim ends with
its driver too: release it, or keep its driver running).

>>> web = placement.AntiAffinity(shared="frontend")      # in each driver  # doctest: +SKIP
>>> replicas = [web.place(Frontend).remote() for _ in range(2)]          # doctest: +SKIP
"""
from __future__ import annotations

import functools
import json
import threading
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from . import _ray, errors
from .errors import PlacementError
from .policies import Decision, Policy
from .policies.claims import Claim, ClaimBook, ClaimResult, Proposal, hold_across_drivers

NAMESPACE = "placement"
# Every wait for the holder is bounded: a call normally answers in about a millisecond; a
# holder being restarted after its node died needs seconds.
CALL_TIMEOUT_SECONDS = 30.0


def holder_name(name: str) -> str:
    return f"placement-ledger-{name}"


def _record_prefix(name: str) -> str:
    return f"shared-ledger/{name}/"


@ray.remote(num_cpus=0)
class LedgerHolder:
    """The claims of one shared name; its methods run one at a time (one Ray actor). Each claim
    is also one key in the GCS key-value store (a put per claim, a delete per release), read
    back when Ray restarts the holder."""

    def __init__(self, name: str) -> None:
        self._prefix = _record_prefix(name)
        kept = {}
        for key, value in _ray.kv_items(self._prefix).items():
            kept[key[len(self._prefix):]] = Claim(*json.loads(value))
        self._book = ClaimBook(kept)

    def claim(self, claim_id: str, owner: str, job: str, node: str,
              limit: int | None) -> ClaimResult:
        new = claim_id not in self._book.claims
        held, others = self._book.claim(claim_id, owner=owner, job=job, node=node, limit=limit)
        if not held and self._forget_ended_jobs():
            held, others = self._book.claim(claim_id, owner=owner, job=job, node=node,
                                            limit=limit)
        if held and new:
            _ray.kv_put(self._prefix + claim_id, json.dumps([owner, job, node]))
        return held, others

    def others(self, owner: str) -> dict[str, int]:
        self._forget_ended_jobs()
        return self._book.others(owner)

    def release(self, claim_id: str) -> None:
        if self._book.release(claim_id):
            _ray.kv_del(self._prefix + claim_id)

    def counts(self) -> dict[str, int]:
        """Claims per node id, of every driver."""
        self._forget_ended_jobs()
        return dict(self._book.counts)

    def _forget_ended_jobs(self) -> bool:
        ended = self._book.jobs() & _ray.ended_job_ids()
        for claim_id in self._book.forget_jobs(ended):
            _ray.kv_del(self._prefix + claim_id)
        return bool(ended)


class SharedLedger:
    """This driver's side of one policy's shared ledger: its owner id, its claims by ticket."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.owner = uuid.uuid4().hex  # one per policy object: its own claims are not "others"
        self._holder: Any = None
        self._claims: dict[int, str] = {}  # decision ticket -> claim id
        self._lock = threading.Lock()

    def holder(self) -> Any:
        with self._lock:
            if self._holder is None:
                self._holder = LedgerHolder.options(  # type: ignore[attr-defined]
                    name=holder_name(self.name), namespace=NAMESPACE, lifetime="detached",
                    get_if_exists=True, max_restarts=-1, max_task_retries=-1,
                ).remote(self.name)
            return self._holder

    def _call(self, method: str, *args: Any) -> Any:
        for attempt in range(2):
            ref = getattr(self.holder(), method).remote(*args)
            try:
                return ray.get(ref, timeout=CALL_TIMEOUT_SECONDS)
            except GetTimeoutError:
                raise self._unreachable(
                    method, f"did not answer in {CALL_TIMEOUT_SECONDS:.0f} s") from None
            except RayActorError as error:  # ended for good (removed, killed): made again
                if attempt:
                    raise self._unreachable(method, f"died twice ({error})") from error
                with self._lock:
                    self._holder = None
        raise AssertionError("unreachable")  # pragma: no cover

    def _unreachable(self, method: str, what: str) -> PlacementError:
        return PlacementError(
            errors.SHARED_UNREACHABLE,
            f"the holder of the shared ledger {self.name!r} ({holder_name(self.name)!r} in "
            f"namespace {NAMESPACE!r}) {what} on {method}()",
            "check that the cluster can start a zero-CPU actor (`ray status`), or drop shared= "
            "to keep the spread within this driver",
        )

    def claim(self, decision: Decision, limit: int | None) -> ClaimResult:
        claim_id = f"{self.owner}/{decision.ticket}"
        job = ray.get_runtime_context().get_job_id()
        try:
            held, others = self._call("claim", claim_id, self.owner, job,
                                      decision.node.node_id, limit)
        except BaseException:  # a timeout, an interrupt: the holder may still record it
            self._release(claim_id)  # after the claim: one caller's calls run in order
            raise
        if held:
            self._claims[decision.ticket] = claim_id
        return held, others

    def unclaim(self, decision: Decision) -> None:
        """Give the claim of ``decision`` back (its work ended, or Ray refused it); no wait."""
        claim_id = self._claims.pop(decision.ticket, None)
        if claim_id is not None:
            self._release(claim_id)

    def _release(self, claim_id: str) -> None:
        try:
            self.holder().release.remote(claim_id)
        except Exception:  # Ray shut down: the claim ends with this job (the holder drops it)
            pass

    def others(self) -> dict[str, int]:
        return dict(self._call("others", self.owner))

    def counts(self) -> dict[str, int]:
        return dict(self._call("counts"))


_ledgers: weakref.WeakKeyDictionary[Policy, dict[str, SharedLedger]] = (
    weakref.WeakKeyDictionary())
_ledgers_lock = threading.Lock()


def ledger_of(policy: Policy, name: str) -> SharedLedger:
    """This driver's side of the shared ledger ``name`` of ``policy`` (the policy a handle
    places with: its releases give the claims back)."""
    if name not in policy.needs.shared:
        raise ValueError(f"{policy!r} shares no ledger named {name!r}")
    with _ledgers_lock:
        ledgers = _ledgers.get(policy)
        if ledgers is None:
            ledgers = _ledgers[policy] = {}
            policy.add_release_listener(functools.partial(_unclaim_released, ledgers))
        ledger = ledgers.get(name)
        if ledger is None:
            ledger = ledgers[name] = SharedLedger(name)
        return ledger


def _unclaim_released(ledgers: dict[str, SharedLedger], decision: Decision) -> None:
    if decision.claim is not None:
        ledger = ledgers.get(decision.claim[0])
        if ledger is not None:
            ledger.unclaim(decision)


def propose_shared(policy: Policy, propose: Callable[[bool], Decision], nodes: int) -> Decision:
    """Propose with ``propose(may_wait)`` and claim the node in the shared ledger its decision
    names (``decision.claim``), proposing again while other drivers hold what it chose (at most
    ``nodes`` + 1 times). ``may_wait`` is False until the others' counts were looked at afresh:
    a refusal they may end is not worth waiting for new nodes. Returns the proposal; the caller
    commits it, or ``unclaim``s and rolls it back."""
    fresh = [False]

    def local() -> Proposal:
        decision = propose(fresh[0])
        if decision.claim is None:  # a member that does not share decided: nothing to claim
            return Proposal(decision, None, None, settled=not decision.fallback)
        limit = decision.claim[1]  # None: a soft spread's own reuse past its cap
        return Proposal(decision, decision.node.node_id, limit, settled=limit is not None)

    def claim(proposal: Proposal) -> bool:
        name = proposal.decision.claim[0]
        held, others = ledger_of(policy, name).claim(proposal.decision, proposal.limit)
        policy.learn_others(name, others)
        return held

    def refresh() -> None:
        fresh[0] = True
        for name in policy.needs.shared:
            policy.learn_others(name, ledger_of(policy, name).others())

    decision: Decision = hold_across_drivers(
        local, claim, rollback=lambda proposal: policy.rollback(proposal.decision),
        refresh=refresh, attempts=nodes + 1)
    return decision


def unclaim(policy: Policy, decision: Decision) -> None:
    """Ray refused the submission of a claimed proposal: give the claim back."""
    if decision.claim is not None:
        ledger_of(policy, decision.claim[0]).unclaim(decision)  # never raises


def shared_counts(name: str) -> dict[str, int]:
    """Placements per node id in the shared ledger ``name``, of every driver (one call); empty
    when no driver has placed with that name (no holder is made to say so)."""
    try:
        ray.get_actor(holder_name(name), namespace=NAMESPACE)
    except ValueError:  # no such actor
        return {}
    return SharedLedger(name).counts()


def remove_shared_ledger(name: str) -> None:
    """End the holder of ``name`` and delete its record: the next placement starts from no
    claims. For tests and for a service taken down for good; the drivers still placing keep
    their own ledgers."""
    try:
        holder = ray.get_actor(holder_name(name), namespace=NAMESPACE)
    except ValueError:  # no such actor
        holder = None
    if holder is not None:
        ray.kill(holder, no_restart=True)
    _ray.kv_del(_record_prefix(name), by_prefix=True)
