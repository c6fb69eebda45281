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
# Shared by up.sh and down.sh: the layout of a cluster directory, its ports and process helpers.
# Sourced, not executed.

# Every daemon this harness starts, in start order (down.sh stops them in reverse).
RC_SERVICES=(postgres redis etcd manager agent)

rc_layout() {
  RC_DIR="$1"
  RC_RUN="$RC_DIR/run"      # pid files, ports.env, ipc sockets
  RC_LOGS="$RC_DIR/logs"
  RC_ETC="$RC_DIR/etc"      # generated configs
}

# Ports: one block of 20 starting at BACKEND_AI_RC_PORT_BASE (default 28100), below the
# kernel's ephemeral range (32768+) so that no client socket can be holding one of them.
rc_ports() {
  local base="${BACKEND_AI_RC_PORT_BASE:-28100}"
  PORT_POSTGRES=$((base + 1))
  PORT_REDIS=$((base + 2))
  PORT_ETCD=$((base + 3))
  PORT_ETCD_PEER=$((base + 4))
  PORT_MANAGER=$((base + 5))
  PORT_MANAGER_INTERNAL=$((base + 6))
  PORT_MANAGER_MON_TERM=$((base + 7))
  PORT_MANAGER_MON_WEB=$((base + 8))
  PORT_AGENT_RPC=$((base + 9))
  PORT_AGENT_INTERNAL=$((base + 10))
  PORT_AGENT_SOCK=$((base + 11))
  PORT_AGENT_MON_TERM=$((base + 12))
  PORT_AGENT_MON_WEB=$((base + 13))
  PORT_AGENT_METADATA=$((base + 14))
  PORT_CONTAINER_FIRST=$((base + 15))
  PORT_CONTAINER_LAST=$((base + 19))
  RC_ALL_PORTS=(
    "$PORT_POSTGRES" "$PORT_REDIS" "$PORT_ETCD" "$PORT_ETCD_PEER" "$PORT_MANAGER"
    "$PORT_MANAGER_INTERNAL" "$PORT_MANAGER_MON_TERM" "$PORT_MANAGER_MON_WEB" "$PORT_AGENT_RPC"
    "$PORT_AGENT_INTERNAL" "$PORT_AGENT_SOCK" "$PORT_AGENT_MON_TERM" "$PORT_AGENT_MON_WEB"
    "$PORT_AGENT_METADATA"
  )
}

# The TCP ports among "$@" that something listens on (any address), one per line.
rc_listening() {
  local port
  for port in "$@"; do
    if ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then echo "$port"; fi
  done
}

rc_pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# Start time of a process (clock ticks since boot), to tell it from a later one with the same PID.
rc_starttime() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"  # drop "pid (comm) ", comm may hold spaces
  set -- $stat
  echo "${20}"
}

# Record a daemon's PID (which is also its process group: it was started with setsid).
rc_record() {  # NAME PID
  echo "$2 $(rc_starttime "$2" || echo 0)" >"$RC_RUN/$1.pid"
}

# The PID of daemon NAME if it still runs and is the process up.sh started; nothing otherwise.
rc_owned_pid() {  # NAME
  local pid start
  [ -f "$RC_RUN/$1.pid" ] || return 1
  read -r pid start <"$RC_RUN/$1.pid" || return 1
  rc_pid_alive "$pid" && [ "$(rc_starttime "$pid")" = "$start" ] && echo "$pid"
}
