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
Where item 6's jobs run, and the server's own record of when each job ended: the real manager harness
(``dev/real-cluster``) when ``BACKEND_AI_TEST_ENDPOINT`` and its keys are set, else the emulator in a process
of its own with the manager's timing.
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from datetime import datetime

from benchmarks.common import IMAGE, percentile


class Target:
    """The server the floor is measured against, and its record of when each job ended."""

    kind = "?"
    description = "?"
    job_end_source = "?"
    endpoint = ""
    access_key = ""
    secret_key = ""
    image = IMAGE

    def connection_json(self, endpoint: str | None = None) -> str:
        return json.dumps(
            {
                "conn_type": "backend_ai",
                "host": endpoint or self.endpoint,
                "login": self.access_key,
                "password": self.secret_key,
            }
        )

    def job_ends(self, session_ids: list[str]) -> dict[str, float]:
        """Unix time at which each job ended, as the server recorded it (missing ids: unknown)."""
        raise NotImplementedError

    def manager_knew(self, session_ids: list[str]) -> dict[str, float]:
        """Unix time at which the manager had the result and moved the session to TERMINATING."""
        raise NotImplementedError

    def running_since(self, session_ids: list[str]) -> dict[str, float]:
        """Unix time at which each session became RUNNING (the job started)."""
        raise NotImplementedError

    def cross_check(self, session_ids: list[str]) -> str | None:
        """A note comparing the job-end source with a second server-side record, if there is one."""
        return None

    def close(self) -> None:
        pass


def make_target() -> Target:
    if os.environ.get("BACKEND_AI_TEST_ENDPOINT"):
        return RealTarget()
    return EmulatorTarget()


class EventRecordReader:
    """
    Follows the manager's event stream in Redis (``XREAD`` on ``events``) and keeps the time of every
    ``session_success``/``session_failure`` the agent published: the entry id is Redis's clock (same host)
    in milliseconds. The stream is trimmed to ~100 entries (seconds), hence a reader that follows it live.
    """

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=5)
        self._last = self._redis.xinfo_stream("events")["last-generated-id"]
        self.ends: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="floor-redis-events", daemon=True)
        self._thread.start()
        self.error: str | None = None

    def _follow(self) -> None:
        try:
            while not self._stop.is_set():
                for _, entries in self._redis.xread({"events": self._last}, block=500, count=1000) or []:
                    for entry_id, fields in entries:
                        self._last = entry_id
                        name = fields.get(b"name", b"").decode()
                        if name not in ("session_success", "session_failure"):
                            continue
                        payload = json.loads(fields.get(b"payload", b"{}"))
                        session_id = str(payload.get("session_id", ""))
                        ms = int(entry_id.decode().split("-")[0])
                        self.ends.setdefault(session_id, ms / 1000.0)
        except Exception as exc:  # reported; the status_history fallback takes over
            self.error = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._redis.close()


