"""The vocabulary of deciding: backends, the Decision value a policy returns, node names.
Pure: no Ray here.
"""
from __future__ import annotations

import itertools
from collections.abc import Hashable
from typing import Any, NamedTuple

from ..snapshot import NodeInfo
from .request import finite

AUTO = "auto"  # RESOURCE when every live node has its node<i> resource, else NODE_ID
RESOURCE = "resource"  # {"node3": pin_amount}: hard, needs a labelled node
NODE_ID = "node_id"  # NodeAffinitySchedulingStrategy(node_id): any live node
LABEL = "label"  # label_selector={"placement.node": "node3"}: nodes with the Ray label
BACKENDS = (AUTO, RESOURCE, NODE_ID, LABEL)

RAY_RESOURCE_RESOLUTION = 1e-4  # Ray truncates custom resource amounts to this
DEFAULT_PIN_AMOUNT = 0.001

# Every decision gets a ticket, unique in the process: commit, rollback and release name it.
_tickets = itertools.count(1)
next_ticket = _tickets.__next__


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown backend {backend!r}: use 'auto' (the default: 'resource' on a cluster whose "
            "nodes all carry node<i>, else 'node_id'), 'resource' (custom resource node<i>), "
            "'node_id' (NodeAffinitySchedulingStrategy) or 'label' (label_selector)"
        )
    return backend


SOFT_WHEN = ("busy", "gone")


MAX_WAIT_SECONDS = 86_400.0


def check_seconds(name: str, seconds: Any, example: str, *,
                  optional: bool = True) -> float | None:
    """A duration option ``name``: seconds more than 0 and at most a day, or None when
    ``optional`` (NaN and infinity fail the bounds). ``example`` ends the message.

    >>> check_seconds("wait", float("nan"), "wait=30", optional=False)
    Traceback (most recent call last):
    ...
    ValueError: wait must be seconds more than 0 and at most 86400 (a day), got nan: e.g. wait=30
    """
    if seconds is None and optional:
        return None
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not 0 < seconds <= MAX_WAIT_SECONDS):
        none = "None or " if optional else ""
        raise ValueError(f"{name} must be {none}seconds more than 0 and at most "
                         f"{MAX_WAIT_SECONDS:.0f} (a day), got {seconds!r}: e.g. {example}")
    return float(seconds)


def check_wait_for_nodes(seconds: float | None) -> float | None:
    """``wait_for_nodes``: None, or seconds (more than 0, at most a day) to wait for new nodes."""
    return check_seconds("wait_for_nodes", seconds, "wait_for_nodes=300")


def check_soft(soft: bool | str) -> bool | str:
    """``soft``: False (hard), True or "busy" (Ray may run the work elsewhere when the chosen
    node is busy or gone), "gone" (only when it is gone; while it is busy the work waits for it).
    Measured on Ray 2.60: tests/test_soft_semantics.py."""
    if isinstance(soft, bool) or (isinstance(soft, str) and soft in SOFT_WHEN):
        return soft
    raise TypeError(f"soft must be False, True, 'busy' or 'gone', got {soft!r}: True (or 'busy') "
                    "lets Ray run the work elsewhere when the node is busy or gone, 'gone' only "
                    "when it is gone")


def check_pin_amount(amount: float) -> float:
    if finite(amount) is None:
        raise ValueError(f"pin_amount must be a finite number, got {amount!r:.40}: e.g. "
                         f"pin_amount={DEFAULT_PIN_AMOUNT}")
    if amount < RAY_RESOURCE_RESOLUTION:
        raise ValueError(
            f"pin_amount {amount!r} is below Ray's resource resolution of "
            f"{RAY_RESOURCE_RESOLUTION} "
            "(Ray would truncate it to 0 and pin nothing): use pin_amount >= 0.0001"
        )
    return float(amount)


class Decision(NamedTuple):
    """Where one placement goes, why, and how to tell Ray (backend, soft, pin amount).

    ``ticket`` names the placement in its policy's ledger: ``policy.commit``, ``rollback`` and
    ``release`` take the decision. ``tracked``: the policy counts this placement only while its
    work runs (the submit layer releases it when the work ends). ``claim``: (shared ledger name,
    cap) to claim the node in across drivers, or None. A NamedTuple, not a dataclass: one is
    made per placement, and a frozen dataclass is slower to build (benchmarks/decide.py).
    Hashable, like its node.
    """

    node: NodeInfo
    reason: str
    policy: str
    backend: str = RESOURCE
    soft: bool | str = False  # False, or when Ray may run it elsewhere: True/"busy", "gone"
    pin_amount: float = DEFAULT_PIN_AMOUNT
    fallback: bool = False  # a soft rule or a fallback policy took a node the first rule would not
    group: Hashable | None = None
    ticket: int = 0
    where: Any = None  # the policy's LabelFilter, if any: a soft placement's fallback keeps it
    local_bytes: int = 0  # Locality: bytes of the arguments already on the node (not moved)
    tracked: bool = False
    claim: tuple[str, int | None] | None = None

    @property
    def node_name(self) -> str:
        return node_name(self.node)


class Submitted(NamedTuple):
    """What one placed submission gave: Ray's result (an ObjectRef or an actor handle) and the
    decision that placed it."""

    result: Any
    decision: Decision


def node_name(node: NodeInfo) -> str:
    """How people see a node: its label, else its address, else a short id."""
    return node.label or node.address or node.node_id[:8]


def node_order(node: NodeInfo) -> tuple[object, ...]:
    """Placement order: labelled nodes first in natural label order, then the rest by address
    and id (computed once per node: ``NodeInfo.order_key``)."""
    return node.order_key
