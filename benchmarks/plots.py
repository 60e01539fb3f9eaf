"""Plots for the documentation, drawn from the committed benchmark results: SVG written by plain
Python, the same bytes for the same results (fixed number formats, no dates).

    python benchmarks/plots.py              # writes docs/_static/plots/*.svg
    python benchmarks/plots.py --check      # exit 1 if regenerating would change an image (CI)
    python benchmarks/plots.py --out DIR    # somewhere else

Each plot reads the newest results file of its kind: by the date in the name, then the letter
after it (``results-2026-11-22b.json`` is newer than ``results-2026-11-22.json``), so a new run's
file replaces the old one. The kind is what follows the date: ``-decide``, ``-makespan``,
``-makespan-unequal``; none for the full run of ``benchmarks/run.py``.

- ``balance.svg``: tasks per node, RoundRobin against Ray DEFAULT and SPREAD (the largest task
  count of the newest file whose balance rows record ``per_node``);
- ``makespan.svg``: makespan per policy, seconds (``-makespan`` and ``-makespan-unequal``);
- ``decide.svg``: microseconds per decision against cluster size (``-decide``).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "docs" / "_static" / "plots"
RESULTS_NAME = re.compile(r"results-(\d{4}-\d{2}-\d{2})([a-z]?)(?:-(.+))?\.json")
# One case per policy, of the many benchmarks/decide.py times (a line each; absent ones skipped).
DECIDE_CASES = ("RoundRobin()", "RoundRobin(weights='capacity')", "Affinity()",
                "AntiAffinity() (cap 1)", "Packing() existing group", "Local()", "LeastLoaded()",
                "Locality(), 3 nodes hold arguments")
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
WIDTH, HEIGHT = 880, 440
LEFT, TOP, RIGHT, BOTTOM = 70, 70, WIDTH - 280, HEIGHT - 70  # the plot area; legend on the right

Row = dict[str, Any]


def newest(folder: Path, kind: str | None,
           accept: Callable[[list[Row]], bool] = bool) -> tuple[Path, list[Row]] | None:
    """The newest results file in ``folder`` of ``kind`` (None: any kind) whose rows ``accept``
    takes, with its rows (a file holds a list of rows, or a run's report with ``results``)."""
    found = []
    for path in folder.glob("results-*.json"):
        match = RESULTS_NAME.fullmatch(path.name)
        if match and (kind is None or (match[3] or "") == kind):
            found.append(((match[1], match[2], path.name), path))
    for _, path in sorted(found, reverse=True):
        data = json.loads(path.read_text())
        rows = data["results"] if isinstance(data, dict) else data
        if accept(rows):
            return path, rows
    return None


def _n(value: float) -> str:
    """A coordinate, always with one decimal: the same bytes on every machine."""
    return f"{value:.1f}"


def _ticks(top: float) -> list[float]:
    """Round axis ticks from 0 to at least ``top``: about five steps of 1, 2, 2.5 or 5 x 10^k."""
    raw = max(top, 1e-9) / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    return [round(i * step, 9) for i in range(math.ceil(top / step - 1e-9) + 1)]


def _frame(title: str, subtitle: str, ylabel: str, xlabel: str, ticks: list[float],
           legend: list[tuple[str, str]], line_legend: bool) -> list[str]:
    """The SVG's opening, titles, y grid with its labels, axis labels and legend."""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="26" text-anchor="middle" font-size="16" '
           f'font-weight="bold">{escape(title)}</text>',
           f'<text x="{WIDTH / 2}" y="46" text-anchor="middle" font-size="11" '
           f'fill="#555">{escape(subtitle)}</text>']
    for tick in ticks:
        y = BOTTOM - tick / ticks[-1] * (BOTTOM - TOP)
        out += [f'<line x1="{LEFT}" y1="{_n(y)}" x2="{RIGHT}" y2="{_n(y)}" stroke="#ddd"/>',
                f'<text x="{LEFT - 6}" y="{_n(y + 4)}" text-anchor="end">{tick:g}</text>']
    out += [f'<line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}" stroke="black"/>',
            f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="black"/>',
            f'<text transform="translate(20,{_n((TOP + BOTTOM) / 2)}) rotate(-90)" '
            f'text-anchor="middle">{escape(ylabel)}</text>',
            f'<text x="{_n((LEFT + RIGHT) / 2)}" y="{HEIGHT - 16}" '
            f'text-anchor="middle">{escape(xlabel)}</text>']
    for i, (name, color) in enumerate(legend):
        y = TOP + 6 + 20 * i
        out.append(f'<line x1="{RIGHT + 20}" y1="{y}" x2="{RIGHT + 38}" y2="{y}" stroke="{color}" '
                   f'stroke-width="2"/><circle cx="{RIGHT + 29}" cy="{y}" r="3.5" fill="{color}"/>'
                   if line_legend else
                   f'<rect x="{RIGHT + 22}" y="{y - 6}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{RIGHT + 44}" y="{y + 4}">{escape(name)}</text>')
    return out


