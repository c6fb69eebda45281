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
# run.sh [N ...] [--dir DIR] [--keep] [--report FILE]: up.sh, the scenarios (all five by default, or the
# numbers given: `run.sh 1 2 3`), and always down.sh (unless --keep), via a trap on every exit path.
# Prints the results table and writes it to FILE (default: artifacts/scaleout.md, or $SCALEOUT_REPORT).
# Exits non-zero when the deployment does not come up, a scenario fails, or the teardown leaves anything.
# A real Backend.AI manager instead of the emulator: set BACKEND_ENDPOINT, BACKEND_ACCESS_KEY,
# BACKEND_SECRET_KEY (and BACKEND_IMAGE).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIR="" SCEN="" KEEP=0 REPORT="${SCALEOUT_REPORT:-$REPO/artifacts/scaleout.md}"
usage() { echo "usage: run.sh [1 2 3 4 5] [--dir DIR] [--keep] [--report FILE]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR="${2:?}"; shift 2 ;;
    --scenarios) SCEN="$SCEN,${2:?}"; shift 2 ;;  # the older form: --scenarios 1,2,3
    --report) REPORT="${2:?}"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    [1-9]) SCEN="$SCEN,$1"; shift ;;
    *) usage ;;
  esac
done
SCEN="${SCEN#,}"; SCEN="${SCEN:-1,2,3,4,5}"
DIR="${DIR:-$(mktemp -d /tmp/scaleout.XXXXXX)}"
rc=0
teardown() {
  [ $KEEP -eq 1 ] && { echo "[run] --keep: the deployment still runs; stop it with $HERE/down.sh $DIR" >&2; return; }
  "$HERE/down.sh" "$DIR" || { echo "[run] teardown left something running (see above)" >&2; rc=1; }
}
trap 'teardown; exit $rc' EXIT
trap 'echo "[run] interrupted" >&2; rc=130; exit' INT TERM HUP
start=$SECONDS
if ! "$HERE/up.sh" "$DIR"; then
  echo "[run] the deployment did not come up; logs in $DIR/logs" >&2
  rc=1; exit
fi
echo "[run] deployment up in $((SECONDS - start)) s; state in $DIR" >&2
# shellcheck disable=SC1091
. "$DIR/env"
t0=$SECONDS
"$SCALEOUT_VENV/bin/python" "$HERE/scenarios.py" --scenarios "$SCEN" --report "$REPORT" || rc=$?
echo "[run] scenarios $SCEN took $((SECONDS - t0)) s (total $((SECONDS - start)) s); exit $rc" >&2
exit
