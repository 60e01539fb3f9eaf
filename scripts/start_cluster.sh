#!/usr/bin/env bash
# placement cluster start: see `scripts/start_cluster.sh --help`. Installs what it needs on first run.
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
exec "$VENV_BIN/placement" cluster start "$@"
