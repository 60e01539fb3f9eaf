"""Names shared by the local cluster scripts, the snapshot and the policies."""
from __future__ import annotations

import re

DEFAULT_LABEL_PREFIX = "node"
# Ray node label set on every node of a local cluster (``ray start --labels``); its value is the
# node's placement label, e.g. ``node3``.
LABEL_KEY = "placement.node"

# A Ray label name or value (ray/_private/label_utils.py, 2.60): 1 to 63 characters,
# alphanumeric at both ends, with - _ . inside. One pattern for every module that checks labels.
RAY_LABEL_NAME = r"[a-zA-Z0-9](?:[a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?"

_DIGITS = re.compile(r"([0-9]+)")  # ASCII digits only: "²" is a digit to \d, not to int()


def natural_key(text: str) -> tuple[int | str, ...]:
    """Sort key that orders embedded numbers numerically: node2 before node10.

    >>> sorted(["node10", "node2", "node1"], key=natural_key)
    ['node1', 'node2', 'node10']
    """
    return tuple(int(part) if i % 2 else part for i, part in enumerate(_DIGITS.split(text)))


def label_pattern(prefix: str) -> re.Pattern[str]:
    """The custom-resource names that are node labels for ``prefix``: the prefix and a number."""
    return re.compile(rf"^{re.escape(prefix)}[0-9]+$")
