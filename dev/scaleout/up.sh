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
# up.sh DIR: a production-shaped Airflow 3 deployment on 127.0.0.1 only: PostgreSQL, Redis, api-server,
# scheduler, dag-processor, two Celery workers, two triggerers, and (unless BACKEND_ENDPOINT/_ACCESS_KEY/
# _SECRET_KEY are set) the Backend.AI emulator. Every process runs in its own session (setsid); its pid
# (= process group id) is written to DIR/pids/<name>.pid. DIR/env holds what the scenarios need.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIR="${1:?usage: up.sh DIR}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
VENV="${SCALEOUT_VENV:-$HERE/.venv-scaleout}"
PGUSER_OS="${SCALEOUT_PG_OS_USER:-}"
log() { printf '[up %s] %s\n' "$(date +%T)" "$*" >&2; }
# shellcheck source=../lib.sh
source "$REPO/dev/lib.sh"   # UV_* settings, ensure_uv, find_python

# -- system packages: PostgreSQL and Redis from Debian (a fresh CI machine as root has neither) ---------
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v redis-server >/dev/null \
    || ! command -v psql >/dev/null || ! command -v setpriv >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing postgresql and redis-server (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      postgresql postgresql-client redis-server util-linux iproute2 procps curl >/dev/null
  else
    log "PostgreSQL (postgres, psql), redis-server and setpriv are needed: install them (or run as root)"; exit 1
  fi
fi
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"

# -- the venv ---------------------------------------------------------------------------------------
# A marker holds the hash of the inputs: a venv whose build was interrupted, or built from an older lock, is
# built again.
venv_inputs="$(cat "$HERE/requirements.lock.txt" "$HERE/overrides.txt" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/airflow" ] || [ "$(cat "$VENV/.scaleout-ready" 2>/dev/null)" != "$venv_inputs" ]; then
  ensure_uv
  py="$(find_python 3.13)"
  log "creating $VENV from $py"
  if [ -f "$VENV/pyvenv.cfg" ]; then rm -rf "$VENV"  # an interrupted or outdated build
  elif [ -e "$VENV" ]; then log "$VENV exists and is not a venv: not touching it"; exit 1; fi
  uv venv --quiet --python "$py" "$VENV"
  # requirements.lock.txt = the repository's airflow3 lock + requirements.in, except packaging 26.3 and
  # python-dateutil 2.9.0.post0 (the lock's 26.4 / 4.0.0 are accepted by no Celery >= 5.5).
  VIRTUAL_ENV="$VENV" uv pip install --quiet --override "$HERE/overrides.txt" -r "$HERE/requirements.lock.txt"
  VIRTUAL_ENV="$VENV" uv pip install --quiet --no-deps -e "$REPO"
  echo "$venv_inputs" >"$VENV/.scaleout-ready"
fi
AIRFLOW="$VENV/bin/airflow"

