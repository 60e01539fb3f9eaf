"""``policy.reserve(n)``: n placements planned by a policy and reserved all or nothing as one Ray
placement group, then handed out bundle by bundle.

A strict ``AntiAffinity`` checks that 4 workers fit on 4 nodes, but between that check and the
start other work can take the capacity, and the gang starts partially. A reservation plans the
n placements (the policy's plan on a fresh copy of it, against a fresh read of the cluster),
then asks Ray for one placement group whose bundle i holds what one placement needs and is
pinned to planned node i by Ray's ``ray.io/node-id`` label (``policies/bundles.py``). Ray
reserves every bundle or none. The reservation waits at most ``timeout`` s for the group;
otherwise it removes the group and raises PlacementError naming the nodes that lacked room.

>>> import placement
>>> placement.connect()                                                 # doctest: +SKIP
>>> with placement.AntiAffinity().reserve(4, num_cpus=1) as gang:       # doctest: +SKIP
...     workers = [gang.place(Trainer, num_cpus=1).remote(rank) for rank in range(4)]
...     ray.get([w.train.remote() for w in workers])
"""
from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import ray
from ray.actor import ActorClass
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from . import _ray, errors
from .errors import PlacementError
from .handle import as_remote
from .options import check_label_selector, check_user_options, demand_of
from .policies import Plan, Policy, Submitted
from .policies.bundles import bundles_of, check_reservation, shortfall, timeout_error
from .policies.decision import node_name
from .policies.request import Demand, DemandLike
from .policies.selector import LabelFilter
from .snapshot import NodeInfo
from .transaction import actor_node_id, cache_of, check_followed, current_node_id

DEFAULT_TIMEOUT_SECONDS = 30.0

# What reserve() takes from Ray's options: the shape of one bundle.
_DEMAND_OPTIONS = ("num_cpus", "num_gpus", "memory", "resources", "label_selector")
# Options the reservation sets on the work it places: a user value would contradict it (and Ray
# rejects placement_group together with scheduling_strategy).
_RESERVATION_OWNED = ("scheduling_strategy", "placement_group", "placement_group_bundle_index",
                      "placement_group_capture_child_tasks", "fallback_strategy")


def reserve(policy: Policy, n: int, demand: DemandLike = None, *,
            groups: Sequence[Hashable] | None = None,
            timeout: float = DEFAULT_TIMEOUT_SECONDS,
            options: Mapping[str, Any] | None = None) -> Reservation:
    """``policy.reserve(n, demand, groups=, timeout=, **options)``: plan, create the group, wait
    for it (bounded). Everything is checked before the group is created; a group that is not
    ready in time is removed before the refusal is raised."""
    if not isinstance(policy, Policy):
        raise TypeError(f"expected a placement policy, got {type(policy).__name__}")
    check_reservation(n, timeout, groups)
    options = dict(options or {})
    need = _demand_of(demand, options, policy)
    _check_groups(policy, groups)
    plan = _plan(policy, n, need, groups)
    bundles, selectors = bundles_of(plan, need)  # raises the plan's refusal: nothing created
    group = placement_group(bundles, strategy="PACK", bundle_label_selector=selectors)
    try:
        # pg.wait() takes whole seconds (0.5 became 0: measured on Ray 2.60); ray.wait does not.
        ready, _ = ray.wait([group.ready()], timeout=float(timeout))
    except BaseException:  # an interrupt, a lost connection: leave no group behind
        remove_placement_group(group)
        raise
    if not ready:
        remove_placement_group(group)
        nodes = [d.node for d in plan.decisions]
        raise timeout_error(float(timeout), nodes, bundles, cache_of(policy).refresh())
    return Reservation(group, plan, bundles)