class RealTarget(Target):
    """The manager named by ``BACKEND_AI_TEST_*`` (``dev/real-cluster/cluster.env``)."""

    kind = "real"

    def __init__(self) -> None:
        env = os.environ
        self.endpoint = env["BACKEND_AI_TEST_ENDPOINT"].rstrip("/")
        self.access_key = env["BACKEND_AI_TEST_ACCESS_KEY"]
        self.secret_key = env["BACKEND_AI_TEST_SECRET_KEY"]
        self.image = env.get("BACKEND_AI_TEST_IMAGE", IMAGE)
        self.reader: EventRecordReader | None = None
        self._histories: dict[str, dict[str, float]] = {}
        url = env.get("BACKEND_AI_TEST_EVENTS_REDIS")
        why = "BACKEND_AI_TEST_EVENTS_REDIS is not set"
        if url:
            try:
                self.reader = EventRecordReader(url)
            except Exception as exc:
                why = f"cannot read {url}: {type(exc).__name__}: {exc}"
        version = self._manager_version()
        self.description = (
            f"real Backend.AI manager {version} at {self.endpoint} (dev/real-cluster, dummy agent)"
        )
        if self.reader is not None:
            self.job_end_source = (
                "the agent's `session_success`/`session_failure` entry in the manager's Redis event stream "
                "(entry id = Redis clock, same host), read live by `XREAD`"
            )
        else:
            self.job_end_source = (
                f"GraphQL `status_history` TERMINATING (written ~15 ms after the job's end; {why})"
            )

    def _manager_version(self) -> str:
        import urllib.request

        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=5) as resp:
                return str(json.load(resp).get("manager", "?"))
        except Exception:
            return "?"

    def _status_history(self, session_ids: list[str]) -> dict[str, dict[str, float]]:
        from ai.backend.client.session import Session

        from benchmarks.jobs import sdk_config

        query = "query($id: UUID!) { compute_session(id: $id) { status_history } }"
        out: dict[str, dict[str, float]] = {
            s: self._histories[s] for s in session_ids if s in self._histories
        }
        session_ids = [s for s in session_ids if s not in out]
        if not session_ids:
            return out
        config = sdk_config(self.endpoint, self.access_key, self.secret_key)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Session(config=config) as api:
                for session_id in session_ids:
                    node = api.Admin.query(query, {"id": session_id})["compute_session"] or {}
                    history = node.get("status_history") or {}
                    if isinstance(history, str):
                        history = json.loads(history)
                    out[session_id] = {k: datetime.fromisoformat(v).timestamp() for k, v in history.items()}
                    if "TERMINATED" in out[session_id]:  # final: never changes again
                        self._histories[session_id] = out[session_id]
        return out

    def manager_knew(self, session_ids: list[str]) -> dict[str, float]:
        histories = self._status_history(session_ids)
        return {s: h["TERMINATING"] for s, h in histories.items() if "TERMINATING" in h}

    def running_since(self, session_ids: list[str]) -> dict[str, float]:
        histories = self._status_history(session_ids)
        return {s: h["RUNNING"] for s, h in histories.items() if "RUNNING" in h}

    def job_ends(self, session_ids: list[str]) -> dict[str, float]:
        if self.reader is not None:
            deadline = time.monotonic() + 5  # the reader may be a moment behind
            while time.monotonic() < deadline and not all(s in self.reader.ends for s in session_ids):
                time.sleep(0.1)
            found = {s: self.reader.ends[s] for s in session_ids if s in self.reader.ends}
            if len(found) == len(session_ids):
                return found
        else:
            found = {}
        missing = [s for s in session_ids if s not in found]
        for session_id, history in self._status_history(missing).items():
            if "TERMINATING" in history:
                found[session_id] = history["TERMINATING"]
        return found

    def cross_check(self, session_ids: list[str]) -> str | None:
        if self.reader is None or not session_ids:
            return None
        sample = session_ids[:20]
        histories = self._status_history(sample)
        diffs = [
            histories[s]["TERMINATING"] - self.reader.ends[s]
            for s in sample
            if s in self.reader.ends and "TERMINATING" in histories.get(s, {})
        ]
        if not diffs:
            return None
        return (
            f"Cross-check of the job-end record on {len(diffs)} sessions: `status_history` TERMINATING comes "
            f"{percentile(diffs, 50) * 1000:.0f} ms (median; max {max(diffs) * 1000:.0f} ms) after the "
            "agent's event in Redis."
        )

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


class EmulatorTarget(Target):
    """The emulator in a process of its own, with the manager's timing (2 s steps and ticks)."""

    kind = "emulator"

    def __init__(self) -> None:
        from benchmarks.emulator_proc import EmulatorProcess

        self.emu = EmulatorProcess()
        self.emu.settings(realistic_timing=True)
        self.endpoint, self.access_key, self.secret_key = (
            self.emu.endpoint,
            self.emu.access_key,
            self.emu.secret_key,
        )
        self.description = "emulator with realistic timing (2 s scheduler steps and ticks), its own process"
        self.job_end_source = (
            "the emulator's own record of the moment the job's process exited (`job_exited_at`; "
            "`session_success` follows within milliseconds)"
        )

    def _status_times(self, session_ids: list[str], status: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.emu.sessions(session_ids):
            at = s.status_time(status)
            if at is not None:
                out[s.id] = at
        return out

    def manager_knew(self, session_ids: list[str]) -> dict[str, float]:
        return self._status_times(session_ids, "TERMINATING")

    def running_since(self, session_ids: list[str]) -> dict[str, float]:
        return self._status_times(session_ids, "RUNNING")

    def job_ends(self, session_ids: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.emu.sessions(session_ids):
            end = s.job_exited_at or s.job_end
            if end is not None:
                out[s.id] = end
        return out

    def cross_check(self, session_ids: list[str]) -> str | None:
        diffs = [
            s.job_end - s.job_exited_at
            for s in self.emu.sessions(session_ids[:50])
            if s.job_end is not None and s.job_exited_at is not None
        ]
        if not diffs:
            return None
        return (
            f"Cross-check: the emulator's `session_success` comes {percentile(diffs, 50) * 1000:.1f} ms (median) "
            "after the job's process exited."
        )

    def close(self) -> None:
        self.emu.stop()
