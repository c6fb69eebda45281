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
from __future__ import annotations

import asyncio
import importlib
from contextlib import asynccontextmanager
from unittest import mock

import pytest
import time_machine
from airflow.triggers.base import TriggerEvent
from tests_common.test_utils.version_compat import AIRFLOW_V_3_0_PLUS

from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig
from airflow.providers.backend.ai._session.state import SessionFacts
from airflow.providers.backend.ai._watch.hub import StreamState, Wake
from airflow.providers.backend.ai.exceptions import BackendAIAuthError, BackendAITransientError
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.triggers import backend_ai as backend_ai_triggers
from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
NOW = 1767225600.0  # 2026-01-01 00:00:00 UTC
SETTINGS = BackendAIConnectionConfig(
    conn_id="bai", endpoint="https://api.example.com", access_key="AK", secret_key="SK"
)
KWARGS = {
    "session_id": SID,
    "backend_ai_conn_id": "bai",
    "poll_interval": 5.0,
    "session_name": "job-1",
    "startup_deadline": NOW + 100,
    "end_deadline": NOW + 1000,
    "destroy_on_kill": True,
    "stream_logs": False,
    "use_event_stream": True,
    "startup_timeout": 100.0,
    "requeue_extends_end_deadline": True,
    "hide_line_prefix": None,
}


@pytest.fixture
def async_hook_calls():
    """The async hook methods the trigger calls, autospecced, and the watch loop's sleep."""

    class OpenSession:
        async def __aenter__(self):
            return mock.sentinel.session

        async def __aexit__(self, *exc):
            return False

    with (
        mock.patch.object(
            BackendAIHook, "get_async_conn", autospec=True, side_effect=lambda self: OpenSession()
        ),
        mock.patch.object(BackendAIHook, "a_settings", autospec=True, return_value=SETTINGS),
        mock.patch.object(BackendAIHook, "a_get_session_facts", autospec=True) as facts,
        mock.patch.object(BackendAIHook, "a_destroy_session", autospec=True) as destroy,
        mock.patch("airflow.providers.backend.ai._watch.loop.asyncio.sleep", autospec=True) as sleep,
    ):
        yield mock.Mock(facts=facts, destroy=destroy, sleep=sleep)


def test_serialize_round_trip():
    trigger = BackendAISessionTrigger(**KWARGS)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow.providers.backend.ai.triggers.backend_ai.BackendAISessionTrigger"
    assert kwargs == KWARGS
    assert BackendAISessionTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_serialized_trigger_holds_no_secret(make_connection):
    make_connection("bai", host="http://127.0.0.1:1", login="AKIAEXAMPLE", password="canary-secret-key")
    assert "canary-secret-key" not in repr(BackendAISessionTrigger(**KWARGS).serialize())


async def collect(trigger):
    return [event async for event in trigger.run()]


def payload(status, facts, message):
    return {
        "status": status,
        "session_id": SID,
        "session_name": "job-1",
        "session_status": facts.status,
        "result": facts.result,
        "status_info": facts.status_info,
        "message": message,
        "log_offset": 0,
        "running_since": facts.running_since,
        "preempted_at": facts.preempted_at,
        "log_run": None,
    }


@pytest.mark.parametrize(
    "final",
    [
        SessionFacts(SID, "TERMINATING", "SUCCESS", "task-finished"),
        SessionFacts(SID, "TERMINATED", "FAILURE", "task-failed"),
        SessionFacts(SID, "CANCELLED", "UNDEFINED", "user-requested"),
    ],
)
@time_machine.travel(NOW, tick=False)
async def test_one_event_with_the_facts_when_the_job_ends(async_hook_calls, final):
    """The trigger reports what it saw; the resumed task judges it (no verdict in the event)."""
    async_hook_calls.facts.side_effect = [SessionFacts(SID, "PREPARING"), SessionFacts(SID, "RUNNING"), final]
    events = await collect(BackendAISessionTrigger(**KWARGS))
    assert events == [TriggerEvent(payload("ended", final, f"The job ended: {final.result}"))]
    # A short wait first (the task read the status just before deferring), then the backoff, which
    # starts again when the job is first seen running.
    assert [c.args[0] for c in async_hook_calls.sleep.call_args_list] == [0.25, 0.375, 0.25]
    async_hook_calls.destroy.assert_not_called()


async def test_startup_deadline(async_hook_calls):
    async_hook_calls.facts.return_value = SessionFacts(SID, "PREPARING")
    with time_machine.travel(NOW + 101, tick=False):
        (event,) = await collect(BackendAISessionTrigger(**KWARGS))
    assert event.payload["status"] == "timeout"
    assert "did not start in time" in event.payload["message"]


