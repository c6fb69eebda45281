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
"""The deferrable paths end to end against the emulator: operator -> trigger (real SDK, async) -> execute_complete."""

from __future__ import annotations

import asyncio
import time

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow.providers.backend.ai.exceptions import BackendAIJobFailedError, BackendAIStartupTimeoutError
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator
from airflow.providers.backend.ai.sensors.backend_ai import BackendAISessionSensor
from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"


def deferrable(command: str, **kwargs) -> BackendAIRunBatchOperator:
    return BackendAIRunBatchOperator(
        task_id="job", image=IMAGE, command=command, deferrable=True, poll_interval=1, **kwargs
    )


def defer(op: BackendAIRunBatchOperator, context) -> BackendAISessionTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    assert isinstance(trigger, BackendAISessionTrigger)
    return trigger


def run_trigger(trigger: BackendAISessionTrigger) -> dict:
    """Run the trigger the way a triggerer does: in an event loop, to its single event, then cleanup."""

    async def main() -> list:
        try:
            return [event.payload async for event in trigger.run()]
        finally:
            await trigger.cleanup()

    (payload,) = asyncio.run(main())
    return payload


def resumed(trigger: BackendAISessionTrigger) -> BackendAISessionTrigger:
    classpath, kwargs = trigger.serialize()
    assert classpath.endswith("BackendAISessionTrigger")
    return BackendAISessionTrigger(**kwargs)


def test_success(emulator, context):
    trigger = defer(deferrable("echo deferred; sleep 1; echo finished"), context)
    assert emulator.get_session(trigger.session_id).status != "TERMINATED"  # the worker left it running
    event = run_trigger(resumed(trigger))
    assert (event["status"], event["result"]) == ("ended", "SUCCESS")
    result = deferrable("ignored").execute_complete(
        context, event
    )  # a new instance, as after a real deferral
    assert result["logs"].splitlines() == ["deferred", "finished"]
    assert result["session_name"] == trigger.session_name
    assert emulator.request_count(route="destroy") == 1


def test_failure_and_batch_timeout(emulator, context):
    event = run_trigger(defer(deferrable("echo oops; exit 4"), context))
    with pytest.raises(BackendAIJobFailedError, match="task-failed"):
        deferrable("ignored").execute_complete(context, event)
    # The end is known from the event, before the manager finishes terminating: the name is free after.
    emulator.wait_until(lambda: not emulator.live_sessions())
    event = run_trigger(defer(deferrable("sleep 60", batch_timeout=1), context))
    with pytest.raises(BackendAIJobFailedError, match="batch_timeout expired"):
        deferrable("ignored").execute_complete(context, event)


def test_startup_timeout_destroys(emulator, context):
    emulator.settings.preparing_hold = 60
    event = run_trigger(defer(deferrable("echo never", startup_timeout=1), context))
    assert event["status"] == "timeout"
    with pytest.raises(BackendAIStartupTimeoutError, match="did not start in time"):
        deferrable("ignored").execute_complete(context, event)
    (session,) = emulator.sessions()
    emulator.wait_for_session(session.id, status="TERMINATED")


def test_job_that_already_ended_completes_without_deferring(emulator, context):
    emulator.settings.step_delay = 0
    op = deferrable("echo quick")
    op.hook.get_session_facts = _wait_then(op.hook.get_session_facts, emulator)
    assert op.execute(context)["result"] == "SUCCESS"


def _wait_then(read, emulator):
    def wrapper(session_id):
        emulator.wait_for_session(session_id, result="SUCCESS")
        return read(session_id)

    return wrapper


def test_trigger_cancelled_mid_run_is_resumed_by_a_new_instance(emulator, context):
    """A triggerer restart cancels the trigger; the job survives and a fresh instance finishes the watch."""
    trigger = defer(deferrable("echo long job; sleep 3; echo done"), context)

    async def cancel_mid_run() -> None:
        task = asyncio.ensure_future(anext(aiter(trigger.run())))
        await asyncio.to_thread(emulator.wait_for_session, trigger.session_id, status="RUNNING")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await trigger.cleanup()

    asyncio.run(cancel_mid_run())
    assert emulator.get_session(trigger.session_id).status == "RUNNING"  # not destroyed by the cancellation
    event = run_trigger(resumed(trigger))
    assert (event["status"], event["result"]) == ("ended", "SUCCESS")
    assert "done" in deferrable("ignored").execute_complete(context, event)["logs"]


def test_on_kill_of_the_trigger_destroys(emulator, context):
    trigger = defer(deferrable("sleep 60"), context)
    emulator.wait_for_session(trigger.session_id, status="RUNNING")
    asyncio.run(resumed(trigger).on_kill())
    snapshot = emulator.wait_for_session(trigger.session_id, status="TERMINATED")
    assert snapshot.status_info == "user-requested"


def test_sensor_deferrable(emulator, context):
    from airflow.providers.backend.ai.operators.backend_ai import BackendAICreateSessionOperator

    created = BackendAICreateSessionOperator(task_id="c", image=IMAGE, command="sleep 1; exit 5").execute(
        context
    )
    sensor = BackendAISessionSensor(
        task_id="wait", session_id=created["session_id"], deferrable=True, poke_interval=1, timeout=60
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    started = time.monotonic()
    event = run_trigger(deferred.value.trigger)
    assert time.monotonic() - started < 5
    with pytest.raises(AirflowFailException, match="task-failed"):
        sensor.execute_complete(context, event)
