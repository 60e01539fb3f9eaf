"""``policy.place(fn)``: a thin handle shaped like Ray's ``fn.options(...)`` result.

It holds the function, its options, and the Ray options bound per node (a fresh ``.options()``
per call makes submission slower: benchmarks/run.py measures it); every ``.remote()`` runs the
one placement transaction (transaction.py) with this handle's way of submitting.
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable
from typing import Any

import ray
from ray.actor import ActorClass
from ray.remote_function import RemoteFunction

from . import _ray
from .deadlines import check_pending_timeout, gated_remote, watch_actor, watch_task
from .options import (
    check_label_selector,
    check_user_options,
    demand_of,
    effective_options,
    merged_options,
)
from .policies import Decision, Policy, Submitted
from .policies.selector import LabelFilter
from .transaction import After, Transaction, check_followed

_MAX_CACHED_HANDLES = 1024

# Plain functions and classes wrapped once (a new ray.remote would export them again).
_wrapped: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
# place(fn) without options, per policy: {(fn, group): handle}, so place(fn) in a loop is cheap.
_handles: weakref.WeakKeyDictionary[Policy, dict[tuple[Any, Hashable], PlacedRemote]] = (
    weakref.WeakKeyDictionary())
# Options-bound handles per remote function, shared by its handles: {(options, node key): bound}.
_bound: weakref.WeakKeyDictionary[Any, dict[tuple[str, tuple[Any, ...]], Any]] = (
    weakref.WeakKeyDictionary())
_lock = threading.Lock()


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
                 group: Hashable | None = None, *, after: tuple[After, ...] = ()) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(f"expected a placement policy, got {type(policy).__name__}")
        if not isinstance(options, dict):
            raise TypeError(f"options must be a dict of Ray options, got {options!r}")
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
        self._effective = effective = effective_options(options, self._defaults)
        # A task with a deadline runs behind a gate that settles whether it started in time.
        self._gated = self._pending_timeout is not None and kind == "task"
        if self._gated and effective.get("max_calls"):
            raise ValueError("pending_timeout= cannot keep max_calls=: the deadline's gate runs "
                             "the function in a task of its own, and Ray takes max_calls only "
                             "in @ray.remote; drop one of them")
        if self._gated and effective.get("num_returns") in ("streaming", "dynamic"):
            raise ValueError("pending_timeout= does not apply to generator tasks: drop it, or "
                             "return a list instead of yielding")
        check_user_options(effective, kind)
        check_label_selector(effective.get("label_selector"),
                             (m.where for m in policy.members()))
        check_followed(policy)
        self._options = options
        self._options_key = repr(sorted(options.items(), key=lambda item: item[0]))
        self._after = after
        steps = after if self._pending_timeout is None else (*after, self._watch)
        self._transaction = Transaction(policy, demand_of(effective), group, steps)
        self._send = self._send_gated if self._gated else self._send_plain
        self._bound_here: dict[tuple[Any, ...], Any] = {}

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def demand(self) -> dict[str, float]:
        """The resources one placement needs on a node (checked against every node before
        submit)."""
        return self._transaction.demand.as_dict()

    def options(self, **options: Any) -> PlacedRemote:
        group = options.pop("group", self._transaction.group)
        kept = {**self._options, "pending_timeout": self._pending_timeout}
        return PlacedRemote(self._policy, self._fn, {**kept, **options}, group,
                            after=self._after)

    def submit(self, *args: Any, **kwargs: Any) -> Submitted:
        """Place and submit one call; return Ray's result with the decision that placed it."""
        return Submitted(*self._transaction.run(self._send, args, kwargs))

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Place and submit one call, as ``fn.remote(*args, **kwargs)`` would."""
        return self._transaction.run(self._send, args, kwargs)[0]

    def unplaced(self, where: LabelFilter | None = None) -> Any:
        """This work bound to its own options and no node: Ray decides where it runs, among the
        nodes ``where`` (the policy's filter) keeps (the executor's last resort for a soft call
        refused at its deadline)."""
        # max_calls is kept by the function itself: Ray refuses it in .options().
        own = {k: v for k, v in self._effective.items() if k != "max_calls"}
        if where is None:
            return self._fn.options(**own)
        asked = own.get("label_selector") or {}
        return self._fn.options(**{**own, "label_selector": {**where.selector, **asked}})

    # -- submitting -------------------------------------------------------------------------------

    def _send_plain(self, decision: Decision, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        key = (decision.node.node_id, decision.policy, decision.backend, decision.soft)
        bound = self._bound_here.get(key)
        if bound is None:
            bound = self._bound_here[key] = self._shared_bound(decision, key)
        return bound.remote(*args, **kwargs)

    def _send_gated(self, decision: Decision, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        key = (decision.node.node_id, decision.policy, decision.backend, decision.soft)
        bound = self._bound_here.get(key)
        if bound is None:  # the gate runs this function, with all its options and its name
            options = merged_options({"name": self._name, **self._options}, decision,
                                     self._defaults)
            bound = self._bound_here[key] = gated_remote().options(**{**self._defaults,
                                                                       **options})
        return bound.remote(_ray.remote_body(self._fn), *args, **kwargs)

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

    def _watch(self, result: Any, decision: Decision) -> None:
        """After a submission with ``pending_timeout``: end the work if it has not started by
        then."""
        seconds = self._pending_timeout
        assert seconds is not None
        asked = self._transaction.demand.as_dict()
        labels = dict(self._effective.get("label_selector") or {})
        if decision.where is not None:
            labels.update(decision.where.selector)
        if self._gated:
            ref = result[0] if isinstance(result, list) else result
            watch_task(ref, seconds, self._name, self._policy, decision, asked, labels)
        elif _ray.is_actor_handle(result):
            watch_actor(result, seconds, self._name, self._policy, decision, asked, labels)

    def __repr__(self) -> str:
        return f"{self._policy!r}.place({self._name})"


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
