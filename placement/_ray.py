"""Every use of Ray's private API, in one module: a Ray upgrade touches this file only.

Each function says why no public API does the job in ray 2.60.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ray
from ray._common import ray_option_utils
from ray._private.state import actors
from ray._private.state import available_resources_per_node as _per_node
from ray._raylet import Config  # type: ignore[attr-defined]  # missing from Ray's .pyi stub
from ray.actor import ActorHandle


def actor_id_hex(actor: ActorHandle[Any]) -> str:
    """The actor's id. Public ``ray.get_runtime_context().get_actor_id()`` only works inside it."""
    return str(actor._actor_id.hex())


def actor_record(actor_id: str) -> tuple[str, str | None]:
    """(state, node id) of an actor from the GCS actor table. ``ray.util.state.get_actor`` needs
    the dashboard's API server, which the local clusters do not start."""
    info: Mapping[str, Any] = actors(actor_id=actor_id) or {}
    node_id = (info.get("Address") or {}).get("NodeID")
    return str(info.get("State", "unknown")), node_id or None


def dead_actor_ids() -> set[str]:
    """Ids of this job's dead actors, in one read of the GCS actor table (``ray.util.state``
    needs the dashboard's API server, which the local clusters do not start)."""
    job = ray.get_runtime_context().get_job_id()
    table: Mapping[str, Any] = actors(job_id=ray.JobID(bytes.fromhex(job)),
                                      actor_state_name="DEAD") or {}
    return set(table)


def available_resources_per_node() -> dict[str, dict[str, float]]:
    """Free resources per node id. ray 2.60 has no public per-node call (only cluster totals)."""
    return {node_id: dict(free) for node_id, free in _per_node().items()}


def reload_auth_config() -> None:
    """Make an already imported Ray re-read RAY_AUTH_MODE (as Ray's own ``_enable_token_auth``
    does); there is no public way to change it after import."""
    Config.initialize("")


def remote_defaults(remote: Any) -> dict[str, Any]:
    """The options given to ``@ray.remote(...)`` of a remote function or actor class; Ray keeps
    them privately and ``.options()`` replaces them rather than merging."""
    return dict(getattr(remote, "_default_options", None) or {})


def remote_body(remote: Any) -> Any:
    """The plain Python function inside a Ray remote function (``__wrapped__`` is not set)."""
    return remote._function


def remote_name(remote: Any) -> str:
    """The name of the function or class behind a remote function or actor class."""
    inner = getattr(remote, "_function", None)
    if inner is not None:
        return str(getattr(inner, "__name__", "?"))
    metadata = getattr(remote, "__ray_metadata__", None)
    return str(getattr(metadata, "class_name", None) or getattr(remote, "__name__", "?"))


def is_actor_handle(value: Any) -> bool:
    return isinstance(value, ActorHandle)


def in_ray_worker() -> bool:
    """Whether this process is a Ray worker (a task or actor), not a driver."""
    return bool(ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE)


def option_names() -> tuple[frozenset[str], frozenset[str]]:
    """The option names Ray accepts in ``.options()`` for tasks and for actors. Ray 2.60 keeps
    these tables in a private module and documents no list of them."""
    return (frozenset(ray_option_utils.task_options),
            frozenset(ray_option_utils.actor_options))


def spilling_node_affinity(node_id: str) -> Any:
    """Soft node affinity that also runs the work elsewhere while the node is busy (the private
    ``_spill_on_unavailable``; measured on Ray 2.60: tests/test_soft_semantics.py)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id, soft=True, _spill_on_unavailable=True)