free_port() { "$VENV/bin/python" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/cmds"
start() {  # start NAME CMD...: own session, output to DIR/logs/NAME.log, pid to DIR/pids/NAME.pid
  local name="$1"; shift
  # The exact command, shell-quoted, so that restart.sh DIR NAME can start the component again.
  printf '%q ' "$@" >"$DIR/cmds/$name"
  setsid "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/pids/$name.pid"
  log "started $name (pid $!)"
}
wait_for() {  # wait_for WHAT SECONDS CMD...
  local what="$1" secs="$2"; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then log "timed out waiting for $what"; return 1; fi
    for f in "$DIR"/pids/*.pid; do
      if ! kill -0 "$(cat "$f")" 2>/dev/null; then
        log "$(basename "$f" .pid) died; the end of its log:"; tail -20 "$DIR/logs/$(basename "$f" .pid).log" >&2; return 1
      fi
    done
    sleep 0.5
  done
}

# -- PostgreSQL (initdb refuses root: run it as a non-root OS user) ------------------------------------
if [ -z "$PGUSER_OS" ]; then
  if id pgrun >/dev/null 2>&1; then PGUSER_OS=pgrun
  else
    id airflowpg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin airflowpg
    PGUSER_OS=airflowpg
  fi
fi
PG_PORT="$(free_port)"
chmod o+x "$DIR"
mkdir -p "$DIR/pg"
chown "$PGUSER_OS": "$DIR/pg"
as_pg() { setpriv --reuid="$PGUSER_OS" --regid="$PGUSER_OS" --clear-groups "$@"; }
if [ ! -s "$DIR/pg/data/PG_VERSION" ]; then
  as_pg "$PGBIN/initdb" -D "$DIR/pg/data" -U airflow -A trust -E UTF8 --no-sync >"$DIR/logs/initdb.log" 2>&1
fi
start postgres setpriv --reuid="$PGUSER_OS" --regid="$PGUSER_OS" --clear-groups \
  "$PGBIN/postgres" -D "$DIR/pg/data" -c listen_addresses=127.0.0.1 -p "$PG_PORT" \
  -c unix_socket_directories="$DIR/pg" -c max_connections=300 -c fsync=off -c synchronous_commit=off
wait_for postgres 30 "$PGBIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -U airflow
psql -h 127.0.0.1 -p "$PG_PORT" -U airflow -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='airflow'" \
  | grep -q 1 || psql -h 127.0.0.1 -p "$PG_PORT" -U airflow -d postgres -qc "CREATE DATABASE airflow"

# -- Redis --------------------------------------------------------------------------------------------
REDIS_PORT="$(free_port)"
mkdir -p "$DIR/redis"
start redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$DIR/redis" \
  --protected-mode yes --daemonize no
wait_for redis 20 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping

# -- Backend.AI: the emulator, or a real manager --------------------------------------------------------
if [ -n "${BACKEND_ENDPOINT:-}" ] && [ -n "${BACKEND_ACCESS_KEY:-}" ] && [ -n "${BACKEND_SECRET_KEY:-}" ]; then
  BAI_ENDPOINT="$BACKEND_ENDPOINT" BAI_AK="$BACKEND_ACCESS_KEY" BAI_SK="$BACKEND_SECRET_KEY"
  BAI_IMAGE="${BACKEND_IMAGE:-cr.backend.ai/stable/python:3.9-ubuntu20.04}"
  BAI_KIND=manager
  log "using the Backend.AI manager at $BAI_ENDPOINT"
else
  start emulator env PYTHONPATH="$REPO/emulator" "$VENV/bin/python" -u -m backend_ai_emulator --port 0
  wait_for emulator 20 grep -q BACKEND_AI_TEST_IMAGE "$DIR/logs/emulator.log"
  BAI_ENDPOINT="$(sed -n 's/^export BACKEND_AI_TEST_ENDPOINT=//p' "$DIR/logs/emulator.log")"
  BAI_AK="$(sed -n 's/^export BACKEND_AI_TEST_ACCESS_KEY=//p' "$DIR/logs/emulator.log")"
  BAI_SK="$(sed -n 's/^export BACKEND_AI_TEST_SECRET_KEY=//p' "$DIR/logs/emulator.log")"
  BAI_IMAGE="$(sed -n 's/^export BACKEND_AI_TEST_IMAGE=//p' "$DIR/logs/emulator.log")"
  BAI_KIND=emulator
fi
CONN_JSON="$("$VENV/bin/python" -c 'import json,sys; print(json.dumps({"conn_type": "backend_ai", "host": sys.argv[1], "login": sys.argv[2], "password": sys.argv[3]}))' "$BAI_ENDPOINT" "$BAI_AK" "$BAI_SK")"

# -- Airflow -----------------------------------------------------------------------------------------
API_PORT="$(free_port)"
mkdir -p "$DIR/airflow"
cat >"$DIR/env" <<EOF
export SCALEOUT_DIR='$DIR'
export SCALEOUT_VENV='$VENV'
export SCALEOUT_PORTS='$PG_PORT $REDIS_PORT $API_PORT'
export SCALEOUT_API='http://127.0.0.1:$API_PORT'
export SCALEOUT_PG_PORT='$PG_PORT'
export SCALEOUT_REDIS_PORT='$REDIS_PORT'
export SCALEOUT_BACKEND='$BAI_KIND'
export BACKEND_AI_ENDPOINT='$BAI_ENDPOINT'
export BACKEND_AI_ACCESS_KEY='$BAI_AK'
export BACKEND_AI_SECRET_KEY='$BAI_SK'
export BACKEND_AI_IMAGE='$BAI_IMAGE'
export AIRFLOW_HOME='$DIR/airflow'
export AIRFLOW_CONN_BACKEND_AI_DEFAULT='$CONN_JSON'
export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN='postgresql+psycopg2://airflow@127.0.0.1:$PG_PORT/airflow'
export AIRFLOW__CELERY__BROKER_URL='redis://127.0.0.1:$REDIS_PORT/0'
export AIRFLOW__CELERY__RESULT_BACKEND='db+postgresql+psycopg2://airflow@127.0.0.1:$PG_PORT/airflow'
export AIRFLOW__CELERY__WORKER_CONCURRENCY=4
export AIRFLOW__CORE__DAGS_FOLDER='$HERE/dags'
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__CORE__PARALLELISM=64
export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=64
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL='http://127.0.0.1:$API_PORT/execution/'
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT='$API_PORT'
export AIRFLOW__API__BASE_URL='http://127.0.0.1:$API_PORT'
export AIRFLOW__API_AUTH__JWT_SECRET='scaleout-local-only-jwt-secret-0123456789abcdef'
export AIRFLOW__API__SECRET_KEY='scaleout-local-only-secret-key'
export AIRFLOW__LOGGING__BASE_LOG_FOLDER='$DIR/airflow/logs'
export AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC=1
export AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=20
export AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL=5
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=5
export AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC=2
export AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD=15
export AIRFLOW__SCHEDULER__TRIGGERER_HEALTH_CHECK_THRESHOLD=15
EOF
# shellcheck disable=SC1091
. "$DIR/env"
PATH="$VENV/bin:$PATH"; export PATH
log "airflow db migrate"
"$AIRFLOW" db migrate >"$DIR/logs/db-migrate.log" 2>&1

start api-server "$AIRFLOW" api-server -H 127.0.0.1 -p "$API_PORT" -w 1
start scheduler "$AIRFLOW" scheduler --skip-serve-logs
start dag-processor "$AIRFLOW" dag-processor
for n in 1 2; do
  start "worker$n" "$AIRFLOW" celery worker --skip-serve-logs --concurrency 4 --celery-hostname "worker$n@%h"
  start "triggerer$n" "$AIRFLOW" triggerer --skip-serve-logs
done
wait_for api-server 120 curl -sf "http://127.0.0.1:$API_PORT/api/v2/monitor/health"
wait_for "worker1/worker2" 120 bash -c "grep -q 'ready' '$DIR/logs/worker1.log' && grep -q 'ready' '$DIR/logs/worker2.log'"
log "up: api http://127.0.0.1:$API_PORT  postgres :$PG_PORT  redis :$REDIS_PORT  backend.ai $BAI_ENDPOINT"
