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
# Stop everything up.sh DIR started, by the PIDs it recorded (each daemon leads its own process
# group): SIGTERM (SIGINT, a fast shutdown, for PostgreSQL), then SIGKILL for what is left. Then
# check that no listener remains on the cluster's ports. Safe to run twice, or after a failed up.sh.
#
# usage: down.sh DIR
set -uo pipefail
trap '' PIPE  # keep stopping things even if our output pipe is gone

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
if [ ! -d "$1" ]; then
  echo "down.sh: $1 does not exist: nothing to stop"
  exit 0
fi
rc_layout "$(cd "$1" && pwd)"
if [ ! -f "$RC_RUN/ports.env" ]; then
  echo "down.sh: $RC_DIR has no run/ports.env: up.sh started nothing there"
  exit 0
fi
. "$RC_RUN/ports.env"

# stop_group SIGNAL TIMEOUT NAME...: signal each daemon, wait for all, SIGKILL the groups left.
stop_group() {
  local sig="$1" timeout="$2" name pid deadline
  shift 2
  local -A pids=()
  for name in "$@"; do
    pid="$(rc_owned_pid "$name")" || continue
    pids[$name]="$pid"
    echo "down.sh: $name (pid $pid): SIG$sig"
    kill -s "$sig" "$pid" 2>/dev/null || true
  done
  deadline=$((SECONDS + timeout))
  for name in "${!pids[@]}"; do
    pid="${pids[$name]}"
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "down.sh: $name (pid $pid) still runs after ${timeout}s: SIGKILL"
      kill -s KILL "$pid" 2>/dev/null || true
    fi
    # Workers and helpers it left behind share its process group.
    kill -s KILL -- "-$pid" 2>/dev/null || true
    rm -f "$RC_RUN/$name.pid"
  done
}

# Batch jobs run in sessions of their own; the agent marks them with BACKEND_AI_RC_JOB=DIR.
kill_jobs() {
  local env_file pid
  for env_file in /proc/[0-9]*/environ; do
    pid="${env_file#/proc/}"
    pid="${pid%/environ}"
    if { tr '\0' '\n' <"$env_file"; } 2>/dev/null | grep -qxF "BACKEND_AI_RC_JOB=$RC_DIR"; then
      echo "down.sh: leftover batch job process $pid: SIGKILL"
      kill -s KILL "$pid" 2>/dev/null || true
    fi
  done
}

stop_group TERM 20 agent manager
kill_jobs
stop_group TERM 10 etcd redis
stop_group INT 15 postgres

left="$(rc_listening "${RC_ALL_PORTS[@]}" | tr '\n' ' ')"
if [ -n "$left" ]; then
  echo "down.sh: ERROR: still listening on: $left" >&2
  ss -Htlnp | grep -E ":($(echo "$left" | xargs | tr ' ' '|'))\b" >&2 || true
  exit 1
fi
echo "down.sh: stopped; no listener left on the cluster's ports (${RC_ALL_PORTS[0]}..${RC_ALL_PORTS[-1]})"
