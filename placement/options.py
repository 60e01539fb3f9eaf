"""The one place where a Decision becomes Ray options, and where user options are checked.

- hard, resource backend: ``resources={"node3": pin}`` (merged with the user's resources);
- hard, node_id backend: ``NodeAffinitySchedulingStrategy(node_id, soft=False)``;
- hard, label backend: ``label_selector={"placement.node": "node3"}``;
- every hard placement also carries ``NodeAffinitySchedulingStrategy(node_id, soft=False)``: a
  resource demand or label selector alone for a node that died waits forever in Ray (measured: no
  answer in 15 s), while with hard node affinity Ray fails it at once (TaskUnschedulableError);
- soft, whatever the backend: a custom resource demand cannot be soft in Ray, and Ray 2.60 ignores
  soft node affinity for work with an empty resource request (an actor with num_cpus=0 lands on a
  random node; measured 4-7 of 8 misplaced). So a soft placement on a node with the
  ``placement.node`` Ray label uses ``label_selector`` plus a ``fallback_strategy`` to any other
  node (exact in 80 tasks and 16 actors), and soft node affinity only for unlabelled nodes. Ray
  then runs the work elsewhere when the node is gone.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from . import errors
from .errors import PlacementError
from .naming import LABEL_KEY
from .policies.decision import NODE_ID, RESOURCE, Decision
from .policies.request import Demand

# Options a policy sets itself: a user value would contradict it (and Ray rejects
# placement_group together with scheduling_strategy).
_POLICY_OWNED = ("scheduling_strategy", "placement_group", "label_selector", "fallback_strategy")


def check_user_options(options: Mapping[str, Any]) -> None:
    """Refuse options that contradict placement, before anything is submitted."""
    for name in _POLICY_OWNED:
        value = options.get(name)
        # placement_group="default" is Ray's default
        if value is not None and not (name == "placement_group" and value == "default"):
            raise PlacementError(
                errors.BAD_OPTIONS,
                f"the option {name}= contradicts the placement policy, "
                "which decides where the work runs",
                f"drop {name}= from the options, "
                "or submit without a policy (fn.options(...).remote())",
            )
    resources = options.get("resources") or {}
    if not isinstance(resources, Mapping):
        raise TypeError(
            f"resources must be a dict of name to amount, got {type(resources).__name__}"
        )
    for name in ("CPU", "GPU", "memory", "object_store_memory"):
        if name in resources:
            keyword = {"CPU": "num_cpus", "GPU": "num_gpus"}.get(name, name)
            raise ValueError(f"do not put {name!r} inside resources=: Ray wants {keyword}= for it")
    for name, amount in resources.items():
        if (isinstance(amount, bool) or not isinstance(amount, (int, float))
                or not math.isfinite(amount) or amount < 0):
            raise ValueError(f"resources[{name!r}] must be a finite number >= 0, got {amount!r}")
        if 0 < amount < 1e-4:
            raise ValueError(
                f"resources[{name!r}]={amount} is below Ray's resolution of 0.0001 "
                "and would be truncated to 0: ask for at least 0.0001"
            )
    for name in ("num_cpus", "num_gpus", "memory"):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value < 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def demand_of(options: Mapping[str, Any]) -> Demand:
    """The resources a task or actor with these options needs on one node, to check feasibility.
    Without num_cpus both need 1 CPU to be placed (an actor then holds 0 while alive).

    >>> demand_of({"num_cpus": 2, "resources": {"disk": 1}})
    Demand({'CPU': 2.0, 'disk': 1.0})
    >>> demand_of({})
    Demand({'CPU': 1.0})
    """
    num_cpus = options.get("num_cpus")
    demand = {"CPU": float(1 if num_cpus is None else num_cpus)}
    if options.get("num_gpus"):
        demand["GPU"] = float(options["num_gpus"])
    if options.get("memory"):
        demand["memory"] = float(options["memory"])
    for name, amount in (options.get("resources") or {}).items():
        demand[name] = float(amount)
    return Demand(demand)


def placement_options(decision: Decision) -> dict[str, Any]:
    """Ray options that put work where ``decision`` says."""
    node = decision.node
    if decision.soft:
        if node.label and node.labels.get(LABEL_KEY) == node.label:
            return {
                "label_selector": {LABEL_KEY: node.label},
                "fallback_strategy": [{"label_selector": {LABEL_KEY: f"!{node.label}"}}],
            }
        return {"scheduling_strategy": _node_affinity(node.node_id, soft=True)}
    hard = {"scheduling_strategy": _node_affinity(node.node_id, soft=False)}
    if decision.backend == RESOURCE:
        return {"resources": {node.label: decision.pin_amount}, **hard}
    if decision.backend == NODE_ID:
        return hard
    return {"label_selector": {LABEL_KEY: node.label}, **hard}


def merged_options(user: Mapping[str, Any], decision: Decision,
                   defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The user's options with the placement's, keeping every user option. ``resources`` are
    merged, with the function's own ``@ray.remote(resources=...)`` (``defaults``) too: Ray's
    ``.options(resources=...)`` replaces that dict, which would drop the function's own demand.

    >>> from placement.policies import RoundRobin
    >>> from placement.snapshot import ClusterSnapshot
    >>> d = RoundRobin().decide(ClusterSnapshot.from_dicts([{"id": "a" * 56, "label": "node0"}]))
    >>> merged_options({"num_cpus": 1}, d, defaults={"resources": {"accel": 1}})["resources"]
    {'accel': 1, 'node0': 0.001}
    """
    placed = placement_options(decision)
    merged = {**user, **placed}
    if "resources" in placed:
        own = (defaults or {}).get("resources") or {}
        merged["resources"] = {**own, **(user.get("resources") or {}), **placed["resources"]}
    return merged


def _node_affinity(node_id: str, soft: bool) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=soft)
