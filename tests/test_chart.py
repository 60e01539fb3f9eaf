"""The per-node ASCII chart (placement/chart.py), the Audit's chart and the demo's charts: pure,
no Ray cluster (the audit module imports Ray's package, starts nothing)."""
from __future__ import annotations

import re

import pytest

from placement.audit import NOT_REPORTED, OK, SOFT_FALLBACK, VIOLATION, AuditReport, AuditRow
from placement.chart import EMPTY, MAX_WIDTH, MIN_WIDTH, bars, tally
from placement.demo import Check, charts

# One chart line: node name (blank on a node's second line), label, bar, count, the rest.
LINE = re.compile(r"^(\S*)\s+(\S+)\s+([#=]*)\s+(\d+)(.*)$")


def parsed(chart: str) -> list[tuple[str, str, str, int, str]]:
    rows = []
    for line in chart.splitlines():
        match = LINE.match(line)
        assert match, f"not a chart line: {line!r}"
        name, label, bar, count, rest = match.groups()
        rows.append((name, label, bar, int(count), rest))
    return rows


def bar_lengths(chart: str) -> dict[tuple[str, str], int]:
    """(node, label) -> characters of its bar."""
    found: dict[tuple[str, str], int] = {}
    node = ""
    for name, label, bar, _, _ in parsed(chart):
        node = name or node
        found[node, label] = len(bar)
    return found


def test_the_largest_count_fills_the_width_and_the_others_scale_to_it():
    lengths = bar_lengths(bars({"node0": (40, 20), "node1": (10, 30)}, width=20))
    assert lengths == {("node0", "planned"): 20, ("node0", "ran"): 10,
                       ("node1", "planned"): 5, ("node1", "ran"): 15}


def test_scaling_rounds_half_up_and_a_count_above_zero_is_never_invisible():
    lengths = bar_lengths(bars({"node0": (1000, 1), "node1": (3, 0)}, width=40))
    assert lengths[("node0", "planned")] == 40
    assert lengths[("node0", "ran")] == 1  # 0.04 characters: shown as one, not as none
    assert lengths[("node1", "planned")] == 1  # 0.12
    assert lengths[("node1", "ran")] == 0
    # 1 of 4 at width 10 is 2.5 characters: 3, not banker's rounding's 2
    assert bar_lengths(bars({"a": (4, 1)}, width=10))[("a", "ran")] == 3


def test_bars_of_one_chart_line_up_and_counts_are_printed_at_their_end():
    chart = bars({"node0": (7, 123), "a-long-name": (0, 5)}, width=12)
    lines = chart.splitlines()
    matches = [LINE.match(line) for line in lines]
    assert all(matches)
    assert len({m.start(3) for m in matches if m.group(3)}) == 1  # every bar starts in one column
    assert len({m.end(4) for m in matches}) == 1  # every count ends in one column
    assert [row[3] for row in parsed(chart)] == [0, 5, 7, 123]
    assert all(line == line.rstrip() for line in lines)  # no trailing blanks in CI logs


def test_nodes_come_in_natural_order():
    chart = bars({"node10": (1, 1), "node2": (1, 1), "node1": (1, 1), "node0": (1, 1)})
    assert [row[0] for row in parsed(chart) if row[0]] == ["node0", "node1", "node2", "node10"]


def test_zero_counts_draw_no_bar_and_an_all_zero_chart_does_not_divide_by_zero():
    chart = bars({"node0": (0, 0), "node1": (0, 0)}, width=5)
    assert [(row[2], row[3]) for row in parsed(chart)] == [("", 0)] * 4
    assert "<-" not in chart


def test_only_a_node_whose_counts_differ_is_marked_on_its_second_line():
    chart = bars({"node0": (2, 2), "node1": (2, 3), "node2": (1, 0)})
    marked = [(row[0], row[1]) for row in parsed(chart) if "<- planned != ran" in row[4]]
    rows = parsed(chart)
    names = [rows[i - 1][0] for i, row in enumerate(rows) if "<- planned != ran" in row[4]]
    assert marked == [("", "ran"), ("", "ran")]
    assert names == ["node1", "node2"]


def test_the_marker_and_rows_use_the_labels_given():
    chart = bars({"node0": (1, 2)}, labels=("asked", "got"))
    assert [row[1] for row in parsed(chart)] == ["asked", "got"]
    assert chart.endswith("<- asked != got")


def test_notes_go_on_the_nodes_first_line():
    chart = bars({"node0": (1, 1), "node1": (1, 1)}, notes={"node1": "VIOLATION x1"})
    assert [row[4].strip() for row in parsed(chart)] == ["", "", "VIOLATION x1", ""]


def test_the_chart_is_plain_ascii():
    chart = bars({"node0": (3, 1), "node1": (0, 2)}, notes={"node0": "flagged"})
    assert chart.isascii()
    assert set(chart) - set(" \n") <= set("#=<-!0123456789abcdefghijklmnopqrstuvwxyz")


def test_empty_input_says_there_is_nothing_to_chart():
    assert bars({}) == EMPTY == "(no nodes to chart)"
    assert tally([]) == {}


@pytest.mark.parametrize("width", [MIN_WIDTH, 7, MAX_WIDTH])
def test_widths_within_bounds_give_the_largest_bar_that_many_characters(width):
    assert bar_lengths(bars({"node0": (9, 3)}, width=width))[("node0", "planned")] == width


