"""The Policy base: configuration, the snapshot a policy decides on, and placement as a
transaction.

A placement is proposed, then committed or rolled back, as in Kubernetes' Reserve / Unreserve
around Bind: ``propose`` takes a slot in the policy's ledger at once (so concurrent deciders see
it), the submit layer ``commit``s it when Ray accepted the work and ``rollback``s it when
submission raised. ``release`` gives back a committed placement that ended (AntiAffinity replicas,
Packing members). All three are idempotent. ``decide`` is propose and commit in one step.

>>> from placement.snapshot import ClusterSnapshot
>>> from placement.policies import AntiAffinity
>>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}])
>>> apart = AntiAffinity()
>>> first = apart.propose(snap)
>>> apart.rollback(first)              # Ray refused the submission: the slot is free again
>>> apart.decide(snap).node_name
'node0'
"""
from __future__ import annotations

import abc
import functools
import importlib
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import PlacementError
from ..snapshot import ClusterSnapshot, NodeInfo
from .bundles import check_reservation
from .candidates import Candidates
from .decision import (
    AUTO,
    DEFAULT_PIN_AMOUNT,
    Decision,
    check_backend,
    check_pin_amount,
    check_soft,
    check_wait_for_nodes,
    next_ticket,
)
from .plan import Plan, make_plan
from .request import DemandLike, Request, make_request
from .selector import LabelFilter

if TYPE_CHECKING:  # the return type only: the submit layer is loaded by name (below)
    from ..reserve import Reservation

# What a policy keeps per open placement, to undo it (the policy's own business).
Hold = Any

# The one call from this layer up: ``policy.place(fn)`` forwards to the submit layer, loaded by
# name when first used. No import statement here names it, so the static graph (checked by
# import-linter) points one way and importing this layer never loads Ray.
_SUBMIT_LAYER = "placement.handle"
_RESERVE_LAYER = "placement.reserve"  # policy.reserve(n), loaded the same way