async def test_sleep_never_overshoots_a_deadline(async_hook_calls):
    async_hook_calls.facts.side_effect = [
        SessionFacts(SID, "RUNNING"),
        SessionFacts(SID, "TERMINATED", "SUCCESS", "task-finished"),
    ]
    with time_machine.travel(NOW + 999.8, tick=False):
        await collect(BackendAISessionTrigger(**KWARGS))
    assert async_hook_calls.sleep.call_args.args[0] == pytest.approx(0.2)


async def test_end_deadline(async_hook_calls):
    async_hook_calls.facts.return_value = SessionFacts(SID, "RUNNING")
    with time_machine.travel(NOW + 1000, tick=False):
        (event,) = await collect(BackendAISessionTrigger(**KWARGS))
    assert event.payload["status"] == "timeout"
    assert "did not end in time" in event.payload["message"]


@pytest.mark.parametrize(
    "error", [BackendAITransientError("read", status=503), BackendAIAuthError("read", status=401)]
)
async def test_api_failure_becomes_an_error_event(async_hook_calls, error):
    async_hook_calls.facts.side_effect = error
    # A transient error is tolerated for two poll intervals (of real time: keep them short).
    (event,) = await collect(BackendAISessionTrigger(**{**KWARGS, "poll_interval": 0.05}))
    assert event.payload["status"] == "error"
    assert event.payload["session_id"] == SID
    assert str(error) in event.payload["message"]
    async_hook_calls.destroy.assert_not_called()


async def test_on_kill_destroys(async_hook_calls):
    await BackendAISessionTrigger(**KWARGS).on_kill()
    async_hook_calls.destroy.assert_called_once_with(mock.ANY, SID)
    await BackendAISessionTrigger(**{**KWARGS, "destroy_on_kill": False}).on_kill()
    assert async_hook_calls.destroy.call_count == 1


def fake_comms(states, pushed=SID, answer=None):
    """The triggerer's supervisor channel: answers the task-state and XCom requests of ``on_kill``."""
    from airflow.sdk.execution_time.comms import GetTaskStates, TaskStatesResult, XComResult

    async def asend(request):
        if answer is not None:
            await answer.wait()  # the supervisor answers after a few of its loops
        if isinstance(states, Exception):
            raise states
        if isinstance(request, GetTaskStates):
            return TaskStatesResult(task_states=states)
        return XComResult(key=request.key, value=pushed)

    return mock.Mock(asend=mock.AsyncMock(side_effect=asend))


def killed_trigger():
    trigger = BackendAISessionTrigger(**KWARGS)
    trigger.task_instance = mock.Mock(dag_id="dag", task_id="job", run_id="run-1", map_index=-1, task=None)
    return trigger


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="on_kill runs on Airflow 3.3+ only")
@pytest.mark.parametrize(
    ("states", "pushed", "destroyed"),
    [
        ({"run-1": {"job": "deferred"}}, SID, False),  # a stalled triggerer's trigger moved on: keep the job
        ({"run-1": {"job": "deferred"}}, "0c9e-next-try", True),  # cleared, and the next try deferred already
        ({"run-1": {"job": "deferred"}}, None, True),  # cleared (XCom gone)
        ({"run-1": {"job": "failed"}}, SID, True),  # marked failed
        ({"run-1": {"job": None}}, None, True),  # cleared
        ({"run-1": {"job_3": "deferred"}}, SID, True),  # another map index's state says nothing of this one
        (RuntimeError("no supervisor"), SID, True),  # unknown: the user's action wins
    ],
)
async def test_on_kill_keeps_only_the_job_its_deferred_task_still_watches(
    async_hook_calls, states, pushed, destroyed
):
    from airflow.sdk.execution_time.comms import GetTaskStates, GetXCom

    comms = fake_comms(states, pushed)
    with mock.patch("airflow.sdk.execution_time.task_runner.SUPERVISOR_COMMS", comms, create=True):
        await killed_trigger().on_kill()
    assert async_hook_calls.destroy.called is destroyed
    requests = [c.args[0] for c in comms.asend.await_args_list]
    assert requests[0] == GetTaskStates(dag_id="dag", task_ids=["job"], run_ids=["run-1"], map_index=-1)
    if not isinstance(states, Exception):
        assert requests[1] == GetXCom(
            key="session_id", dag_id="dag", task_id="job", run_id="run-1", map_index=-1
        )


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="on_kill runs on Airflow 3.3+ only")
async def test_on_kill_destroys_when_the_supervisor_does_not_answer_in_time(async_hook_calls):
    comms = fake_comms({"run-1": {"job": "deferred"}}, answer=asyncio.Event())  # never set
    with (
        mock.patch("airflow.sdk.execution_time.task_runner.SUPERVISOR_COMMS", comms, create=True),
        mock.patch("airflow.providers.backend.ai.triggers.backend_ai.TASK_STATE_TIMEOUT", 0.05),
    ):
        await killed_trigger().on_kill()
    assert async_hook_calls.destroy.call_count == 1


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="on_kill runs on Airflow 3.3+ only")
async def test_on_kill_finishes_when_the_triggerer_cancels_it_again(async_hook_calls):
    """The triggerer cancels the trigger's task at every sync while it runs: the reads and destroy go on."""
    answer = asyncio.Event()
    comms = fake_comms({"run-1": {"job": "failed"}}, answer=answer)
    with mock.patch("airflow.sdk.execution_time.task_runner.SUPERVISOR_COMMS", comms, create=True):
        on_kill = asyncio.ensure_future(killed_trigger().on_kill())
        for _ in range(100):  # let the event loop run on_kill up to its first request
            if comms.asend.await_count:
                break
            await _one_loop_turn()
        assert comms.asend.await_count == 1
        on_kill.cancel()
        with pytest.raises(asyncio.CancelledError):
            await on_kill
        assert not async_hook_calls.destroy.called
        answer.set()
        (kill,) = backend_ai_triggers._KILLS
        await asyncio.wait_for(kill, 5)
    assert async_hook_calls.destroy.call_count == 1


