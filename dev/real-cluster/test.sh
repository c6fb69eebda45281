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
# Run the provider's tests against the real cluster that up.sh DIR started: the SDK-level contract suite,
# the provider tests (tests/integration/backend/ai/real_cluster; its busy-cluster scenarios as a part of their
# own), the system-test Dags (tests/system), and the
# quick completion-floor benchmark (benchmarks/floor/: lag after a job's end, requests/s per watched session, 200 deferred
# sessions in one loop; fails on a broken budget), on the Airflow 3 venv.
# Every part runs even if an earlier one fails; the exit status is 1 if any failed. Prints the time of each.
#
# usage: test.sh DIR [extra pytest args...]
#   PYTHON=/path/to/python   interpreter to use (default: .venv-airflow3/bin/python of this work tree)
#   FLOOR_REPORT=FILE        where the floor benchmark's Markdown report goes
#                            (default: artifacts/benchmarks-floor-quick.md of this work tree)
#   BACKEND_AI_RC_FLOOR=0    skip the floor benchmark (about 3-4 minutes)
set -uo pipefail

[ $# -ge 1 ] || { echo "usage: $0 DIR [pytest args...]" >&2; exit 2; }
DIR="$1"
shift
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv-airflow3/bin/python}"
if [ ! -f "$DIR/cluster.env" ]; then
  echo "test.sh: $DIR/cluster.env does not exist: run dev/real-cluster/up.sh $DIR first" >&2
  exit 2
fi
set -a
# shellcheck disable=SC1091
. "$DIR/cluster.env"
set +a
# The system tests read these two.
export BACKEND_AI_IMAGE="${BACKEND_AI_IMAGE:-$BACKEND_AI_TEST_IMAGE}"
: "${AIRFLOW_CONN_BACKEND_AI_DEFAULT_REAL:?cluster.env does not set AIRFLOW_CONN_BACKEND_AI_DEFAULT_REAL}"

cd "$REPO" || exit 2
failed=()
total_start=$SECONDS

# The manager allows 1,000 unauthenticated requests per client IP per 15 minutes (hard-coded in 26.9.6), and
# every SDK session open sends one (GET /, the version negotiation): the parts together come close to it.
# Each part starts with a fresh window, so that one part's volume cannot fail the next with HTTP 429.
reset_anonymous_rate_limit() {
  local port=""
  if [ -f "$DIR/run/ports.env" ]; then
    port="$(sed -n 's/^declare -- PORT_REDIS="\([0-9]*\)"$/\1/p' "$DIR/run/ports.env")"
  fi
  if [ -n "$port" ] && command -v redis-cli >/dev/null; then
    redis-cli -h 127.0.0.1 -p "$port" -n 1 --scan --pattern 'ip.*.rate_limit_window' \
      | xargs -r redis-cli -h 127.0.0.1 -p "$port" -n 1 del >/dev/null || true
  fi
}

run_part() {
  local name="$1" start=$SECONDS rc
  shift
  reset_anonymous_rate_limit
  echo "[test.sh] ${name}: $*"
  "$PYTHON" -m pytest "$@" -q
  rc=$?
  echo "[test.sh] ${name}: exit ${rc} in $((SECONDS - start)) s"
  [ "$rc" -eq 0 ] || failed+=("$name")
}

run_part contract tests/integration/backend/ai/contract "$@"
busy=tests/integration/backend/ai/real_cluster/test_busy_cluster.py
run_part real_cluster tests/integration/backend/ai/real_cluster --ignore="$busy" "$@"
# Preemption turned on through the admin API (and restored): reschedule (sync + deferrable, one requeue),
# terminate with the retry policy, job_priority from a Dag. About 3.5 minutes, mostly the manager's 60 s
# passes and a first run that must outlast startup_timeout (see README.md, "Preemption").
run_part busy_cluster "$busy" "$@"
run_part system tests/system "$@"

# Last, on an idle cluster: the quick completion floor against this manager (cluster.env is loaded, so
# benchmarks/floor/ targets it). It prints its report, tables included; exit 1 on a broken budget.
if [ "${BACKEND_AI_RC_FLOOR:-1}" != 0 ]; then
  floor_start=$SECONDS
  report="${FLOOR_REPORT:-$REPO/artifacts/benchmarks-floor-quick.md}"
  mkdir -p "$(dirname "$report")"
  reset_anonymous_rate_limit
  echo "[test.sh] floor: $PYTHON -m benchmarks.run --quick --only 6 --output $report"
  "$PYTHON" -m benchmarks.run --quick --only 6 --output "$report"
  rc=$?
  echo "[test.sh] floor: exit ${rc} in $((SECONDS - floor_start)) s"
  [ "$rc" -eq 0 ] || failed+=(floor)
fi

echo "[test.sh] total $((SECONDS - total_start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "[test.sh] FAILED: ${failed[*]}"
  exit 1
fi
echo "[test.sh] all passed"