class Policy(abc.ABC):
    """Base of all policies: configuration, candidates, locking, and the transaction."""

    default_backend = AUTO
    default_soft: bool | str = False
    # Configuration values repr() leaves out, beyond the base's (a subclass's own defaults).
    repr_defaults: Mapping[str, Any] = {}
    needs_group = False
    needs_caller = False
    # Whether committed placements stay in the ledger until released (AntiAffinity, Packing);
    # otherwise commit forgets them and release does nothing.
    releases = False
    # Whether the submit layer releases each task's placement when its result is ready
    # (LeastLoaded: its ledger is the work still in flight).
    tracks_completion = False
    # Whether requests must carry where the arguments' data is (Locality).
    needs_locations = False
    # Called, outside the lock, with each decision ``release`` gave back. The submit layer sets
    # it where a release must reach more than this ledger (a ledger shared across drivers).
    on_release: Callable[[Decision], None] | None = None

    def __init__(
        self,
        *,
        soft: bool | str = False,
        backend: str | None = None,
        pin_amount: float = DEFAULT_PIN_AMOUNT,
        cache: Any = None,
        where: Mapping[str, str] | None = None,
        wait_for_nodes: float | None = None,
    ) -> None:
        self.soft = check_soft(soft)
        # Seconds the submit layer waits for new nodes (asking Ray's autoscaler for them) when
        # no node can take a placement; None refuses at once (autoscale.py).
        self.wait_for_nodes = check_wait_for_nodes(wait_for_nodes)
        # Only nodes whose Ray labels satisfy these conditions are candidates (selector.py).
        self.where = None if where is None else LabelFilter(where)
        self.backend = check_backend(self.default_backend if backend is None else backend)
        self.pin_amount = check_pin_amount(pin_amount)
        # A SnapshotCache for the submit layer to read (None: the process-wide one). Kept as
        # configuration only: this layer never reads the cluster.
        self.cache = cache
        self._lock = threading.RLock()
        self._candidates: Candidates | None = None
        self._backend_now = self.backend  # what decisions tell Ray: auto resolved per snapshot
        self._newest: ClusterSnapshot | None = None
        self._open: dict[int, Hold] = {}  # proposed, not yet committed or rolled back
        self._committed: dict[int, Hold] = {}  # committed and not released (if releases)
        self._name: str | None = None

    # -- what subclasses provide ----------------------------------------------------------------

    @abc.abstractmethod
    def _choose(self, cands: Candidates, request: Request) -> tuple[Decision, Hold]:
        """Pick a node and take its slot in the ledger; return the decision and what undoes it."""

    @abc.abstractmethod
    def _undo(self, hold: Hold) -> None:
        """Give back the slot a placement took (rollback, release)."""

    def _rollback(self, hold: Hold) -> None:
        """Undo a proposal that was never committed; the same as a release unless a policy
        must restore more (Packing moves a group back)."""
        self._undo(hold)

    def _follow(self, cands: Candidates) -> None:
        """Bring the per-demand state up to ``cands`` (a refreshed snapshot's), under the lock.
        The default keeps none: such policies build what they need in ``_choose``."""
        return None

    def tracks(self, decision: Decision) -> bool:
        """Whether the submit layer should release ``decision`` when its work ends (the policy
        that made it counts only live work: LeastLoaded, live=True)."""
        return self.tracks_completion

    def decided_by(self, decision: Decision) -> Policy:
        """The policy whose ledger holds ``decision`` (a fallback's member; otherwise this)."""
        return self

    def can_grow(self, request: Request) -> bool:
        """Whether a new node could let this policy place ``request`` (what ``wait_for_nodes``
        waits for); False for placements bound to a node that exists."""
        return True

    def _config(self) -> dict[str, Any]:
        """Constructor arguments, for clone() and repr()."""
        return {"soft": self.soft, "backend": self.backend, "pin_amount": self.pin_amount,
                "cache": self.cache,
                "where": None if self.where is None else dict(self.where.selector),
                "wait_for_nodes": self.wait_for_nodes}

    # -- the transaction --------------------------------------------------------------------------

    def propose(self, snapshot: ClusterSnapshot, request: Request | None = None) -> Decision:
        """Choose a node and hold its slot until ``commit`` or ``rollback``.

        Raises PlacementError (rule, nodes, fix) when the placement cannot happen; nothing is
        held then.
        """
        if request is None:
            request = _NO_REQUEST
        if self.needs_group and request.group is None:
            raise self._group_error()
        with self._lock:
            cands = self._candidates
            if cands is None or cands.snapshot is not snapshot:
                cands = self._candidates_for(snapshot)
            decision, hold = self._choose(cands, request)
            self._open[decision.ticket] = hold
            return decision

    def commit(self, decision: Decision) -> None:
        """Ray accepted the work: the placement stays in the ledger (until ``release``)."""
        # No lock: the ledger does not change, the hold only moves between two dicts, and a
        # dict's pop and store are atomic. Taking the lock costs about 0.2 us per placement here.
        hold = self._open.pop(decision.ticket, _NONE)
        if hold is not _NONE and self.releases:
            self._committed[decision.ticket] = hold

    def rollback(self, decision: Decision) -> None:
        """Submission failed: give the slot back as if the placement was never decided.

        Exact when nothing was decided in between (the handle rolls back at once). A rollback
        after later decisions (concurrent submissions) restores the counts, not the order: one
        demand's round-robin counts may then differ by 2 until later placements even them out.
        """
        with self._lock:
            hold = self._open.pop(decision.ticket, _NONE)
            if hold is not _NONE:
                self._rollback(hold)

    def release(self, decision: Decision) -> None:
        """The placed work ended (a replica was killed, a group member finished): give its slot
        back. Idempotent; a no-op for policies whose ledger is history (RoundRobin, Affinity)."""
        with self._lock:
            hold = self._committed.pop(decision.ticket, _NONE)
            if hold is _NONE:
                return
            self._undo(hold)
        if self.on_release is not None:
            self.on_release(decision)

    def decide(
        self,
        snapshot: ClusterSnapshot,
        demand: DemandLike = None,
        *,
        group: Hashable | None = None,
        caller_node_id: str | None = None,
        data: Mapping[str, int] | None = None,
    ) -> Decision:
        """Choose a node for one placement and record it in this policy's ledger (propose and
        commit in one step). ``data``: bytes of the arguments per node id (Locality).

        Raises PlacementError (rule, nodes, fix) when the placement cannot happen.
        """
        request = make_request(demand, group, caller_node_id, data)
        if self.needs_group and request.group is None:
            raise self._group_error()
        with self._lock:
            decision, hold = self._choose(self._candidates_for(snapshot), request)
            if self.releases:
                self._committed[decision.ticket] = hold
            return decision

    def check_group(self, group: Hashable | None) -> None:
        """Refuse, before anything is submitted, a group this policy can never place: none for a
        policy that needs one (Packing, or a fallback with Packing in it), or one that cannot be a
        dict key. ``place()`` calls it; the submit layer may call it for every handle.

        >>> from placement.policies import Packing
        >>> Packing().check_group(None)
        Traceback (most recent call last):
        ...
        ValueError: Packing needs a group key: policy.place(fn, group='partition-3')
        """
        if group is None:
            if self.needs_group:
                raise self._group_error()
            return
        try:
            hash(group)
        except TypeError:
            raise TypeError(
                f"group must be hashable (a str, int or tuple), got {type(group).__name__}: "
                "e.g. group='partition-3'"
            ) from None

    def _group_error(self) -> ValueError:
        return ValueError(
            f"{type(self).__name__} needs a group key: policy.place(fn, group='partition-3')"
        )

    # -- snapshots only move forward --------------------------------------------------------------

    def follow(self, snapshot: ClusterSnapshot) -> None:
        """Move to a newer snapshot now, so that the next decision finds everything ready.

        The snapshot cache's background refresher calls it off the submit path for every policy
        in use: candidates and per-demand rotations update by the snapshot's difference (the
        candidates outside the lock, as they are values), and a decision then pays nothing for
        the refresh. A policy that has not decided yet only notes the snapshot as the newest (it
        never decides on an older one); a snapshot its candidates cannot be built on is left for
        the next decision to refuse with its reasons.

        >>> from placement.policies import RoundRobin
        >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}])
        >>> policy = RoundRobin(); _ = policy.decide(snap)
        >>> newer = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
        ...                                     {"id": "b", "label": "node1"}], previous=snap)
        >>> policy.follow(newer); policy.decide(newer).node_name
        'node1'
        """
        cands = self._candidates
        if cands is not None and snapshot.version > cands.snapshot.version:
            try:  # outside the lock (candidates are values, shared per snapshot): the slow part
                cands.follow(snapshot)
            except PlacementError:
                pass
        with self._lock:
            newest = self._newest = self._newest_of(snapshot)
            current = self._candidates
            if current is None or current.snapshot.version >= newest.version:
                return  # nothing built yet, or already there: decisions build on newest
            try:
                newer = current.follow(newest)  # the one built above, unless a decision moved
            except PlacementError:  # no candidate now: the next decision refuses, on newest
                self._candidates = None
                return
            self._candidates, self._backend_now = newer, newer.backend
            self._follow(newer)

    def _candidates_for(self, snapshot: ClusterSnapshot) -> Candidates:
        """Candidates of the newest snapshot this policy has seen: given an older one (a thread
        that read the cluster before another thread decided on a newer read), it keeps the newer
        one, so a node it already saw dead is never chosen again."""
        snapshot = self._newest_of(snapshot)
        cands = self._candidates
        if cands is not None and cands.snapshot is snapshot:
            return cands
        self._newest, self._candidates = snapshot, None
        if cands is not None:  # by the difference, when refreshed from the one it had
            cands = cands.follow(snapshot)  # raises: none fits
        else:
            # Soft placements never pin a resource (options.py): only hard ones check the pin.
            pin = None if self.soft else self.pin_amount
            cands = Candidates.of(snapshot, self.backend, pin, self.where)  # raises: none fits
        self._candidates, self._backend_now = cands, cands.backend
        return cands

    def _newest_of(self, snapshot: ClusterSnapshot) -> ClusterSnapshot:
        """``snapshot``, or the newer one this policy already used."""
        newest = self._newest
        if newest is not None and snapshot is not newest and snapshot.version < newest.version:
            return newest
        return snapshot

    def _decision(self, node: NodeInfo, reason: str, fallback: bool = False,
                  group: Hashable | None = None, local_bytes: int = 0) -> Decision:
        name = self._name
        if name is None:  # repr once: decisions are on the submit path
            name = self._name = repr(self)
        # tuple.__new__ directly: a NamedTuple's own constructor costs about 0.3 us more.
        return _new_decision((node, reason, name, self._backend_now, self.soft, self.pin_amount,
                              fallback, group, next_ticket(), self.where, local_bytes))

    # -- using ------------------------------------------------------------------------------------

    def place(self, fn: Any, *, group: Hashable | None = None, **ray_options: Any) -> Any:
        """Wrap a Ray remote function, actor class, or plain function/class so that each
        ``.remote()`` is placed by this policy. ``ray_options`` are kept and merged;
        ``pending_timeout=seconds`` (not a Ray option) ends work not started by then
        (placement/deadlines.py).

        >>> ref = RoundRobin().place(work, num_cpus=1).remote(42)    # doctest: +SKIP
        """
        self.check_group(group)  # before the submit layer loads: a refusal needs no Ray
        submit_layer = importlib.import_module(_SUBMIT_LAYER)
        placed: Any = submit_layer.place(self, fn, group, ray_options)
        return placed

    def reserve(self, n: int, demand: DemandLike = None, *,
                groups: list[Hashable] | None = None, timeout: float = 30.0,
                **ray_options: Any) -> Reservation:
        """Plan ``n`` placements with this policy and reserve them all or nothing, as one Ray
        placement group whose bundle i is pinned to planned node i; wait at most ``timeout`` s
        for it. ``demand`` (or ``num_cpus=``, ``num_gpus=``, ``memory=``, ``resources=``,
        ``label_selector=``; 1 CPU without them) is what each bundle holds; ``groups`` gives
        Packing a group key per bundle. Raises PlacementError, leaving no group behind, when
        the plan is refused or the group is not ready in time. See placement/reserve.py.

        >>> with AntiAffinity().reserve(4, num_cpus=1) as gang:           # doctest: +SKIP
        ...     workers = [gang.place(Worker, num_cpus=1).remote() for _ in range(4)]
        """
        check_reservation(n, timeout, groups)  # before the submit layer loads: no Ray needed
        submit_layer = importlib.import_module(_RESERVE_LAYER)
        reservation: Reservation = submit_layer.reserve(
            self, n, demand, groups=groups, timeout=timeout, options=ray_options)
        return reservation

    def plan(self, snapshot: ClusterSnapshot, n: int, demand: DemandLike = None, *,
             groups: list[Hashable] | None = None, caller_node_id: str | None = None) -> Plan:
        """Dry run: ``n`` placements of a fresh copy of this policy against ``snapshot``, no Ray.

        >>> from placement.policies import AntiAffinity
        >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
        ...                                    {"id": "b", "label": "node1"}])
        >>> AntiAffinity().plan(snap, 3).counts()
        {'node0': 1, 'node1': 1}
        """
        return make_plan(self.clone(), snapshot, n, demand, groups, caller_node_id)

    def clone(self) -> Policy:
        """A policy with the same configuration and an empty ledger."""
        return type(self)(**self._config())

    def __or__(self, other: Policy) -> Fallback:
        return Fallback(self, other)

    def __repr__(self) -> str:
        defaults = {"soft": self.default_soft, "backend": self.default_backend,
                    "pin_amount": DEFAULT_PIN_AMOUNT, **self.repr_defaults}
        shown = [f"{k}={v!r}" for k, v in self._config().items()
                 if k != "cache" and defaults.get(k, object()) != v and v is not None]
        return f"{type(self).__name__}({', '.join(shown)})"


