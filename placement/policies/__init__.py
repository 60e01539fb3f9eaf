"""The decide layer: pure placement policies. A policy takes a snapshot and a request and
returns a Decision; it never reads the cluster, never builds handles and never imports Ray
(import-linter contracts in setup.cfg hold it to that).

    request.py     Demand and Request: immutable, hashable values
    decision.py    Decision, backends, node names and order
    candidates.py  the nodes a backend can target, feasibility refusals
    rotation.py    round robin with fill levels, the counting core
    base.py        Policy (the transaction: propose, commit, rollback, release) and Fallback
    round_robin.py RoundRobin      affinity.py  Affinity, Local
    least_loaded.py LeastLoaded    locality.py  Locality
    spread.py      AntiAffinity    packing.py   Packing
    plan.py        dry runs
"""
from __future__ import annotations

from .affinity import Affinity, Local
from .base import Fallback, Policy
from .candidates import Candidates
from .decision import AUTO, BACKENDS, LABEL, NODE_ID, RESOURCE, Decision, node_name
from .least_loaded import LeastLoaded
from .locality import Locality
from .packing import Packing
from .plan import Plan
from .request import Demand, Request, make_request
from .round_robin import RoundRobin
from .spread import AntiAffinity

__all__ = [
    "AUTO",
    "BACKENDS",
    "LABEL",
    "NODE_ID",
    "RESOURCE",
    "Affinity",
    "AntiAffinity",
    "Candidates",
    "Decision",
    "Demand",
    "Fallback",
    "LeastLoaded",
    "Local",
    "Locality",
    "Packing",
    "Plan",
    "Policy",
    "Request",
    "RoundRobin",
    "make_request",
    "node_name",
]
