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
# Bring up a real local Backend.AI cluster in DIR: PostgreSQL, Redis, etcd, manager 26.9.6 and one
# agent with the dummy backend (batch jobs run with bash as "nobody"), all on 127.0.0.1. Writes
# DIR/cluster.env for the e2e tests. Stop it with down.sh DIR. See README.md.
#
# usage: up.sh DIR
# env:   BACKEND_AI_RC_PORT_BASE (default 28100; uses the 20 ports above it)
#        BACKEND_AI_RC_CACHE     (venv cache, default ${XDG_CACHE_HOME:-~/.cache}/backend-ai-real-cluster)
#        BACKEND_AI_RC_KEEP_ON_FAILURE=1  leave the daemons running when a step fails
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib.sh"
. "$HERE/common.sh"

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
rc_layout "$(cd "$1" && pwd)"
rc_ports

T0=$SECONDS
CURRENT_STEP="start"
CURRENT_LOG=""
STARTED=0

step() {
  CURRENT_STEP="$1"
  CURRENT_LOG="${2:-}"
  printf '[up.sh %3ds] %s\n' $((SECONDS - T0)) "$1"
}

fail() {
  trap - ERR INT TERM HUP
  set +e  # report and clean up whatever fails below
  {
    echo "up.sh: FAILED at step: $CURRENT_STEP"
    [ -z "${1:-}" ] || echo "up.sh: $1"
    if [ -n "$CURRENT_LOG" ] && [ -f "$CURRENT_LOG" ]; then
      # The root cause of a Python failure is often far above the last traceback.
      local errs
      errs="$(grep -E '^[A-Za-z_][A-Za-z0-9_.]*(Error|Exception)[A-Za-z]*: | (ERROR|FATAL|CRITICAL) ' "$CURRENT_LOG" \
        | awk '!seen[$0]++' | head -n 8 | cut -c1-300 || true)"
      [ -z "$errs" ] || printf -- '---- error lines in %s ----\n%s\n' "$CURRENT_LOG" "$errs"
      echo "---- last 30 lines of $CURRENT_LOG ----"
      tail -n 30 "$CURRENT_LOG"
      echo "---- end of $CURRENT_LOG ----"
    fi
  } >&2
  if [ "$STARTED" = 1 ]; then
    if [ "${BACKEND_AI_RC_KEEP_ON_FAILURE:-0}" = 1 ]; then
      echo "up.sh: daemons left running (BACKEND_AI_RC_KEEP_ON_FAILURE=1); stop them with $HERE/down.sh $RC_DIR" >&2
    else
      echo "up.sh: stopping what was started (logs stay in $RC_LOGS)" >&2
      "$HERE/down.sh" "$RC_DIR" >&2 || true
    fi
  fi
  exit 1
}
trap 'fail "command failed (exit $?) at up.sh line $LINENO: $BASH_COMMAND"' ERR
trap 'fail "interrupted"' INT TERM HUP
trap '' PIPE  # a closed stdout makes the next echo fail, and fail() then cleans up

# Run a command with its output in LOG; on failure show which step and the log's tail.
logged() {
  local log="$1"; shift
  CURRENT_LOG="$log"
  "$@" >>"$log" 2>&1 || fail "'$*' exited with $?"
}

# Start a daemon in its own session (a failing manager signals its whole process group);
# its PID goes to run/NAME.pid.
start_daemon() {
  local name="$1"; shift
  STARTED=1
  setsid "$@" >"$RC_LOGS/$name.log" 2>&1 </dev/null &
  rc_record "$name" $!
}

# wait_until NAME TIMEOUT DESCRIPTION COMMAND...: poll until COMMAND succeeds, fail early if NAME died.
wait_until() {
  local name="$1" timeout="$2" what="$3"; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    rc_owned_pid "$name" >/dev/null || fail "$name exited while waiting for $what"
    [ "$SECONDS" -lt "$deadline" ] || fail "$what: not ready after ${timeout}s"
    sleep 0.3
  done
}

# ---------------------------------------------------------------------------------------------
step "preflight: nothing of a previous cluster may still run"
mkdir -p "$RC_RUN" "$RC_LOGS" "$RC_ETC"
for name in "${RC_SERVICES[@]}"; do
  if pid="$(rc_owned_pid "$name")"; then
    fail "$name from an earlier run still runs (pid $pid): run down.sh $RC_DIR first"
  fi
