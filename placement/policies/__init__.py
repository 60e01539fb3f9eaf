"""The decide layer: pure placement policies. A policy takes a snapshot and a request and
returns a Decision; it never reads the cluster, never builds handles and never imports Ray
(import-linter contracts in setup.cfg hold it to that).

    request.py     Demand and Request: immutable, hashable values
    decision.py    Decision (hashable), backends, node names
    needs.py       Needs: what a policy asks of the submit layer, declared
    bounded.py     per-key tables with a cap (least recently used first out)
    candidates.py  the nodes a backend can target, interned fitting node sets, refusals
    ledger.py      counts per slot and least-used indexes (no pass over the nodes); draws
    turns.py       the order of a weighted round robin, read by step
    base.py        Policy (choose is pure; reserve, unreserve, release), Fallback, the
                   interface place() reaches the submit layer through
    round_robin.py RoundRobin      affinity.py  Affinity, Local
    least_loaded.py LeastLoaded    locality.py  Locality
    spread.py      AntiAffinity    packing.py   Packing
    plan.py        dry runs        growth.py    what to ask the autoscaler for
    bundles.py     reservations    claims.py    the book of a ledger shared across drivers
"""
from __future__ import annotations

from .affinity import Affinity, Local
from .base import AllOf, Fallback, PlacedHandle, Policy, Reserved, SubmitLayer, use_submit_layer
from .candidates import Candidates, NodeSet
from .decision import AUTO, BACKENDS, LABEL, NODE_ID, RESOURCE, Decision, Submitted, node_name
from .least_loaded import LeastLoaded
from .locality import Locality
from .needs import Needs
from .packing import Packing
from .plan import Plan
from .rebalance import Move, Rebalance
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
    "AllOf",
    "AntiAffinity",
    "Candidates",
    "Decision",
    "Demand",
    "Fallback",
    "LeastLoaded",
    "Local",
    "Locality",
    "Move",
    "Needs",
    "NodeSet",
    "Packing",
    "PlacedHandle",
    "Plan",
    "Policy",
    "Rebalance",
    "Request",
    "Reserved",
    "RoundRobin",
    "SubmitLayer",
    "Submitted",
    "make_request",
    "node_name",
    "use_submit_layer",
]
