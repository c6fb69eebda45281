#!/usr/bin/env bash
# Create (or refresh) the virtualenv of one supported Airflow line from its committed lock file,
# with the provider installed in editable mode.   Usage: dev/setup-venv.sh airflow3|airflow2
set -euo pipefail
source "$(dirname "$0")/lib.sh"

line="${1:?usage: dev/setup-venv.sh airflow3|airflow2}"
minor="$(line_python "$line")"
venv="$(line_venv "$line")"
ensure_uv
python="$(find_python "$minor")"

if [ ! -x "$venv/bin/python" ]; then
  uv venv --quiet --python "$python" "$venv"
fi
uv pip sync --quiet --python "$venv/bin/python" "$REPO_ROOT/requirements/$line.lock.txt"
uv pip install --quiet --python "$venv/bin/python" --no-deps -e "$REPO_ROOT"
echo "$venv ready ($("$venv/bin/python" --version))" >&2