done
busy="$(rc_listening "${RC_ALL_PORTS[@]}" | tr '\n' ' ')"
[ -z "$busy" ] || fail "ports already in use: $busy(another cluster? set BACKEND_AI_RC_PORT_BASE or run down.sh)"
[ "$(id -u)" = 0 ] || fail "run as root (apt-get, the postgres user, and jobs as 'nobody' need it)"
# PostgreSQL's files go where its user can reach them: DIR/pg, or this when DIR is not searchable.
PG_FALLBACK="/tmp/backend-ai-rc-pg-$(printf '%s' "$RC_DIR" | sha256sum | cut -c1-12)"
# Nothing survives from an earlier run in the same DIR: everything is rebuilt.
rm -rf "$RC_DIR/pg" "$PG_FALLBACK" "$RC_DIR/etcd-data" "$RC_DIR/redis" "$RC_DIR/agent" "$RC_DIR/keys" \
  "$RC_DIR/bootstrap" "$RC_RUN" "$RC_LOGS" "$RC_ETC" "$RC_DIR/cluster.env"
mkdir -p "$RC_RUN/ipc" "$RC_LOGS" "$RC_ETC"
declare -p PORT_POSTGRES PORT_REDIS PORT_ETCD PORT_ETCD_PEER PORT_MANAGER PORT_MANAGER_INTERNAL \
  PORT_MANAGER_MON_TERM PORT_MANAGER_MON_WEB PORT_AGENT_RPC PORT_AGENT_INTERNAL PORT_AGENT_SOCK \
  PORT_AGENT_MON_TERM PORT_AGENT_MON_WEB PORT_AGENT_METADATA RC_ALL_PORTS >"$RC_RUN/ports.env"

# ---------------------------------------------------------------------------------------------
step "Debian packages (postgresql, redis-server, etcd-server)" "$RC_LOGS/apt.log"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
missing=()
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || missing+=(postgresql)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v etcd >/dev/null || missing+=(etcd-server)
command -v curl >/dev/null || missing+=(curl)
command -v setpriv >/dev/null || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "  installing: ${missing[*]}"
  # Keep the packages' postinst scripts from starting system-wide daemons.
  policy_rc=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy_rc=/usr/sbin/policy-rc.d
  fi
  apt_rc=0
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${missing[@]}"; } >>"$RC_LOGS/apt.log" 2>&1 || apt_rc=$?
  [ -z "$policy_rc" ] || rm -f "$policy_rc"
  [ "$apt_rc" = 0 ] || fail "apt-get failed (exit $apt_rc)"
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
fi
id pgrun >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin pgrun
id nobody >/dev/null 2>&1 || fail "user 'nobody' is missing (batch jobs run as nobody)"

# ---------------------------------------------------------------------------------------------
step "Python 3.13 venv with backend.ai-{manager,agent,client}==26.9.6" "$RC_LOGS/venv.log"
PYTHON="$(find_python 3.13)" || fail "no Python 3.13 interpreter found (set PYTHON_3_13)"
ensure_uv
CACHE="${BACKEND_AI_RC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/backend-ai-real-cluster}"
mkdir -p "$CACHE"
key="$( (cat "$HERE/requirements.lock.txt"; "$PYTHON" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)"
VENV="$CACHE/venv-$key"
exec 9>"$CACHE/.lock"
flock 9
if [ ! -f "$VENV/.complete" ]; then
  echo "  building $VENV (cached for later runs)"
  rm -rf "$VENV"
  logged "$RC_LOGS/venv.log" uv venv --no-config --quiet --python "$PYTHON" "$VENV"
  logged "$RC_LOGS/venv.log" uv pip install --no-config --compile-bytecode --python "$VENV/bin/python" \
    -r "$HERE/requirements.lock.txt"
  touch "$VENV/.complete"
else
  echo "  reusing $VENV"
fi
flock -u 9
ln -sfn "$VENV" "$RC_DIR/venv"
PY="$VENV/bin/python"
# Every manager/agent/CLI process gets the hook that disables the cloud metadata probe.
export PYTHONPATH="$HERE/pyhooks"
export DOCKER_HOST="unix://$RC_RUN/no-docker.sock"  # the manager builds (never uses) a Docker client
export BACKEND_AI_RC_DIR="$RC_DIR"  # the agent marks its batch jobs with it, for down.sh
logged "$RC_LOGS/venv.log" "$PY" -c '
import ai.backend.common.identity as identity
assert identity.CLOUD_PROBE_DISABLED and identity.current_provider is None
'

