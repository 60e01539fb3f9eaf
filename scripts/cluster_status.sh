#!/usr/bin/env bash
# placement status: see `scripts/cluster_status.sh --help`. Installs what it needs on first run.
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
exec "$VENV_BIN/placement" status "$@"
