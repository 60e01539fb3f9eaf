"""The one place where a Decision becomes Ray options, and where user options are checked.

- hard, resource backend: ``resources={"node3": pin}`` (merged with the user's resources);
- hard, node_id backend: ``NodeAffinitySchedulingStrategy(node_id, soft=False)``;
- hard, label backend: ``label_selector={"placement.node": "node3"}``;
- every hard placement also carries ``NodeAffinitySchedulingStrategy(node_id, soft=False)``: a
  resource demand or label selector alone for a node that died waits forever in Ray (measured: no
  answer in 15 s), while with hard node affinity Ray fails it at once (TaskUnschedulableError);
- soft (``soft=True`` or ``"busy"``), whatever the backend: a custom resource demand cannot be
  soft in Ray, and Ray 2.60 ignores soft node affinity for work with an empty resource request
  (num_cpus=0 actors land on random nodes: 12 of 16 elsewhere, benchmarks/run.py row "soft"). So
  a soft placement names the node by a Ray label, ``placement.node`` or else Ray's own
  ``ray.io/node-id``, with a ``fallback_strategy`` to any other node (exact in 80 tasks and 16
  actors) or, with ``where=``, to the nodes the filter keeps. Measured on Ray 2.60
  (tests/test_soft_semantics.py): this form runs the work elsewhere at once when the node is
  *busy* (its CPUs held), as well as when it is gone;
- ``soft="gone"`` (RoundRobin's and LeastLoaded's default): soft node affinity, which waits while
  the node is busy and falls back only when it is gone, with ``where=``'s conditions as a
  ``label_selector`` beside it (Ray keeps the fallback inside it), as measured; work that asks
  for no resources gets the label form above (Ray ignores soft node affinity for such actors,
  and such work never finds its node busy).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from . import _ray, errors
from .errors import PlacementError
from .naming import LABEL_KEY
from .policies.decision import NODE_ID, RESOURCE, Decision
from .policies.request import Demand, finite
from .policies.selector import LabelFilter

# What Ray 2.60 asks of a node for accelerator_type="A100": {"accelerator_type:A100": 0.001}.
ACCELERATOR_PREFIX = "accelerator_type:"
ACCELERATOR_AMOUNT = 0.001

# The label Ray 2.60 gives every node: its id.
NODE_ID_LABEL = "ray.io/node-id"

# Options a policy sets itself: a user value would contradict it (and Ray rejects
# placement_group together with scheduling_strategy). A user's label_selector is not one of
# them: it is part of the demand (the policy chooses among the nodes it matches) and is passed on.
_POLICY_OWNED = ("scheduling_strategy", "placement_group", "fallback_strategy")


_TASK_OPTIONS, _ACTOR_OPTIONS = _ray.option_names()
_RAY_OPTIONS = _TASK_OPTIONS | _ACTOR_OPTIONS
_KINDS = {"task": _TASK_OPTIONS, "actor": _ACTOR_OPTIONS, None: _RAY_OPTIONS}
_COMMON = ("num_cpus", "num_gpus", "memory", "resources", "max_retries", "max_restarts",
           "max_task_retries", "name", "namespace", "lifetime", "runtime_env")
_LIFETIMES = ("detached", "non_detached")


def check_user_options(options: Mapping[str, Any], kind: str | None = None) -> None:
    """Refuse options that contradict placement, that Ray does not know, or whose value has the
    wrong type or range, before anything is submitted. ``kind`` is ``"task"``, ``"actor"`` or
    None (either: names Ray accepts for tasks or for actors).

    >>> check_user_options({"num_cpu": 1})
    Traceback (most recent call last):
    ...
    TypeError: num_cpu= is not a Ray option: did you mean num_cpus=?
    """
    for name in _POLICY_OWNED:
        value = options.get(name)
        # placement_group="default" is Ray's default
        if value is not None and not (name == "placement_group" and value == "default"):
            raise PlacementError(
                errors.BAD_OPTIONS,
                f"the option {name}= contradicts the placement policy, "
                "which decides where the work runs",
                f"drop {name}= from the options, or submit without a policy "
                "(fn.options(...).remote())",
            )
    _check_names(options, kind)
    if options.get("label_selector"):  # None and {} ask for nothing, as in Ray
        LabelFilter(options["label_selector"], "label_selector")  # raises naming the fix
    resources = options.get("resources")
    if resources is None:
        resources = {}
    if not isinstance(resources, Mapping):
        raise TypeError(
            f"resources must be a dict of name to amount, got {type(resources).__name__}: "
            "e.g. resources={'accel': 1}"
        )
    for name in ("CPU", "GPU", "memory", "object_store_memory"):
        if name in resources:
            keyword = {"CPU": "num_cpus", "GPU": "num_gpus"}.get(name, name)
            raise ValueError(f"do not put {name!r} inside resources=: Ray wants {keyword}= for it")
    for name, amount in resources.items():
        if not isinstance(name, str):
            raise TypeError(f"resource names must be strings, got {name!r}: "
                            "e.g. resources={'accel': 1}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise TypeError(f"resources[{name!r}] must be a number (int or float), got "
                            f"{type(amount).__name__} {amount!r}: e.g. resources={{{name!r}: 1}}")
        if finite(amount) is None or amount < 0:
            raise ValueError(f"resources[{name!r}] must be a finite number >= 0, got "
                             f"{amount!r:.40}")
        if 0 < amount < 1e-4:
            raise ValueError(
                f"resources[{name!r}]={amount} is below Ray's resolution of 0.0001 "
                "and would be truncated to 0: ask for at least 0.0001"
            )
    for name in ("num_cpus", "num_gpus", "memory"):
        value = options.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number (int or float), got "
                            f"{type(value).__name__} {value!r}: e.g. {name}=1")
        if finite(value) is None or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r:.40}")
    for name in ("max_retries", "max_restarts", "max_task_retries"):
        value = options.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be a whole number (int; -1 means forever), got "
                            f"{type(value).__name__} {value!r}: e.g. {name}=3")
        if value < -1:
            raise ValueError(f"{name} must be -1 (forever), 0 or more, got {value}")
    for name, example in (("name", "worker-1"), ("namespace", "team-a")):
        value = options.get(name)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {type(value).__name__} {value!r}: "
                            f"e.g. {name}={example!r}")
    lifetime = options.get("lifetime")
    if lifetime is not None:
        if not isinstance(lifetime, str):
            raise TypeError(f"lifetime must be a string, got {type(lifetime).__name__} "
                            f"{lifetime!r}: use lifetime='detached', 'non_detached' or None")
        if lifetime not in _LIFETIMES:
            raise ValueError(f"lifetime={lifetime!r} is not one Ray knows: use "
                             "lifetime='detached', 'non_detached' or None")
    runtime_env = options.get("runtime_env")
    if runtime_env is not None and not isinstance(runtime_env, Mapping):
        raise TypeError(f"runtime_env must be a dict, got {type(runtime_env).__name__}: "
                        "e.g. runtime_env={'env_vars': {'A': '1'}}")


def _check_names(options: Mapping[str, Any], kind: str | None) -> None:
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'task', 'actor' or None, got {kind!r}")
    known = _KINDS[kind]
    for name in options:
        if name in known:
            continue
        if not isinstance(name, str):
            raise TypeError(f"option names must be strings, got {name!r}")
        if name in _RAY_OPTIONS:  # known, but for the other kind
            wrong, right = (("actors", "remote functions") if kind == "task"
                            else ("remote functions", "actors"))
            retry = {"max_retries": " (actors retry with max_restarts= and max_task_retries=)",
                     "max_restarts": " (tasks retry with max_retries=)",
                     "max_task_retries": " (tasks retry with max_retries=)"}.get(name, "")
            raise TypeError(f"{name}= is an option for {wrong}, not for {right}: "
                            f"drop {name}={retry}")
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = (f"did you mean {close[0]}=?" if close
                else f"use Ray's own options ({', '.join(_COMMON)}, ...)")
        raise TypeError(f"{name}= is not a Ray option: {hint}")


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
    if options.get("accelerator_type"):  # Ray asks for a sliver of this node resource
        demand[f"{ACCELERATOR_PREFIX}{options['accelerator_type']}"] = ACCELERATOR_AMOUNT
    selector = options.get("label_selector")
    return Demand(demand, LabelFilter(selector, "label_selector") if selector else None)


def check_label_selector(selector: Mapping[str, str] | None,
                         filters: Iterable[LabelFilter | None]) -> None:
    """Refuse a user's ``label_selector=`` that constrains a key a policy's ``where=`` also
    constrains differently: Ray takes one selector per key, so one condition would be lost."""
    for where in filters:
        if not selector or where is None:
            continue
        for key, text in selector.items():
            theirs = where.selector.get(key)
            if theirs is not None and LabelFilter({key: text}, "label_selector") != LabelFilter(
                    {key: theirs}):  # the same condition written otherwise is no contradiction
                raise PlacementError(
                    errors.BAD_OPTIONS,
                    f"label_selector={{{key!r}: {text!r}}} and the policy's where="
                    f"{{{key!r}: {theirs!r}}} both constrain {key!r}: Ray keeps one condition "
                    "per key", f"put the condition on {key!r} in one of them "
                    "(in(...) and !in(...) express several values)")


def placement_options(decision: Decision, empty: bool = False) -> dict[str, Any]:
    """Ray options that put work where ``decision`` says; ``empty``: the work asks for no
    resources at all (num_cpus=0 and nothing else)."""
    node = decision.node
    if decision.soft == "gone" and not empty:
        # Soft node affinity waits while the node is busy and falls back only when it is gone
        # (measured: queued and running work ran elsewhere once its node died); Ray keeps the
        # fallback inside a label_selector given beside it, so inside where= too.
        gone: dict[str, Any] = {"scheduling_strategy": _node_affinity(node.node_id, soft=True)}
        if decision.where is not None:
            gone["label_selector"] = dict(decision.where.selector)
        return gone
    if decision.soft:
        # Also soft="gone" for work that asks for nothing: Ray ignores soft node affinity for an
        # actor with an empty request, and such work never finds its node busy, so this form
        # runs it elsewhere only when the node is gone.
        kept = dict(decision.where.selector) if decision.where is not None else {}
        if node.label and node.labels.get(LABEL_KEY) == node.label:
            elsewhere = {LABEL_KEY: f"!{node.label}"} if LABEL_KEY not in kept else {}
            return {
                "label_selector": {LABEL_KEY: node.label},
                "fallback_strategy": [{"label_selector": {**kept, **elsewhere}}],
            }
        if node.labels.get(NODE_ID_LABEL) == node.node_id:
            # An unlabelled node, named by Ray's own node-id label: the same form, so it too
            # runs elsewhere while busy, and falls back inside where= (soft node affinity would
            # wait while busy and fall back anywhere).
            elsewhere = kept or {NODE_ID_LABEL: f"!{node.node_id}"}
            return {"label_selector": {NODE_ID_LABEL: node.node_id},
                    "fallback_strategy": [{"label_selector": elsewhere}]}
        # No Ray label names this node (never on Ray 2.60, which labels every node with its
        # id; snapshots built by hand may lack it): the fallback can be any node, where= or not.
        return {"scheduling_strategy": _ray.spilling_node_affinity(node.node_id)}
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
    >>> snap = ClusterSnapshot.from_dicts([{"id": "a" * 56, "label": "node0"}])
    >>> d = RoundRobin(soft=False).decide(snap)
    >>> merged_options({"num_cpus": 1}, d, defaults={"resources": {"accel": 1}})["resources"]
    {'accel': 1, 'node0': 0.001}
    """
    placed = placement_options(decision, empty=decision.soft == "gone"
                               and asks_nothing(effective_options(user, defaults)))
    merged = {**user, **placed}
    own = _own_resources(user, defaults)
    if "resources" in placed or (own and user.get("resources")):
        merged["resources"] = {**own, **(user.get("resources") or {}),
                               **(placed.get("resources") or {})}
    # The user's label_selector, else the function's own (label_selector=None in .options()
    # drops the function's, as in Ray).
    asked = (user["label_selector"] if "label_selector" in user
             else (defaults or {}).get("label_selector"))
    if asked and "label_selector" in placed:
        # The chosen node matches the user's selector; the fallbacks must keep to it too (the
        # user's conditions win there over the placement's "anywhere but the chosen node").
        merged["label_selector"] = {**asked, **placed["label_selector"]}
        if "fallback_strategy" in placed:
            merged["fallback_strategy"] = [
                {**alternative, "label_selector": {**alternative["label_selector"], **asked}}
                for alternative in placed["fallback_strategy"]]
    return merged


