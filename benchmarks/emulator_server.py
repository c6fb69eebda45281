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
"""
The emulator in a process of its own, with a control channel on stdin/stdout (JSON lines).

``python -m backend_ai_emulator`` serves the same server but offers no way to read its request log or
session records from another process; the benchmarks need both (server-side job end times, requests per
route), and they need the server's CPU and memory kept out of the measuring process. So this starts the
very same ``start_emulator`` server and answers a few read/settings commands.

Only the parent (:mod:`benchmarks.emulator_proc`) talks to it. It binds 127.0.0.1 only and exits when its
stdin closes, so it never outlives the benchmark run.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from backend_ai_emulator import start_emulator
from benchmarks.child_process import serve_json_lines
from benchmarks.common import raise_fd_limit, rss_bytes


def _epoch(dt: Any) -> float | None:
    return None if dt is None else dt.timestamp()


def _session(snap: Any) -> dict[str, Any]:
    return {
        "id": str(snap.id),
        "name": snap.name,
        "owner": snap.owner_access_key,
        "status": snap.status,
        "result": snap.result,
        "created_at": _epoch(snap.created_at),
        "terminated_at": _epoch(snap.terminated_at),
        "history": [[status, _epoch(at)] for status, at in snap.history],
        "events": [[ev.name, _epoch(ev.at)] for ev in snap.events if not ev.is_kernel_event],
        "job_exited_at": _epoch(getattr(snap, "job_exited_at", None)),
    }


def _settings(emu: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if key == "realistic_timing":
            if value:
                emu.settings.use_realistic_timing()
            continue
        if not hasattr(emu.settings, key):
            raise SystemExit(f"unknown emulator setting {key!r}")
        setattr(emu.settings, key, value)


def _answer(emu: Any, cmd: str, msg: dict[str, Any]) -> Any:
    """One command of the control channel (see :class:`benchmarks.emulator_proc.EmulatorProcess`)."""
    if cmd == "settings":
        return _settings(emu, msg["values"])
    if cmd == "reset":
        return emu.reset()
    if cmd == "sessions":
        wanted = set(msg.get("ids") or [])
        return [_session(s) for s in emu.sessions() if not wanted or str(s.id) in wanted]
    if cmd == "requests":
        since = float(msg.get("since") or 0.0)
        return [
            [r.at, r.method, r.route, r.access_key, r.status, r.duration]
            for r in emu.requests
            if r.at >= since
        ]
    if cmd == "streams":
        return {
            "open": emu.open_event_streams,
            "opened": emu.event_streams_opened,
            "peak": emu.event_streams_peak,
        }
    if cmd == "status_counts":
        counts: dict[str, int] = {}
        for snap in emu.sessions():
            counts[snap.status] = counts.get(snap.status, 0) + 1
        return counts
    if cmd == "stats":
        cpu = os.times()
        return {"rss": rss_bytes(), "cpu": cpu.user + cpu.system, "jobs": len(emu.running_job_pids())}
    if cmd == "wait_jobs_gone":
        deadline = time.monotonic() + float(msg.get("timeout", 30))
        while emu.running_job_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        return len(emu.running_job_pids())
    raise SystemExit(f"unknown command {cmd!r}")


def main() -> int:
    fd_limit = raise_fd_limit()
    emu = start_emulator(host="127.0.0.1", port=0)
    emu.settings.accept_any_image = True
    emu.settings.resource_limits = {}  # no quota: the scale test keeps 1,000 sessions alive
    emu.set_baseline()
    hello = {
        "endpoint": emu.endpoint,
        "access_key": emu.access_key,
        "secret_key": emu.secret_key,
        "other_access_key": emu.other_access_key,
        "other_secret_key": emu.other_secret_key,
        "pid": os.getpid(),
        "fd_limit": fd_limit,
    }
    try:
        serve_json_lines(hello, lambda cmd, msg: _answer(emu, cmd, msg))
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
