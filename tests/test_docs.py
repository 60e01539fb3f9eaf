"""The docs: the site builds with warnings as errors, and every Python example in the README and
in docs/ runs, a page at a time in one fresh process (as a reader pastes it), against the
session's 4-node cluster."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import placement

from .conftest import REPO, clean_env

PAGES = sorted([REPO / "README.rst", *(REPO / "docs").rglob("*.rst")])
_BLOCK = re.compile(r"^( *)(\.\. code-block:: *(\w*)|.*::)\n((?:\1 +.*\n|[ \t]*\n)+)",
                    re.MULTILINE)


def blocks(page: Path) -> list[tuple[str, str]]:
    """(language, code) of every literal block of ``page``: ``python`` for
    ``.. code-block:: python``, ``""`` for a ``::`` block."""
    found = []
    for match in _BLOCK.finditer(page.read_text()):
        if match.group(2).startswith(".. code-block::"):
            language = match.group(3)
        elif match.group(2).lstrip().startswith(".. "):
            continue  # another directive's options or content
        else:
            language = ""
        found.append((language, textwrap.dedent(match.group(4)).strip("\n")))
    return found


def _runs_python(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.Call) for node in ast.walk(tree))


def _name(page: Path) -> str:
    return str(page.relative_to(REPO))


RUNNABLE = [page for page in PAGES if any(lang == "python" for lang, _ in blocks(page))]


def test_the_readme_is_short():
    assert len((REPO / "README.rst").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_python_is_never_in_a_plain_literal_block(page):
    """A ``::`` block that is Python would escape the run below: it must say ``code-block::
    python`` (shell commands and output stay ``::``)."""
    hidden = [code for lang, code in blocks(page) if lang == "" and _runs_python(code)
              and not code.lstrip().startswith(">>>")]
    assert not hidden, f"{_name(page)}: mark as '.. code-block:: python':\n" + "\n--\n".join(hidden)


def test_every_public_name_is_in_the_reference():
    reference = (REPO / "docs" / "reference.rst").read_text()
    documented = set(re.findall(r"^\.\. auto\w+:: placement\.(\w+)", reference, re.MULTILINE))
    assert documented == set(placement.PUBLIC)


@pytest.mark.gates
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(REPO / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "html" / "index.html").exists()


@pytest.mark.cluster
@pytest.mark.parametrize("page", RUNNABLE, ids=_name)
def test_the_page_examples_run_on_the_cluster(local_cluster, page):
    code = "\n\n".join(code for lang, code in blocks(page) if lang == "python")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
        env=clean_env(**local_cluster.env()), cwd=REPO, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, (
        f"{_name(page)}'s examples failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
