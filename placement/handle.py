"""``policy.place(fn)``: a light handle shaped like Ray's ``fn.options(...)`` result.

Each ``.remote()`` is one transaction: read the snapshot (cached), propose a placement, submit,
then commit it, or roll it back when Ray refused the submission (a taken actor name, an
unpicklable argument, an option Ray rejects), so a failed call never uses up a slot.

Ray options are bound once per (function, options, node) and reused: a fresh ``.options()`` per
call costs about 23 us and makes submission about 1.3x slower (DESIGN.md, 4-node local cluster).
"""
from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Hashable
from typing import Any, NamedTuple

import ray
from ray.actor import ActorClass
from ray.remote_function import RemoteFunction

from . import _ray, errors
from .autoscale import wait_for_nodes
from .cluster import SnapshotCache, default_cache
from .deadlines import check_pending_timeout, gated_remote, new_token, watch_actor, watch_task
from .diagnosis import record
from .errors import PlacementError
from .liveness import release_when_done
from .locations import argument_data
from .options import check_label_selector, check_user_options, demand_of, merged_options
from .policies import Affinity, Decision, Fallback, Policy, Request
from .policies.request import data_pairs
from .shared import propose_shared, sharing, unclaim

ACTOR_LOOKUP_TIMEOUT_SECONDS = 30.0
_MAX_CACHED_HANDLES = 1024

# Plain functions and classes wrapped once (a new ray.remote would export them again).
_wrapped: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
# Options-bound handles per remote function: {(options key, node key): bound}.
_bound: weakref.WeakKeyDictionary[Any, dict[tuple[str, tuple[Any, ...]], Any]] = (
    weakref.WeakKeyDictionary())
# place(fn) without options, per policy: {(fn, group): handle}, so place(fn) in a loop is cheap.
_handles: weakref.WeakKeyDictionary[Policy, dict[tuple[Any, Hashable], PlacedRemote]] = (
    weakref.WeakKeyDictionary())
_lock = threading.Lock()


class Submitted(NamedTuple):
    """What one placed submission gave: Ray's result (an ObjectRef or an actor handle) and the
    decision that placed it."""

    result: Any
    decision: Decision


def cache_of(policy: Policy) -> SnapshotCache:
    """The SnapshotCache a policy's placements read: its own (``cache=``), else the process's."""
    cache = policy.cache
    return cache if isinstance(cache, SnapshotCache) else default_cache()


def as_remote(fn: Any) -> Any:
    """A Ray remote function or actor class for ``fn`` (wrapping plain ones once)."""
    if isinstance(fn, (RemoteFunction, ActorClass)):
        return fn
    if hasattr(fn, "remote"):
        raise TypeError(
            f"{type(fn).__name__} is already bound with .options(): pass the remote function or "
            "actor class itself and give the options to place(), e.g. policy.place(fn, num_cpus=2)"
        )
    if not callable(fn):
        raise TypeError(
            "placement needs a function, a class, a Ray remote function or an actor class, got "
            f"{type(fn).__name__}: pass the function itself, not the result of calling it"
        )
    with _lock:
        remote = _wrapped.get(fn)
        if remote is None:
            remote = _wrapped[fn] = ray.remote(fn)
    return remote


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


def current_node_id() -> str:
    """The node of the calling process (driver, task or actor)."""
    if not ray.is_initialized():
        raise PlacementError(errors.NOT_IN_RAY, "Ray is not initialised in this process",
                             "call placement.connect() (or ray.init()) first")
    return str(ray.get_runtime_context().get_node_id())


def _actor_affinities(policy: Policy) -> list[Affinity]:
    """The Affinity policies (inside a fallback too) that follow an actor."""
    members = policy.policies if isinstance(policy, Fallback) else (policy,)
    return [m for m in members if isinstance(m, Affinity)
            and m.target is not None and not isinstance(m.target, str)]


def _options_key(options: dict[str, Any]) -> str:
    return repr(sorted(options.items(), key=lambda item: item[0]))


