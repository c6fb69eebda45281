#!/usr/bin/env bash
# Shared helpers for the dev/ scripts: where the venvs live and how to find the interpreters.
# Sourced, not executed.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export UV_PYTHON_DOWNLOADS=never   # never fetch a managed CPython: this machine reaches PyPI only
export UV_COMPILE_BYTECODE=1       # without .pyc, `import airflow` takes twice as long

# line name -> Python minor version
line_python() {
  case "$1" in
    airflow3) echo 3.13 ;;
    airflow2) echo 3.12 ;;
    *) echo "unknown line '$1' (expected airflow3 or airflow2)" >&2; return 2 ;;
  esac
}

line_venv() { echo "$REPO_ROOT/.venv-$1"; }

# Print the path of a working pythonX.Y: $PYTHON_X_Y if set, then PATH, then pyenv's versions folder
# (pyenv's shims fail by version name on this kind of machine, so they are not trusted).
find_python() {
  local minor="$1" var="PYTHON_${1/./_}" candidate
  for candidate in "${!var:-}" "$(command -v "python$minor" 2>/dev/null)" \
      $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$minor".*/bin/python"$minor" 2>/dev/null | sort -V -r); do
    [ -n "$candidate" ] || continue
    if "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$minor'.split('.'))))" 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "no working python$minor found (set $var to its path)" >&2
  return 1
}

ensure_uv() {
  if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet "uv==0.13.9" >&2
  fi
}
