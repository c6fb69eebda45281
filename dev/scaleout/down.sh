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
# down.sh DIR: stop what up.sh started, by recorded pid (= process group id): SIGTERM the groups, wait up
# to 20 s, SIGKILL what is left. Then check that no listener remains on the ports used. Safe to call twice.
set -uo pipefail
trap "" PIPE  # keep stopping things even if our output pipe is gone
DIR="${1:?usage: down.sh DIR}"
[ -d "$DIR/pids" ] || { echo "[down] nothing to stop in $DIR" >&2; exit 0; }
# A group is alive while it has a member that is not a zombie (PID 1 here may never reap orphans).
alive() { ps -o stat= -g "$1" 2>/dev/null | grep -qv '^Z' || ps -o stat= -p "$1" 2>/dev/null | grep -qv '^Z'; }
# Airflow first (workers may still talk to the databases), then the emulator, Redis and PostgreSQL last.
order="api-server scheduler dag-processor worker1 worker2 triggerer1 triggerer2 emulator redis postgres"
pids=()
for name in $order $(ls "$DIR/pids" | sed 's/\.pid$//'); do
  f="$DIR/pids/$name.pid"; [ -f "$f" ] || continue
  pid="$(cat "$f")"; [ -n "$pid" ] || continue
  case " ${pids[*]:-} " in *" $pid "*) continue ;; esac
  pids+=("$pid")
done
# Airflow 3 task processes start their own sessions (setsid), so a worker's process group does not hold
# them: collect every descendant of every recorded group now, before parents die and orphans move to init.
descendants() {  # all pids whose ancestry reaches one of the given pids / process groups
  ps -eo pid=,ppid=,pgid= | awk -v roots=" $* " '
    { pid[NR]=$1; ppid[NR]=$2; pgid[NR]=$3 }
    END { split(roots, r, " "); for (i in r) keep[r[i]]=1
          for (i=1;i<=NR;i++) if (pgid[i] in keep) keep[pid[i]]=1
          do { changed=0; for (i=1;i<=NR;i++) if ((ppid[i] in keep) && !(pid[i] in keep)) { keep[pid[i]]=1; changed=1 } } while (changed)
          for (i=1;i<=NR;i++) if (pid[i] in keep) print pid[i] }'
}
extra=()
for p in $(descendants "${pids[@]:-}"); do
  case " ${pids[*]:-} " in *" $p "*) ;; *) [ "$(ps -o pgid= -p "$p" 2>/dev/null | tr -d ' ')" = "$p" ] && extra+=("$p") ;; esac
done
[ ${#extra[@]} -gt 0 ] && echo "[down] also stopping descendant process groups: ${extra[*]}" >&2
pids+=("${extra[@]}")
for pid in "${pids[@]:-}"; do
  [ -n "$pid" ] || continue
  if alive "$pid"; then kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; fi
done
end=$((SECONDS + 20))
for pid in "${pids[@]:-}"; do
  [ -n "$pid" ] || continue
  while alive "$pid" && [ $SECONDS -lt $end ]; do sleep 0.3; done
  if alive "$pid"; then
    echo "[down] SIGKILL process group $pid" >&2
    kill -KILL -- "-$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null
  fi
done
end=$((SECONDS + 10))
for pid in "${pids[@]:-}"; do
  [ -n "$pid" ] || continue
  while alive "$pid" && [ $SECONDS -lt $end ]; do sleep 0.3; done
done
rc=0
ports="$( (. "$DIR/env" 2>/dev/null; echo "${SCALEOUT_PORTS:-}") )"
emu_port="$(sed -n 's#^export BACKEND_AI_TEST_ENDPOINT=http://127.0.0.1:##p' "$DIR/logs/emulator.log" 2>/dev/null)"
for port in $ports $emu_port; do
  if ss -Htln "sport = :$port" | grep -q .; then echo "[down] still listening on port $port" >&2; rc=1; fi
done
for pid in "${pids[@]:-}"; do
  [ -n "$pid" ] || continue
  if alive "$pid"; then echo "[down] process group $pid still alive" >&2; rc=1; fi
done
[ $rc -eq 0 ] && echo "[down] stopped; no listener left on ${ports} ${emu_port}" >&2
exit $rc