def _demand_of(demand: DemandLike, options: dict[str, Any], policy: Policy) -> Demand:
    """The demand of one bundle: ``demand=``, else Ray's resource options (num_cpus, ...)."""
    for name in _RESERVATION_OWNED:
        if options.get(name) is not None:
            raise PlacementError(
                errors.BAD_OPTIONS,
                f"the option {name}= contradicts the reservation, which creates the placement "
                "group and pins each bundle to its planned node",
                f"drop {name}= (give the bundle's resources: num_cpus=, num_gpus=, memory=, "
                "resources=, label_selector=)")
    check_user_options(options)  # unknown names and ill-typed values, naming the fix
    for name in options:
        if name not in _DEMAND_OPTIONS:
            raise TypeError(f"{name}= is an option of the work, not of the reservation: give it "
                            f"to reservation.place(fn, {name}=...)")
    if demand is not None:
        if options:
            raise ValueError(f"give the demand once: demand= or {', '.join(options)}=, not both")
        return demand if isinstance(demand, Demand) else Demand(demand)
    check_label_selector(options.get("label_selector"), (m.where for m in policy.members()))
    return demand_of(options)  # without num_cpus: 1 CPU, as a Ray task needs


def _check_groups(policy: Policy, groups: Sequence[Hashable] | None) -> None:
    if groups is None:
        if policy.needs.group:
            raise ValueError(f"{type(policy).__name__} needs a group key per bundle: "
                             "policy.reserve(4, groups=['a', 'a', 'b', 'b'])")
        return
    for group in groups:
        policy.check_group(group)


def _plan(policy: Policy, n: int, demand: Demand, groups: Sequence[Hashable] | None) -> Plan:
    """The policy's plan on a fresh copy of it and a fresh read of the cluster (as
    ``policy.plan``), with the caller's node and the followed actors' nodes looked up."""
    check_followed(policy)
    targets = {id(actor): actor_node_id(actor) for actor in policy.needs.follows}
    caller = current_node_id() if policy.needs.caller else None
    return policy.plan(cache_of(policy).refresh(), n, demand, groups=groups,
                       caller_node_id=caller, targets=targets)


