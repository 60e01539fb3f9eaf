#!/usr/bin/env bash
# placement demo: see `scripts/run_demo.sh --help`. Installs what it needs on first run.
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
exec "$VENV_BIN/placement" demo "$@"
