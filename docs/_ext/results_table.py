"""``.. results-table:: benchmarks/results-<date>-<name>.json``: a table of a committed results
file, so the figures on the benchmarks page are the ones a script printed, never copied by hand.

Options: ``:benchmark:`` keeps the rows of one benchmark, ``:match:`` the rows whose contender
matches a regular expression. Each row is ``{"benchmark", "contender", "value", "unit",
"note"}`` (what ``benchmarks/*.py --json`` write; the full run's file holds them under
``"results"``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

REPO = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    return data["results"] if isinstance(data, dict) else data


def _value(row: dict[str, Any]) -> str:
    value = row["value"]
    if isinstance(value, float):
        value = f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    elif isinstance(value, int):
        value = f"{value:,}"
    return f"{value} {row.get('unit', '')}".strip()


class ResultsTable(SphinxDirective):
    required_arguments = 1
    option_spec = {"benchmark": directives.unchanged, "match": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        path = REPO / self.arguments[0]
        if not path.is_file():
            raise self.error(f"results-table: no file {self.arguments[0]} (paths are from the "
                             "repository's root)")
        self.env.note_dependency(str(path))
        rows = _rows(path)
        if "benchmark" in self.options:
            rows = [r for r in rows if r.get("benchmark") == self.options["benchmark"]]
        if "match" in self.options:
            rows = [r for r in rows if re.search(self.options["match"], r["contender"])]
        if not rows:
            raise self.error(f"results-table: no rows of {self.arguments[0]} match {self.options}")
        table = _table(["contender", "value", "how"],
                       [[row["contender"], _value(row), row.get("note") or ""] for row in rows])
        source = nodes.paragraph()
        source += nodes.Text("From ")
        source += nodes.literal(text=self.arguments[0])
        source += nodes.Text(".")
        return [table, source]


def _table(header: list[str], body: list[list[str]]) -> nodes.table:
    """A docutils table of plain text cells (no markup is read in them: a ``|`` stays a ``|``)."""
    table = nodes.table()
    group = nodes.tgroup(cols=len(header))
    table += group
    for width in (50, 15, 35):
        group += nodes.colspec(colwidth=width)
    for part, rows in ((nodes.thead(), [header]), (nodes.tbody(), body)):
        for cells in rows:
            row = nodes.row()
            for cell in cells:
                entry = nodes.entry()
                entry += nodes.paragraph(text=cell)
                row += entry
            part += row
        group += part
    return table


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("results-table", ResultsTable)
    return {"version": "1", "parallel_read_safe": True}
