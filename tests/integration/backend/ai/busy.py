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
A busy cluster for the provider's tests: a job that knows whether it runs again, and a preemptor.

The preemptor is a session of the same user with a higher ``job_priority`` that does not fit beside the
victim, created through the provider's own create (``BackendAIHook.create_batch_session`` with
``BatchSessionSpec.job_priority``) once the victim has run long enough. The same helpers serve the
emulator tests and the real-cluster tests.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

if TYPE_CHECKING:
    from collections.abc import Callable


def rerun_command(marker: str, first_run_seconds: int = 600) -> str:
    """
    A job that is long the first time and short when it runs again (after a preemption, rescheduled).

    The first run leaves ``marker`` (a file path) and prints ``first-run``; a rerun finds it, removes it,
    prints ``rerun`` and ends.
    """
    return (
        f"if [ -e {marker} ]; then rm -f {marker}; echo rerun; "
        f"else touch {marker}; echo first-run; sleep {first_run_seconds}; echo first-run-done; fi"
    )


class RecordingLog:
    """Stands in for a task's or trigger's logger: keeps every message, formatted, in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _record(self, msg: Any, *args: Any, **_: Any) -> None:
        self.lines.append(str(msg) % args if args else str(msg))

    debug = info = warning = error = exception = _record

    def text(self) -> str:
        return "\n".join(self.lines)

    def index(self, part: str) -> int:
        """The position of the first line containing ``part`` (ValueError if none does)."""
        return next(n for n, line in enumerate(self.lines) if part in line)


class Preemptor:
    """
    Once a session matching ``victim`` has run ``after`` seconds, create a higher-priority session that
    does not fit beside it (in a thread, while the test waits on the victim). One preemptor per instance.

    :param running_for: how long a victim has been RUNNING, in seconds, or None if it is not running.
    :param victim: which session to wait for (by its id); the first one found is preempted.
    """

    def __init__(
        self,
        conn_id: str,
        image: str,
        resources: dict[str, Any],
        *,
        sessions: Callable[[], list[str]],
        running_for: Callable[[str], float | None],
        after: float,
        command: str = "echo high",
        job_priority: int = 10,
        timeout: float = 120.0,
    ) -> None:
        self._hook = BackendAIHook(backend_ai_conn_id=conn_id)
        self._spec = BatchSessionSpec(
            image=image,
            command=command,
            name=f"preemptor-{uuid.uuid4().hex[:12]}",
            resources=resources,
            job_priority=job_priority,
            is_preemptible=False,
        )
        self._sessions, self._running_for, self._after, self._timeout = sessions, running_for, after, timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="preemptor", daemon=True)
        self.victim: str | None = None
        self.session_id: str | None = None
        self.preempted_at: float | None = None
        self.error: BaseException | None = None

    def _run(self) -> None:
        deadline = time.monotonic() + self._timeout
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                for session_id in self._sessions():
                    ran = self._running_for(session_id)
                    if ran is not None and ran >= self._after:
                        self.victim = session_id
                        self.session_id = self._hook.create_batch_session(self._spec).session_id
                        self.preempted_at = time.monotonic()
                        return
                self._stop.wait(0.05)
        except BaseException as exc:  # reported by __exit__
            self.error = exc

    def __enter__(self) -> Preemptor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error
