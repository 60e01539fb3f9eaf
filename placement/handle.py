"""``policy.place(fn)``: a light handle shaped like Ray's ``fn.options(...)`` result.

The decision is taken at every ``.remote()``, so a handle reused in a loop keeps balancing. Ray
options are bound once per (function, options, node) and reused: a fresh ``.options()`` per call
makes submission about 1.3x slower.
"""
from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Hashable

import ray
from ray.actor import ActorClass
from ray.remote_function import RemoteFunction

from . import errors
from .decision import Decision
from .errors import PlacementError
from .options import check_user_options, demand_of, merged_options
from .policies import Affinity, Fallback, Policy

ACTOR_LOOKUP_TIMEOUT_SECONDS = 30.0

# Plain functions and classes wrapped once (a new ray.remote would export them again).
_wrapped: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
# Options-bound handles per remote function: {(options key, node key): bound}.
_bound: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
# Node of each actor this process placed hard (its node is then certain), by actor id.
_actor_nodes: dict[str, str] = {}
_lock = threading.Lock()


def as_remote(fn: Any) -> Any:
    """A Ray remote function or actor class for ``fn`` (wrapping plain ones once)."""
    if isinstance(fn, (RemoteFunction, ActorClass)):
        return fn
    if hasattr(fn, "remote"):
        raise TypeError(
            f"{type(fn).__name__} is already bound with .options(): pass the remote function or actor "
            "class itself and give the options to place(), e.g. policy.place(fn, num_cpus=2)"
        )
    if not callable(fn):
        raise TypeError(
            f"placement needs a function, a class, a Ray remote function or an actor class, got "
            f"{type(fn).__name__}: pass the function itself, not the result of calling it"
        )
    with _lock:
        remote = _wrapped.get(fn)
        if remote is None:
            remote = _wrapped[fn] = ray.remote(fn)
    return remote


def actor_node_id(actor: Any, timeout: float = ACTOR_LOOKUP_TIMEOUT_SECONDS) -> str:
    """The node an actor runs on; waits (at most ``timeout`` s) while it is being created."""
    actor_id = actor._actor_id.hex()
    known = _actor_nodes.get(actor_id)
    if known is not None:
        return known
    from ray._private.state import actors  # no public API without the dashboard in ray 2.60

    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        info = actors(actor_id=actor_id) or {}
        state = info.get("State", "unknown")
        node_id = (info.get("Address") or {}).get("NodeID")
        if state == "ALIVE" and node_id:
            return node_id
        if state == "DEAD":
            raise PlacementError(
                errors.ACTOR_NOT_RUNNING, f"the actor {actor_id[:8]} to follow is dead",
                "follow a live actor, or give Affinity a node label instead",
            )
        time.sleep(0.05)
    raise PlacementError(
        errors.ACTOR_NOT_RUNNING,
        f"the actor {actor_id[:8]} to follow has no node after {timeout:.0f}s (state {state})",
        "make sure the actor can be scheduled (ray status shows pending demands) before placing work next to it",
    )


def current_node_id() -> str:
    """The node of the calling process (driver, task or actor)."""
    if not ray.is_initialized():
        raise PlacementError(errors.NOT_IN_RAY, "Ray is not initialised in this process",
                             "call placement.connect() (or ray.init()) first")
    return ray.get_runtime_context().get_node_id()


def _actor_affinities(policy: Policy) -> list[Affinity]:
    """The Affinity policies (inside a fallback too) that follow an actor."""
    members = policy.policies if isinstance(policy, Fallback) else (policy,)
    return [m for m in members if isinstance(m, Affinity) and m.target is not None and not isinstance(m.target, str)]


def _resolve_actor_targets(policy: Policy) -> None:
    for member in _actor_affinities(policy):
        if member.actor_target is not None:
            member.bind_to_node(actor_node_id(member.actor_target))


def _options_key(options: dict[str, Any]) -> str:
    return repr(sorted(options.items(), key=lambda item: item[0]))


class PlacedRemote:
    """What ``policy.place(fn, **options)`` returns: ``.remote(*args, **kwargs)`` places and
    submits; ``.options(**kw)`` returns a new handle with merged options (``group=`` too).

    >>> import placement, ray
    >>> placement.connect()                                           # doctest: +SKIP
    >>> @ray.remote
    ... def where():
    ...     return ray.get_runtime_context().get_node_id()
    >>> handle = placement.RoundRobin().place(where, num_cpus=0)      # doctest: +SKIP
    >>> len(set(ray.get([handle.remote() for _ in range(8)])))        # doctest: +SKIP
    4
    """

    def __init__(self, policy: Policy, fn: Any, options: dict[str, Any], group: Hashable | None = None) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(f"expected a placement policy, got {type(policy).__name__}")
        self._fn = as_remote(fn)
        self._policy = policy
        self._is_actor = isinstance(self._fn, ActorClass)
        defaults = dict(getattr(self._fn, "_default_options", None) or {})
        check_user_options({**defaults, **options})
        self._options = dict(options)
        self._options_key = _options_key(self._options)
        self._demand = demand_of({**defaults, **options})
        self._group = group
        self.last_decision: Decision | None = None
        # Hot path: resolved once here, not per .remote().
        self._follows_actor = bool(_actor_affinities(policy))
        self._bound_here: dict[tuple, Any] = {}

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def demand(self) -> dict[str, float]:
        """The resources one placement needs on a node (checked against every node before submit)."""
        return dict(self._demand)

    def options(self, **options: Any) -> "PlacedRemote":
        group = options.pop("group", self._group)
        return PlacedRemote(self._policy, self._fn, {**self._options, **options}, group)

    def decide(self) -> Decision:
        """Decide where the next ``.remote()`` goes (and record it), without submitting."""
        policy = self._policy
        if self._follows_actor:
            _resolve_actor_targets(policy)
        caller = current_node_id() if policy.needs_caller else None
        try:
            return policy.decide(policy.snapshot(), self._demand, group=self._group, caller_node_id=caller)
        except PlacementError:
            # The cached snapshot may be stale (a node joined, died or got its label): look again once.
            return policy.decide(policy.snapshot(refresh=True), self._demand, group=self._group,
                                 caller_node_id=caller)

    def _bound_for(self, decision: Decision) -> Any:
        node_key = (decision.node.node_id, decision.backend, decision.soft, decision.pin_amount)
        bound = self._bound_here.get(node_key)
        if bound is None:
            bound = self._bound_here[node_key] = self._shared_bound(decision, node_key)
        return bound

    def _shared_bound(self, decision: Decision, node_key: tuple) -> Any:
        # Shared across handles of the same function and options: place(fn) in a loop stays bound.
        per_fn = _bound.get(self._fn)
        if per_fn is None:
            with _lock:
                per_fn = _bound.setdefault(self._fn, {})
        key = (self._options_key, node_key)
        bound = per_fn.get(key)
        if bound is None:
            bound = per_fn[key] = self._fn.options(**merged_options(self._options, decision))
        return bound

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        decision = self.decide()
        result = self._bound_for(decision).remote(*args, **kwargs)
        if self._is_actor and not decision.soft:
            _actor_nodes[result._actor_id.hex()] = decision.node.node_id
        self.last_decision = decision
        return result

    def __repr__(self) -> str:
        name = getattr(self._fn, "__name__", None) or getattr(getattr(self._fn, "_function", None), "__name__", "?")
        return f"{self._policy!r}.place({name})"