async def _one_loop_turn():
    """Let the other tasks run once (``asyncio.sleep`` is patched in these tests)."""
    turned = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(turned.set_result, None)
    await turned


async def test_on_kill_never_raises(async_hook_calls):
    async_hook_calls.destroy.side_effect = BackendAITransientError("destroy", status=503)
    trigger = BackendAISessionTrigger(**KWARGS)
    with mock.patch.object(BackendAISessionTrigger, "log", new_callable=mock.PropertyMock) as log:
        await trigger.on_kill()  # raises nothing
    async_hook_calls.destroy.assert_called_once_with(mock.ANY, SID)
    log.return_value.exception.assert_called_once_with("Could not destroy Backend.AI session %s", SID)


@pytest.mark.skipif(
    not AIRFLOW_V_3_0_PLUS, reason="Airflow 2 destroys in cleanup once the task is no longer deferred"
)
async def test_cleanup_never_destroys_on_airflow_3(async_hook_calls):
    await BackendAISessionTrigger(**KWARGS).cleanup()
    async_hook_calls.destroy.assert_not_called()


@pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="the safe_to_cancel path is for Airflow 2")
@pytest.mark.parametrize(("still_deferred", "destroyed"), [(True, False), (False, True)])
async def test_cleanup_on_airflow_2_destroys_only_when_no_longer_deferred(
    async_hook_calls, still_deferred, destroyed
):
    trigger = BackendAISessionTrigger(**KWARGS)
    with mock.patch.object(BackendAISessionTrigger, "_task_is_still_deferred", return_value=still_deferred):
        await trigger.cleanup()
    assert async_hook_calls.destroy.called is destroyed


@time_machine.travel(NOW, tick=False)
async def test_streams_logs_and_reports_the_offset(async_hook_calls):
    async_hook_calls.facts.side_effect = [
        SessionFacts(SID, "RUNNING"),
        SessionFacts(SID, "RUNNING"),
        SessionFacts(SID, "TERMINATED", "SUCCESS", "task-finished"),
    ]
    with (
        mock.patch.object(BackendAIHook, "a_get_session_logs", autospec=True) as logs,
        mock.patch("airflow.providers.backend.ai.triggers.backend_ai.LOG_READ_EVERY", 1),
    ):
        logs.side_effect = ["one\n", "one\ntwo\nthr"]
        trigger = BackendAISessionTrigger(**{**KWARGS, "stream_logs": True})
        with mock.patch.object(BackendAISessionTrigger, "log", new_callable=mock.PropertyMock) as log:
            (event,) = await collect(trigger)
    streamed = [c.args[1] for c in log.return_value.info.call_args_list if c.args[:1] == ("%s",)]
    assert streamed == ["one", "two"]
    assert event.payload["log_offset"] == len("one\ntwo\n")