# ---------------------------------------------------------------------------------------------
step "configuration files"
PG_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
mkdir -p "$RC_DIR/keys" "$RC_DIR/bootstrap" "$RC_DIR/redis" "$RC_DIR/etcd-data" \
  "$RC_DIR/agent/var" "$RC_DIR/agent/scratches" "$RC_DIR/agent/vfroot" "$RC_DIR/agent/commit"
chmod 700 "$RC_DIR/keys"
logging_toml='[logging]
level = "INFO"
drivers = ["console"]

[logging.console]
colored = false
format = "verbose"

[logging.pkg-ns]
"" = "WARNING"
"ai.backend" = "INFO"
"aiohttp" = "WARNING"'
etcd_toml="[etcd]
namespace = \"local\"
addr = { host = \"127.0.0.1\", port = $PORT_ETCD }
user = \"\"
password = \"\""

cat >"$RC_ETC/manager.toml" <<EOF
# Generated by dev/real-cluster/up.sh
$etcd_toml

[db]
type = "postgresql"
addr = { host = "127.0.0.1", port = $PORT_POSTGRES }
name = "backend"
user = "postgres"
password = "$PG_PASSWORD"

[manager]
num-proc = 1
service-addr = { host = "127.0.0.1", port = $PORT_MANAGER }
internal-addr = { host = "127.0.0.1", port = $PORT_MANAGER_INTERNAL }
ipc-base-path = "$RC_RUN/ipc/manager"
pid-file = "$RC_RUN/manager.self.pid"
rpc-auth-manager-keypair = "$RC_DIR/keys/manager.key_secret"
aiomonitor-termui-port = $PORT_MANAGER_MON_TERM
aiomonitor-webui-port = $PORT_MANAGER_MON_WEB

[docker-registry]
ssl-verify = false

[debug]
enabled = false

$logging_toml
EOF
chmod 600 "$RC_ETC/manager.toml"

cat >"$RC_ETC/alembic.ini" <<EOF
# Generated by dev/real-cluster/up.sh
[alembic]
script_location = ai.backend.manager.models:alembic
sqlalchemy.url = postgresql+asyncpg://postgres:$PG_PASSWORD@127.0.0.1:$PORT_POSTGRES/backend
EOF
chmod 600 "$RC_ETC/alembic.ini"

cat >"$RC_ETC/agent.toml" <<EOF
# Generated by dev/real-cluster/up.sh
$etcd_toml

[agent]
backend = "dummy"
id = "i-e2e-dummy"
initial-resource-group-name = "default"
rpc-listen-addr = { host = "127.0.0.1", port = $PORT_AGENT_RPC }
advertised-rpc-addr = { host = "127.0.0.1", port = $PORT_AGENT_RPC }
internal-addr = { host = "127.0.0.1", port = $PORT_AGENT_INTERNAL }
agent-sock-port = $PORT_AGENT_SOCK
public-host = "127.0.0.1"
metadata-server-bind-host = "127.0.0.1"
metadata-server-port = $PORT_AGENT_METADATA
aiomonitor-termui-port = $PORT_AGENT_MON_TERM
aiomonitor-webui-port = $PORT_AGENT_MON_WEB
ipc-base-path = "$RC_RUN/ipc/agent"
var-base-path = "$RC_DIR/agent/var"
mount-path = "$RC_DIR/agent/vfroot"
image-commit-path = "$RC_DIR/agent/commit"
pid-file = "$RC_RUN/agent.self.pid"
allow-compute-plugins = []
cohabiting-storage-proxy = false

[container]
port-range = [$PORT_CONTAINER_FIRST, $PORT_CONTAINER_LAST]
bind-host = "127.0.0.1"
advertised-host = "127.0.0.1"
scratch-type = "hostdir"
scratch-root = "$RC_DIR/agent/scratches"

[resource]
reserved-cpu = 1
reserved-mem = "1G"
reserved-disk = "1G"

$logging_toml
EOF

# Read by the dummy backend from its working directory. Generous fake resources, short fake delays: 256 fake
# cores hold the 200 one-core sessions of the completion-floor benchmark (benchmarks/floor/) at once.
# cluster.env tells the tests (BACKEND_AI_TEST_AGENT_CPU), so that a preemption test can ask for more than half.
AGENT_CPU=256
cat >"$RC_DIR/agent/agent.dummy.toml" <<'EOF'
# Generated by dev/real-cluster/up.sh
[agent.delay]
scan-image = 0.1
pull-image = 0.1
push-image = 0.1
purge-images = 0.1
destroy-kernel = 0.1
clean-kernel = 0.1
create-network = 0.1
destroy-network = 0.1

[agent.image]
already-have = []

[agent.resource.cpu]
num-core = @AGENT_CPU@

[agent.resource.memory]
size = 549755813888

[kernel-creation-ctx.delay]
prepare-scratch = 0.1
prepare-ssh = 0.1
spawn = 0.1
start-container = 0.1
mount-krunner = 0.1

[kernel]
use-fake-code-runner = true

[kernel.delay]
check-status = 0.1
get-completions = 0.1
get-logs = 0.1
interrupt-kernel = 0.1
start-service = 0.1
start-model-service = 0.1
shutdown-service = 0.1
commit = 1.0
get-service-apps = 0.1
accept-file = 0.1
download-file = 0.1
download-single = 0.1
list-files = 0.1
EOF
sed -i "s/@AGENT_CPU@/$AGENT_CPU/" "$RC_DIR/agent/agent.dummy.toml"

# ---------------------------------------------------------------------------------------------
step "start PostgreSQL (127.0.0.1:$PORT_POSTGRES, as user pgrun)" "$RC_LOGS/postgres.log"
as_pgrun() { setpriv --reuid=pgrun --regid=pgrun --init-groups "$@"; }
PG_HOME="$RC_DIR/pg"
if ! as_pgrun test -x "$RC_DIR"; then
  PG_HOME="$PG_FALLBACK"
  echo "  user pgrun cannot search $RC_DIR: PostgreSQL's files go to $PG_HOME"
fi
mkdir -p "$PG_HOME/data" "$PG_HOME/sock"
chown -R pgrun: "$PG_HOME"
chmod 700 "$PG_HOME" "$PG_HOME/data"
pwfile="$PG_HOME/pw"
printf '%s\n' "$PG_PASSWORD" >"$pwfile" && chown pgrun: "$pwfile" && chmod 600 "$pwfile"
logged "$RC_LOGS/postgres-initdb.log" as_pgrun \
  "$PG_BIN/initdb" -D "$PG_HOME/data" -U postgres --pwfile="$pwfile" -A scram-sha-256 -E UTF8 --no-instructions
rm -f "$pwfile"
start_daemon postgres setpriv --reuid=pgrun --regid=pgrun --init-groups "$PG_BIN/postgres" \
  -D "$PG_HOME/data" -c listen_addresses=127.0.0.1 -p "$PORT_POSTGRES" -k "$PG_HOME/sock" \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200
CURRENT_LOG="$RC_LOGS/postgres.log"
wait_until postgres 30 "PostgreSQL" pg_isready -q -h 127.0.0.1 -p "$PORT_POSTGRES"
logged "$RC_LOGS/postgres.log" env PGPASSWORD="$PG_PASSWORD" psql -q -h 127.0.0.1 -p "$PORT_POSTGRES" \
  -U postgres -d postgres -c "CREATE DATABASE backend"

step "start Redis (127.0.0.1:$PORT_REDIS)" "$RC_LOGS/redis.log"
start_daemon redis redis-server --bind 127.0.0.1 --port "$PORT_REDIS" --protected-mode yes \
  --save '' --appendonly no --dir "$RC_DIR/redis" --daemonize no
wait_until redis 20 "Redis" redis-cli -h 127.0.0.1 -p "$PORT_REDIS" ping

step "start etcd (127.0.0.1:$PORT_ETCD)" "$RC_LOGS/etcd.log"
start_daemon etcd etcd --name e2e --data-dir "$RC_DIR/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$PORT_ETCD" --advertise-client-urls "http://127.0.0.1:$PORT_ETCD" \
  --listen-peer-urls "http://127.0.0.1:$PORT_ETCD_PEER" \
  --initial-advertise-peer-urls "http://127.0.0.1:$PORT_ETCD_PEER" \
  --initial-cluster "e2e=http://127.0.0.1:$PORT_ETCD_PEER"
wait_until etcd 20 "etcd" curl -fsS "http://127.0.0.1:$PORT_ETCD/health"

# ---------------------------------------------------------------------------------------------
step "bootstrap the database and etcd (schema, fixture, role presets, project rosters)" "$RC_LOGS/bootstrap.log"
(cd "$RC_DIR/bootstrap" && "$PY" "$HERE/bootstrap.py" \
  --manager-config "$RC_ETC/manager.toml" --alembic-config "$RC_ETC/alembic.ini" \
  --fixture "$HERE/fixture.json" --keys-dir "$RC_DIR/keys" --work-dir "$RC_DIR/bootstrap" \
  --redis-addr "127.0.0.1:$PORT_REDIS") >"$RC_LOGS/bootstrap.log" 2>&1 \
  || fail "bootstrap failed at '$(grep '^bootstrap: ' "$RC_LOGS/bootstrap.log" | tail -n 1 | cut -c12-)'"

# ---------------------------------------------------------------------------------------------
step "start the manager (127.0.0.1:$PORT_MANAGER)" "$RC_LOGS/manager.log"
(cd "$RC_DIR" && start_daemon manager "$PY" -m ai.backend.cli mgr start-server -f "$RC_ETC/manager.toml")
wait_until manager 90 "the manager's API" curl -fsS "http://127.0.0.1:$PORT_MANAGER/"

step "start the dummy agent (rpc 127.0.0.1:$PORT_AGENT_RPC)" "$RC_LOGS/agent.log"
(cd "$RC_DIR/agent" && start_daemon agent "$PY" "$HERE/run_dummy_agent.py" start-server -f "$RC_ETC/agent.toml")
agent_ready() {
  [ "$(PGPASSWORD="$PG_PASSWORD" psql -tA -h 127.0.0.1 -p "$PORT_POSTGRES" -U postgres -d backend \
    -c "SELECT count(*) FROM agents WHERE status = 'ALIVE' AND schedulable" 2>/dev/null)" = 1 ]
}
wait_until agent 90 "the agent to be ALIVE and schedulable" agent_ready

# ---------------------------------------------------------------------------------------------
step "write $RC_DIR/cluster.env"
"$PY" - "$HERE/fixture.json" "http://127.0.0.1:$PORT_MANAGER" "redis://127.0.0.1:$PORT_REDIS/4" "$AGENT_CPU" \
  >"$RC_DIR/cluster.env" <<'EOF'
import json, shlex, sys

fixture = json.load(open(sys.argv[1]))
endpoint = sys.argv[2]
events_redis = sys.argv[3]
agent_cpu = sys.argv[4]
email = {u["uuid"]: u["email"] for u in fixture["users"]}
keys = {email[k["user"]]: k for k in fixture["keypairs"]}
user, other = keys["e2e-user@example.com"], keys["e2e-other@example.com"]
admin = keys["e2e-admin@example.com"]
image = fixture["images"][0]["name"]
conn = {"conn_type": "backend_ai", "host": endpoint, "login": user["access_key"], "password": user["secret_key"]}
env = {
    "BACKEND_AI_TEST_ENDPOINT": endpoint,
    "BACKEND_AI_TEST_ACCESS_KEY": user["access_key"],
    "BACKEND_AI_TEST_SECRET_KEY": user["secret_key"],
    "BACKEND_AI_TEST_OTHER_ACCESS_KEY": other["access_key"],
    "BACKEND_AI_TEST_OTHER_SECRET_KEY": other["secret_key"],
    "BACKEND_AI_TEST_IMAGE": image,
    "AIRFLOW_CONN_BACKEND_AI_DEFAULT_REAL": json.dumps(conn),
    # Not for the provider itself (it is used with user keypairs): for debugging, and for the tests that
    # turn preemption on and off through the admin API (tests/integration/backend/ai/contract/busy.py PreemptionSwitch).
    "BACKEND_AI_TEST_ADMIN_ACCESS_KEY": admin["access_key"],
    "BACKEND_AI_TEST_ADMIN_SECRET_KEY": admin["secret_key"],
    # The dummy agent's CPU slots: a session asking for more than half of them cannot run beside another.
    "BACKEND_AI_TEST_AGENT_CPU": agent_cpu,
    # The manager's event stream in Redis (db 4, key "events"): the benchmarks read the agent's
    # session_success/session_failure there as the server-side time of a job's end.
    "BACKEND_AI_TEST_EVENTS_REDIS": events_redis,
}
print("# Written by dev/real-cluster/up.sh; load with: set -a; . cluster.env; set +a")
for key, value in env.items():
    print(f"{key}={shlex.quote(value)}")
EOF
printf '[up.sh %3ds] ready: %s (env in %s)\n' $((SECONDS - T0)) "http://127.0.0.1:$PORT_MANAGER" "$RC_DIR/cluster.env"
