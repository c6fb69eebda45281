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
# run.sh [--dir DIR] [--scenarios 1,2,3] [--keep]: up.sh, the scenarios, and always down.sh (unless --keep).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="" SCEN="1,2,3" KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR="$2"; shift 2 ;;
    --scenarios) SCEN="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "usage: run.sh [--dir DIR] [--scenarios 1,2,3] [--keep]" >&2; exit 2 ;;
  esac
done
DIR="${DIR:-$(mktemp -d /tmp/scaleout.XXXXXX)}"
[ $KEEP -eq 1 ] || trap '"$HERE/down.sh" "$DIR"' EXIT
start=$SECONDS
"$HERE/up.sh" "$DIR" || exit 1
echo "[run] deployment up in $((SECONDS - start)) s; state in $DIR" >&2
# shellcheck disable=SC1091
. "$DIR/env"
t0=$SECONDS
"$SCALEOUT_VENV/bin/python" "$HERE/scenarios.py" --scenarios "$SCEN"
rc=$?
echo "[run] scenarios took $((SECONDS - t0)) s (total $((SECONDS - start)) s); exit $rc" >&2
exit $rc
