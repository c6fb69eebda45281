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

import time
from unittest import mock

import pytest
import time_machine
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, AirflowSensorTimeout

from airflow.providers.backend.ai._session.state import SessionFacts
from airflow.providers.backend.ai.exceptions import BackendAINotFoundError
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.sensors.backend_ai import BackendAISessionSensor

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"


@pytest.fixture
def facts():
    with mock.patch.object(BackendAIHook, "get_session_facts", autospec=True) as get_facts:
        yield get_facts


@pytest.mark.parametrize(
    ("status", "result", "info", "outcome"),
    [
        ("PENDING", "UNDEFINED", None, False),
        ("RUNNING", "UNDEFINED", None, False),
        ("RUNNING", "SUCCESS", "task-finished", True),
        ("TERMINATED", "SUCCESS", "task-finished", True),
        ("TERMINATED", "FAILURE", "task-failed", "the command exited with a non-zero code"),
        ("TERMINATED", "FAILURE", "task-timeout", "batch_timeout expired"),
        ("CANCELLED", "UNDEFINED", "user-requested", "ended as CANCELLED without a result"),
        ("ERROR", "UNDEFINED", None, "ended as ERROR"),
    ],
)
def test_poke(facts, status, result, info, outcome):
    facts.return_value = SessionFacts(SID, status, result, info)
    sensor = BackendAISessionSensor(task_id="wait", session_id=SID)
    if isinstance(outcome, str):
        with pytest.raises(AirflowFailException, match=outcome):
            sensor.poke({})
    else:
        assert sensor.poke({}) is outcome
    facts.assert_called_once_with(mock.ANY, SID)


def test_unknown_session_fails_without_retry(facts):
    facts.side_effect = BackendAINotFoundError("read", status=404)
    with pytest.raises(AirflowFailException, match="does not exist"):
        BackendAISessionSensor(task_id="wait", session_id=SID).poke({})


def test_by_name(facts):
    facts.return_value = SessionFacts(SID, "RUNNING")
    with mock.patch.object(BackendAIHook, "find_session_id", autospec=True, return_value=SID) as find:
        sensor = BackendAISessionSensor(task_id="wait", session_name="job-0001")
        assert sensor.poke({}) is False
        assert sensor.poke({}) is False
    find.assert_called_once_with(mock.ANY, "job-0001")  # resolved once, then watched by id
    find.side_effect = BackendAINotFoundError("find", status=404)


def test_unknown_name(facts):
    with mock.patch.object(BackendAIHook, "find_session_id", autospec=True) as find:
        find.side_effect = BackendAINotFoundError("find", status=404)
        with pytest.raises(AirflowFailException, match="No Backend.AI session is named 'ghost'"):
            BackendAISessionSensor(task_id="wait", session_name="ghost").poke({})


@pytest.mark.parametrize("kwargs", [{}, {"session_id": SID, "session_name": "job"}])
def test_exactly_one_identifier(kwargs):
    with pytest.raises(ValueError, match="exactly one of session_id and session_name"):
        BackendAISessionSensor(task_id="wait", **kwargs)


