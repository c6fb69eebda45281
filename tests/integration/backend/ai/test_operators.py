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
"""The operators and the sensor through the real SDK against the emulator; the server checks for leaks."""

from __future__ import annotations

import threading
import time

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow.providers.backend.ai.exceptions import (
    BackendAIJobFailedError,
    BackendAISessionNotVisibleError,
    BackendAIStartupTimeoutError,
    BackendAITransientError,
)
from airflow.providers.backend.ai.operators.backend_ai import (
    BackendAICreateSessionOperator,
    BackendAIDestroySessionOperator,
    BackendAIRunBatchOperator,
)
from airflow.providers.backend.ai.sensors.backend_ai import BackendAISessionSensor

IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"


def run_batch(command: str, **kwargs) -> BackendAIRunBatchOperator:
    return BackendAIRunBatchOperator(task_id="job", image=IMAGE, command=command, **kwargs)


def test_success_with_logs_and_xcom(emulator, context):
    op = run_batch(
        'echo "hello $GREETING"; echo to-stderr >&2; sleep 1; echo done',
        environment={"GREETING": "world"},
        session_resources={"cpu": 1, "mem": "1g"},
        bootstrap_script="echo bootstrapping",
        log_streaming=False,
    )
    result = op.execute(context)
    assert result["result"] == "SUCCESS"
    assert result["status_info"] == "task-finished"
    assert result["logs"].splitlines() == ["bootstrapping", "hello world", "to-stderr", "done"]
    session = emulator.get_session(result["session_id"])
    assert session.name == result["session_name"]
    assert session.session_type == "batch"
    assert emulator.request_count(route="destroy") == 1
    assert emulator.request_count(route="logs") == 1  # without streaming: one log read per job


def test_the_whole_log_when_the_result_comes_inside_the_log_gap(emulator, context):
    """
    A loaded manager can record the result after the agent dropped the kernel: log reads then answer HTTP
    500 until TERMINATED, here for longer than the hook's retries last (1 s, 2 s). The log is read again
    once the session has terminated, instead of being replaced by a note.
    """
    emulator.settings.logs_gap_while_terminating = True
    emulator.settings.tick = 2.5  # the gap lasts from the result to TERMINATED: two ticks
    emulator.settings.result_write_delay = 3.0
    result = run_batch("echo first; echo second", log_streaming=False).execute(context)
    assert result["result"] == "SUCCESS"
    assert result["logs"] == "first\nsecond\n"
    answers = [r.status for r in emulator.requests if r.route == "logs"]
    assert answers == [500, 500, 500, 200], answers  # the hook's three attempts, then after TERMINATED


def test_exit_code_fails_the_task_with_the_log_tail(emulator, context):
    with pytest.raises(BackendAIJobFailedError) as err:
        run_batch("echo preparing; echo 'Traceback: boom'; exit 3").execute(context)
    assert "the command exited with a non-zero code (task-failed)" in str(err.value)
    assert "Traceback: boom" in str(err.value)
    assert err.value.result == "FAILURE"


def test_batch_timeout(emulator, context):
    started = time.monotonic()
    with pytest.raises(BackendAIJobFailedError, match="batch_timeout expired"):
        run_batch("echo start; sleep 60", batch_timeout=1).execute(context)
    assert time.monotonic() - started < 10
    assert not emulator.running_job_pids()


def test_startup_timeout_destroys_the_session(emulator, context):
    emulator.settings.preparing_hold = 60
    with pytest.raises(
        BackendAIStartupTimeoutError, match="did not start within startup_timeout=1s; last status PREPARING"
    ):
        run_batch("echo never", startup_timeout=1).execute(context)
    (session,) = emulator.sessions()
    emulator.wait_for_session(session.id, status="TERMINATED")


@pytest.mark.allow_live_sessions
def test_keep_leaves_a_session_that_did_not_start(emulator, context):
    emulator.settings.preparing_hold = 60
    with pytest.raises(BackendAIStartupTimeoutError):
        run_batch("echo never", startup_timeout=1, on_finish_action="keep").execute(context)
    (session,) = emulator.live_sessions()
    assert session.status == "PREPARING"
    assert emulator.request_count(route="destroy") == 0