@time_machine.travel(NOW, tick=False)
async def test_streaming_leaves_out_the_hidden_lines_but_counts_them_in_the_offset(async_hook_calls):
    """``@task.backend_ai``'s result frame stays out of the task log; the resumed task reads it from the log."""
    async_hook_calls.facts.side_effect = [
        SessionFacts(SID, "RUNNING"),
        SessionFacts(SID, "TERMINATED", "SUCCESS", "task-finished"),
    ]
    log_text = "epoch 1\n@@frame@@ B 1 ok\n @@frame@@ printed by the function\n@@frame@@ E 0\n"
    with (
        mock.patch.object(BackendAIHook, "a_get_session_logs", autospec=True, return_value=log_text),
        mock.patch("airflow.providers.backend.ai.triggers.backend_ai.LOG_READ_EVERY", 1),
    ):
        trigger = BackendAISessionTrigger(**{**KWARGS, "stream_logs": True, "hide_line_prefix": "@@frame@@ "})
        with mock.patch.object(BackendAISessionTrigger, "log", new_callable=mock.PropertyMock) as log:
            (event,) = await collect(trigger)
    streamed = [c.args[1] for c in log.return_value.info.call_args_list if c.args[:1] == ("%s",)]
    assert streamed == ["epoch 1", " @@frame@@ printed by the function"]
    assert event.payload["log_offset"] == len(log_text)


@time_machine.travel(NOW, tick=False)
async def test_reads_the_log_every_eighth_status_read(async_hook_calls):
    async_hook_calls.facts.side_effect = [SessionFacts(SID, "RUNNING")] * 24 + [
        SessionFacts(SID, "TERMINATED", "SUCCESS", "task-finished")
    ]
    with mock.patch.object(BackendAIHook, "a_get_session_logs", autospec=True, return_value="") as logs:
        await collect(BackendAISessionTrigger(**{**KWARGS, "stream_logs": True}))
    assert logs.call_count == 3  # one read in eight (24 reads while running), at this session's phase


@time_machine.travel(NOW, tick=False)
async def test_the_reason_is_read_again_when_the_result_came_first(async_hook_calls):
    final = SessionFacts(SID, "TERMINATING", "FAILURE", "task-timeout")
    async_hook_calls.facts.side_effect = [SessionFacts(SID, "RUNNING", "FAILURE", None), final]
    (event,) = await collect(BackendAISessionTrigger(**KWARGS))
    assert event.payload["status_info"] == "task-timeout"


class FakeEventWatch:
    """An open event stream that wakes the trigger as told, recording how long it was asked to wait."""

    def __init__(self, *wakes, reason="task-finished"):
        self.state, self.unavailable_reason, self.event_reason = StreamState.OPEN, None, None
        self.wakes, self.reason, self.timeouts = list(wakes), reason, []

    def drain(self):
        pass

    async def wait(self, timeout):
        self.timeouts.append(timeout)
        wake = self.wakes.pop(0)
        if wake is Wake.EVENT:
            self.event_reason = self.reason
        return wake


def with_events(watch):
    @asynccontextmanager
    async def fake(settings, session_id):
        assert (settings, session_id) == (SETTINGS, SID)
        yield watch

    return mock.patch("airflow.providers.backend.ai._watch.loop.watch_session_events", fake)


@pytest.mark.event_stream
@time_machine.travel(NOW, tick=False)
async def test_with_events_the_end_event_ends_the_wait_and_gives_the_reason(async_hook_calls):
    running = SessionFacts(SID, "RUNNING")
    async_hook_calls.facts.side_effect = [running, running, SessionFacts(SID, "RUNNING", "SUCCESS")]
    watch = FakeEventWatch(None, Wake.EVENT)
    with with_events(watch):
        (event,) = await collect(BackendAISessionTrigger(**{**KWARGS, "end_deadline": None}))
    assert (event.payload["status"], event.payload["status_info"]) == ("ended", "task-finished")
    assert watch.timeouts == [5.0, 5.0]  # the safety poll: one read per poll interval while events come
    # Only the first short pause (the task read the state just before deferring): no fast polling, and no
    # second read for the reason.
    assert [c.args[0] for c in async_hook_calls.sleep.call_args_list] == [0.25]


