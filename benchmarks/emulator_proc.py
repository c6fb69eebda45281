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
"""Parent side of :mod:`benchmarks.emulator_server`: start it, ask it things, stop it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from benchmarks.child_process import JsonLineChild
from benchmarks.common import EMULATOR_DIR, REPO_ROOT


@dataclass(frozen=True)
class Session:
    """A server-side session record; times are Unix epoch seconds."""

    id: str
    name: str
    owner: str
    status: str
    result: str
    created_at: float
    terminated_at: float | None
    history: list[tuple[str, float]]
    events: list[tuple[str, float]]
    job_exited_at: float | None = None  # when the job's process exited (the emulator's own record)

    def status_time(self, status: str) -> float | None:
        times = [at for s, at in self.history if s == status]
        return times[-1] if times else None

    def event_time(self, name: str) -> float | None:
        times = [at for n, at in self.events if n == name]
        return times[-1] if times else None

    @property
    def job_end(self) -> float | None:
        """When the server learnt that the job's process exited (``session_success``/``session_failure``)."""
        return self.event_time("session_success") or self.event_time("session_failure")

    @property
    def job_start(self) -> float | None:
        return self.status_time("RUNNING")


@dataclass(frozen=True)
class Request:
    at: float
    method: str
    route: str | None
    access_key: str | None
    status: int | None
    duration: float


class EmulatorProcess(JsonLineChild):
    """The emulator running in a child process; a context manager."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO_ROOT), str(EMULATOR_DIR), env.get("PYTHONPATH")])
        )
        super().__init__("benchmarks.emulator_server", what="emulator process", stop_timeout=30, env=env)
        self.endpoint: str = self.hello["endpoint"]
        self.access_key: str = self.hello["access_key"]
        self.secret_key: str = self.hello["secret_key"]
        self.other_access_key: str = self.hello["other_access_key"]
        self.other_secret_key: str = self.hello["other_secret_key"]

    def settings(self, **values: Any) -> None:
        self.call("settings", values=values)

    def reset(self) -> None:
        self.call("reset")

    def sessions(self, ids: list[str] | None = None) -> list[Session]:
        return [
            Session(
                id=s["id"],
                name=s["name"],
                owner=s["owner"],
                status=s["status"],
                result=s["result"],
                created_at=s["created_at"],
                terminated_at=s["terminated_at"],
                history=[(a, b) for a, b in s["history"]],
                events=[(a, b) for a, b in s["events"]],
                job_exited_at=s.get("job_exited_at"),
            )
            for s in self.call("sessions", ids=ids or [])
        ]

    def session(self, session_id: str) -> Session:
        (found,) = self.sessions([session_id])
        return found

    def requests(self, since: float = 0.0) -> list[Request]:
        return [Request(*row) for row in self.call("requests", since=since)]

    def streams(self) -> dict[str, int]:
        """Event streams: open now, opened since the last reset, most open at once."""
        return self.call("streams")

    def status_counts(self) -> dict[str, int]:
        return self.call("status_counts")

    def stats(self) -> dict[str, Any]:
        return self.call("stats")

    def wait_jobs_gone(self, timeout: float = 30) -> int:
        return self.call("wait_jobs_gone", timeout=timeout)

    def connection_json(self, *, other: bool = False) -> str:
        return json.dumps(
            {
                "conn_type": "backend_ai",
                "host": self.endpoint,
                "login": self.other_access_key if other else self.access_key,
                "password": self.other_secret_key if other else self.secret_key,
            }
        )