class PlacedRemote:
    """What ``policy.place(fn, **options)`` returns: ``.remote(*args, **kwargs)`` places and
    submits; ``.options(**kw)`` returns a new handle with merged options (``group=`` too);
    ``.submit(*args, **kwargs)`` returns the result together with its Decision.

    >>> import placement, ray
    >>> placement.connect()                                           # doctest: +SKIP
    >>> @ray.remote
    ... def where():
    ...     return ray.get_runtime_context().get_node_id()
    >>> handle = placement.RoundRobin().place(where, num_cpus=0)      # doctest: +SKIP
    >>> len(set(ray.get([handle.remote() for _ in range(8)])))        # doctest: +SKIP
    4
    """

    def __init__(self, policy: Policy, fn: Any, options: dict[str, Any],
                 group: Hashable | None = None) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(f"expected a placement policy, got {type(policy).__name__}")
        policy.check_group(group)
        options = dict(options)
        # Not a Ray option: seconds the work may wait to start before it is refused.
        self._pending_timeout = check_pending_timeout(options.pop("pending_timeout", None))
        self._fn = as_remote(fn)
        self._policy = policy
        self._defaults = _ray.remote_defaults(self._fn)
        kind = "actor" if isinstance(self._fn, ActorClass) else "task"
        self._name = _ray.remote_name(self._fn)
        # What Ray will apply: the function's own options, then this handle's.
        self._effective = effective = {**self._defaults, **options}
        # A task with a deadline runs behind a gate that settles whether it started in time.
        self._gated = self._pending_timeout is not None and kind == "task"
        if self._gated and effective.get("num_returns") in ("streaming", "dynamic"):
            raise ValueError("pending_timeout= does not apply to generator tasks: drop it, or "
                             "return a list instead of yielding")
        check_user_options(effective, kind)
        members = policy.policies if isinstance(policy, Fallback) else (policy,)
        check_label_selector(effective.get("label_selector"),
                             (member.where for member in members))
        actors = _actor_affinities(policy)
        for member in actors:
            if not _ray.is_actor_handle(member.target):
                raise TypeError(
                    f"Affinity target must be a node label, a node id or an actor handle, got "
                    f"{type(member.target).__name__}"
                )
        self._follows = actors
        # Policies that count only live work (LeastLoaded, live=True) hear when each piece ends.
        self._tracks = any(member.tracks_completion for member in members)
        # Members whose ledger other drivers share (AntiAffinity(shared=...)) claim each node.
        self._shared = bool(sharing(policy))
        self._options = dict(options)
        self._options_key = _options_key(self._options)
        self._request = Request(demand_of(effective), group, None)
        self._cache = cache_of(policy)
        self._cache.follow(policy)  # refreshes update it off the submit path
        self._bound_here: dict[tuple[Any, ...], Any] = {}

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def demand(self) -> dict[str, float]:
        """The resources one placement needs on a node (checked against every node before
        submit)."""
        return self._request.demand.as_dict()

    def options(self, **options: Any) -> PlacedRemote:
        group = options.pop("group", self._request.group)
        kept = {**self._options, "pending_timeout": self._pending_timeout}
        return PlacedRemote(self._policy, self._fn, {**kept, **options}, group)

    def _propose(self, args: tuple[Any, ...], kwargs: dict[str, Any],
                 may_wait: bool = True) -> Decision:
        policy, request = self._policy, self._request
        for member in self._follows:
            if member.actor_target is not None:
                member.bind_to_node(actor_node_id(member.actor_target))
        if policy.needs_caller and request.caller_node_id is None:
            request = self._request = request._replace(caller_node_id=current_node_id())
        if policy.needs_locations:  # this call's own arguments: never kept in self._request
            request = request._replace(data=data_pairs(argument_data(args, kwargs)))
        try:
            return policy.propose(self._cache.get(), request)
        except PlacementError:
            # The cached snapshot may be stale (a node joined, died or got its label): look again.
            snapshot = self._cache.refresh()
        try:
            return policy.propose(snapshot, request)
        except PlacementError as refusal:
            if not policy.wait_for_nodes or not may_wait:
                raise
            return wait_for_nodes(policy, request, snapshot, refusal, self._cache.refresh)

    def _bound_for(self, decision: Decision) -> Any:
        node_key = (decision.node.node_id, decision.backend, decision.soft, decision.pin_amount,
                    decision.where)
        bound = self._bound_here.get(node_key)
        if bound is None:
            if self._gated:  # the gate runs this function, with all its options and its name
                options = merged_options({"name": self._name, **self._options}, decision,
                                         self._defaults)
                bound = gated_remote().options(**{**self._defaults, **options})
            else:
                bound = self._shared_bound(decision, node_key)
            self._bound_here[node_key] = bound
        return bound

    def _shared_bound(self, decision: Decision, node_key: tuple[Any, ...]) -> Any:
        # Shared across handles of the same function and options: place(fn) in a loop stays bound.
        with _lock:
            per_fn = _bound.setdefault(self._fn, {})
        key = (self._options_key, node_key)
        bound = per_fn.get(key)
        if bound is None:
            options = merged_options(self._options, decision, self._defaults)
            bound = per_fn[key] = self._fn.options(**options)
        return bound

    def _submit(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Decision]:
        """One transaction: propose, submit, then commit, or roll back if Ray refused."""
        if self._shared:
            decision = propose_shared(
                self._policy, lambda may_wait: self._propose(args, kwargs, may_wait),
                len(self._cache.get().live))
        else:
            decision = self._propose(args, kwargs)
        token = new_token() if self._gated else None
        try:
            if token is not None:
                body = _ray.remote_body(self._fn)
                result = self._bound_for(decision).remote(token, body, *args, **kwargs)
            else:
                result = self._bound_for(decision).remote(*args, **kwargs)
        except BaseException:
            if self._shared:  # first: the rollback forgets which member decided
                unclaim(self._policy, decision)
            self._policy.rollback(decision)
            raise
        self._policy.commit(decision)
        record(result, decision)  # for placement.explain()
        if self._pending_timeout is not None:
            self._watch(result, token, decision)
        if self._tracks and self._policy.tracks(decision):
            release_when_done(result, self._policy, decision)
        return result, decision

    def _watch(self, result: Any, token: str | None, decision: Decision) -> None:
        seconds = self._pending_timeout
        assert seconds is not None
        asked = self._request.demand.as_dict()
        labels = dict(self._effective.get("label_selector") or {})
        if decision.where is not None:
            labels.update(decision.where.selector)
        if token is not None:
            ref = result[0] if isinstance(result, list) else result
            watch_task(ref, token, seconds, self._name, self._policy, decision, asked, labels)
        elif _ray.is_actor_handle(result):
            watch_actor(result, seconds, self._name, self._policy, decision, asked, labels)

    def unplaced(self) -> Any:
        """This work bound to its own options and no placement: Ray decides where it runs (the
        executor's last resort for a soft call refused at its deadline)."""
        return self._fn.options(**self._effective)

    def submit(self, *args: Any, **kwargs: Any) -> Submitted:
        """Place and submit one call; return Ray's result with the decision that placed it."""
        return Submitted(*self._submit(args, kwargs))

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Place and submit one call, as ``fn.remote(*args, **kwargs)`` would."""
        return self._submit(args, kwargs)[0]

    def __repr__(self) -> str:
        return f"{self._policy!r}.place({_ray.remote_name(self._fn)})"


def place(policy: Policy, fn: Any, group: Hashable | None, options: dict[str, Any]) -> PlacedRemote:
    """``policy.place(fn, group=..., **options)``; without options the handle is reused."""
    if options:
        return PlacedRemote(policy, fn, options, group)
    with _lock:
        per_policy = _handles.setdefault(policy, {})
    key = (fn, group)
    handle = per_policy.get(key)
    if handle is None:
        if len(per_policy) >= _MAX_CACHED_HANDLES:
            per_policy.clear()
        handle = per_policy[key] = PlacedRemote(policy, fn, options, group)
    return handle