@pytest.mark.event_stream
@time_machine.travel(NOW, tick=False)
async def test_with_events_a_lost_stream_means_fast_reads_without_an_extra_one(async_hook_calls):
    async_hook_calls.facts.side_effect = [
        SessionFacts(SID, "RUNNING"),
        SessionFacts(SID, "TERMINATED", "SUCCESS", "x"),
    ]
    watch = FakeEventWatch(Wake.LOST, None)

    async def lose_stream(timeout):
        watch.state = StreamState.CONNECTING
        return await FakeEventWatch.wait(watch, timeout)

    watch.wait = lose_stream
    with with_events(watch):
        (event,) = await collect(BackendAISessionTrigger(**{**KWARGS, "end_deadline": None}))
    assert event.payload["status"] == "ended"
    assert async_hook_calls.facts.call_count == 2  # the loss itself asked for no read
    assert watch.timeouts == [5.0, 0.375]  # then the polling schedule


@pytest.mark.event_stream
@time_machine.travel(NOW, tick=False)
async def test_an_end_event_the_manager_has_not_recorded_yet_means_fast_reads(async_hook_calls):
    running = SessionFacts(SID, "RUNNING")
    async_hook_calls.facts.side_effect = [running, running, running, SessionFacts(SID, "RUNNING", "SUCCESS")]
    watch = FakeEventWatch(Wake.EVENT, None, None)
    with with_events(watch):
        (event,) = await collect(BackendAISessionTrigger(**{**KWARGS, "end_deadline": None}))
    assert event.payload["status"] == "ended"
    assert watch.timeouts == [5.0, 0.25, 0.375]  # not another whole poll interval after the event


@pytest.mark.event_stream
@time_machine.travel(NOW, tick=False)
async def test_no_log_read_between_an_end_event_and_the_recorded_result(async_hook_calls):
    """After the end event the log waits for the task (a read then can meet the manager's 500 window)."""
    running = SessionFacts(SID, "RUNNING")
    async_hook_calls.facts.side_effect = [running, running, running, SessionFacts(SID, "RUNNING", "SUCCESS")]
    watch = FakeEventWatch(None, Wake.EVENT, None)
    trigger = BackendAISessionTrigger(**{**KWARGS, "end_deadline": None, "stream_logs": True})
    with (
        with_events(watch),
        mock.patch("airflow.providers.backend.ai.triggers.backend_ai.LOG_READ_EVERY", 1),  # a log per read
        mock.patch.object(BackendAIHook, "a_get_session_logs", autospec=True, return_value="x\n") as logs,
    ):
        (event,) = await collect(trigger)
    assert event.payload["status"] == "ended"
    assert logs.call_count == 2  # with the first two reads; none with the third, after the event


#: A trigger as the provider at commit 11b7351 (before the watch step) serialized it into the metadata
#: database (``BaseSerialization`` of its kwargs), captured from that commit: it must still resume.
TRIGGER_FROM_11B7351 = {
    "classpath": "airflow.providers.backend.ai.triggers.backend_ai.BackendAISessionTrigger",
    "kwargs": {
        "__var": {
            "session_id": "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d",
            "backend_ai_conn_id": "backend_ai_default",
            "poll_interval": 15.0,
            "session_name": "af-example-train-t1-0123456789ab",
            "startup_deadline": 1767225700.0,
            "end_deadline": 1767226660.0,
            "destroy_on_kill": True,
            "stream_logs": True,
            "use_event_stream": True,
        },
        "__type": "dict",
    },
}


@time_machine.travel(NOW, tick=False)
async def test_a_trigger_deferred_by_the_previous_release_resumes(async_hook_calls):
    from airflow.serialization.serialized_objects import BaseSerialization

    module, _, name = TRIGGER_FROM_11B7351["classpath"].rpartition(".")
    trigger_cls = getattr(importlib.import_module(module), name)  # as the triggerer loads it
    kwargs = BaseSerialization.deserialize(TRIGGER_FROM_11B7351["kwargs"])
    trigger = trigger_cls(**kwargs)
    # Parameters added since then take their defaults, which keep its deadlines and stream every line.
    later = {"startup_timeout": None, "requeue_extends_end_deadline": False, "hide_line_prefix": None}
    assert trigger.serialize() == (TRIGGER_FROM_11B7351["classpath"], {**kwargs, **later})
    final = SessionFacts(SID, "TERMINATED", "SUCCESS", "task-finished")
    async_hook_calls.facts.side_effect = [SessionFacts(SID, "RUNNING"), final]
    with mock.patch.object(BackendAIHook, "a_get_session_logs", autospec=True, return_value="one\n"):
        (event,) = await collect(trigger)
    assert event.payload["status"] == "ended"
    assert (event.payload["session_id"], event.payload["result"]) == (SID, "SUCCESS")
