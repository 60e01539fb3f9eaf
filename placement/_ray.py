"""Every use of Ray's private API, in one module: a Ray upgrade touches this file only.

Each function says why no public API does the job in ray 2.60.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ray
from ray._common import ray_option_utils
from ray._private.state import actors, jobs, state
from ray._private.state import available_resources_per_node as _per_node
from ray._raylet import Config  # type: ignore[attr-defined]  # missing from Ray's .pyi stub
from ray.actor import ActorHandle
from ray.core.generated import common_pb2, gcs_pb2
from ray.experimental import internal_kv


def actor_id_hex(actor: ActorHandle[Any]) -> str:
    """The actor's id. Public ``ray.get_runtime_context().get_actor_id()`` only works inside it."""
    return str(actor._actor_id.hex())


def actor_record(actor_id: str) -> tuple[str, str | None]:
    """(state, node id) of an actor from the GCS actor table. ``ray.util.state.get_actor`` needs
    the dashboard's API server, which the local clusters do not start."""
    state, address = _actor_entry(actor_id)
    return state, address.get("NodeID") or None


def _actor_entry(actor_id: str) -> tuple[str, Mapping[str, Any]]:
    """(state, address) of an actor in one read of the GCS actor table."""
    info: Mapping[str, Any] = actors(actor_id=actor_id) or {}
    return str(info.get("State", "unknown")), info.get("Address") or {}


def dead_actor_ids() -> set[str]:
    """Ids of this job's dead actors, in one read of the GCS actor table (``ray.util.state``
    needs the dashboard's API server, which the local clusters do not start)."""
    job = ray.get_runtime_context().get_job_id()
    table: Mapping[str, Any] = actors(job_id=ray.JobID(bytes.fromhex(job)),
                                      actor_state_name="DEAD") or {}
    return set(table)


def actor_has_worker(actor_id: str) -> tuple[str, bool]:
    """(state, whether a worker process was given to it) from the GCS actor table: an actor in
    PENDING_CREATION whose constructor runs has a worker port; one still waiting for room has
    port 0 (its NodeID is already the node chosen; seen on Ray 2.60)."""
    state, address = _actor_entry(actor_id)
    return state, bool(address.get("Port"))


def ended_job_ids() -> set[str]:
    """Ids (hex) of the jobs whose drivers ended, from one read of the GCS job table; Ray's only
    public job listing is the job submission client, which needs the dashboard."""
    return {str(job["JobID"]) for job in jobs() if job.get("IsDead")}


def task_events(job_id: str | None = None) -> list[dict[str, Any]]:
    """What Ray's GCS knows of each task (the latest attempt): id, job, name, kind, the
    resources and labels it asked for, its latest state and the node it ran on. One read of the
    GCS task events (what ``ray list tasks`` shows; that needs the dashboard's API server, which
    the local clusters do not start). Workers report their events about once a second."""
    accessor = state._connect_and_get_accessor()
    latest: dict[str, dict[str, Any]] = {}
    for raw in accessor.get_task_events():
        event = gcs_pb2.TaskEvents.FromString(raw)  # type: ignore[attr-defined]
        job = event.job_id.hex()
        if job_id is not None and job != job_id:
            continue
        task_id = event.task_id.hex()
        record = latest.get(task_id)
        if record is None or event.attempt_number > record["attempt"]:
            record = latest[task_id] = {"task_id": task_id, "job_id": job,
                                        "attempt": event.attempt_number, "times": {}}
        elif event.attempt_number < record["attempt"]:
            continue
        if event.HasField("task_info"):
            info = event.task_info
            record.update(name=info.name,
                          kind=common_pb2.TaskType.Name(info.type),  # type: ignore[attr-defined]
                          asked=dict(info.required_resources),
                          labels=dict(info.label_selector),
                          actor_id=info.actor_id.hex() if info.actor_id else None)
        if event.HasField("state_updates"):
            updates = event.state_updates
            if updates.node_id:
                record["node_id"] = updates.node_id.hex()
            for status, nanos in updates.state_ts_ns.items():
                name = common_pb2.TaskStatus.Name(status)  # type: ignore[attr-defined]
                record["times"][name] = nanos
    for record in latest.values():
        times = record.pop("times")
        record["state"] = max(times, key=times.__getitem__) if times else "NIL"
    return list(latest.values())


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


# The GCS's own key-value store: it outlives any actor, so a shared ledger's holder that
# restarts reads its claims back. Ray's public API has no key-value store (2.60).
KV_NAMESPACE = "placement"


def kv_get(key: str) -> bytes | None:
    value: bytes | None = internal_kv._internal_kv_get(key, namespace=KV_NAMESPACE)
    return value


def kv_put(key: str, value: str) -> None:
    internal_kv._internal_kv_put(key, value, overwrite=True, namespace=KV_NAMESPACE)


def kv_put_new(key: str, value: str) -> bool:
    """Put ``key`` unless it exists, in one step of the GCS; whether it was put."""
    existed = internal_kv._internal_kv_put(key, value, overwrite=False, namespace=KV_NAMESPACE)
    return not existed


def kv_del(key: str, by_prefix: bool = False) -> None:
    internal_kv._internal_kv_del(key, del_by_prefix=by_prefix, namespace=KV_NAMESPACE)


def kv_keys(prefix: str) -> list[str]:
    return [key.decode() for key in internal_kv._internal_kv_list(prefix,
                                                                 namespace=KV_NAMESPACE)]


def kv_items(prefix: str) -> dict[str, bytes]:
    """Every key under ``prefix`` with its value (a restarted holder reads its claims)."""
    found = {}
    for key in kv_keys(prefix):
        value = kv_get(key)
        if value is not None:
            found[key] = value
    return found
