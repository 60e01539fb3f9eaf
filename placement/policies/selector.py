"""Label filters: which nodes a policy may choose, in Ray's label-selector syntax. Pure: no Ray.

``where={"zone": "z1", "ray.io/accelerator-type": "in(A100,H100)", "tier": "!spot"}`` keeps the
nodes whose labels satisfy every condition. A value is one of Ray's forms: ``v`` (equal),
``!v`` (not equal), ``in(a,b)`` (one of), ``!in(a,b)`` (none of). As in Kubernetes' NotIn, a node
without the key satisfies the negative forms and not the positive ones.

>>> zone = LabelFilter({"zone": "in(z1,z2)", "tier": "!spot"})
>>> zone.matches({"zone": "z2"}), zone.matches({"zone": "z2", "tier": "spot"})
(True, False)
>>> zone.matches({"tier": "gold"})
False
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ..naming import RAY_LABEL_NAME

# Ray's label syntax: a value as naming.RAY_LABEL_NAME; a key may have a DNS-subdomain prefix
# and a slash.
_VALUE = RAY_LABEL_NAME
_SELECTOR = re.compile(rf"(!?)(?:in\(({_VALUE}(?:, ?{_VALUE})*)\)|({_VALUE}))")
_KEY = re.compile(rf"(?:{_VALUE}(?:\.{_VALUE})*/)?{_VALUE}")
_FORMS = "'v' (equal), '!v' (not equal), 'in(a,b)' (one of) or '!in(a,b)' (none of)"


class LabelFilter:
    """An immutable, hashable set of label conditions, all of which a node must satisfy."""

    __slots__ = ("_conditions", "_hash", "selector")
    _conditions: tuple[tuple[str, bool, frozenset[str]], ...]
    _hash: int
    selector: Mapping[str, str]  # what Ray is told (label_selector=), read-only

    def __init__(self, where: Mapping[str, str], option: str = "where") -> None:
        # ``option``: the argument the conditions came from, named in errors (where,
        # label_selector).
        if not isinstance(where, Mapping) or not where:
            raise TypeError(f"{option} must be a non-empty dict of label key to selector, got "
                            f"{where!r}: e.g. {option}={{'zone': 'us-east-1a'}}")
        for key in where:
            if not isinstance(key, str):
                raise ValueError(f"{option} has the label key {key!r}, not a string: quote it, "
                                 "e.g. 'zone'")
        conditions = []
        for key, text in sorted(where.items()):
            # Ray's rule: a prefix of at most 253 characters, a name of at most 63.
            if not _KEY.fullmatch(key) or len(key.rpartition("/")[0]) > 253:
                raise ValueError(f"{option} has the label key {key!r}, which Ray does not "
                                 "accept: use letters, digits, - _ . (and one prefix/ at most), "
                                 "e.g. 'zone' or 'ray.io/availability-zone'")
            if not isinstance(text, str):
                raise ValueError(f"{option}[{key!r}] is {text!r}, not a string: give {_FORMS}")
            found = _SELECTOR.fullmatch(text)
            if found is None:
                raise ValueError(f"{option}[{key!r}] = {text!r} is not a Ray label selector: "
                                 f"give {_FORMS}, e.g. 'in(z1,z2)'")
            negated, listed, single = found.groups()
            values = frozenset(v.strip() for v in listed.split(",")) if listed else {single}
            conditions.append((key, bool(negated), frozenset(values)))
        frozen = object.__setattr__  # a value: nothing changes it after this
        frozen(self, "_conditions", tuple(conditions))
        frozen(self, "_hash", hash(self._conditions))
        # What Ray is told (label_selector=), as given: Ray parses the same syntax.
        frozen(self, "selector", MappingProxyType({key: where[key] for key in sorted(where)}))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a LabelFilter cannot be changed: make a new one ({name}=)")

    def __reduce__(self) -> tuple[type[LabelFilter], tuple[dict[str, str]]]:
        return LabelFilter, (dict(self.selector),)  # rebuilt, so its hash is this process's

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a node with these Ray labels satisfies every condition."""
        for key, negated, values in self._conditions:
            if (labels.get(key) in values) is negated:  # a missing key is in no set
                return False
        return True

    def condition(self, key: str) -> tuple[bool, frozenset[str]] | None:
        """The condition on ``key``: (negated, values), or None when there is none.

        >>> negated, values = LabelFilter({"zone": "!in(z1,z2)"}).condition("zone")
        >>> negated, sorted(values)
        (True, ['z1', 'z2'])
        """
        for own, negated, values in self._conditions:
            if own == key:
                return negated, values
        return None

    def describe(self, nodes: Iterable[Mapping[str, str]]) -> str:
        """The values the live nodes have for this filter's keys, for an error that names what
        exists, e.g. "zone: z1, z2 (1 node without)"."""
        nodes = list(nodes)
        parts = []
        for key, _, _ in self._conditions:
            seen = sorted({labels[key] for labels in nodes if key in labels})
            missing = sum(1 for labels in nodes if key not in labels)
            shown = ", ".join(seen[:8]) + (f" and {len(seen) - 8} more" if len(seen) > 8 else "")
            parts.append(f"{key}: {shown or 'no node has it'}"
                         + (f" ({missing} without)" if missing and seen else ""))
        return "; ".join(parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelFilter) and other._conditions == self._conditions

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return repr(dict(self.selector))