def bar_chart(title: str, subtitle: str, ylabel: str, xlabel: str, groups: list[str],
              series: dict[str, list[float | None]], suffix: str = "") -> str:
    """Grouped bars, one colour per series, each bar labelled with its value (and ``suffix``);
    ``series`` maps a name to its value in each group (None: no bar)."""
    values = [v for column in series.values() for v in column if v is not None]
    ticks = _ticks(max(values, default=1) * 1.08)
    legend = [(name, COLORS[i % len(COLORS)]) for i, name in enumerate(series)]
    out = _frame(title, subtitle, ylabel, xlabel, ticks, legend, line_legend=False)
    group_width = (RIGHT - LEFT) / max(len(groups), 1)
    bar = group_width * 0.8 / max(len(series), 1)
    for g, group in enumerate(groups):
        left = LEFT + g * group_width
        out.append(f'<text x="{_n(left + group_width / 2)}" y="{BOTTOM + 18}" '
                   f'text-anchor="middle">{escape(group)}</text>')
        for s, ((_, color), column) in enumerate(zip(legend, series.values(), strict=True)):
            value = column[g]
            if value is None:
                continue
            x = left + group_width * 0.1 + s * bar
            y = BOTTOM - value / ticks[-1] * (BOTTOM - TOP)
            out += [f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(bar - 2)}" '
                    f'height="{_n(BOTTOM - y)}" fill="{color}"/>',
                    f'<text x="{_n(x + bar / 2 - 1)}" y="{_n(y - 4)}" text-anchor="middle" '
                    f'font-size="10">{value:g}{escape(suffix)}</text>']
    return "\n".join([*out, "</svg>", ""])


def line_chart(title: str, subtitle: str, ylabel: str, xlabel: str,
               series: dict[str, dict[int, float]]) -> str:
    """A line per series over positive x values (a log axis when they span two decades or more),
    every point labelled with its value; labels of one x are pushed apart so none overlap."""
    xs = sorted({x for points in series.values() for x in points})
    values = [v for points in series.values() for v in points.values()]
    ticks = _ticks(max(values, default=1) * 1.08)
    log = len(xs) > 1 and xs[-1] / xs[0] >= 100
    scale: Callable[[float], float] = math.log10 if log else float
    low, high = scale(xs[0]) if xs else 0, scale(xs[-1]) if xs else 1
    pad = 30

    def x_of(x: float) -> float:
        if high == low:
            return (LEFT + RIGHT) / 2
        return LEFT + pad + (scale(x) - low) / (high - low) * (RIGHT - LEFT - 2 * pad)

    def y_of(v: float) -> float:
        return BOTTOM - v / ticks[-1] * (BOTTOM - TOP)

    legend = [(name, COLORS[i % len(COLORS)]) for i, name in enumerate(series)]
    out = _frame(title, subtitle, ylabel, xlabel + (" (log scale)" if log else ""), ticks, legend,
                 line_legend=True)
    for x in xs:
        out.append(f'<text x="{_n(x_of(x))}" y="{BOTTOM + 18}" text-anchor="middle">{x:,}</text>')
    labels: dict[int, list[tuple[float, str, str]]] = {x: [] for x in xs}
    for (name, color), points in zip(legend, series.values(), strict=True):
        xy = [(x_of(x), y_of(v)) for x, v in sorted(points.items())]
        out.append(f'<polyline points="{" ".join(f"{_n(a)},{_n(b)}" for a, b in xy)}" '
                   f'fill="none" stroke="{color}" stroke-width="2"/>')
        for (x, v), (a, b) in zip(sorted(points.items()), xy, strict=True):
            out.append(f'<circle cx="{_n(a)}" cy="{_n(b)}" r="3.5" fill="{color}">'
                       f'<title>{escape(name)} at {x:,}: {v:g}</title></circle>')
            labels[x].append((b, f"{v:g}", color))
    for x, column in labels.items():
        column.sort()
        spread = [column[0][0]] if column else []
        for y, _, _ in column[1:]:
            spread.append(max(y, spread[-1] + 11))
        shift = max(0.0, spread[-1] - BOTTOM + 4) if spread else 0.0
        for y, (_, text, color) in zip(spread, column, strict=True):
            out.append(f'<text x="{_n(x_of(x) + 6)}" y="{_n(y - shift + 4)}" font-size="9.5" '
                       f'fill="{color}" stroke="white" stroke-width="3" paint-order="stroke">'
                       f'{text}</text>')
    return "\n".join([*out, "</svg>", ""])


