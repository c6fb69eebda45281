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
if [ "$line" = airflow2 ]; then
  # The editable install puts src/ on sys.path, and src/airflow/providers/__init__.py (the namespace stub
  # every apache/airflow provider carries; the wheel has none) then hides the provider on Airflow 2.11:
  # its airflow/exceptions.py imports airflow.providers.cncf.kubernetes before airflow/__init__.py extends
  # airflow.__path__, so airflow.providers is fixed as a namespace without src/, and a regular package
  # found later is never merged into it. Point the editable path at a tree without the stubs instead
  # (the provider code itself stays the live source, through a symlink).
  shadow="$venv/provider-src"
  mkdir -p "$shadow/airflow/providers"
  ln -sfn "$REPO_ROOT/src/airflow/providers/backend" "$shadow/airflow/providers/backend"
  for pth in "$venv"/lib/python*/site-packages/airflow.providers.backend.ai.pth; do
    echo "$shadow" > "$pth"
  done
fi
echo "$venv ready ($("$venv/bin/python" --version))" >&2
