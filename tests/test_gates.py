"""Quality gates: ruff, mypy --strict and import-linter, each run as its own process with the
project's configuration (pyproject.toml [tool.ruff], setup.cfg [mypy] and [importlinter]).

They need no Ray cluster: the tools read the source, nothing here imports Ray.
"""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gates

REPO = Path(__file__).resolve().parent.parent
SETUP_CFG = REPO / "setup.cfg"
BIN = Path(sys.executable).parent
TOOL_TIMEOUT_SECONDS = 300
_MAX_SHOWN_CHARS = 30_000


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=REPO, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )


def _passes(done: subprocess.CompletedProcess[str]) -> None:
    """Fail, showing the command, its exit code and what it printed, unless it exited 0."""
    if done.returncode == 0:
        return
    output = (done.stdout + done.stderr).strip()
    if len(output) > _MAX_SHOWN_CHARS:  # keep the end: the tools print their summary last
        output = "[... cut ...]\n" + output[-_MAX_SHOWN_CHARS:]
    pytest.fail(f"`{' '.join(map(str, done.args))}` exited with {done.returncode}:\n{output}",
                pytrace=False)


def test_ruff_passes() -> None:
    done = _run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                 "placement", "tests", "examples", "benchmarks"])
    _passes(done)


def test_mypy_strict_passes() -> None:
    # The files to check (placement/) and strict mode come from setup.cfg's [mypy] section.
    done = _run([sys.executable, "-m", "mypy", "--config-file", str(SETUP_CFG)])
    _passes(done)


def test_import_contracts_hold() -> None:
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    if not config.has_section("importlinter"):
        pytest.fail(
            f"{SETUP_CFG} has no [importlinter] section, so there are no import contracts to "
            "check: add the section (root_packages = placement) and its [importlinter:contract:*] "
            "sections"
        )
    lint_imports = BIN / "lint-imports"
    assert lint_imports.exists(), (
        f"{lint_imports} is missing: run `bash scripts/_bootstrap.sh` to install the test tools"
    )
    done = _run([str(lint_imports), "--config", str(SETUP_CFG), "--no-cache"])
    _passes(done)
