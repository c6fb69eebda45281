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
Bounded waits: for a condition, for a Dag run's end, for every job of a run to run and be watched. None of
them sleeps a fixed time in place of a state to wait for; each gives up after its timeout and says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.airflow_state import RUN_ENDED, TERMINAL, dag_run_state, task_rows, trigger_watching
from harness.backend_sessions import sessions_by_task
from harness.deployment import log

if TYPE_CHECKING:
    from collections.abc import Callable

    from harness.checks import Result


def wait_for(what: str, condition: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` passes (False, logged)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    log(f"timed out after {timeout:.0f} s waiting for {what}")
    return False


@dataclass(frozen=True)
class RunOutcome:
    """A Dag run as the metadata DB holds it: the run's own state and its task instances by task id."""

    state: str | None
    rows: dict[str, dict[str, Any]]
    waited: float = 0.0  # the longest :func:`wait_run` waited for the end (0: read once)

    @property
    def ended(self) -> bool:
        """The scheduler recorded the run's end (success or failed), and every task instance is terminal."""
        return (
            self.state in RUN_ENDED
            and bool(self.rows)
            and all(r["state"] in TERMINAL for r in self.rows.values())
        )

    def unfinished(self) -> dict[str, Any]:
        """The task instances that are not terminal, with their state."""
        return {t: r["state"] for t, r in self.rows.items() if r["state"] not in TERMINAL}


def read_run(dag_id: str, run_id: str) -> RunOutcome:
    """The run as it is now (no wait)."""
    return RunOutcome(dag_run_state(dag_id, run_id), task_rows(dag_id, run_id))


def wait_run(dag_id: str, run_id: str, timeout: float) -> RunOutcome:
    """
    Wait, at most ``timeout`` seconds, until the Dag run is over: its own state ``success`` or ``failed``.

    The scheduler records that only after every task instance is terminal, when it next examines the run (a
    scheduler restarted mid-run does so once it is up again), so the task instances being done is not
    enough. Returns the run as it is then; :func:`harness.checks.finish` reports a run that did not end.
    """
    deadline = time.monotonic() + timeout
    while True:
        run = read_run(dag_id, run_id)
        if run.ended:
            return RunOutcome(run.state, run.rows, timeout)
        if time.monotonic() > deadline:
            log(f"timed out after {timeout:.0f} s waiting for {dag_id} {run_id} to end (state {run.state!r})")
            return RunOutcome(run.state, run.rows, timeout)
        time.sleep(2)


def wait_until_busy(
    dag_id: str, run_id: str, task_ids: list[str], timeout: float, result: Result
) -> dict[str, dict[str, Any]]:
    """
    Wait until every task's job runs on the server and the task waits for it: sync tasks ``running`` on a
    worker, deferrable ones ``deferred`` with their trigger running in a triggerer. Returns each task's
    session (try 1) as the server lists it.
    """
    deadline = time.monotonic() + timeout
    waiting: list[str] = list(task_ids)
    sessions: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        rows = task_rows(dag_id, run_id)
        by_task = sessions_by_task(dag_id, run_id, task_ids, tries=1)
        waiting = []
        for tid in task_ids:
            found = [s for s in by_task.get(tid, []) if s["status"] == "RUNNING"]
            state = rows.get(tid, {}).get("state")
            if not found:
                waiting.append(tid)
                continue
            sessions[tid] = found[0]
            if tid.startswith(("sync", "w1_sync")) and state == "running":
                continue
            if state == "deferred" and trigger_watching(dag_id, run_id, tid):
                continue
            waiting.append(tid)
        if not waiting:
            return sessions
        time.sleep(1)
    result.problems.append(f"not all jobs were running and watched within {timeout:.0f} s: {waiting}")
    return sessions