@pytest.mark.parametrize(
    ("action", "command", "destroys"),
    [
        ("keep", "echo ok", 0),
        ("destroy", "exit 1", 1),
        ("destroy_on_success", "echo ok", 1),
        ("destroy_on_success", "exit 1", 0),
    ],
)
def test_on_finish_action(emulator, context, action, command, destroys):
    op = run_batch(command, on_finish_action=action)
    if "exit 1" in command:
        with pytest.raises(BackendAIJobFailedError):
            op.execute(context)
    else:
        op.execute(context)
    assert emulator.request_count(route="destroy") == destroys


def test_on_kill_mid_run_destroys_the_session(emulator, context):
    """``on_kill`` arrives from another thread while ``execute`` waits (Airflow 2 only lets ``execute`` run in
    the thread that built the operator, so the kill is the one in the helper thread)."""
    op = run_batch("echo started; sleep 60")

    def kill_when_running() -> None:
        emulator.wait_until(
            lambda: any(s.status == "RUNNING" and "started" in s.logs for s in emulator.sessions())
        )
        op.on_kill()

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    try:
        with pytest.raises(BackendAIJobFailedError, match="user-requested"):
            op.execute(context)
    finally:
        killer.join(timeout=20)
    (session,) = emulator.sessions()
    assert session.status_info == "user-requested"
    assert not emulator.running_job_pids()


def test_transient_errors_during_polling_are_survived(emulator, context):
    emulator.faults.add("gql", "error", status=503, times=2)
    emulator.faults.add("logs", "reset", times=1)
    assert run_batch("sleep 1; echo survived").execute(context)["logs"].strip() == "survived"


def test_persistent_errors_fail_clearly_and_still_clean_up(emulator, context):
    emulator.faults.add("gql", "html", status=502)
    started = time.monotonic()
    with pytest.raises(BackendAITransientError, match=r"read the status of session .* \(HTTP 502\)"):
        run_batch("sleep 30", poll_interval=1).execute(context)
    # Each read is tried 3 times; failed reads are tolerated for two poll intervals, then the task fails.
    assert 3 < emulator.request_count(route="gql") <= 15
    assert time.monotonic() - started < 15
    assert emulator.request_count(route="destroy") == 1


def test_create_sense_destroy(emulator, context):
    created = BackendAICreateSessionOperator(
        task_id="create", image=IMAGE, command="sleep 1; echo fine"
    ).execute(context)
    assert emulator.get_session(created["session_id"]).status in ("RUNNING", "TERMINATING", "TERMINATED")
    sensor = BackendAISessionSensor(
        task_id="wait", session_id=created["session_id"], poke_interval=0.2, timeout=30
    )
    sensor.execute(context)
    assert BackendAIDestroySessionOperator(task_id="destroy", session_id=created["session_id"]).execute(
        context
    ) in (
        True,
        False,
    )


def test_sensor_fails_on_a_failed_job(emulator, context):
    created = BackendAICreateSessionOperator(task_id="create", image=IMAGE, command="exit 2").execute(context)
    sensor = BackendAISessionSensor(task_id="wait", session_name=created["session_name"], poke_interval=0.2)
    with pytest.raises(AirflowFailException, match="task-failed"):
        sensor.execute(context)


def test_destroy_operator_on_an_ended_session(emulator, context):
    result = run_batch("echo done").execute(context)  # its session is destroyed at the end
    emulator.wait_for_session(result["session_id"], status="TERMINATED")
    op = BackendAIDestroySessionOperator(task_id="destroy", session_id=result["session_id"])
    assert op.execute(context) is False  # already gone


def test_destroy_operator_on_an_unknown_session_fails(emulator, context):
    """The manager answers an unknown id as it answers another keypair's session (403): nothing destroyed."""
    unknown = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
    op = BackendAIDestroySessionOperator(task_id="destroy", session_id=unknown)
    with pytest.raises(BackendAISessionNotVisibleError, match=f"destroy session {unknown} \\(HTTP 403\\)"):
        op.execute(context)


def test_sync_job_overhead(emulator, context):
    """A 1 s job through the operator takes little more than 1 s (the emulator's own steps are ~0.1 s)."""
    started = time.monotonic()
    run_batch("sleep 1").execute(context)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed
