"""The Policy base: configuration, the snapshot a policy decides on, and placement as a ledger
transaction; ``Fallback`` (``a | b``); the interface through which ``policy.place`` reaches the
layer that submits.

Choosing is pure: ``_choose(candidates, request)`` reads the ledger and returns a ``Choice`` (a
node, why, and what the ledger records for it) or a ``Refusal``, and changes nothing. Taking the
slot is a separate ledger step, ``_reserve``, whose record ``_unreserve`` undoes: a proposal
Ray refused is rolled back exactly, as in Kubernetes' Reserve / Unreserve around Bind.

``propose`` chooses and reserves (so concurrent deciders see the slot taken), ``commit`` keeps
it when Ray accepted the work, ``rollback`` unreserves it when submission raised, ``release``
gives back a committed placement whose work ended. All idempotent; ``decide`` is propose and
commit in one step.

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
import itertools
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Protocol

from ..errors import PlacementError
from ..snapshot import ClusterSnapshot, NodeInfo
from .bundles import check_reservation
from .candidates import Candidates
from .decision import (
    AUTO,
    DEFAULT_PIN_AMOUNT,
    NODE_ID,
    Decision,
    Submitted,
    check_backend,
    check_pin_amount,
    check_soft,
    check_wait_for_nodes,
    next_ticket,
    node_name,
)
from .needs import NOTHING_NEEDED, Needs
from .plan import Plan, make_plan
from .request import Demand, DemandLike, Request, check_group, check_request, make_request
from .selector import LabelFilter

# What a policy's ledger records for one placement, to undo it (the policy's own business).
Hold = Any


# What ``_choose`` picked: (the node, why, whether a rule fell back, ``detail``: what
# ``_reserve`` records, the bytes of the arguments already there (Locality)). A plain tuple
# written out where it is made: one is made per placement, and a class's own constructor
# would cost a Python call (benchmarks/decide.py).
Choice = tuple[NodeInfo, str, bool, Any, int]


class Refusal:
    """A rule that refused, its PlacementError built only when someone reads it: a fallback
    that goes on to its next member never pays for the message."""

    __slots__ = ("_build", "_error", "rule")

    def __init__(self, rule: str, build: Callable[[], PlacementError]) -> None:
        self.rule = rule
        self._build = build
        self._error: PlacementError | None = None

    @classmethod
    def of(cls, error: PlacementError) -> Refusal:
        refusal = cls(error.rule, lambda: error)
        refusal._error = error
        return refusal

    def error(self) -> PlacementError:
        if self._error is None:
            self._error = self._build()
        return self._error


Outcome = Choice | Refusal


class PlacedHandle(Protocol):
    """The shape of what ``policy.place(fn)`` returns (Ray's ``fn.options(...)`` result)."""

    def remote(self, *args: Any, **kwargs: Any) -> Any: ...

    def options(self, **options: Any) -> PlacedHandle: ...

    def submit(self, *args: Any, **kwargs: Any) -> Submitted: ...


class Reserved(Protocol):
    """The shape of what ``policy.reserve(n)`` returns."""

    @property
    def nodes(self) -> tuple[str, ...]: ...

    @property
    def free(self) -> int: ...

    @property
    def plan(self) -> Plan: ...

    def place(self, fn: Any, **options: Any) -> PlacedHandle: ...

    def release(self) -> None: ...

    def __enter__(self) -> Reserved: ...

    def __exit__(self, *exc: object) -> None: ...


class SubmitLayer(Protocol):
    """What the layer above provides to this one (Kubernetes hands its plugins a
    ``framework.Handle`` the same way): the package's root registers it, so this layer imports
    nothing above it."""

    def place(self, policy: Policy, fn: Any, group: Hashable | None,
              options: dict[str, Any]) -> PlacedHandle: ...

    def reserve(self, policy: Policy, n: int, demand: DemandLike, groups: list[Hashable] | None,
                timeout: float, options: dict[str, Any]) -> Reserved: ...


_submit_layer: SubmitLayer | None = None


def use_submit_layer(layer: SubmitLayer) -> None:
    """Register the layer ``place`` and ``reserve`` hand their work to (done by ``placement``'s
    ``__init__``)."""
    global _submit_layer
    _submit_layer = layer


def submit_layer() -> SubmitLayer:
    if _submit_layer is None:
        raise RuntimeError("no submit layer is registered: import placement (its __init__ "
                           "registers it) before calling place() or reserve()")
    return _submit_layer


_LEFT_OUT_NOTE = object()  # the key of a snapshot's left-out note (ClusterSnapshot.derived)


def left_out_note(snapshot: ClusterSnapshot) -> str:
    """What a decision on ``snapshot`` adds to its reason when nodes are left out for not
    answering, e.g. "; left out, not answering: node3"; built once per snapshot.

    >>> snap = ClusterSnapshot.from_ray([{"NodeID": "a" * 56, "Alive": False,
    ...     "NodeManagerAddress": "10.0.0.3", "Resources": {"node3": 1000}}], left_out=["a" * 56])
    >>> left_out_note(snap)
    '; left out, not answering: node3'
    """
    def build() -> str:
        named = [node_name(node) for node in map(snapshot.by_id.get, snapshot.left_out[:3])
                 if node is not None]
        more = len(snapshot.left_out) - len(named)
        if not named:
            return f"; left out, not answering: {more} node(s)"
        return ("; left out, not answering: " + ", ".join(named)
                + (f" and {more} more" if more > 0 else ""))

    return snapshot.derived(_LEFT_OUT_NOTE, build)


class Policy(abc.ABC):
    """Base of all policies: configuration, candidates, locking, and the ledger transaction.

    A subclass provides ``_choose`` (pure) and, if it keeps a ledger, ``_reserve``,
    ``_unreserve`` and ``_release``; it declares what the submit layer must do for it in
    ``needs`` (a ``Needs``), and ``keeps = True`` when committed placements count until
    released (AntiAffinity, Packing, LeastLoaded).
    """

    default_backend = AUTO
    default_soft: bool | str = False
    # Configuration values repr() leaves out, beyond the base's (a subclass's own defaults).
    repr_defaults: Mapping[str, Any] = {}
    needs: Needs = NOTHING_NEEDED
    keeps = False
    # Whether it can judge a node another member of an ``a & b`` chose (``_choose_at``).
    judges = False
    # The Ray node label a policy spreads or packs over, if any (capacity asks read it).
    topology: str | None = None

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
        self._open: dict[int, Hold] = {}  # reserved, not yet committed or rolled back
        self._kept: dict[int, Hold] = {}  # committed and not released (if keeps)
        self._listeners: tuple[Callable[[Decision], None], ...] = ()
        self._name: str | None = None
        self._tracked = False  # decisions released when their work ends (needs.completion)
        # What the submit layer claims across drivers for a choice (shared ledgers), or None.
        self._claims: Callable[[Choice], tuple[str, int | None]] | None = None

    # -- what subclasses provide ----------------------------------------------------------------

    @abc.abstractmethod
    def _choose(self, cands: Candidates, request: Request) -> Outcome:
        """Pick a node from the candidates for ``request``, reading the ledger only."""

    def _reserve(self, request: Request, choice: Choice) -> Hold:
        """Take the slot ``choice`` picked in the ledger; return what undoes it."""
        return None

    def _unreserve(self, hold: Hold) -> None:
        """Undo a reservation never committed, exactly: the ledger is as if never reserved."""
        return None

    def _release(self, hold: Hold) -> None:
        """Give back a committed placement's slot (its work ended)."""
        self._unreserve(hold)

    def _committed(self, hold: Hold) -> None:
        """The placement ``hold`` stands for was committed (an ``a & b`` commits its members'
        holds through this): drop what only a rollback needed. The default keeps nothing."""
        return None

    def _follow(self, cands: Candidates) -> None:
        """Bring per-node-set state up to ``cands`` (a refreshed snapshot's), under the lock,
        so the next decision builds nothing. The default keeps none."""
        return None

    def _choose_at(self, cands: Candidates, request: Request, node: NodeInfo) -> Outcome:
        """Whether this policy allows ``node``, which another member of an ``a & b`` chose: the
        Choice it would reserve there, or a Refusal. Pure, as ``_choose``. Only policies with
        ``judges = True`` provide it; the others can only lead an ``&``."""
        raise TypeError(f"{type(self).__name__} cannot judge a node another policy chose")

    def can_grow(self, request: Request) -> bool:
        """Whether a new node could let this policy place ``request`` (what ``wait_for_nodes``
        waits for); False for placements bound to a node that exists."""
        return True

    def patient(self) -> Policy:
        """The policy whose shape a capacity ask takes (a fallback's first member that waits)."""
        return self

    def members(self) -> tuple[Policy, ...]:
        """The policies that decide: a fallback's members, else this one."""
        return (self,)

    def learn_others(self, name: str, counts: Mapping[str, int]) -> None:
        """Counts per node id that other drivers sharing the ledger ``name`` hold (the shared
        ledger reports them); a policy that shares no ledger of that name ignores them."""
        return None

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
        if request.__class__ is not Request or request.demand.__class__ is not Demand:
            request = check_request(request)
        if snapshot.__class__ is not ClusterSnapshot or (
                self.needs.group and request.group is None):
            outcome = self.attempt(snapshot, request)  # raises the error that names the fix
        else:
            outcome = self._attempt(snapshot, request)
        if outcome.__class__ is Refusal:
            raise outcome.error()
        return outcome  # type: ignore[return-value]

    def attempt(self, snapshot: ClusterSnapshot, request: Request) -> Decision | Refusal:
        """``propose`` that returns a refusal instead of raising it (a fallback asks its
        members so, and builds no message for a member that refused)."""
        if not isinstance(snapshot, ClusterSnapshot):
            raise TypeError(f"a policy decides on a ClusterSnapshot, got "
                            f"{type(snapshot).__name__}: read one with "
                            "placement.current_snapshot(), or build one with "
                            "ClusterSnapshot.from_dicts([...])")
        if self.needs.group and request.group is None:
            raise self._group_error()
        return self._attempt(snapshot, request)

    def _attempt(self, snapshot: ClusterSnapshot, request: Request) -> Decision | Refusal:
        """``attempt`` on arguments already checked (a fallback's members)."""
        with self._lock:
            cands = self._candidates
            if cands is None or cands.snapshot is not snapshot:
                try:
                    cands = self._candidates_for(snapshot)
                except PlacementError as refusal:
                    return Refusal.of(refusal)
            choice = self._choose(cands, request)
            if isinstance(choice, Refusal):
                return choice
            hold = self._reserve(request, choice)
            node, reason, fallback, _, local_bytes = choice
            if cands.snapshot.left_out:
                reason += left_out_note(cands.snapshot)
            name = self._name
            if name is None:  # repr once: decisions are on the submit path
                name = self._name = repr(self)
            # tuple.__new__ directly: a NamedTuple's own constructor costs more (decide.py).
            decision = _new_decision((
                node, reason, name, self._backend_now, self.soft, self.pin_amount, fallback,
                request.group, next_ticket(), self.where, local_bytes, self._tracked,
                None if self._claims is None else self._claims(choice)))
            self._open[decision.ticket] = hold
            return decision

    def commit(self, decision: Decision) -> None:
        """Ray accepted the work: the placement stays in the ledger (until ``release``)."""
        # No lock: the ledger does not change, the hold only moves between two dicts, and a
        # dict's pop and store are atomic.
        if decision.__class__ is not Decision:
            raise not_a_decision(decision)
        hold = self._open.pop(decision.ticket, _NONE)
        if hold is not _NONE and self.keeps:
            self._kept[decision.ticket] = hold

    def rollback(self, decision: Decision) -> None:
        """Submission failed: give the slot back as if the placement was never decided.

        Exact when nothing was decided in between (the submit layer rolls back at once). A
        rollback after later decisions (concurrent submissions) restores the counts, not the
        order: a round robin then resumes where the later decisions left it.
        """
        with self._lock:
            hold = self._open.pop(_ticket(decision), _NONE)
            if hold is not _NONE:
                self._unreserve(hold)

    def release(self, decision: Decision) -> None:
        """The placed work ended (a replica was killed, a group member finished): give its slot
        back. Idempotent; a no-op for policies whose ledger is history (RoundRobin, Affinity)."""
        with self._lock:
            hold = self._kept.pop(_ticket(decision), _NONE)
            if hold is _NONE:
                return
            self._release(hold)
        for listener in self._listeners:
            listener(decision)

    def add_release_listener(self, listener: Callable[[Decision], None]) -> None:
        """Call ``listener(decision)`` after each release (the shared ledger gives the claim
        back this way). Listeners run outside the lock."""
        if not callable(listener):
            raise TypeError(f"a release listener must be callable, got {listener!r}")
        with self._lock:
            self._listeners += (listener,)

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
        with self._lock:
            decision = self.propose(snapshot, request)
            self.commit(decision)
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
        if group is None and self.needs.group:
            raise self._group_error()
        check_group(group)

    def _group_error(self) -> ValueError:
        return ValueError(
            f"{type(self).__name__} needs a group key: policy.place(fn, group='partition-3')"
        )

    # -- snapshots only move forward --------------------------------------------------------------

    def follow(self, snapshot: ClusterSnapshot) -> None:
        """Move to a newer snapshot now, so that the next decision finds everything ready.

        The snapshot cache's background refresher calls it off the submit path for every policy
        in use: candidates and the node sets kept update by the snapshot's difference (the
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
        if not isinstance(snapshot, ClusterSnapshot):
            raise TypeError(f"follow() takes a ClusterSnapshot, got {type(snapshot).__name__}")
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
            if newer.backend != self._backend_now:  # decisions name the backend: repr anew
                self._name = None
            self._candidates, self._backend_now = newer, newer.backend
            self._follow(newer)

    def _candidates_for(self, snapshot: ClusterSnapshot) -> Candidates:
        """Candidates of the newest snapshot this policy has seen: given an older one (a thread
        that read the cluster before another thread decided on a newer read), it keeps the newer
        one, so a node it already saw dead is never chosen again."""
        cands = self._candidates
        if cands is not None and cands.snapshot is snapshot:
            return cands
        snapshot = self._newest_of(snapshot)
        if cands is not None and cands.snapshot is snapshot:
            return cands
        self._newest, self._candidates = snapshot, None
        if cands is not None:  # by the difference, when refreshed from the one it had
            cands = cands.follow(snapshot)  # raises: none fits
        else:
            # Soft placements never pin a resource (options.py): only hard ones check the pin.
            pin = None if self.soft else self.pin_amount
            cands = Candidates.of(snapshot, self.backend, pin, self.where)  # raises: none fits
        if cands.backend != self._backend_now:
            self._name = None
        self._candidates, self._backend_now = cands, cands.backend
        return cands

    def _newest_of(self, snapshot: ClusterSnapshot) -> ClusterSnapshot:
        """``snapshot``, or the newer one this policy already used."""
        newest = self._newest
        if newest is not None and snapshot is not newest and snapshot.version < newest.version:
            return newest
        return snapshot


    # -- using ------------------------------------------------------------------------------------

    def place(self, fn: Any, *, group: Hashable | None = None,
              **ray_options: Any) -> PlacedHandle:
        """Wrap a Ray remote function, actor class, or plain function/class so that each
        ``.remote()`` is placed by this policy. ``ray_options`` are kept and merged;
        ``pending_timeout=seconds`` (not a Ray option) ends work not started by then.

        >>> ref = RoundRobin().place(work, num_cpus=1).remote(42)    # doctest: +SKIP
        """
        self.check_group(group)  # before the submit layer loads: a refusal needs no Ray
        return submit_layer().place(self, fn, group, ray_options)

    def reserve(self, n: int, demand: DemandLike = None, *,
                groups: list[Hashable] | None = None, timeout: float = 30.0,
                **ray_options: Any) -> Reserved:
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
        return submit_layer().reserve(self, n, demand, groups, timeout, ray_options)

    def plan(self, snapshot: ClusterSnapshot, n: int, demand: DemandLike = None, *,
             groups: Sequence[Hashable] | None = None, caller_node_id: str | None = None,
             targets: Mapping[int, str] | None = None) -> Plan:
        """Dry run: ``n`` placements of a fresh copy of this policy against ``snapshot``, no Ray.

        >>> from placement.policies import AntiAffinity
        >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
        ...                                    {"id": "b", "label": "node1"}])
        >>> AntiAffinity().plan(snap, 3).counts()
        {'node0': 1, 'node1': 1}
        """
        twin = self.clone()
        return make_plan(repr(twin), twin.propose, twin.commit, snapshot, n, demand, groups,
                         caller_node_id, targets)

    def clone(self) -> Policy:
        """A policy with the same configuration and an empty ledger."""
        return type(self)(**self._config())

    def __or__(self, other: Policy) -> Fallback:
        if not isinstance(other, Policy):
            return NotImplemented
        return Fallback(self, other)

    def __and__(self, other: Policy) -> Policy:
        if not isinstance(other, Policy):
            return NotImplemented
        return all_of(self, other)

    def __repr__(self) -> str:
        defaults = {"soft": self.default_soft, "backend": self.default_backend,
                    "pin_amount": DEFAULT_PIN_AMOUNT, **self.repr_defaults}
        shown = [f"{k}={v!r}" for k, v in self._config().items()
                 if k != "cache" and defaults.get(k, object()) != v and v is not None]
        return f"{type(self).__name__}({', '.join(shown)})"


_NONE: Any = object()  # "no hold": a hold itself may be None
_new_decision: Callable[[tuple[Any, ...]], Decision] = functools.partial(tuple.__new__, Decision)


def _ticket(decision: Decision) -> int:
    if decision.__class__ is Decision:
        return decision.ticket
    raise not_a_decision(decision)


def not_a_decision(thing: object) -> TypeError:
    return TypeError(f"expected a Decision (what propose() or decide() returned), got "
                     f"{type(thing).__name__}")


class Composite(Policy):
    """What ``a | b`` and ``a & b`` share: the members (flattened, each once), the first
    member's options, waiting as long as the most patient member, the needs of all, and
    following snapshots and other drivers' counts through every member."""

    keeps = True
    policies: tuple[Policy, ...]
    symbol = ""  # the operator that builds it, for repr() and errors

    def __init__(self, *policies: Policy) -> None:
        name, kind = type(self).__name__, type(self)
        flat: list[Policy] = []
        for policy in policies:
            if not isinstance(policy, Policy):
                raise TypeError(f"{name} takes policies, got {type(policy).__name__}: e.g. "
                                f"AntiAffinity() {self.symbol} LeastLoaded()")
            flat.extend(policy.policies if isinstance(policy, kind) else [policy])
        if len(flat) < 2:
            raise ValueError(f"{name} needs at least two policies: first {self.symbol} second")
        if len({id(p) for p in flat}) < len(flat):
            raise ValueError(f"a policy appears twice in one {self.symbol}: it would count one "
                             "placement twice in its ledger; give each place its own policy "
                             "object")
        first = flat[0]
        super().__init__(soft=self._soft_of(flat), backend=first.backend,
                         pin_amount=first.pin_amount,
                         cache=first.cache,
                         where=None if first.where is None else dict(first.where.selector))
        self.policies = tuple(flat)
        # Waits when every member refused: as long as the most patient member would.
        self.wait_for_nodes = max((p.wait_for_nodes for p in flat if p.wait_for_nodes),
                                  default=None)
        self.needs = functools.reduce(lambda a, b: a | b, (p.needs for p in flat))

    @staticmethod
    def _soft_of(members: list[Policy]) -> bool | str:
        """How a decision of this composite is pinned when no member's own decision is used:
        the first member's way (a fallback's members decide with their own)."""
        return members[0].soft

    def _repr(self) -> str:
        name = self._name
        if name is None:
            name = self._name = repr(self)
        return name

    def learn_others(self, name: str, counts: Mapping[str, int]) -> None:
        for member in self.policies:
            member.learn_others(name, counts)

    def members(self) -> tuple[Policy, ...]:
        return self.policies

    def follow(self, snapshot: ClusterSnapshot) -> None:
        if not isinstance(snapshot, ClusterSnapshot):
            raise TypeError(f"follow() takes a ClusterSnapshot, got {type(snapshot).__name__}")
        with self._lock:
            if self._newest is not None and snapshot.version <= self._newest.version:
                return
            self._newest = snapshot
        for member in self.policies:
            member.follow(snapshot)

    def _choose(self, cands: Candidates, request: Request) -> Outcome:
        raise AssertionError("a composite chooses through its members")  # pragma: no cover

    def _config(self) -> dict[str, Any]:
        return {}

    def _group_error(self) -> ValueError:
        return next(p for p in self.policies if p.needs.group)._group_error()

    def clone(self, memo: dict[int, Policy] | None = None) -> Composite:
        """Members cloned once each: one shared by two alternatives (``(a | b) & c`` is
        ``(a & c) | (b & c)``) stays shared in the twin."""
        memo = {} if memo is None else memo
        twins = []
        for member in self.policies:
            twin = memo.get(id(member))
            if twin is None:
                twin = memo[id(member)] = (member.clone(memo) if isinstance(member, Composite)
                                           else member.clone())
            twins.append(twin)
        return type(self)(*twins)


