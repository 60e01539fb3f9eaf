"""How many examples the property tests draw: every one under CI (``CI=true``, as CI runs
``.ci/run``), a quarter when run locally, so that the unit layer stays quick enough to run after
every change. The generators are the same either way; ``PLACEMENT_FULL_EXAMPLES=1`` draws them
all locally too."""
from __future__ import annotations

import os

FULL = os.environ.get("CI") == "true" or os.environ.get("PLACEMENT_FULL_EXAMPLES") == "1"


def examples(count: int) -> int:
    """``count`` under CI, else a quarter of it (at least 20)."""
    return count if FULL else max(20, count // 4)