_NONE: Any = object()  # "no hold": a hold itself may be None
_NO_REQUEST = Request()
_new_decision: Callable[[tuple[Any, ...]], Decision] = functools.partial(tuple.__new__, Decision)


class Fallback(Policy):
    """Try each policy in turn; the first that can place decides. ``a | b`` builds one (here,
    beside the base, as tenacity keeps ``stop_any`` beside ``stop_base``).

    >>> from placement.policies import AntiAffinity, RoundRobin
    >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}])
    >>> policy = AntiAffinity() | RoundRobin()
    >>> [(d.node_name, d.fallback) for d in (policy.decide(snap), policy.decide(snap))]
    [('node0', False), ('node0', True)]
    """

    releases = True
    policies: tuple[Policy, ...]

    def __init__(self, *policies: Policy) -> None:
        flat: list[Policy] = []
        for policy in policies:
            if not isinstance(policy, Policy):
                raise TypeError(f"Fallback takes policies, got {type(policy).__name__}")
            flat.extend(policy.policies if isinstance(policy, Fallback) else [policy])
        if len(flat) < 2:
            raise ValueError("Fallback needs at least two policies: first | second")
        first = flat[0]
        super().__init__(soft=first.soft, backend=first.backend, pin_amount=first.pin_amount,
                         cache=first.cache,
                         where=None if first.where is None else dict(first.where.selector))
        self.policies = tuple(flat)
        # Waits when every member refused: as long as the most patient member would.
        self.wait_for_nodes = max((p.wait_for_nodes for p in flat if p.wait_for_nodes),
                                  default=None)
        self.needs_group = any(p.needs_group for p in flat)
        self.needs_caller = any(p.needs_caller for p in flat)
        self.needs_locations = any(p.needs_locations for p in flat)
        # ticket -> (the member that decided, whether the placement was committed)
        self._routes: dict[int, tuple[Policy, bool]] = {}

    def propose(self, snapshot: ClusterSnapshot, request: Request | None = None) -> Decision:
        if request is None:
            request = _NO_REQUEST
        if self.needs_group and request.group is None:
            raise self._group_error()
        refusals: list[PlacementError] = []
        with self._lock:
            # Members see the newest snapshot any of them was given through this fallback: a
            # member that refused on it must not let a later member decide on an older one.
            snapshot = self._newest = self._newest_of(snapshot)
            for index, member in enumerate(self.policies):
                try:
                    decision = member.propose(snapshot, request)
                except PlacementError as refusal:
                    refusals.append(refusal)
                    continue
                if index:
                    decision = decision._replace(
                        reason=f"{refusals[-1].rule}: fell back to {member!r}: {decision.reason}",
                        policy=repr(self), fallback=True)
                self._routes[decision.ticket] = (member, False)
                return decision
        last = refusals[-1]
        raise PlacementError(last.rule, "; then ".join(r.detail for r in refusals), last.fix,
                             last.nodes)

    def decide(self, snapshot: ClusterSnapshot, demand: DemandLike = None, *,
               group: Hashable | None = None, caller_node_id: str | None = None,
               data: Mapping[str, int] | None = None) -> Decision:
        with self._lock:
            decision = self.propose(snapshot, make_request(demand, group, caller_node_id, data))
            self.commit(decision)
            return decision

    def commit(self, decision: Decision) -> None:
        with self._lock:
            route = self._routes.get(decision.ticket)
            if route is None or route[1]:
                return
            member = route[0]
            member.commit(decision)
            if member.releases:
                self._routes[decision.ticket] = (member, True)
            else:
                del self._routes[decision.ticket]

    def rollback(self, decision: Decision) -> None:
        with self._lock:
            route = self._routes.get(decision.ticket)
            if route is None or route[1]:  # committed: only release gives it back
                return
            del self._routes[decision.ticket]
            route[0].rollback(decision)

    def release(self, decision: Decision) -> None:
        with self._lock:
            route = self._routes.get(decision.ticket)
            if route is None or not route[1]:  # not committed (yet): nothing to release
                return
            del self._routes[decision.ticket]
            route[0].release(decision)

    def tracks(self, decision: Decision) -> bool:
        """Only when the member that made the decision tracks completion: a live member must
        not make the others live."""
        route = self._routes.get(decision.ticket)
        return route is not None and route[0].tracks(decision)

    def decided_by(self, decision: Decision) -> Policy:
        route = self._routes.get(decision.ticket)
        return self if route is None else route[0]

    def follow(self, snapshot: ClusterSnapshot) -> None:
        with self._lock:
            if self._newest is not None and snapshot.version <= self._newest.version:
                return
            self._newest = snapshot
        for member in self.policies:
            member.follow(snapshot)

    def _choose(self, cands: Candidates, request: Request) -> tuple[Decision, Hold]:
        raise AssertionError("Fallback decides through its members")  # pragma: no cover

    def _undo(self, hold: Hold) -> None:
        raise AssertionError("Fallback undoes through its members")  # pragma: no cover

    def _config(self) -> dict[str, Any]:
        return {}

    def clone(self) -> Fallback:
        return Fallback(*(p.clone() for p in self.policies))

    def __repr__(self) -> str:
        return " | ".join(repr(p) for p in self.policies)