class Fallback(Composite):
    """Try each policy in turn; the first that chooses decides. ``a | b`` builds one (here,
    beside the base, as tenacity keeps ``stop_any`` beside ``stop_base``).

    >>> from placement.policies import AntiAffinity, RoundRobin
    >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"}])
    >>> policy = AntiAffinity() | RoundRobin()
    >>> [(d.node_name, d.fallback) for d in (policy.decide(snap), policy.decide(snap))]
    [('node0', False), ('node0', True)]
    """

    symbol = "|"

    def __init__(self, *policies: Policy) -> None:
        super().__init__(*policies)
        self._routes: dict[int, Policy] = {}  # ticket -> the member that decided (until ended)
        self._prefixes: dict[tuple[str, int], str] = {}  # the reasons of fallen-back decisions

    def _attempt(self, snapshot: ClusterSnapshot, request: Request) -> Decision | Refusal:
        refusals: list[Refusal] = []
        with self._lock:
            # Members see the newest snapshot any of them was given through this fallback: a
            # member that refused on it must not let a later member decide on an older one.
            snapshot = self._newest = self._newest_of(snapshot)
            for index, member in enumerate(self.policies):
                outcome = member._attempt(snapshot, request)
                if outcome.__class__ is Refusal:
                    refusals.append(outcome)
                    continue
                decision: Decision = outcome  # type: ignore[assignment]
                if index:  # fields 1, 2 and 6: reason, policy, fallback (_replace is slower)
                    decision = _new_decision((
                        decision[0], self._prefix(refusals[-1].rule, index) + decision[1],
                        self._repr(), *decision[3:6], True, *decision[7:]))
                self._routes[decision.ticket] = member
                return decision
        return Refusal(refusals[-1].rule, lambda: _joined([r.error() for r in refusals]))

    def _prefix(self, rule: str, index: int) -> str:
        found = self._prefixes.get((rule, index))
        if found is None:
            found = self._prefixes[(rule, index)] = (
                f"{rule}: fell back to {self.policies[index]!r}: ")
        return found

    def commit(self, decision: Decision) -> None:
        # No lock, as the base's: the route is read and dropped by atomic dict steps.
        member = self._routes.get(_ticket(decision))
        if member is None:
            return
        member.commit(decision)
        if not member.keeps:
            self._routes.pop(decision.ticket, None)

    def rollback(self, decision: Decision) -> None:
        with self._lock:
            member = self._routes.get(_ticket(decision))
            if member is None or decision.ticket not in member._open:
                return  # unknown, or committed: only release gives it back
            del self._routes[decision.ticket]
            member.rollback(decision)

    def release(self, decision: Decision) -> None:
        with self._lock:
            member = self._routes.get(_ticket(decision))
            if member is None or decision.ticket not in member._kept:
                return  # not committed (yet): nothing to release
            del self._routes[decision.ticket]
        member.release(decision)
        for listener in self._listeners:
            listener(decision)

    def patient(self) -> Policy:
        return next((p for p in self.policies if p.wait_for_nodes), self.policies[0])

    def can_grow(self, request: Request) -> bool:
        return self.patient().can_grow(request)

    def __repr__(self) -> str:
        return " | ".join(repr(p) for p in self.policies)