class TestDeferrable:
    def test_defers_when_not_done(self, facts):
        from airflow.providers.common.compat.sdk import TaskDeferred

        from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

        facts.return_value = SessionFacts(SID, "RUNNING")
        sensor = BackendAISessionSensor(
            task_id="wait", session_id=SID, deferrable=True, poke_interval=7, timeout=100
        )
        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute({})
        trigger = deferred.value.trigger
        assert isinstance(trigger, BackendAISessionTrigger)
        assert (trigger.session_id, trigger.poll_interval, trigger.destroy_on_kill) == (SID, 7, False)
        assert trigger.startup_deadline is None

    @pytest.mark.parametrize(
        ("final", "error"),
        [
            (SessionFacts(SID, "TERMINATED", "SUCCESS", "task-finished"), None),
            (
                SessionFacts(SID, "TERMINATED", "FAILURE", "task-failed"),
                "the command exited with a non-zero code",
            ),
        ],
    )
    def test_an_ended_job_is_judged_at_once_without_deferring(self, facts, final, error):
        facts.return_value = final
        sensor = BackendAISessionSensor(task_id="wait", session_id=SID, deferrable=True)
        with mock.patch.object(BackendAISessionSensor, "defer", autospec=True) as defer:
            if error is None:
                assert sensor.execute({}) is None
            else:
                with pytest.raises(AirflowFailException, match=error):
                    sensor.execute({})
        defer.assert_not_called()
        facts.assert_called_once_with(mock.ANY, SID)

    @pytest.mark.parametrize(
        ("status", "result", "error", "match"),
        [
            ("ended", "SUCCESS", None, None),
            ("ended", "FAILURE", AirflowFailException, "the command exited with a non-zero code"),
            ("ended", "UNDEFINED", AirflowFailException, "ended as TERMINATED without a result"),
            ("timeout", "UNDEFINED", AirflowSensorTimeout, "Sensor timed out: watching failed"),
            ("error", "UNDEFINED", AirflowException, "watching failed"),
            # Events of triggers deferred before the ``ended`` kind still resume the task, judged by the facts.
            ("success", "SUCCESS", None, None),
            ("failed", "FAILURE", AirflowFailException, "the command exited with a non-zero code"),
        ],
    )
    def test_execute_complete_judges_the_facts(self, status, result, error, match):
        event = {
            "status": status,
            "session_id": SID,
            "session_name": None,
            "session_status": "TERMINATED",
            "result": result,
            "status_info": "task-failed",
            "message": "watching failed",
        }
        sensor = BackendAISessionSensor(task_id="wait", session_id=SID, deferrable=True)
        if error is None:
            assert sensor.execute_complete({}, event) is None
            return
        with pytest.raises(error, match=match) as raised:
            sensor.execute_complete({}, event)
        if error is AirflowException:  # an API failure may be retried; a failed job or a timeout may not
            assert not isinstance(raised.value, AirflowFailException | AirflowSensorTimeout)

    def test_execute_complete_rejects_a_malformed_event(self):
        sensor = BackendAISessionSensor(task_id="wait", session_id=SID, deferrable=True)
        with pytest.raises(AirflowException, match="Could not find `session_name` in the trigger event"):
            sensor.execute_complete({}, {"status": "ended", "session_id": SID})


class TestPokeModeWaitsForTheJob:
    """In poke mode one poke waits for the job (events, safety poll every poke_interval) until the timeout."""

    @pytest.fixture
    def waited(self):
        with (
            mock.patch("airflow.providers.backend.ai._watch.loop.wait_for_session", autospec=True) as wait,
            mock.patch.object(BackendAIHook, "get_conn", autospec=True) as get_conn,
        ):
            wait.return_value = SessionFacts(SID, "RUNNING", "SUCCESS", "task-finished")
            wait.get_conn = get_conn
            yield wait

    @time_machine.travel("2026-01-01 00:00:00", tick=False)
    def test_poke_mode(self, facts, waited):
        facts.return_value = SessionFacts(SID, "RUNNING")
        sensor = BackendAISessionSensor(task_id="wait", session_id=SID, poke_interval=30, timeout=600)
        sensor.execute({})
        _, kwargs = waited.call_args
        assert kwargs["poll_interval"] == 30.0
        assert kwargs["use_event_stream"] is True
        assert kwargs["give_up_at"] == time.time() + 600
        facts.assert_called_once()  # one read, then the wait
        waited.get_conn.assert_called_once()  # all of it on one API session: no version negotiation per read

    def test_reschedule_mode_reads_once(self, facts, waited):
        facts.return_value = SessionFacts(SID, "RUNNING")
        sensor = BackendAISessionSensor(task_id="wait", session_id=SID, mode="reschedule")
        sensor._give_up_at = time.time() + 600
        assert sensor.poke({}) is False
        waited.assert_not_called()

    def test_events_can_be_turned_off(self, facts, waited):
        facts.return_value = SessionFacts(SID, "RUNNING")
        BackendAISessionSensor(task_id="wait", session_id=SID, use_event_stream=False, timeout=60).execute({})
        assert waited.call_args.kwargs["use_event_stream"] is False

    def test_a_poke_that_gives_up_with_the_job_running_says_not_done(self, facts, waited):
        """At the sensor's timeout the wait returns the running job: the poke says False, and the sensor times out."""
        facts.return_value = SessionFacts(SID, "RUNNING")
        waited.return_value = SessionFacts(SID, "RUNNING")
        sensor = BackendAISessionSensor(task_id="wait", session_id=SID, poke_interval=30, timeout=600)
        sensor._give_up_at = time.time() + 600
        assert sensor.poke({}) is False
        waited.assert_called_once()
