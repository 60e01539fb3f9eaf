# Sourced by the scripts: makes sure the repo's virtual environment exists and holds this
# package with its test and docs extras, reinstalling when pyproject.toml changed. Sets $VENV_BIN.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${PLACEMENT_VENV:-$REPO_ROOT/.venv}"
VENV_BIN="$VENV/bin"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.placement-installed"
wanted=$(cat "$REPO_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV_BIN/python" ]; then
  echo "placement: creating virtual environment in $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "placement: installing ray-placement and its test tools into $VENV (first run takes a minute)" >&2
  "$VENV_BIN/python" -m pip install --quiet --disable-pip-version-check -e "$REPO_ROOT[test,docs]" >&2
  echo "$wanted" > "$stamp"
fi
export PATH="$VENV_BIN:$PATH"
