"""Exceptions of the toolkit.

Every exception keeps its data in ``args`` so it pickles across Ray workers unchanged, and its
message names the fix.
"""
from __future__ import annotations

from collections.abc import Sequence

# Rule names a PlacementError can carry: which feasibility rule refused the request.
NO_CLUSTER_NODES = "no-live-nodes"
NO_LABELLED_NODES = "no-labelled-nodes"
NO_MATCHING_NODES = "no-node-matches"
UNKNOWN_LABEL = "unknown-label"
UNKNOWN_NODE = "unknown-node"
DEAD_NODE = "dead-node"
RESOURCES_EXCEED_NODES = "resources-exceed-every-node"
PIN_EXCEEDS_LABEL = "pin-exceeds-label-resource"
SPREAD_EXHAUSTED = "anti-affinity-exhausted"
SKEW_EXCEEDED = "max-skew-exceeded"
GROUPS_EXHAUSTED = "packing-exhausted"
BAD_OPTIONS = "contradicting-options"
NOT_IN_RAY = "not-inside-ray"
ACTOR_NOT_RUNNING = "actor-not-running"
NO_DATA_LOCATIONS = "no-argument-locations"
# A reservation (policy.reserve): its placement group was not ready in time; all its bundles are
# handed out.
RESERVATION_TIMEOUT = "reservation-timeout"
RESERVATION_USED_UP = "reservation-used-up"
# A ledger shared across drivers (AntiAffinity(shared=...)): other drivers kept taking the nodes
# chosen; its holder (a named Ray actor) did not answer in time.
SHARED_CONTENDED = "shared-ledger-contended"
SHARED_UNREACHABLE = "shared-ledger-unreachable"
# Work that had not started when its pending_timeout= ran out (placement/deadlines.py).
PENDING_TIMEOUT = "pending-timeout"


class PlacementError(Exception):
    """A placement that cannot happen, refused before anything was submitted.

    >>> err = PlacementError(
    ...     UNKNOWN_LABEL, "no live node is labelled node9", "use one of node0, node1")
    >>> err.rule, err.fix
    ('unknown-label', 'use one of node0, node1')
    >>> import pickle; pickle.loads(pickle.dumps(err)).rule
    'unknown-label'
    """

    # What __init__ stores, typed so the properties below are too (an annotation only: no value).
    args: tuple[str, str, str, tuple[str, ...]]

    def __init__(self, rule: str, detail: str, fix: str, nodes: Sequence[str] = ()) -> None:
        super().__init__(rule, detail, fix, tuple(nodes))

    @property
    def rule(self) -> str:
        return self.args[0]

    @property
    def detail(self) -> str:
        return self.args[1]

    @property
    def fix(self) -> str:
        return self.args[2]

    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes (labels or ids) the rule was checked against."""
        return self.args[3]

    def __str__(self) -> str:
        return f"{self.detail} (rule: {self.rule}). Fix: {self.fix}"


class ClusterNotFoundError(RuntimeError):
    """No Ray cluster to read or to connect to; the message says how to get one."""


class LocalClusterError(RuntimeError):
    """A local cluster could not be started, stopped or read; the message says why and what to
    do."""
