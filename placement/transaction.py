"""The one placement transaction: choose on the newest snapshot and reserve (under the policy's
lock), submit, then commit, or unreserve when Ray refused the submission, then the steps that
follow a submission. Every way of placing work (handles, executors, audits) runs it.

What else a placement needs is chosen once per handle from what the policy declares
(``policy.needs``), never from its class:

- the request: the caller's node (``caller``), the nodes of followed actors (``follows``),
  and per call the bytes of its ObjectRef arguments per node (``locations``);
- the proposal: claimed in the shared ledgers before it is submitted (``shared``), and waiting
  for new nodes when the policy has ``wait_for_nodes``;
- after a submission: the record ``placement.explain`` reads, releasing the placement when its
  work ends (``completion``, for decisions that say ``tracked``), a pending deadline, and what
  the caller adds (an Audit's record).

>>> import placement
>>> placement.connect()                                                   # doctest: +SKIP
>>> step = Transaction(placement.RoundRobin(), Demand({"CPU": 1}))       # doctest: +SKIP
>>> result, decision = step.run(lambda d, args, kwargs: d.node_name, (), {})  # doctest: +SKIP
"""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import ray

from . import _ray, ejection, errors
from .autoscale import wait_for_nodes
from .cluster import SnapshotCache, default_cache
from .diagnosis import RECENT, work_key
from .errors import PlacementError
from .liveness import release_when_done
from .locations import argument_data
from .policies import Decision, Demand, Policy, Request
from .policies.base import Refusal
from .policies.request import data_pairs
from .shared import propose_shared, unclaim

ACTOR_LOOKUP_TIMEOUT_SECONDS = 30.0

# What runs after a submission was committed: (Ray's result, the decision).
After = Callable[[Any, Decision], None]
# What submits one call: (decision, args, kwargs) -> Ray's result.
Send = Callable[[Decision, tuple[Any, ...], dict[str, Any]], Any]


def cache_of(policy: Policy) -> SnapshotCache:
    """The SnapshotCache a policy's placements read: its own (``cache=``), else the process's."""
    cache = policy.cache
    return cache if isinstance(cache, SnapshotCache) else default_cache()


def current_node_id() -> str:
    """The node of the calling process (driver, task or actor)."""
    if not ray.is_initialized():
        raise PlacementError(errors.NOT_IN_RAY, "Ray is not initialised in this process",
                             "call placement.connect() (or ray.init()) first")
    return str(ray.get_runtime_context().get_node_id())


def actor_node_id(actor: Any, timeout: float = ACTOR_LOOKUP_TIMEOUT_SECONDS) -> str:
    """The node an actor runs on, read from Ray's actor table (never from a decision); waits at
    most ``timeout`` s while it is being created."""
    actor_id = _ray.actor_id_hex(actor)
    deadline = time.monotonic() + timeout
    while True:
        state, node_id = _ray.actor_record(actor_id)
        if state == "ALIVE" and node_id:
            return node_id
        if state == "DEAD":
            raise PlacementError(
                errors.ACTOR_NOT_RUNNING, f"the actor {actor_id[:8]} is dead",
                "follow a live actor, or give Affinity a node label instead",
            )
        if time.monotonic() >= deadline:
            raise PlacementError(
                errors.ACTOR_NOT_RUNNING,
                f"the actor {actor_id[:8]} has no node after {timeout:.0f}s (state {state})",
                "make sure the actor can be scheduled (ray status shows pending demands) before "
                "placing work next to it",
            )
        time.sleep(0.05)


def check_followed(policy: Policy) -> None:
    """Refuse, before anything is submitted, a followed target that is no actor handle."""
    for actor in policy.needs.follows:
        if not _ray.is_actor_handle(actor):
            raise TypeError(f"Affinity target must be a node label, a node id or an actor "
                            f"handle, got {type(actor).__name__}")


def base_request(policy: Policy, demand: Demand, group: Hashable | None) -> Request:
    """The request every call of a handle shares: its demand and group, the caller's node
    (Local) and the followed actors' nodes (Affinity(actor)), looked up once."""
    needs = policy.needs
    caller = current_node_id() if needs.caller else None
    targets = tuple((id(actor), actor_node_id(actor)) for actor in needs.follows)
    return Request(demand, group, caller, (), targets)


class Transaction:
    """One policy's placements: ``run(send, args, kwargs)`` places and submits one call."""

    __slots__ = ("_after", "_cache", "_policy", "_request", "_shared", "_tracks", "demand",
                 "group", "locations")

    def __init__(self, policy: Policy, demand: Demand, group: Hashable | None = None,
                 after: Sequence[After] = ()) -> None:
        needs = policy.needs
        self._policy = policy
        self._cache = cache_of(policy)
        self._cache.follow(policy)  # refreshes update it off the submit path
        ejection.watch(self._cache)  # nodes that stop answering are left out within seconds
        self.demand, self.group = demand, group
        self._request: Request | None = None  # resolved on the first call (needs Ray)
        self.locations = needs.locations
        self._shared = bool(needs.shared)
        self._tracks = needs.completion
        self._after = tuple(after)

    def run(self, send: Send, args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> tuple[Any, Decision]:
        """Propose (choose and reserve), submit with ``send``, then commit, or unreserve if
        ``send`` raised; then the steps after a submission."""
        request = self._request
        if request is None:
            request = self._request = base_request(self._policy, self.demand, self.group)
        if self.locations:  # this call's own arguments: never kept in the shared request
            request = request._replace(data=data_pairs(argument_data(args, kwargs)))
        policy = self._policy
        if self._shared:
            decision = propose_shared(policy, lambda may_wait: self._propose(request, may_wait),
                                      len(self._cache.get().live))
        else:
            decision = self._propose(request, True)
        try:
            result = send(decision, args, kwargs)
        except BaseException:
            if self._shared:
                unclaim(policy, decision)
            policy.rollback(decision)
            raise
        policy.commit(decision)
        key = result.task_id() if result.__class__ is ray.ObjectRef else work_key(result)
        if key is not None:
            RECENT.append((key, decision))  # for placement.explain(): a C call, bounded
        if self._tracks and decision.tracked:
            release_when_done(result, policy, decision)
        for after in self._after:
            after(result, decision)
        return result, decision

    def _propose(self, request: Request, may_wait: bool) -> Decision:
        """Choose and reserve on the cached snapshot; on a refusal, on a fresh read (a node may
        have joined, died or got its label); then wait for nodes if the policy does."""
        policy, cache = self._policy, self._cache
        outcome = policy.attempt(cache.get(), request)
        if outcome.__class__ is not Refusal:
            return outcome  # type: ignore[return-value]
        snapshot = cache.refresh()
        outcome = policy.attempt(snapshot, request)
        if outcome.__class__ is not Refusal:
            return outcome  # type: ignore[return-value]
        refusal = outcome.error()
        if not policy.wait_for_nodes or not may_wait:
            raise refusal
        return wait_for_nodes(policy, request, snapshot, refusal, cache.refresh)