class Reservation:
    """n bundles of one placement group, reserved together, bundle i on ``nodes[i]``.

    ``place(fn, **options)`` returns a handle whose ``.remote()`` runs the next free bundle (in
    plan order); one beyond the n-th raises PlacementError. ``release()`` removes the group
    (Ray then ends the actors and tasks running in it); a ``with`` block releases on exit.
    """

    def __init__(self, group: PlacementGroup, plan: Plan,
                 bundles: Sequence[Mapping[str, float]]) -> None:
        self._group = group
        self._plan = plan
        self._bundles = tuple(dict(b) for b in bundles)
        self._free = list(range(len(self._bundles)))  # kept sorted: the lowest goes first
        self._released = False
        self._lock = threading.Lock()

    @property
    def placement_group(self) -> PlacementGroup:
        return self._group

    @property
    def plan(self) -> Plan:
        return self._plan

    @property
    def bundles(self) -> tuple[dict[str, float], ...]:
        """What each bundle holds."""
        return tuple(dict(b) for b in self._bundles)

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node id each bundle is pinned to (the plan's node for placement i)."""
        return tuple(d.node.node_id for d in self._plan.decisions)

    @property
    def free(self) -> int:
        """Bundles not yet handed out."""
        return len(self._free)

    @property
    def released(self) -> bool:
        return self._released

    def place(self, fn: Any, **options: Any) -> ReservedRemote:
        """A handle for ``fn`` whose every ``.remote()`` takes the next bundle. The work's own
        resources (``num_cpus``...; 1 CPU without it) must fit in a bundle: checked here."""
        if self._released:
            raise RuntimeError("this reservation was released: reserve again (policy.reserve)")
        return ReservedRemote(self, fn, options)

    def release(self) -> None:
        """Remove the placement group; idempotent. Ray ends the work running in it."""
        with self._lock:
            if self._released:
                return
            self._released = True
            self._free.clear()
        remove_placement_group(self._group)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _take(self) -> int:
        with self._lock:
            if self._released:
                raise RuntimeError("this reservation was released: reserve again "
                                   "(policy.reserve)")
            if not self._free:
                n = len(self._bundles)
                raise PlacementError(
                    errors.RESERVATION_USED_UP,
                    f"all {n} bundle{'s' if n > 1 else ''} of the reservation are in use",
                    "reserve as many bundles as calls (policy.reserve(n)), or release this "
                    "reservation and reserve again")
            return self._free.pop(0)

    def _give_back(self, index: int) -> None:
        with self._lock:
            if not self._released:
                self._free.append(index)
                self._free.sort()

    def _node(self, index: int) -> NodeInfo:
        return self._plan.decisions[index].node

    def __repr__(self) -> str:
        names = ", ".join(node_name(d.node) for d in self._plan.decisions)
        state = "released" if self._released else f"{self.free} free"
        return (f"Reservation({self._plan.policy}, {len(self._bundles)} x "
                f"{self._bundles[0]} on {names}, {state})")


class ReservedRemote:
    """What ``reservation.place(fn, **options)`` returns: ``.remote(*args, **kwargs)`` submits
    into the next free bundle, and gives the bundle back if Ray refused the submission."""

    def __init__(self, reservation: Reservation, fn: Any, options: dict[str, Any]) -> None:
        for name in _RESERVATION_OWNED:
            if options.get(name) is not None:
                raise PlacementError(
                    errors.BAD_OPTIONS,
                    f"the option {name}= contradicts the reservation, which puts each call "
                    "into its own bundle", f"drop {name}= from place()")
        self._reservation = reservation
        self._fn = as_remote(fn)
        merged = {**_ray.remote_defaults(self._fn), **options}
        kind = "actor" if isinstance(self._fn, ActorClass) else "task"
        check_user_options(merged, kind)
        self._check_fits(merged, kind)
        self._options = dict(options)

    def _check_fits(self, merged: dict[str, Any], kind: str) -> None:
        """The work's resources must fit in a bundle, and its label_selector (if any) must match
        every bundle's node: otherwise Ray would refuse it, or wait forever."""
        reservation, name = self._reservation, _ray.remote_name(self._fn)
        need = demand_of(merged).as_dict()
        bundle = reservation._bundles[0]  # every bundle holds the same
        short = shortfall(need, bundle)
        if short:
            default = (f" (a{'n actor' if kind == 'actor' else ' task'} without num_cpus= "
                       "needs 1 CPU)" if "CPU" in short and merged.get("num_cpus") is None
                       else "")
            raise PlacementError(
                errors.BAD_OPTIONS,
                f"{name} needs {need}{default} and each bundle of the reservation holds "
                f"{bundle}: {sorted(short)} do not fit",
                "give the work at most a bundle's resources in place() (num_cpus=0 for work that "
                "needs no CPU), or reserve what it needs: policy.reserve(n, num_cpus=...)",
                [node_name(reservation._node(0))])
        selector = merged.get("label_selector")
        if selector:
            wanted = LabelFilter(selector, "label_selector")
            off = [node_name(reservation._node(i)) for i in range(len(reservation._bundles))
                   if not wanted.matches(reservation._node(i).labels)]
            if off:
                raise PlacementError(
                    errors.NO_MATCHING_NODES,
                    f"label_selector={dict(selector)} of {name} does not match the bundles on "
                    f"{', '.join(dict.fromkeys(off))}: Ray would wait forever",
                    "give the label_selector to reserve(), which plans on the nodes it matches, "
                    "and drop it from place()", off)

    def options(self, **options: Any) -> ReservedRemote:
        """A handle with these options merged into this one's."""
        return ReservedRemote(self._reservation, self._fn, {**self._options, **options})

    def submit(self, *args: Any, **kwargs: Any) -> Submitted:
        """Submit one call into the next free bundle; Ray's result with the plan's decision
        for that bundle."""
        reservation = self._reservation
        index = reservation._take()
        strategy = PlacementGroupSchedulingStrategy(
            placement_group=reservation._group, placement_group_bundle_index=index)
        try:
            result = self._fn.options(**self._options, scheduling_strategy=strategy).remote(
                *args, **kwargs)
        except BaseException:  # Ray refused it (a taken name, an unpicklable argument)
            reservation._give_back(index)
            raise
        return Submitted(result, reservation.plan.decisions[index])

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit one call into the next free bundle, as ``fn.remote(*args, **kwargs)``."""
        return self.submit(*args, **kwargs).result

    def __repr__(self) -> str:
        return f"{self._reservation!r}.place({_ray.remote_name(self._fn)})"
