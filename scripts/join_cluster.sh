#!/usr/bin/env bash
# placement cluster join: this host joins a running Ray cluster as node<i>; see
# `scripts/join_cluster.sh --help`. Installs what it needs on first run.
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
exec "$VENV_BIN/placement" cluster join "$@"
