"""Sphinx configuration: the placement docs site (``sphinx-build -W -b html docs docs/_build``)."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "docs" / "_ext"))

project = "placement"
author = "placement developers"
copyright = "2026, placement developers"
release = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "results_table"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
# the docstrings' own examples are run by pytest --doctest-modules; the pages' examples by
# tests/test_docs.py against the session cluster
nitpicky = False
html_theme = "furo"
html_title = "placement"
html_static_path = ["_static"]
exclude_patterns = ["_build"]