class AllOf(Composite):
    """Every member must allow the placement; it is taken in every member's ledger at once (one
    transaction: a rollback unreserves it in all). ``a & b`` builds one, e.g. a zone spread with
    a cap per node, Kubernetes' several topologySpreadConstraints.

    The first member chooses a node and each other member judges it; if one refuses, the next
    member's own choice is judged by all the others, and so on: at most one proposal per member,
    never a pass over the nodes. So it can refuse while some node every member allows exists
    elsewhere; the refusal names which member refused which node, and why. Members after the
    first must be able to judge a node another chose (``AntiAffinity``, ``LeastLoaded``,
    ``RoundRobin``); the first member's ``backend`` tells Ray how to pin the placement, and the
    strictest member's ``soft`` (hard if any member is hard). Build it with ``&``, which
    distributes over ``|`` (``all_of``).

    >>> from placement.policies import AntiAffinity
    >>> snap = ClusterSnapshot.from_dicts(
    ...     [{"id": "a", "label": "node0", "labels": {"zone": "z1"}},
    ...      {"id": "b", "label": "node1", "labels": {"zone": "z1"}},
    ...      {"id": "c", "label": "node2", "labels": {"zone": "z2"}}])
    >>> both = AntiAffinity(topology="zone", max_skew=1) & AntiAffinity(max_per_node=2)
    >>> [both.decide(snap).node_name for _ in range(5)]
    ['node0', 'node2', 'node1', 'node2', 'node0']
    >>> try:  # node2 holds 2 (the cap) and z1 is one ahead of z2 (the skew)
    ...     both.decide(snap)
    ... except PlacementError as refusal:
    ...     print(refusal.rule)
    max-skew-exceeded
    """

    symbol = "&"

    @staticmethod
    def _soft_of(members: list[Policy]) -> bool | str:
        # The strictest member's: a hard member's rule holds only where it placed the work.
        kinds = {member.soft for member in members}
        return False if False in kinds else "gone" if "gone" in kinds else members[0].soft

    def __init__(self, *policies: Policy) -> None:
        super().__init__(*policies)
        flat = self.policies
        for policy in flat:
            if isinstance(policy, Fallback):
                raise ValueError(
                    f"AllOf takes no fallback ({policy!r}) as a member: write it with &, which "
                    "distributes over |: (a | b) & c is (a & c) | (b & c)")
        if sum(p._claims is not None for p in flat) > 1:
            raise ValueError(
                f"{' & '.join(map(repr, flat))} has two members with shared=: a placement "
                "carries one claim across drivers; share one of them only")
        for policy in flat[1:]:
            if not policy.judges:
                raise ValueError(
                    f"{policy!r} can only come first in a & b: it chooses a node but cannot "
                    "judge one another member chose; put it first, or use AntiAffinity, "
                    "LeastLoaded or RoundRobin after the &")
        # A placement counts in a tracking member until its work ends: the whole placement is
        # released then (in every member that keeps placements). Kept only if one keeps it.
        self._tracked = any(p._tracked for p in flat)
        self.keeps = any(p.keeps for p in flat)
        # Taken in the order of their ids, as every AllOf takes them: two that share members
        # in another order (x & y, y & x) never wait on each other.
        self._locks = sorted({id(p._lock): p._lock for p in flat}.values(), key=id)
        # What Ray is told: every member's where= (a soft placement's fallback stays inside all
        # of them). One Ray selector holds one condition per label: members that filter one
        # label differently make the placement hard, so that no fallback can leave a filter.
        merged: dict[str, str] = {}
        for member in flat:
            for key, value in (member.where.selector if member.where is not None else {}).items():
                first = merged.setdefault(key, value)
                if first != value and LabelFilter({key: first}) != LabelFilter({key: value}):
                    self.soft = False  # not one condition spelled two ways
        self.where = LabelFilter(merged) if merged else None
        # A hard placement is pinned as its first hard member pins (its candidates checked the
        # pin against the nodes); one made hard by the filters above names the node only.
        self._pinner = next((p for p in flat if p.soft is False), flat[0])
        self.backend, self.pin_amount = self._pinner.backend, self._pinner.pin_amount

    def _attempt(self, snapshot: ClusterSnapshot, request: Request) -> Decision | Refusal:
        with self._lock:
            locked: list[threading.RLock] = []
            try:  # every member's lock once for the whole attempt, in one order for all
                for lock in self._locks:
                    lock.acquire()
                    locked.append(lock)
                return self._attempt_locked(self._newest_of(snapshot), request)
            finally:
                for lock in reversed(locked):
                    lock.release()

    def commit(self, decision: Decision) -> None:
        if decision.__class__ is not Decision:
            raise not_a_decision(decision)
        hold = self._open.pop(decision.ticket, _NONE)
        if hold is _NONE:
            return
        for member, member_hold in hold:
            member._committed(member_hold)
        if self.keeps:
            self._kept[decision.ticket] = hold

    def _attempt_locked(self, snapshot: ClusterSnapshot,
                        request: Request) -> Decision | Refusal:
        members = self.policies
        for member in members:  # all decide on the newest snapshot any of them has seen
            snapshot = member._newest_of(snapshot)
        self._newest = snapshot
        cands: list[Candidates] = []
        for member in members:
            try:
                cands.append(member._candidates_for(snapshot))
            except PlacementError as refusal:
                return Refusal.of(refusal)
        refusals: list[tuple[Policy, Refusal]] = []
        tried: set[str] = set()
        for index, member in enumerate(members):
            if index and not members[0].judges:
                break  # the first member can judge no node but its own choice
            proposal = member._choose(cands[index], request)
            if isinstance(proposal, Refusal):
                refusals.append((member, proposal))
                continue
            node = proposal[0]
            if node.node_id in tried:
                continue
            tried.add(node.node_id)
            choices = self._judged(cands, request, index, proposal, refusals)
            if choices is not None:
                return self._take(request, choices, index)
        last = refusals[-1][1]
        return Refusal(last.rule, lambda: _named([(repr(m), r.error()) for m, r in refusals]))

    def _judged(self, cands: list[Candidates], request: Request, proposer: int,
                proposal: Choice, refusals: list[tuple[Policy, Refusal]]) -> list[Choice] | None:
        """Every member's Choice at the proposed node, or None (the refusal noted) when one
        member does not allow it."""
        node = proposal[0]
        choices: list[Choice] = []
        for index, member in enumerate(self.policies):
            if index == proposer:
                choices.append(proposal)
                continue
            outcome = member._choose_at(cands[index], request, node)
            if isinstance(outcome, Refusal):
                refusals.append((member, outcome))
                return None
            choices.append(outcome)
        return choices

    def _take(self, request: Request, choices: list[Choice], proposer: int) -> Decision:
        """Reserve the placement in every member's ledger; the decision names the node."""
        holds = []
        claim = None
        fallback = False
        for member, choice in zip(self.policies, choices, strict=True):
            holds.append((member, member._reserve(request, choice)))
            fallback = fallback or choice[2]
            if claim is None and member._claims is not None:
                claim = member._claims(choice)
        node, reason, _, _, local_bytes = choices[proposer]
        if self._newest is not None and self._newest.left_out:
            reason += left_out_note(self._newest)
        pinner = self._pinner
        backend = pinner._backend_now if pinner.soft is False or self.soft else NODE_ID
        decision = _new_decision((
            node, reason, self._repr(), backend, self.soft,
            self.pin_amount, fallback, request.group, next_ticket(), self.where, local_bytes,
            self._tracked, claim))
        self._open[decision.ticket] = tuple(holds)
        return decision

    def _unreserve(self, hold: Hold) -> None:
        for member, member_hold in reversed(hold):
            with member._lock:
                member._unreserve(member_hold)

    def _release(self, hold: Hold) -> None:
        for member, member_hold in reversed(hold):
            if member.keeps:  # a history (RoundRobin's turn) is not given back
                with member._lock:
                    member._release(member_hold)

    def _choose_at(self, cands: Candidates, request: Request, node: NodeInfo) -> Outcome:
        raise AssertionError("AllOf judges through its members")  # pragma: no cover

    def patient(self) -> Policy:
        return self.policies[0].patient()

    def can_grow(self, request: Request) -> bool:
        return all(p.can_grow(request) for p in self.policies)

    def __repr__(self) -> str:
        return " & ".join(f"({p!r})" if isinstance(p, Fallback) else repr(p)
                          for p in self.policies)