def effective_options(user: Mapping[str, Any],
                      defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the work asks for: the function's own options (``defaults``) with the user's over
    them, ``resources`` merged as ``merged_options`` sends them (so the policy checks the
    demand Ray will get).

    >>> effective_options({"resources": {"disk": 1}}, {"resources": {"accel": 1}, "num_cpus": 0})
    {'resources': {'accel': 1, 'disk': 1}, 'num_cpus': 0}
    """
    effective = {**(defaults or {}), **user}
    own = _own_resources(user, defaults)
    if own and user.get("resources"):
        effective["resources"] = {**own, **user["resources"]}
    return effective


def _own_resources(user: Mapping[str, Any], defaults: Mapping[str, Any] | None) -> dict[str, Any]:
    """The function's own resources that the work keeps: all of them, unless the user's options
    give ``resources`` empty or None (which, as in Ray, drops them)."""
    if "resources" in user and not user["resources"]:
        return {}
    return dict((defaults or {}).get("resources") or {})


def asks_nothing(options: Mapping[str, Any]) -> bool:
    """Whether work with these options asks Ray for no resources at all (Ray then ignores soft
    node affinity for an actor): no CPU, GPU, memory or custom resource, and no accelerator
    type or object store memory (each of which Ray turns into a resource)."""
    return not demand_of(options).as_dict() and not options.get("object_store_memory")


def _node_affinity(node_id: str, soft: bool) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=soft)
