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
# Set up both supported Airflow lines from the lock files, then run the static checks and the whole test
# suite on each line. This is README.rst's test command, and what .ci/run calls.
#   LINES="airflow3" bash dev/test.sh        # one line only
#   bash dev/test.sh -k emulator             # extra arguments go to pytest
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

lines="${LINES:-airflow3 airflow2}"

# The browser test drives Debian's Chromium; without it those tests are skipped (as root we install it).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing chromium and chromium-driver (browser test) ==" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "warning: chromium/chromedriver missing and not root: the browser tests will be skipped" >&2
  fi
fi
for line in $lines; do
  bash dev/setup-venv.sh "$line"
done

lint=".venv-airflow3/bin"
if [ -x "$lint/python" ]; then
  echo "== static checks (ruff, mypy, provider info, provider conformance) ==" >&2
  "$lint/ruff" check .
  "$lint/ruff" format --check .
  "$lint/mypy" --cache-dir "$REPO_ROOT/.mypy_cache"
  "$lint/python" scripts/gen_provider_info.py --check
  echo "== apache/airflow's provider checks (scripts/check_provider_conformance.py) ==" >&2
  "$lint/python" scripts/check_provider_conformance.py
  echo "== docs (sphinx, warnings are errors) ==" >&2
  "$lint/sphinx-build" -W --keep-going -q -b html docs docs/_build/html
fi

status=0
for line in $lines; do
  echo "== tests on $line ($("$(line_venv "$line")/bin/python" --version)) ==" >&2
  "$(line_venv "$line")/bin/python" -m pytest -q "$@" || status=$?
done
exit "$status"