def balance_plot(rows: list[Row], source: str = "") -> str:
    """Tasks per node for each contender of the balance benchmark, at its largest task count."""
    runs: dict[int, dict[str, dict[str, int]]] = {}
    for r in rows:
        if r["benchmark"] == "balance" and "per_node" in r:
            name, tasks = r["contender"].rsplit(", ", 1)
            runs.setdefault(int(tasks.split()[0]), {})[name] = r["per_node"]
    tasks = max(runs)
    nodes = list(dict.fromkeys(node for counts in runs[tasks].values() for node in counts))
    series = {name: [counts.get(node) for node in nodes] for name, counts in runs[tasks].items()}
    return bar_chart("Tasks per node: RoundRobin against Ray's own strategies",
                     f"{tasks} tasks on {len(nodes)} nodes, submitted at once; {source}",
                     "tasks", "node", nodes, series)


def makespan_plot(runs: dict[str, list[Row]], source: str = "") -> str:
    """Makespan in seconds per policy, a group of bars per cluster (``runs``: name -> rows)."""
    groups, series = [], {}
    for g, (cluster, rows) in enumerate(runs.items()):
        seconds = [r for r in rows if r["benchmark"] == "makespan" and r["unit"] == "s"]
        cpus = re.search(r" on (\d+) CPUs", seconds[0]["note"]) if seconds else None
        groups.append(f"{cluster}, {cpus[1]} CPUs" if cpus else cluster)
        for r in seconds:
            column = series.setdefault(r["contender"].removesuffix(", seconds"), [None] * len(runs))
            column[g] = r["value"]
    note = next((r["note"] for rows in runs.values() for r in rows if r["unit"] == "s"), "")
    how = note.split(", ")[:2]  # the tasks and their durations, the same in every run
    return bar_chart("Makespan of heavy-tailed one-CPU tasks (lower is better)",
                     "; ".join([*how, source]), "seconds, first submission to last result",
                     "cluster", groups, series, " s")


def decide_plot(rows: list[Row], cases: tuple[str, ...] | None = None, source: str = "") -> str:
    """Microseconds per decision against the simulated cluster's node count, a line per case
    (those of ``cases`` present, in that order; None: every case)."""
    series: dict[str, dict[int, float]] = {}
    for r in rows:
        if r["benchmark"] == "decide" and r["unit"] == "us/decision":
            case, size = r["contender"].rsplit(" @ ", 1)
            series.setdefault(case, {})[int(size.split()[0].replace(",", ""))] = r["value"]
    if cases is not None:
        series = {case: series[case] for case in cases if case in series}
    reference = [r["value"] for r in rows if r["contender"].startswith("reference:")]
    speed = [f"an empty Python call took {reference[0]:g} ns"] if reference else []
    return line_chart("Cost of one placement decision against cluster size",
                      "; ".join(["propose + commit, no Ray", *speed, source]),
                      "microseconds per decision", "nodes in the simulated cluster", series)


def plots(folder: Path = HERE) -> dict[str, str]:
    """Every plot whose results ``folder`` has: file name -> SVG text. What cannot be drawn is
    said on stderr, with the command whose results would draw it."""
    drawn = {}
    balance = newest(folder, None, lambda rows: any(
        r.get("benchmark") == "balance" and "per_node" in r for r in rows))
    if balance:
        drawn["balance.svg"] = balance_plot(balance[1], f"from {balance[0].name}")
    else:
        print("balance.svg: no results file records tasks per node (per_node) yet; run "
              "scripts/run_benchmarks.sh --json benchmarks/results-DATE.json", file=sys.stderr)
    makespan = {label: newest(folder, kind) for kind, label in
                (("makespan", "same nodes"), ("makespan-unequal", "unequal nodes"))}
    found = {label: run for label, run in makespan.items() if run}
    if found:
        drawn["makespan.svg"] = makespan_plot(
            {label: rows for label, (_, rows) in found.items()},
            "from " + ", ".join(path.name for path, _ in found.values()))
    decide = newest(folder, "decide")
    if decide:
        drawn["decide.svg"] = decide_plot(decide[1], DECIDE_CASES, f"from {decide[0].name}")
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the images go ({OUT})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if an image would change")
    args = parser.parse_args(argv)
    stale = []
    for name, svg in plots().items():
        path = args.out / name
        if args.check:
            if not path.is_file() or path.read_bytes() != svg.encode():
                stale.append(name)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_bytes(svg.encode())
            print(path)
    if stale:
        print(f"out of date in {args.out}: {', '.join(stale)}; run python benchmarks/plots.py",
              file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
