"""The model property of the pure policies: a policy that saw refused proposals (at any point,
across node sets that changed in between, with random draws) decides exactly as its twin that
never saw them. The machine is in tests/twin_machine.py; each family of policies is one run:
a few examples in the unit layer, at least 500 in the slow layer."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from .thoroughness import examples
from .twin_machine import FAMILIES, TwinMachine

QUICK = settings(max_examples=15, stateful_step_count=25, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
THOROUGH = settings(max_examples=examples(500), stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def machine(family: str) -> type[TwinMachine]:
    return type(f"Twin_{family}", (TwinMachine,), {"family": family})


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_refused_proposal_leaves_no_trace(family):
    run = machine(family)
    run.TestCase.settings = QUICK
    run.TestCase().runTest()


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_refused_proposal_leaves_no_trace_thoroughly(family):
    run = machine(family)
    run.TestCase.settings = THOROUGH
    run.TestCase().runTest()