def all_of(*policies: Policy) -> Policy:
    """``a & b``: an AllOf; over a fallback it distributes, ``(a | b) & c`` being
    ``(a & c) | (b & c)`` with the one ``c`` (its ledger counts the placements of both).

    >>> from placement.policies import AntiAffinity, Locality, RoundRobin
    >>> (Locality() | RoundRobin()) & AntiAffinity(max_per_node=2)
    Locality() & AntiAffinity(max_per_node=2) | RoundRobin() & AntiAffinity(max_per_node=2)
    """
    alternatives = [p.policies if isinstance(p, Fallback) else (p,) for p in policies]
    combined = [AllOf(*chosen) for chosen in itertools.product(*alternatives)]
    return combined[0] if len(combined) == 1 else Fallback(*combined)


def _named(refusals: list[tuple[str, PlacementError]]) -> PlacementError:
    """Each member's refusal in one, named by member: the last one's rule and fix."""
    last = refusals[-1][1]
    return PlacementError(last.rule, "; ".join(f"{name} refused: {error.detail}"
                                               for name, error in refusals), last.fix,
                          last.nodes)


def _joined(refusals: list[PlacementError]) -> PlacementError:
    """Every member's refusal in one: the last member's rule and fix."""
    last = refusals[-1]
    return PlacementError(last.rule, "; then ".join(r.detail for r in refusals), last.fix,
                          last.nodes)

