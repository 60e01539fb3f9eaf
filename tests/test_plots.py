"""benchmarks/plots.py: valid SVG carrying the series and values it was given, the newest results
file of each kind, and ``--check`` against the committed images. No Ray."""
from __future__ import annotations

import importlib.util
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import REPO

pytestmark = pytest.mark.unit
SVG = "{http://www.w3.org/2000/svg}"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plots", REPO / "benchmarks" / "plots.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plots = _load()


def _row(benchmark: str, contender: str, value: float, unit: str, **extra: object) -> dict:
    return {"benchmark": benchmark, "contender": contender, "value": value, "unit": unit,
            "note": "", **extra}


BALANCE = [
    _row("balance", "RoundRobin(), 8 tasks", 0.0, "(max-min)/mean",
         per_node={"node0": 4, "node1": 4}),
    _row("balance", "RoundRobin(), 42 tasks", 0.0, "(max-min)/mean",
         per_node={"node0": 21, "node1": 21}),
    _row("balance", "Ray DEFAULT, 42 tasks", 1.9, "(max-min)/mean",
         per_node={"node0": 41, "node1": 1}),
    _row("balance", "Ray SPREAD, 42 tasks", 0.38, "(max-min)/mean",
         per_node={"node0": 17, "node1": 25}),
]
MAKESPAN = [
    _row("makespan", "LeastLoaded(), seconds", 2.53, "s"),
    _row("makespan", "RoundRobin(), seconds", 3.02, "s"),
    _row("makespan", "LeastLoaded() / RoundRobin()", 0.841, "x"),
]
DECIDE = [
    _row("decide", "RoundRobin() @ 10 nodes", 1.73, "us/decision"),
    _row("decide", "RoundRobin() @ 100,000 nodes", 2.71, "us/decision"),
    _row("decide", "Local() @ 10 nodes", 1.48, "us/decision"),
    _row("decide", "Local() @ 100,000 nodes", 2.44, "us/decision"),
    _row("decide", "reference: an empty Python function call", 52.6, "ns"),
]


def _texts(svg: str) -> set[str]:
    """What the SVG's text elements say (parsing it: it must be well-formed XML)."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return {"".join(element.itertext()) for element in root.iter(f"{SVG}text")}


def test_balance_plot_shows_each_contender_and_the_counts_of_the_largest_run():
    texts = _texts(plots.balance_plot(BALANCE, "from test"))
    assert {"RoundRobin()", "Ray DEFAULT", "Ray SPREAD", "node0", "node1"} <= texts
    assert {"21", "41", "1", "17", "25"} <= texts  # none of them an axis tick (0, 10, ... 50)
    assert "4" not in texts  # the 8-task run is not the one drawn
    assert any("42 tasks on 2 nodes" in text for text in texts)


def test_makespan_plot_shows_each_policy_and_its_seconds_per_cluster():
    svg = plots.makespan_plot({"same nodes": MAKESPAN,
                               "unequal nodes": [dict(MAKESPAN[0], value=2.16)]})
    texts = _texts(svg)
    assert {"LeastLoaded()", "RoundRobin()", "same nodes", "unequal nodes"} <= texts
    assert {"2.53 s", "3.02 s", "2.16 s"} <= texts
    assert "0.841 s" not in texts  # ratios are not seconds


def test_decide_plot_shows_a_line_per_case_on_a_log_axis():
    svg = plots.decide_plot(DECIDE)
    texts = _texts(svg)
    assert {"RoundRobin()", "Local()", "10", "100,000", "1.73", "2.71", "1.48", "2.44"} <= texts
    assert any("(log scale)" in text for text in texts)
    assert len(ET.fromstring(svg).findall(f"{SVG}polyline")) == 2
    only = _texts(plots.decide_plot(DECIDE, ("Local()", "Absent()")))
    assert "Local()" in only and "RoundRobin()" not in only and "Absent()" not in only


def test_names_with_xml_special_characters_stay_text():
    odd = "AntiAffinity() | RoundRobin() <&>"
    rows = [_row("decide", f"{odd} @ 10 nodes", 1.5, "us/decision")]
    assert odd in _texts(plots.decide_plot(rows))
    assert odd in _texts(plots.makespan_plot({"a & b": [_row("makespan", f"{odd}, seconds", 2,
                                                              "s")]}))


def test_the_same_results_give_the_same_bytes():
    assert plots.decide_plot(DECIDE) == plots.decide_plot(json.loads(json.dumps(DECIDE)))


def test_newest_results_file_of_a_kind_wins(tmp_path: Path):
    for name, value in (("results-2026-01-01-decide.json", 1.0),
                        ("results-2026-02-01-decide.json", 2.0),
                        ("results-2026-02-01b-decide.json", 3.0),
                        ("results-2026-03-01-decide-13.json", 4.0)):
        (tmp_path / name).write_text(json.dumps([_row("decide", "A() @ 10 nodes", value, "us")]))
    (tmp_path / "results-2026-04-01.json").write_text(json.dumps({"results": BALANCE}))
    path, rows = plots.newest(tmp_path, "decide")
    assert path.name == "results-2026-02-01b-decide.json" and rows[0]["value"] == 3.0
    assert plots.newest(tmp_path, None)[0].name == "results-2026-04-01.json"
    assert plots.newest(tmp_path, "makespan") is None


def test_check_passes_on_the_committed_images_and_fails_after_one_is_altered(tmp_path: Path):
    assert plots.main(["--check"]) == 0
    copy = tmp_path / "plots"
    shutil.copytree(plots.OUT, copy)
    assert plots.main(["--check", "--out", str(copy)]) == 0
    image = copy / "decide.svg"
    image.write_text(image.read_text().replace("1,000", "1,001", 1))
    assert plots.main(["--check", "--out", str(copy)]) == 1
    assert plots.main(["--out", str(copy)]) == 0  # regenerating restores it
    assert plots.main(["--check", "--out", str(copy)]) == 0
