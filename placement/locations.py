"""Where a call's ObjectRef arguments are: bytes per node id, for Locality.

Read from Ray's object directory at each ``.remote()`` of a policy that needs it (only then):
first from this process's own core worker (``get_local_object_locations``, no RPC: the objects
it owns, such as the results of tasks it submitted), then, for arguments owned elsewhere, from
their owners (``get_object_locations``, bounded by LOOKUP_TIMEOUT_MS). Objects small enough to
be inlined (under about 100 KB) and results not computed yet have no location and count for
nothing. Only top-level arguments are looked at, as Ray itself does for its locality.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ray
from ray.exceptions import GetTimeoutError
from ray.experimental import get_local_object_locations, get_object_locations

# A lookup at an argument's owner (another worker): past this the call goes on without it.
LOOKUP_TIMEOUT_MS = 1000


def argument_data(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, int]:
    """Bytes of the ObjectRef arguments on each node that holds a copy."""
    refs = [a for a in (*args, *kwargs.values()) if isinstance(a, ray.ObjectRef)]
    if not refs:
        return {}
    found: dict[Any, Mapping[str, Any]] = dict(get_local_object_locations(refs))
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
