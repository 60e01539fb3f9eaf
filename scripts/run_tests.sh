#!/usr/bin/env bash
# The test suite: unit, property and real multi-node cluster tests. Installs what it needs on
# first run (a virtual environment in .venv). Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
cd "$REPO_ROOT"
exec "$VENV_BIN/python" -m pytest "$@"
