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
# restart.sh DIR NAME: start the component NAME (scheduler, worker1, triggerer2, ...) of the deployment in DIR
# again, with the exact command up.sh recorded in DIR/cmds/NAME, in its own session (setsid), appending to
# DIR/logs/NAME.log; the new pid replaces DIR/pids/NAME.pid, so down.sh stops it. Refuses while NAME runs.
set -euo pipefail
DIR="${1:?usage: restart.sh DIR NAME}"
NAME="${2:?usage: restart.sh DIR NAME}"
[ -f "$DIR/cmds/$NAME" ] || { echo "[restart] no recorded command for $NAME in $DIR/cmds" >&2; exit 2; }
old="$(cat "$DIR/pids/$NAME.pid" 2>/dev/null || true)"
if [ -n "$old" ] && ps -o stat= -g "$old" 2>/dev/null | grep -qv '^Z'; then
  echo "[restart] $NAME (process group $old) is still running" >&2; exit 1
fi
# shellcheck disable=SC1091
. "$DIR/env"
PATH="$SCALEOUT_VENV/bin:$PATH"; export PATH
cmd="$(cat "$DIR/cmds/$NAME")"
printf '\n===== restarted at %s: %s\n' "$(date +%T)" "$cmd" >>"$DIR/logs/$NAME.log"
eval "setsid $cmd >>\"\$DIR/logs/\$NAME.log\" 2>&1 </dev/null &"
echo $! >"$DIR/pids/$NAME.pid"
echo "[restart $(date +%T)] started $NAME again (pid $!): $cmd" >&2
