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
The fault matrix: every cell runs a batch job on the worker (``sync``) and through the trigger
(``deferrable``) against the emulator with a fault switched on, then checks on the server that no session
was left alive (the ``emulator`` fixture counts leaks into the summary line) and that the task ended in the
right state with a message that says what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow.providers.backend.ai.exceptions import (
    BackendAIException,
    BackendAIJobFailedError,
    BackendAIStartupTimeoutError,
    BackendAITransientError,
)
from integration.backend.ai.reliability.harness import MODES, run_job

pytestmark = [pytest.mark.integration, pytest.mark.fault_matrix]

JOB = "echo started; sleep 1; echo finished"
QUICK = "echo quick job"


@dataclass(frozen=True)
class Cell:
    """One fault and what the task must do about it."""

    id: str
    faults: tuple[dict[str, Any], ...] = ()
    command: str = JOB
    kwargs: dict[str, Any] = field(default_factory=dict)
    request_timeout: float | None = None
    error: type[BaseException] | None = None
    match: str = ""
    #: Sessions the server must have seen (a retried create must not make a second one).
    sessions: int = 1
    #: Text the XCom log must contain on success.
    logs: str = "finished"
    #: Text that must appear in the task's own log (e.g. a teardown failure that was only logged).
    logged: str = ""


CELLS = [
    # -- create ---------------------------------------------------------------------------------------
    Cell("create-5xx-once", faults=({"route": "create", "kind": "error", "times": 1, "status": 503},)),
    Cell(
        "create-5xx-always",
        faults=({"route": "create", "kind": "error", "status": 503},),
        error=BackendAITransientError,
        match=r"create batch session 'af-rel_dag-job-t1-\w+' \(HTTP 503\)",
        sessions=0,
    ),
    Cell(
        # The server creates the session and then answers 500, every time: the retry adopts it.
        "create-5xx-after-creating-always",
        faults=({"route": "create", "kind": "error", "status": 500, "after": True},),
    ),
    Cell(
        "create-reset-after-creating",
        faults=({"route": "create", "kind": "reset", "times": 1, "after": True},),
    ),
    Cell(
        # The job ends before the retry: the server no longer reuses the session, so only a lookup
        # by name (and the create's own tag) keeps the job from running a second time.
        "create-reset-after-creating-quick-job",
        faults=({"route": "create", "kind": "reset", "times": 1, "after": True},),
        command=QUICK,
        logs="quick job",
    ),
    Cell(
        "create-hang-after-creating",
        faults=({"route": "create", "kind": "hang", "times": 1, "after": True},),
        request_timeout=2,
        command=QUICK,
        logs="quick job",
    ),
    # -- status polling -------------------------------------------------------------------------------
    Cell("poll-resets", faults=({"route": "gql", "kind": "reset", "times": 2},)),
    Cell("poll-5xx-burst", faults=({"route": "gql", "kind": "error", "times": 2, "status": 503},)),
    Cell("poll-html-502-burst", faults=({"route": "gql", "kind": "html", "times": 2},)),
    Cell(
        "poll-hang-longer-than-request-timeout",
        faults=({"route": "gql", "kind": "hang", "times": 1},),
        request_timeout=2,
    ),
    Cell(
        "poll-5xx-persistent",
        faults=({"route": "gql", "kind": "error", "status": 503},),
        command="sleep 30",
        error=BackendAIException,
        match=r"read the status of session [0-9a-f-]+ \(HTTP 503\)",
    ),
    # -- log fetch ------------------------------------------------------------------------------------
    Cell("logs-fail-once", faults=({"route": "logs", "kind": "error", "times": 1, "status": 502},)),
    Cell(
        "logs-fail-persistent",
        faults=({"route": "logs", "kind": "error", "status": 503},),
        logs="could not be fetched",
        logged="Could not fetch the log of Backend.AI session",
    ),
    Cell(
        "logs-fail-persistent-job-failed",
        faults=({"route": "logs", "kind": "error", "status": 503},),
        command="exit 3",
        error=BackendAIJobFailedError,
        match=r"the command exited with a non-zero code \(task-failed\)",
        logged="Could not fetch the log of Backend.AI session",
    ),
    # -- destroy --------------------------------------------------------------------------------------
    Cell("destroy-fails-once", faults=({"route": "destroy", "kind": "error", "times": 1, "status": 503},)),
    Cell(
        # The job succeeded: a destroy that keeps failing must not turn the success into a failure.
        "destroy-fails-persistent-after-success",
        faults=({"route": "destroy", "kind": "error", "status": 503},),
        logged="Could not destroy Backend.AI session",
    ),
    Cell(
        "destroy-fails-persistent-after-failure",
        faults=({"route": "destroy", "kind": "error", "status": 503},),
        command="echo 'Traceback: boom'; exit 3",
        error=BackendAIJobFailedError,
        match=r"(?s)the command exited with a non-zero code \(task-failed\).*Traceback: boom",
        logged="Could not destroy Backend.AI session",
    ),
    Cell(
        "destroy-fails-once-after-startup-timeout",
        faults=({"route": "destroy", "kind": "error", "times": 1, "status": 503},),
        kwargs={"startup_timeout": 1},
        error=BackendAIStartupTimeoutError,
        match=r"did not start",
    ),
    # -- the job itself -------------------------------------------------------------------------------
    Cell(
        "job-fails",
        command="echo 'Traceback: boom'; exit 3",
        error=BackendAIJobFailedError,
        match=r"(?s)the command exited with a non-zero code \(task-failed\).*Traceback: boom",
    ),
    Cell(
        "batch-timeout",
        command="echo started; sleep 60",
        kwargs={"batch_timeout": 1},
        error=BackendAIJobFailedError,
        match=r"batch_timeout expired \(task-timeout\)",
    ),
    Cell(
        "startup-timeout",
        kwargs={"startup_timeout": 1},
        error=BackendAIStartupTimeoutError,
        match=r"did not start",
    ),
]


@pytest.fixture
def connect(make_connection, emulator):
    """Re-point ``backend_ai_default`` at the emulator with extra fields (e.g. a small request timeout)."""

    def apply(**extra: Any) -> None:
        make_connection(
            "backend_ai_default",
            host=emulator.endpoint,
            login=emulator.access_key,
            password=emulator.secret_key,
            extra=extra,
        )

    return apply


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.id)
def test_cell(cell: Cell, mode: str, emulator, connect, context, task_log):
    if cell.request_timeout is not None:
        connect(request_timeout=cell.request_timeout)
    if "startup_timeout" in cell.kwargs:
        emulator.settings.preparing_hold = 60
    faults = [emulator.faults.add(**fault) for fault in cell.faults]

    if cell.error is None:
        result = run_job(mode, context, cell.command, **cell.kwargs)
        assert result["result"] == "SUCCESS", result
        assert cell.logs in result["logs"]
    else:
        with pytest.raises(cell.error, match=cell.match):
            run_job(mode, context, cell.command, **cell.kwargs)

    assert all(fault.fired for fault in faults), "a fault never fired: the cell tested nothing"
    assert len(emulator.sessions()) == cell.sessions, [(s.id, s.status) for s in emulator.sessions()]
    if cell.logged:
        assert cell.logged in task_log.text
