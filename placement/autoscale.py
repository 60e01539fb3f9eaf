"""Waiting for new nodes: a policy with ``wait_for_nodes=`` that refuses for lack of nodes asks
Ray's autoscaler for them and looks again until they come or the time is up.

Work pinned to a node is invisible to Ray's autoscaler, so the ask is explicit
(``ray.autoscaler.sdk.request_resources``, with per-bundle label selectors: Ray 2.60 passes
them on to autoscaler v2 and drops them for v1). Ray keeps one such request per cluster, and a
new one replaces the last: while placements wait, the union of their asks is sent, and when the
last one ends the request is cleared (``bundles=[]``), which also clears any request the
application made itself. On a cluster without an autoscaler nothing grows by itself, but a node
started by hand (``placement cluster add``, ``ray start``) ends the wait just the same.

>>> spread = placement.AntiAffinity(wait_for_nodes=300)             # doctest: +SKIP
>>> replicas = [spread.place(Replica).remote() for _ in range(8)]   # doctest: +SKIP
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ray.autoscaler.sdk import request_resources

from .errors import PlacementError
from .policies import Decision, Policy, Request
from .policies.growth import GROWABLE, CapacityAsk, capacity_ask
from .snapshot import ClusterSnapshot

# How often a waiting placement reads the cluster again: a node takes seconds to join, and a
# read is cheap beside that (ray.nodes() and the free resources; see docs/benchmarks.rst).
POLL_SECONDS = 1.0

_lock = threading.Lock()
_asks: dict[int, CapacityAsk] = {}  # per waiting placement


def wait_for_nodes(policy: Policy, request: Request, snapshot: ClusterSnapshot,
                   refusal: PlacementError, refresh: Callable[[], ClusterSnapshot],
                   sleep: Callable[[float], None] = time.sleep) -> Decision:
    """Propose ``request`` again as new snapshots come, for at most ``policy.wait_for_nodes``
    seconds after ``refusal``; raise that refusal, saying what was asked for and how long it
    waited, when no node came. Raises at once when the refusal is not about missing nodes."""
    seconds = policy.wait_for_nodes
    ask = capacity_ask(policy, snapshot, request, refusal)
    if not seconds or ask is None:
        raise refusal
    deadline = time.monotonic() + seconds
    token = object()
    asked = "asked nothing"
    try:
        asked = _publish(id(token), ask)
        while (remaining := deadline - time.monotonic()) > 0:
            sleep(min(POLL_SECONDS, remaining))
            try:
                return policy.propose(refresh(), request)
            except PlacementError as again:
                if again.rule not in GROWABLE:
                    raise
                refusal = again
    finally:
        _publish(id(token), None)
    raise PlacementError(
        refusal.rule,
        f"{refusal.detail}; {asked} and waited {seconds:g} s: no node that fits came",
        f"{refusal.fix}; or check that the cluster can grow (`ray status` lists pending "
        "demands; a node started by hand ends the wait too)",
        refusal.nodes,
    )


def _publish(key: int, ask: CapacityAsk | None) -> str:
    """Add (or with None remove) one waiting placement's ask and send the union to Ray; says
    what was asked, for the error a timeout raises."""
    with _lock:
        if ask is None:
            _asks.pop(key, None)
        else:
            _asks[key] = ask
        bundles = [dict(b) for a in _asks.values() for b in a.bundles]
        selectors = [dict(s) for a in _asks.values() for s in a.selectors]
        try:
            request_resources(bundles=bundles,
                              bundle_label_selectors=selectors if any(selectors) else None)
        except Exception as error:  # an old or absent autoscaler API: still wait for nodes
            return f"could not ask Ray's autoscaler ({type(error).__name__}: {error})"
    return "asked Ray's autoscaler for " + (ask.describe() if ask is not None else "nothing")
