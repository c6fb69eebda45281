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
Events first: the job's end is learnt from the shared event stream, with a slow safety poll behind it.

Every test uses a poll interval far longer than the job, so only the event stream can explain a prompt
completion; "job end" is the emulator's own record of the job's exit.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from unittest import mock

import pytest

from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec
from airflow.providers.backend.ai._watch import hub
from airflow.providers.backend.ai._watch.loop import wait_for_session
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator
from airflow.providers.backend.ai.sensors.backend_ai import BackendAISessionSensor
from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

pytestmark = pytest.mark.emulator_only

IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"
SLOW_POLL = 30.0


def lag(emulator, session_id: str, detected_at: float) -> float:
    """Seconds from the job's exit (the server's record) to ``detected_at``."""
    exited = emulator.get_session(session_id).job_exited_at
    assert exited is not None, "the job has not exited"
    return detected_at - exited.timestamp()


def run_sync(context, command: str = "sleep 2; echo done", **kwargs) -> tuple[dict, float]:
    op = BackendAIRunBatchOperator(
        task_id="job",
        image=IMAGE,
        command=command,
        poll_interval=kwargs.pop("poll_interval", SLOW_POLL),
        **kwargs,
    )
    result = op.execute(context)
    return result, time.time()


def create(name: str, command: str) -> str:
    return (
        BackendAIHook()
        .create_batch_session(BatchSessionSpec(image=IMAGE, command=command, name=name))
        .session_id
    )


async def watch(session_id: str, **kwargs) -> tuple[dict, float]:
    trigger = BackendAISessionTrigger(
        session_id=session_id, poll_interval=kwargs.pop("poll_interval", SLOW_POLL), **kwargs
    )
    (event,) = [event.payload async for event in trigger.run()]
    return event, time.time()


class TestSync:
    def test_end_is_known_from_the_event_with_few_reads(self, emulator, context):
        emulator.set_baseline()
        result, done = run_sync(context)
        assert result["result"] == "SUCCESS"
        assert result["status_info"] == "task-finished"
        assert lag(emulator, result["session_id"], done) < 0.3
        counts = emulator.request_counts()
        assert counts.get("events") == 1
        assert counts.get("gql", 0) <= 3, counts  # first read, the read the event asked for (+ a re-read)

    def test_no_log_reads_between_the_end_event_and_the_result(self, emulator, context):
        """
        A loaded manager sends the end event seconds before it records the result, and the log read of a
        running job can then meet its HTTP 500 window (whose retries held the sync task up by 1-3 s on the
        real manager): after the event, only the final log read happens.
        """
        emulator.settings.result_write_delay = 1.5
        result, done = run_sync(context, command="sleep 1; echo done", poll_interval=0.5)
        assert result["result"] == "SUCCESS"
        assert result["logs"] == "done\n"
        assert lag(emulator, result["session_id"], done) < 1.5 + 0.5
        # Polls every 0.5 s read the log of the running job; none after the event but the final read.
        reads = [r.at for r in emulator.requests if r.route == "logs"]
        event_at = emulator.get_session(result["session_id"]).job_exited_at.timestamp()
        after_event = [at for at in reads if at > event_at + 0.05]
        assert len(after_event) == 1, (reads, event_at)

    def test_polling_alone_when_asked(self, emulator, context):
        emulator.set_baseline()
        result, _ = run_sync(context, poll_interval=1, use_event_stream=False)
        assert result["result"] == "SUCCESS"
        assert emulator.request_counts().get("events", 0) == 0

    def test_blocked_stream_falls_back_to_polling_and_says_why(self, emulator, context):
        emulator.block_event_streams(404)
        result, done = run_sync(context, poll_interval=2)
        assert result["result"] == "SUCCESS"
        assert lag(emulator, result["session_id"], done) < 2 + 1
        # What the task log says (the operator logs through the same schedule).
        session_id = create("blocked-log", "sleep 1")
        log = mock.Mock()
        facts = wait_for_session(BackendAIHook(), session_id, startup_timeout=60, poll_interval=2, log=log)
        assert facts.result == "SUCCESS"
        said = [call.args[0] % call.args[1:] for call in log.info.call_args_list]
        assert any("event stream is not available (HTTP 404" in line for line in said), said
        BackendAIHook().destroy_session(session_id)

    def test_stream_dropped_mid_job_reconnects_and_misses_nothing(self, emulator, context):
        timer = threading.Timer(1.0, emulator.drop_event_streams)
        timer.start()
        try:
            result, done = run_sync(context, command="sleep 2.5; echo done")
        finally:
            timer.cancel()
        assert result["result"] == "SUCCESS"
        assert lag(emulator, result["session_id"], done) < 1.5
        assert emulator.event_streams_opened >= 2

    def test_lost_event_is_caught_by_the_safety_poll(self, emulator, context):
        emulator.faults.lose_events(names={"session_success", "session_failure"})
        result, done = run_sync(context, command="sleep 1; echo done", poll_interval=3)
        assert result["result"] == "SUCCESS"
        assert lag(emulator, result["session_id"], done) < 3 + 1

    def test_manager_restart_while_the_job_is_watched(self, emulator, context):
        timer = threading.Timer(1.0, lambda: emulator.restart(down_for=3))
        timer.start()
        try:
            result, _ = run_sync(context, command="sleep 2; echo done", poll_interval=5)
        finally:
            timer.join()
        assert result["result"] == "SUCCESS"
        assert result["logs"] == "done\n"

    def test_sensor_in_poke_mode_waits_for_the_event(self, emulator):
        session_id = create("sensor-events", "sleep 2")
        sensor = BackendAISessionSensor(
            task_id="wait", session_id=session_id, poke_interval=SLOW_POLL, timeout=60
        )
        sensor.execute({})
        assert lag(emulator, session_id, time.time()) < 0.3
        BackendAIHook().destroy_session(session_id)


class TestTriggerer:
    def test_many_triggers_share_one_stream(self, emulator):
        rng = random.Random(7)
        ids = [create(f"fan-{i}", f"sleep {rng.uniform(1, 3):.2f}") for i in range(30)]
        emulator.set_baseline()

        async def main():
            return await asyncio.gather(*(watch(session_id) for session_id in ids))

        results = asyncio.run(main())
        lags = [lag(emulator, sid, done) for sid, (_, done) in zip(ids, results, strict=True)]
        assert all((event["status"], event["result"]) == ("ended", "SUCCESS") for event, _ in results)
        assert max(lags) < 0.5, lags
        assert emulator.event_streams_peak == 1
        assert not hub._hubs  # the stream closed with the last waiter
        counts = emulator.request_counts()
        assert counts.get("gql", 0) <= 3 * len(ids), counts
        for session_id in ids:
            BackendAIHook().destroy_session(session_id)

    def test_events_off_polls(self, emulator):
        session_id = create("trigger-poll", "sleep 1")
        emulator.set_baseline()
        event, _ = asyncio.run(watch(session_id, poll_interval=1, use_event_stream=False))
        assert (event["status"], event["result"]) == ("ended", "SUCCESS")
        assert emulator.request_counts().get("events", 0) == 0
        BackendAIHook().destroy_session(session_id)

    def test_failure_event_carries_the_reason(self, emulator):
        session_id = create("trigger-fail", "sleep 1; exit 3")
        event, done = asyncio.run(watch(session_id))
        assert (event["status"], event["result"], event["status_info"]) == (
            "ended",
            "FAILURE",
            "task-failed",
        )
        assert lag(emulator, session_id, done) < 0.5
        BackendAIHook().destroy_session(session_id)
