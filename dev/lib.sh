#!/usr/bin/env bash
# Licensed to the Apache Software Foundation (ASF) under one
# or more contributor license agreements.  See the NOTICE file
# distributed with this work for additional information
# regarding copyright ownership.  The ASF licenses this file
# to you under the Apache License, Version 2.0 (the
# "License"); you may not use this file except in compliance
# with the License.  You may obtain a copy of the License at
#
#   http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing,
# software distributed under the License is distributed on an
# "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY
# KIND, either express or implied.  See the License for the
# specific language governing permissions and limitations
# under the License.
#
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
