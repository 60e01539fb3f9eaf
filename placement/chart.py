"""Per-node bar charts in plain ASCII: how much work each node was given beside how much ran there.

Pure: counts in, text out (no Ray, nothing else from the package but :func:`natural_key`). The
drawing uses ASCII only (``#`` for the first count, ``=`` for the second), so a chart reads the
same in any terminal and in CI logs.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from .naming import natural_key

MIN_WIDTH = 1
MAX_WIDTH = 200
DEFAULT_WIDTH = 40
DEFAULT_LABELS = ("planned", "ran")
FIRST_BAR = "#"
SECOND_BAR = "="
EMPTY = "(no nodes to chart)"
_EXAMPLE = "bars({'node0': (3, 3), 'node1': (2, 1)})"


def bars(rows: Mapping[str, tuple[int, int]], width: int = DEFAULT_WIDTH,
         labels: tuple[str, str] = DEFAULT_LABELS,
         notes: Mapping[str, str] | None = None) -> str:
    """Two bars per node, its two counts (planned, ran) drawn as ``#`` and ``=``.

    Nodes come in natural order (node2 before node10); the largest count of the chart fills
    ``width`` characters and the others are scaled to it (a count above 0 always gets at least
    one character); each count is printed at its bar's end. A node whose two counts differ is
    marked ``<- planned != ran`` (the two labels). ``notes`` adds text to a node's first line.

    >>> print(bars({"node10": (4, 4), "node2": (2, 3), "node1": (0, 0)}, width=8))
    node1   planned            0
            ran                0
    node2   planned  ####      2
            ran      ======    3  <- planned != ran
    node10  planned  ########  4
            ran      ========  4
    >>> print(bars({"node0": (1, 0)}, width=4, notes={"node0": "VIOLATION x1"}))
    node0  planned  ####  1  VIOLATION x1
           ran            0  <- planned != ran
    >>> bars({})
    '(no nodes to chart)'
    """
    counted = _checked_rows(rows)
    _check_width(width)
    first, second = _checked_labels(labels)
    shown = _checked_notes(notes, counted)
    if not counted:
        return EMPTY
    names = sorted(counted, key=lambda name: (natural_key(name), name))
    largest = max(max(pair) for pair in counted.values())
    name_width = max(len(name) for name in names)
    label_width = max(len(first), len(second))
    count_width = len(str(largest))
    mismatch = f"  <- {first} != {second}"
    lines = []
    for name in names:
        planned, ran = counted[name]
        for i, (label, count, mark) in enumerate(
                ((first, planned, FIRST_BAR), (second, ran, SECOND_BAR))):
            bar = mark * _scaled(count, largest, width)
            line = (f"{name if i == 0 else '':<{name_width}}  {label:<{label_width}}  "
                    f"{bar:<{width}}  {count:>{count_width}}")
            if i == 0 and shown.get(name):
                line += f"  {shown[name]}"
            if i == 1 and planned != ran:
                line += mismatch
            lines.append(line)
    return "\n".join(lines)


def tally(pairs: Iterable[tuple[str, str | None]]) -> dict[str, tuple[int, int]]:
    """Per node, (placements planned there, placements that ran there), from one
    ``(planned node, ran node)`` pair per placement; a ran node of None (never reported) counts
    for the planned node only. The result is what :func:`bars` draws.

    >>> tally([("node0", "node0"), ("node0", "node1"), ("node1", None)])
    {'node0': (2, 1), 'node1': (1, 1)}
    """
    planned: dict[str, int] = {}
    ran: dict[str, int] = {}
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"each placement must be a (planned node, ran node) pair, got "
                             f"{pair!r:.60}: e.g. tally([('node0', 'node0'), ('node0', None)])")
        intended, actual = pair
        planned[intended] = planned.get(intended, 0) + 1
        if actual is not None:
            ran[actual] = ran.get(actual, 0) + 1
    return {name: (planned.get(name, 0), ran.get(name, 0)) for name in {**planned, **ran}}


def _scaled(count: int, largest: int, width: int) -> int:
    """Characters for ``count`` when ``largest`` fills ``width``: rounded half up, at least one
    for a count above 0."""
    if count == 0:
        return 0
    return max(1, (2 * count * width + largest) // (2 * largest))


def _checked_rows(rows: object) -> dict[str, tuple[int, int]]:
    if not isinstance(rows, Mapping):
        raise ValueError(f"rows must map node names to (planned, ran) counts, got "
                         f"{type(rows).__name__}: e.g. {_EXAMPLE}")
    counted: dict[str, tuple[int, int]] = {}
    for name, pair in rows.items():
        _check_text("a node name", name, f"name nodes as {_EXAMPLE} does")
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"node {name!r} must have two counts (planned, ran), got "
                             f"{pair!r:.60}: e.g. {_EXAMPLE}")
        for count in pair:
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"the counts of node {name!r} must be whole numbers >= 0, got "
                                 f"{count!r:.40}: count placements, e.g. {_EXAMPLE}")
        counted[name] = (pair[0], pair[1])
    return counted


def _check_width(width: object) -> None:
    if isinstance(width, bool) or not isinstance(width, int) \
            or not MIN_WIDTH <= width <= MAX_WIDTH:
        raise ValueError(f"width must be a whole number of characters from {MIN_WIDTH} to "
                         f"{MAX_WIDTH}, got {width!r:.40}: e.g. width={DEFAULT_WIDTH}")


def _checked_labels(labels: object) -> tuple[str, str]:
    if not (isinstance(labels, tuple) and len(labels) == 2):
        raise ValueError(f"labels must be a pair of names for the two counts, got "
                         f"{labels!r:.60}: e.g. labels={DEFAULT_LABELS!r}")
    for label in labels:
        _check_text("each label", label, f"e.g. labels={DEFAULT_LABELS!r}")
    return labels[0], labels[1]


def _checked_notes(notes: object, rows: Mapping[str, object]) -> dict[str, str]:
    if notes is None:
        return {}
    if not isinstance(notes, Mapping):
        raise ValueError(f"notes must map node names to text, got {type(notes).__name__}: "
                         "e.g. notes={'node1': 'VIOLATION x1'}")
    for name, note in notes.items():
        if name not in rows:
            raise ValueError(f"a note names node {name!r:.60}, which has no counts: note only "
                             f"nodes of the rows ({', '.join(map(repr, rows)) or 'none'})")
        if not (isinstance(note, str) and note.isprintable()):
            raise ValueError(f"the note of node {name!r} must be one line of text, got "
                             f"{note!r:.60}: e.g. notes={{{name!r}: 'VIOLATION x1'}}")
    return dict(notes)


def _check_text(what: str, text: object, fix: str) -> None:
    """One line of visible text: no line breaks or tabs, which would break the chart's rows."""
    if not (isinstance(text, str) and text and text.isprintable()):
        raise ValueError(f"{what} must be non-empty text on one line, got {text!r:.60}: {fix}")
