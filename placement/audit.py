"""Audit: where each task and actor actually ran, against where its policy put it.

Audited tasks report their own node (read inside the task) to a small recorder actor, without
changing what they return; actors are looked up in Ray's actor table. The report flags every
violation (hard placement elsewhere) and every fallback (soft placement elsewhere, or a policy's
own fallback choice), as a table or JSON.

>>> audit = Audit()                                               # doctest: +SKIP
>>> handle = audit.place(RoundRobin(soft=True), work)             # doctest: +SKIP
>>> refs = [handle.remote(i) for i in range(100)]                 # doctest: +SKIP
>>> print(audit.report().table())                                 # doctest: +SKIP
"""
from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import ray
from ray.actor import ActorClass, ActorHandle
from tabulate import tabulate

from . import _ray
from .chart import DEFAULT_WIDTH, bars, tally
from .cluster import read_snapshot
from .handle import PlacedRemote, as_remote
from .policies import Decision, Local, Policy, node_name
from .snapshot import ClusterSnapshot
from .transaction import actor_node_id

OK = "ok"
VIOLATION = "VIOLATION"
SOFT_FALLBACK = "soft fallback"
POLICY_FALLBACK = "policy fallback"
NOT_REPORTED = "not reported"
DEFAULT_REPORT_TIMEOUT = 30.0


def judge(decision: Decision, actual_node_id: str | None) -> str:
    """The verdict for one placement (pure).

    >>> from placement import Affinity, ClusterSnapshot
    >>> snap = ClusterSnapshot.from_dicts([{"id": "a", "label": "node0"},
    ...                                    {"id": "b", "label": "node1"}])
    >>> hard, soft = Affinity("node0").decide(snap), Affinity("node0", soft=True).decide(snap)
    >>> judge(hard, "a"), judge(hard, "b"), judge(soft, "b"), judge(hard, None)
    ('ok', 'VIOLATION', 'soft fallback', 'not reported')
    """
    if actual_node_id is None:
        return NOT_REPORTED
    if actual_node_id != decision.node.node_id:
        return SOFT_FALLBACK if decision.soft else VIOLATION
    return POLICY_FALLBACK if decision.fallback else OK


@dataclass(frozen=True)
class AuditRow:
    kind: str  # "task" or "actor"
    ident: str  # task id or actor id (hex)
    policy: str
    intended: str
    actual: str | None
    soft: bool | str  # as the policy was given it: True, "busy" or "gone" are soft
    verdict: str


@dataclass(frozen=True)
class AuditReport:
    rows: tuple[AuditRow, ...]

    @property
    def violations(self) -> list[AuditRow]:
        return [r for r in self.rows if r.verdict == VIOLATION]

    @property
    def fallbacks(self) -> list[AuditRow]:
        return [r for r in self.rows if r.verdict in (SOFT_FALLBACK, POLICY_FALLBACK)]

    def counts(self) -> dict[str, int]:
        counted: dict[str, int] = {}
        for r in self.rows:
            counted[r.verdict] = counted.get(r.verdict, 0) + 1
        return counted

    def table(self, only_flagged: bool = False) -> str:
        rows = [r for r in self.rows if r.verdict != OK] if only_flagged else list(self.rows)
        body = tabulate([[r.kind, r.ident[:12], r.policy, r.intended, r.actual or "-", r.verdict]
                         for r in rows],
                        headers=["kind", "id", "policy", "placed on", "ran on", "verdict"])
        return f"{body}\n{self._summary()}"

    def chart(self, width: int = DEFAULT_WIDTH) -> str:
        """Per node, the placements planned there (``#``) beside those that ran there (``=``),
        in plain ASCII; a node whose counts differ is marked, and a node's first line names the
        verdicts other than ok of the placements planned there (VIOLATION sorts first, as in the
        summary line). Placements never reported count as planned only.

        >>> report = AuditReport((
        ...     AuditRow("task", "t1", "RoundRobin()", "node0", "node0", False, OK),
        ...     AuditRow("task", "t2", "RoundRobin()", "node1", "node0", False, VIOLATION),
        ...     AuditRow("task", "t3", "RoundRobin()", "node1", None, False, NOT_REPORTED),
        ...     AuditRow("task", "t4", "RoundRobin()", "node2", "node2", False, OK)))
        >>> print(report.chart(width=10))
        node0  planned  #####       1
               ran      ==========  2  <- planned != ran
        node1  planned  ##########  2  VIOLATION x1, not reported x1
               ran                  0  <- planned != ran
        node2  planned  #####       1
               ran      =====       1
        4 placements: VIOLATION: 1, not reported: 1, ok: 2
        """
        flagged: dict[str, dict[str, int]] = {}
        for r in self.rows:
            if r.verdict != OK:
                verdicts = flagged.setdefault(r.intended, {})
                verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1
        notes = {node: ", ".join(f"{verdict} x{n}" for verdict, n in sorted(verdicts.items()))
                 for node, verdicts in flagged.items()}
        drawn = bars(tally((r.intended, r.actual) for r in self.rows), width=width, notes=notes)
        return f"{drawn}\n{self._summary()}"

    def _summary(self) -> str:
        summary = ", ".join(f"{verdict}: {n}" for verdict, n in sorted(self.counts().items()))
        return f"{len(self.rows)} placements: {summary}"

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps({"counts": self.counts(), "rows": [asdict(r) for r in self.rows]},
                          indent=indent)


