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
"""Live log streaming: job output reaches the task log while the job runs, once, in order."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from unittest import mock

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator
from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"
JOB = "for i in $(seq 1 10); do echo line $i; sleep 0.2; done"
EXPECTED = [f"line {i}" for i in range(1, 11)]


class RecordingLog:
    """Stands in for the task logger; keeps each job line with the time it was written."""

    def __init__(self) -> None:
        self.lines: list[tuple[datetime, str]] = []

    def info(self, msg: str, *args: object) -> None:
        if msg == "%s":
            self.lines.append((datetime.now(UTC), str(args[0])))

    warning = exception = debug = error = info


def job_end(emulator, session_id: str) -> datetime:
    (event,) = [e for e in emulator.get_session(session_id).events if e.name == "session_success"]
    return event.at


def test_sync_operator_streams_lines_before_the_job_ends(emulator, context):
    log = RecordingLog()
    op = BackendAIRunBatchOperator(task_id="job", image=IMAGE, command=JOB, poll_interval=1)
    with mock.patch.object(
        BackendAIRunBatchOperator, "log", new_callable=mock.PropertyMock, return_value=log
    ):
        result = op.execute(context)
    lines = [line for _, line in log.lines]
    assert lines == EXPECTED  # in order, none lost, none twice
    ended = job_end(emulator, result["session_id"])
    early = [line for at, line in log.lines if at < ended]
    assert len(early) >= 3, f"only {early} reached the task log before the job ended"


def test_trigger_streams_lines_and_resume_writes_only_the_rest(emulator, context):
    op = BackendAIRunBatchOperator(task_id="job", image=IMAGE, command=JOB, poll_interval=1, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, BackendAISessionTrigger)
    trigger = BackendAISessionTrigger(**{**trigger.serialize()[1], "stream_logs": True})
    trigger_log = RecordingLog()

    async def run() -> dict:
        (payload,) = [event.payload async for event in trigger.run()]
        return payload

    with (
        mock.patch.object(
            BackendAISessionTrigger, "log", new_callable=mock.PropertyMock, return_value=trigger_log
        ),
        mock.patch(
            "airflow.providers.backend.ai.triggers.backend_ai.LOG_READ_EVERY", 1
        ),  # read on every poll
    ):
        event = asyncio.run(run())
    streamed = [line for _, line in trigger_log.lines]
    assert streamed
    assert streamed == EXPECTED[: len(streamed)]
    assert event["log_offset"] == sum(len(line) + 1 for line in streamed)

    task_log = RecordingLog()
    with mock.patch.object(
        BackendAIRunBatchOperator, "log", new_callable=mock.PropertyMock, return_value=task_log
    ):
        result = BackendAIRunBatchOperator(
            task_id="job", image=IMAGE, command=JOB, deferrable=True
        ).execute_complete(context, event)
    assert streamed + [line for _, line in task_log.lines] == EXPECTED
    assert result["logs"].splitlines() == EXPECTED


def test_streaming_costs_one_log_read_per_poll(emulator, context):
    started = time.monotonic()
    BackendAIRunBatchOperator(task_id="job", image=IMAGE, command="sleep 2", poll_interval=1).execute(context)
    reads = emulator.request_count(route="gql")
    assert emulator.request_count(route="logs") <= reads + 1, (reads, time.monotonic() - started)