@pytest.mark.parametrize("width", [0, -1, MAX_WIDTH + 1, True, 4.0, "40", None])
def test_a_width_out_of_bounds_is_refused_with_an_example(width):
    with pytest.raises(ValueError, match=r"width must be a whole number of characters "
                                         r"from 1 to 200, .*e\.g\. width=40"):
        bars({"node0": (1, 1)}, width=width)
    with pytest.raises(ValueError, match="width must be"):  # even with nothing to draw
        bars({}, width=width)


@pytest.mark.parametrize(("rows", "message"), [
    ([("node0", (1, 1))], "rows must map node names to .* got list: e.g. bars"),
    ({"node0": (-1, 1)}, "counts of node 'node0' must be whole numbers >= 0, got -1"),
    ({"node0": (1.5, 1)}, "must be whole numbers >= 0, got 1.5"),
    ({"node0": (True, 1)}, "must be whole numbers >= 0, got True"),
    ({"node0": (1, None)}, "must be whole numbers >= 0, got None"),
    ({"node0": (1, 1, 1)}, r"node 'node0' must have two counts \(planned, ran\)"),
    ({"node0": 3}, r"node 'node0' must have two counts \(planned, ran\), got 3"),
    ({"node0": "12"}, "must have two counts"),
    ({"": (1, 1)}, "a node name must be non-empty text on one line, got ''"),
    ({"node\n0": (1, 1)}, "a node name must be non-empty text on one line"),
    ({3: (1, 1)}, "a node name must be non-empty text on one line, got 3"),
])
def test_bad_rows_are_refused_naming_the_fix(rows, message):
    with pytest.raises(ValueError, match=message) as info:
        bars(rows)
    assert "e.g." in str(info.value) or "name nodes as" in str(info.value)


@pytest.mark.parametrize("labels", [("planned",), ("a", "b", "c"), ["a", "b"], ("", "ran"),
                                    ("plan\tned", "ran"), (1, 2), "ab"])
def test_bad_labels_are_refused_with_an_example(labels):
    with pytest.raises(ValueError, match=r"label.* e\.g\. labels=\('planned', 'ran'\)"):
        bars({"node0": (1, 1)}, labels=labels)


def test_bad_notes_are_refused_naming_the_fix():
    with pytest.raises(ValueError, match="note names node 'node9', which has no counts: note "
                                         "only nodes of the rows \\('node0'\\)"):
        bars({"node0": (1, 1)}, notes={"node9": "x"})
    with pytest.raises(ValueError, match="note of node 'node0' must be one line of text"):
        bars({"node0": (1, 1)}, notes={"node0": "two\nlines"})
    with pytest.raises(ValueError, match="notes must map node names to text, got list"):
        bars({"node0": (1, 1)}, notes=[("node0", "x")])


def test_tally_counts_planned_and_ran_per_node_and_unreported_as_planned_only():
    assert tally([("node0", "node0"), ("node0", "node1"), ("node1", None), ("node2", "node0")]) \
        == {"node0": (2, 2), "node1": (1, 1), "node2": (1, 0)}
    with pytest.raises(ValueError, match=r"\(planned node, ran node\) pair, got 'node0'"):
        tally(["node0"])


def _row(intended: str, actual: str | None, verdict: str, ident: str = "t") -> AuditRow:
    return AuditRow("task", ident, "RoundRobin()", intended, actual, False, verdict)


def test_audit_chart_counts_planned_beside_ran_and_flags_violations_on_the_planned_node():
    report = AuditReport((
        _row("node0", "node0", OK), _row("node10", "node2", VIOLATION),
        _row("node2", "node2", OK), _row("node2", None, NOT_REPORTED),
        _row("node10", "node10", SOFT_FALLBACK),
    ))
    chart = report.chart(width=10)
    rows = parsed(chart.rsplit("\n", 1)[0])
    firsts = {row[0]: row for row in rows if row[0]}
    assert list(firsts) == ["node0", "node2", "node10"]
    assert firsts["node10"][4].strip() == "VIOLATION x1, soft fallback x1"
    assert firsts["node2"][4].strip() == "not reported x1"
    assert firsts["node0"][4] == ""
    assert [(row[1], row[3]) for row in rows] == [
        ("planned", 1), ("ran", 1), ("planned", 2), ("ran", 2), ("planned", 2), ("ran", 1)]
    assert chart.endswith("5 placements: VIOLATION: 1, not reported: 1, ok: 2, soft fallback: 1")


def test_audit_chart_flags_swapped_violations_even_when_the_counts_agree():
    report = AuditReport((_row("node0", "node1", VIOLATION), _row("node1", "node0", VIOLATION)))
    chart = report.chart()
    assert "<-" not in chart  # one each planned, one each ran
    assert chart.count("VIOLATION x1") == 2


def test_audit_chart_of_no_placements():
    assert AuditReport(()).chart().startswith(EMPTY)


def test_demo_charts_one_per_check_that_placed_work():
    checks = [
        Check("RoundRobin()", "even", "node0:1, node1:2", True,
              [("node0", "node0"), ("node1", "node1"), ("node10", "node1")]),
        Check("RoundRobin() with num_cpus=10000", "refused", "refused", True),
    ]
    shown = charts(checks, width=6)
    head, *body = shown.splitlines()
    assert head == "RoundRobin(): 3 placed, 2 where planned"
    assert [row[0] for row in parsed("\n".join(body)) if row[0]] == ["node0", "node1", "node10"]
    assert "num_cpus=10000" not in shown
    assert charts([checks[1]]) == ""