def _recorder_class() -> Any:
    @ray.remote(num_cpus=0)
    class PlacementRecorder:
        def __init__(self) -> None:
            self.seen: dict[str, str] = {}

        def record(self, task_id: str, node_id: str) -> None:
            self.seen[task_id] = node_id  # a retried task reports again: its last node wins

        def nodes_of(self, task_ids: list[str]) -> dict[str, str | None]:
            return {t: self.seen.get(t) for t in task_ids}

    return PlacementRecorder


def _reporting(fn: Callable[..., Any], recorder: Any) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        context = ray.get_runtime_context()
        recorder.record.remote(context.get_task_id(), context.get_node_id())  # fire and forget
        return fn(*args, **kwargs)

    return run


class Audit:
    """Records placements made through it; :meth:`report` compares them with reality."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recorder: Any = None
        # (kind, task id or actor handle, decision)
        self._entries: list[tuple[str, Any, Decision]] = []

    def place(self, policy: Policy, fn: Any, **options: Any) -> PlacedRemote:
        """Like ``policy.place(fn, **options)``, recording each placement for the report: the
        same handle, with the audit's record among the steps after a submission."""
        remote = as_remote(fn)
        if not isinstance(remote, ActorClass):
            remote = self._reporting_remote(remote)
        return PlacedRemote(policy, remote, options, after=(self._record,))

    def _reporting_remote(self, remote: Any) -> Any:
        with self._lock:
            if self._recorder is None:
                # On the driver's node: a recorder on another node would die with that node.
                self._recorder = PlacedRemote(Local(), _recorder_class(), {}).remote()
        options = _ray.remote_defaults(remote)
        reporting = _reporting(_ray.remote_body(remote), self._recorder)
        # Keep the function's own options; ray.remote() refuses to be called with none at all.
        return ray.remote(**options)(reporting) if options else ray.remote(reporting)

    def _record(self, result: Any, decision: Decision) -> None:
        if isinstance(result, ActorHandle):
            entry = ("actor", result, decision)
        else:
            ref = result[0] if isinstance(result, list) else result
            entry = ("task", ref.task_id().hex(), decision)
        with self._lock:
            self._entries.append(entry)

    def report(self, timeout: float = DEFAULT_REPORT_TIMEOUT,
               snapshot: ClusterSnapshot | None = None) -> AuditReport:
        """Compare every recorded placement with where it ran. Waits at most ``timeout`` seconds
        for tasks to report; those still silent are 'not reported' (queued, or failed to start).
        Actors' nodes are read from Ray's actor table, never taken from the decision."""
        snapshot = snapshot or read_snapshot()
        with self._lock:
            entries = list(self._entries)
        task_ids = [ident for kind, ident, _ in entries if kind == "task"]
        seen: dict[str, str | None] = {}
        deadline = time.monotonic() + timeout
        while task_ids and self._recorder is not None:
            seen = ray.get(self._recorder.nodes_of.remote(task_ids),
                           timeout=max(1.0, deadline - time.monotonic()))
            if all(seen.values()) or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        rows = []
        for kind, ident, decision in entries:
            if kind == "task":
                actual, shown_id = seen.get(ident), ident
            else:
                shown_id = _ray.actor_id_hex(ident)
                try:
                    actual = actor_node_id(ident, timeout=max(0.0, deadline - time.monotonic()))
                except Exception:  # noqa: BLE001 - dead or never placed: reported as such
                    actual = None
            node = snapshot.by_id.get(actual) if actual else None
            rows.append(AuditRow(kind, shown_id, decision.policy, decision.node_name,
                                 node_name(node) if node else actual, decision.soft,
                                 judge(decision, actual)))
        return AuditReport(tuple(rows))

    def close(self) -> None:
        """End the recorder actor."""
        with self._lock:
            recorder, self._recorder = self._recorder, None
        if recorder is not None:
            ray.kill(recorder)

    def __enter__(self) -> Audit:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
