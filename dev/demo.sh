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
# README's first command: set up the Airflow 3 line, start the local Backend.AI emulator, run the example
# Dag with `airflow dags test`, show where the job output is, and stop everything this script started.
#
# Against a real cluster instead of the emulator:
#   BACKEND_AI_ENDPOINT=https://api.example.com BACKEND_AI_ACCESS_KEY=... BACKEND_AI_SECRET_KEY=... \
#   BACKEND_AI_IMAGE=cr.backend.ai/stable/python:3.9-ubuntu20.04 bash dev/demo.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

bash dev/setup-venv.sh airflow3
venv="$(line_venv airflow3)"
work="$(mktemp -d -t backend-ai-demo.XXXXXX)"
emulator_pid=""
cleanup() {
  if [ -n "$emulator_pid" ] && kill -0 "$emulator_pid" 2>/dev/null; then
    kill -TERM "$emulator_pid" && wait "$emulator_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT INT TERM

if [ -n "${BACKEND_AI_ENDPOINT:-}" ]; then
  endpoint="$BACKEND_AI_ENDPOINT"
  access_key="${BACKEND_AI_ACCESS_KEY:?set BACKEND_AI_ACCESS_KEY}"
  secret_key="${BACKEND_AI_SECRET_KEY:?set BACKEND_AI_SECRET_KEY}"
  echo "== using the Backend.AI manager at $endpoint ==" >&2
else
  PYTHONPATH="$REPO_ROOT/emulator" "$venv/bin/python" -m backend_ai_emulator --port 0 > "$work/emulator.out" 2>&1 &
  emulator_pid=$!
  for _ in $(seq 100); do
    grep -q '^export BACKEND_AI_TEST_IMAGE=' "$work/emulator.out" 2>/dev/null && break
    kill -0 "$emulator_pid" 2>/dev/null || { cat "$work/emulator.out" >&2; exit 1; }
    sleep 0.1
  done
  # shellcheck disable=SC1090
  source <(grep '^export ' "$work/emulator.out")
  endpoint="$BACKEND_AI_TEST_ENDPOINT" access_key="$BACKEND_AI_TEST_ACCESS_KEY" secret_key="$BACKEND_AI_TEST_SECRET_KEY"
  echo "== started the local Backend.AI emulator at $endpoint ==" >&2
fi

export AIRFLOW_HOME="$work/airflow-home"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$REPO_ROOT/tests/system/backend/ai"
# The example Dag ends with apache/airflow's system-test tail (tests_common's get_test_run and watcher);
# outside apache/airflow the stand-in in dev/standalone answers those imports.
export PYTHONPATH="$REPO_ROOT/dev/standalone${PYTHONPATH:+:$PYTHONPATH}"
AIRFLOW_CONN_BACKEND_AI_DEFAULT="$("$venv/bin/python" -c 'import json, sys; print(json.dumps({"conn_type": "backend_ai", "host": sys.argv[1], "login": sys.argv[2], "password": sys.argv[3]}))' "$endpoint" "$access_key" "$secret_key")"
export AIRFLOW_CONN_BACKEND_AI_DEFAULT

"$venv/bin/airflow" db migrate > "$work/db-migrate.log" 2>&1
cat >&2 <<'TEXT'
== running the example Dag example_backend_ai (airflow dags test) ==
   Two tasks are MEANT TO FAIL. fails_on_purpose runs `echo about to fail; exit 3` to show what a failed
   Backend.AI job looks like: its task fails with BackendAIJobFailedError quoting the job's last log lines,
   and its session is kept for debugging (on_finish_action="destroy_on_success"). check_labels is a
   @task.backend_ai function that raises ValueError in its session: its task fails with
   BackendAIPythonTaskError quoting the exception. The tracebacks you will see for them are expected;
   report_failure and report_bad_labels then check that each failure was caught, so the Dag run still
   succeeds.
TEXT
status=0
# The console shows Airflow's output with a note around the deliberate failure; the log keeps it unchanged.
"$venv/bin/airflow" dags test example_backend_ai 2>&1 | tee "$work/dags-test.log" | awk '
  /starting task_id=fails_on_purpose/ { print "   >>> fails_on_purpose starts now: it is meant to fail (exit 3); a traceback follows" }
  /starting task_id=check_labels/ { print "   >>> check_labels starts now: its function is meant to raise ValueError; a traceback follows" }
  { print }
  /end task task_id=fails_on_purpose/ { print "   <<< fails_on_purpose failed as intended: the traceback above is expected, the run goes on" }
  /end task task_id=check_labels/ { print "   <<< check_labels failed as intended: the traceback above is expected, the run goes on" }
' || status=$?

echo >&2
echo "== what happened (task, state, Backend.AI session, first line the job printed) ==" >&2
"$venv/bin/python" dev/demo_summary.py || status=1
echo "   fails_on_purpose (its command exits 3) and check_labels (its function raises) failed on purpose;" >&2
echo "   report_failure and report_bad_labels caught them. watcher runs only if another task fails, so it is" >&2
echo "   skipped. The whole log is $work/dags-test.log" >&2
exit "$status"
