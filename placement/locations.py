"""Where a call's ObjectRef arguments are: bytes per node id, for Locality.

Read from Ray's object directory at each ``.remote()`` of a policy that needs it (only then):
first from this process's own core worker (``get_local_object_locations``, no RPC: the objects
it owns, such as the results of tasks it submitted), then, for arguments owned elsewhere, from
their owners (``get_object_locations``, bounded by LOOKUP_TIMEOUT_MS). Objects small enough to
be inlined (under about 100 KB) and results not computed yet have no location and count for
nothing. Only top-level arguments are looked at, as Ray itself does for its locality.

``ray.wait`` and ``ray.get`` can answer that a task's result is ready a moment before its owner
has recorded the node holding it: a result too large to be inlined that shows its size but no
node yet is read again until its node shows, for at most SETTLE_S.
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import ray
from ray.exceptions import GetTimeoutError
from ray.experimental import get_local_object_locations, get_object_locations

# A lookup at an argument's owner (another worker): past this the call goes on without it.
LOOKUP_TIMEOUT_MS = 1000
# A ready result whose node is still in flight to its owner: read again for at most this long
# (far longer than that window; an object whose copies are all lost waits it out).
SETTLE_S = 0.05
_SETTLE_STEP_S = 0.001
# Ray's max_direct_call_object_size: a larger result lives in a node's object store, a smaller
# one inline in its owner, with no node. A limit set otherwise for the cluster only makes the
# wait above miss some results (as without it).
_LIMIT = os.environ.get("RAY_max_direct_call_object_size", "")
INLINE_LIMIT = int(_LIMIT) if _LIMIT.isdigit() else 100 * 1024


def argument_data(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, int]:
    """Bytes of the ObjectRef arguments on each node that holds a copy."""
    refs = [a for a in (*args, *kwargs.values()) if isinstance(a, ray.ObjectRef)]
    if not refs:
        return {}
    found: dict[Any, Mapping[str, Any]] = dict(get_local_object_locations(refs))
    unsettled = [ref for ref, info in found.items() if _node_in_flight(info)]
    if unsettled:
        _settle(found, unsettled)
    borrowed = [ref for ref in refs if ref not in found]
    if borrowed:
        try:
            found.update(get_object_locations(borrowed, timeout_ms=LOOKUP_TIMEOUT_MS))
        except GetTimeoutError:
            pass  # placed without them: a locality hint, not a promise
    data: dict[str, int] = {}
    for info in found.values():
        size = int(info.get("object_size") or 0)
        for node_id in info.get("node_ids") or ():
            data[node_id] = data.get(node_id, 0) + size
    return data


def _node_in_flight(info: Mapping[str, Any]) -> bool:
    """A result in a node's object store (its size says so) whose node its owner lacks yet;
    not one spilled (it may be in external storage, on no node)."""
    return (not info.get("node_ids") and not info.get("did_spill")
            and int(info.get("object_size") or 0) > INLINE_LIMIT)


def _settle(found: dict[Any, Mapping[str, Any]], unsettled: list[Any]) -> None:
    """Read ``unsettled`` again until each shows a node, for at most SETTLE_S."""
    deadline = time.monotonic() + SETTLE_S
    while unsettled and time.monotonic() < deadline:
        time.sleep(_SETTLE_STEP_S)
        again = get_local_object_locations(unsettled)
        found.update(again)
        unsettled = [ref for ref in unsettled if ref in again and _node_in_flight(again[ref])]
