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
from typing import TYPE_CHECKING, Any

from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook


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
    Once ``count`` sessions have each run ``after`` seconds, create a higher-priority session that does not
    fit beside them (in a thread, while the test waits on the victims). One preemptor per instance.

    :param hook: the hook the preemptor creates (and destroys) with; the thread holds its SDK session open,
        so the callables' reads through it (and through the SDK) cost no version negotiation each: a real
        manager allows 1,000 unauthenticated requests per 15 minutes.
    :param victims: the ids of the sessions that may be preempted.
    :param running_for: how long a victim has been RUNNING (its first run), in seconds, or None.
    :param release_when: destroy the preemptor once this holds, if it has not run yet: on a real manager
        a preemptor waits RESERVED for one or two 60 s passes, and the victims' reruns (or a retry) would
        wait for it; destroyed while RESERVED it ends in 3-4 s and they run at once.
    """

    def __init__(
        self,
        hook: BackendAIHook,
        spec: BatchSessionSpec,
        *,
        victims: Callable[[], list[str]],
        running_for: Callable[[str], float | None],
        after: float,
        count: int = 1,
        release_when: Callable[[], bool] | None = None,
        interval: float = 0.05,
        timeout: float = 300.0,
    ) -> None:
        self._hook = hook
        self._spec = spec
        self._victims, self._running_for, self._after, self._count = victims, running_for, after, count
        self._release_when, self._interval, self._timeout = release_when, interval, timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="preemptor", daemon=True)
        self.preempted: list[str] = []
        self.session_id: str | None = None
        self.created_at: float | None = None
        self.released = False
        self.error: BaseException | None = None

    @property
    def victim(self) -> str | None:
        return self.preempted[0] if self.preempted else None

    def _run(self) -> None:
        try:
            with self._hook.get_conn():
                self._preempt_and_release()
        except BaseException as exc:  # reported by __exit__
            self.error = exc

    def _preempt_and_release(self) -> None:
        deadline = time.monotonic() + self._timeout
        while not self._stop.is_set() and time.monotonic() < deadline:
            ready = [sid for sid in self._victims() if (self._running_for(sid) or 0) >= self._after]
            if len(ready) >= self._count:
                self.preempted = ready
                self.session_id = self._hook.create_batch_session(self._spec).session_id
                self.created_at = time.monotonic()
                break
            self._stop.wait(self._interval)
        while self._release_when is not None and self.session_id and time.monotonic() < deadline:
            if self._release_when():
                self.released = self._hook.destroy_session(self.session_id)
                return
            self._stop.wait(self._interval)

    def __enter__(self) -> Preemptor:
        # Read the connection here: on Airflow 2 that imports the ORM models, and an import in the thread
        # while the test's thread imports Airflow's modules (building an operator) can deadlock.
        assert self._hook.settings is not None
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop waiting (the test is done with the victims) and report an error of the thread."""
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error


def preemptor_spec(
    image: str, resources: dict[str, Any], *, name: str, command: str = "echo high"
) -> BatchSessionSpec:
    """A session of ``job_priority`` 10 that may not be preempted itself."""
    return BatchSessionSpec(
        image=image,
        command=command,
        name=name,
        resources=resources,
        job_priority=10,
        is_preemptible=False,
    )


#: The caller's sessions whose names start with a prefix (``ilike``; the prefixes here have no ``_`` or ``%``).
SESSIONS_BY_PREFIX = (
    "query($filter: String) { compute_session_list(limit: 100, offset: 0, filter: $filter) "
    "{ items { id name status } } }"
)


def session_ids(prefix: str) -> list[str]:
    """
    The ids of the caller's sessions named ``prefix...``, through the SDK session open in this thread.

    For a :class:`Preemptor`'s ``victims`` on a real manager (its thread holds the hook's SDK session).
    """
    from ai.backend.client.func.admin import Admin

    answer = Admin.query(SESSIONS_BY_PREFIX, {"filter": f'name ilike "{prefix}%"'})
    return [row["id"] for row in answer["compute_session_list"]["items"] if row["name"].startswith(prefix)]


def since_first_seen_running(status: Callable[[str], str | None]) -> Callable[[str], float | None]:
    """A ``running_for`` that counts from when a session was first seen RUNNING (by ``status``)."""
    seen: dict[str, float] = {}

    def running_for(session_id: str) -> float | None:
        if session_id not in seen:
            if status(session_id) != "RUNNING":
                return None
            seen[session_id] = time.monotonic()
        return time.monotonic() - seen[session_id]

    return running_for
