#!/usr/bin/env bash
# The benchmarks (benchmarks/run.py): --quick for small sizes. Installs what it needs on first run.
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
cd "$REPO_ROOT"
exec "$VENV_BIN/python" benchmarks/run.py "$@"
