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
The provider on a busy cluster, against the emulator's preemption model (as measured on 26.9.6).

A victim job runs longer than its ``startup_timeout`` before a session of the same user with a higher
``job_priority`` preempts it. In reschedule mode the task must succeed after the rerun, with one session
and a task log that tells the preemption; in terminate mode it fails with ``BackendAIPreemptedError``,
which the shipped retry policy retries. Nothing may be left alive (the ``emulator`` fixture checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred
from tests_common.test_utils.version_compat import AIRFLOW_V_3_3_PLUS

from airflow.providers.backend.ai._watch import step
from airflow.providers.backend.ai.exceptions import (
    BackendAIManagerVersionError,
    BackendAIPreemptedError,
    BackendAIStartupTimeoutError,
)
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator
from airflow.providers.backend.ai.sensors.backend_ai import BackendAISessionSensor
from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger
from integration.backend.ai import test_doc_examples
from integration.backend.ai.busy import Preemptor, RecordingLog, preemptor_spec, rerun_command
from integration.backend.ai.doc_examples import DocExample

if TYPE_CHECKING:
    from pathlib import Path

    from backend_ai_emulator import EmulatorHandle

IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"
#: More than half of the emulator's agent: a victim and a preemptor never fit together.
BIG = {"cpu": 5, "mem": "1g"}
#: The victim's startup_timeout, and how long its first run runs before it is preempted (longer).
STARTUP_TIMEOUT = 3
RUNS_BEFORE_PREEMPTION = 5.0


def busy(emulator: EmulatorHandle, mode: str) -> None:
    emulator.set_preemption(True, mode, capacity={"cpu": 8, "mem": "64g"})


def preemptor(emulator: EmulatorHandle, *, after: float = RUNS_BEFORE_PREEMPTION, **kwargs: Any) -> Preemptor:
    """A preemptor for the first session of the emulator whose first run has run ``after`` seconds."""

    def victims() -> list[str]:
        return [str(s.id) for s in emulator.sessions() if not s.name.startswith("preemptor-")]

    def running_for(session_id: str) -> float | None:
        snap = emulator.get_session(session_id)
        if snap is None or snap.status != "RUNNING" or snap.runs != 1 or snap.started_at is None:
            return None
        return (datetime.now(UTC) - snap.started_at).total_seconds()

    spec = preemptor_spec(IMAGE, BIG, name=f"preemptor-{uuid.uuid4().hex[:12]}", **kwargs)
    return Preemptor(BackendAIHook(), spec, victims=victims, running_for=running_for, after=after)


def victim(marker: Path, **kwargs: Any) -> BackendAIRunBatchOperator:
    kwargs.setdefault("startup_timeout", STARTUP_TIMEOUT)
    return BackendAIRunBatchOperator(
        task_id="victim",
        image=IMAGE,
        command=rerun_command(str(marker)),
        session_resources=BIG,
        poll_interval=1,
        **kwargs,
    )


@contextlib.contextmanager
def task_log(cls: type) -> Any:
    log = RecordingLog()
    with mock.patch.object(cls, "log", new_callable=mock.PropertyMock, return_value=log):
        yield log


def only_session_of(emulator: EmulatorHandle, name: str) -> Any:
    (session,) = [s for s in emulator.sessions() if s.name == name]
    return session


def assert_told_the_preemption(log: RecordingLog) -> None:
    text = log.text()
    assert "was preempted at " in text
    assert "a session of the same user with a higher job_priority needs its resources" in text
    assert "requeued session" in text or "and requeued" in text


# -- reschedule mode -------------------------------------------------------------------------------------


def test_sync_reschedule_succeeds_after_the_rerun(emulator, context, tmp_path):
    busy(emulator, "reschedule")
    with task_log(BackendAIRunBatchOperator) as log, preemptor(emulator) as high:
        result = victim(tmp_path / "ran").execute(context)
    assert (result["result"], result["logs"].strip()) == ("SUCCESS", "rerun")
    session = only_session_of(emulator, result["session_name"])
    assert (str(session.id), session.runs) == (high.victim, 2)
    assert session.statuses.count("PREEMPTED") == 1
    assert_told_the_preemption(log)
    # The first run's lines were streamed while it ran; the rerun's follow, announced, not as a repeat.
    first, again, rerun = (
        log.index("first-run"),
        log.index("runs again from the beginning: the log"),
        log.index("rerun"),
    )
    assert first < log.index("was preempted at ") < again < rerun
    assert log.lines.count("rerun") == 1
    assert emulator.get_session(high.session_id).job_priority == 10


def run_trigger(trigger: BackendAISessionTrigger, log: RecordingLog) -> dict[str, Any]:
    async def main() -> list[dict[str, Any]]:
        try:
            return [event.payload async for event in trigger.run()]
        finally:
            await trigger.cleanup()

    with mock.patch.object(BackendAISessionTrigger, "log", new_callable=mock.PropertyMock, return_value=log):
        (payload,) = asyncio.run(main())
    return payload


def defer(op: BackendAIRunBatchOperator, context: Any) -> BackendAISessionTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, BackendAISessionTrigger)
    _, kwargs = trigger.serialize()  # what the triggerer gets
    assert kwargs["startup_timeout"] == op.startup_timeout
    assert kwargs["requeue_extends_end_deadline"] is True
    return BackendAISessionTrigger(**{**kwargs, "stream_logs": True})


def test_deferrable_reschedule_succeeds_after_the_rerun(emulator, context, tmp_path):
    busy(emulator, "reschedule")
    trigger_log = RecordingLog()
    with preemptor(emulator) as high:
        trigger = defer(victim(tmp_path / "ran", deferrable=True), context)
        with mock.patch("airflow.providers.backend.ai.triggers.backend_ai.LOG_READ_EVERY", 1):
            event = run_trigger(trigger, trigger_log)
    assert (event["status"], event["result"]) == ("ended", "SUCCESS")
    assert event["preempted_at"] is not None
    assert_told_the_preemption(trigger_log)
    with task_log(BackendAIRunBatchOperator) as log:
        result = victim(tmp_path / "ignored", deferrable=True).execute_complete(context, event)
    assert (result["result"], result["logs"].strip()) == ("SUCCESS", "rerun")
    assert (str(only_session_of(emulator, result["session_name"]).id), high.victim) == (
        trigger.session_id,
    ) * 2
    streamed = [line for line in trigger_log.lines + log.lines if line in ("first-run", "rerun")]
    assert streamed == ["first-run", "rerun"]  # each line once, whichever side wrote it


def test_a_triggerer_restart_during_the_requeue(emulator, context, tmp_path):
    """The trigger is cancelled while the session is requeued; one made from its serialized kwargs finishes."""
    busy(emulator, "reschedule")
    # The preemptor keeps the victim requeued for 3 s, within the startup_timeout (6 s) from the restart;
    # the first run (8 s) outlasts it, so the serialized startup deadline has passed at the restart.
    with preemptor(emulator, after=8.0, command="sleep 3; echo high") as high:
        trigger = defer(victim(tmp_path / "ran", deferrable=True, startup_timeout=6), context)
        first_log = RecordingLog()

        async def until_requeued() -> None:
            watching = asyncio.ensure_future(anext(aiter(trigger.run())))
            await asyncio.to_thread(
                emulator.wait_for_session,
                trigger.session_id,
                status="PENDING",
                predicate=lambda s: s.requeued_at is not None,
                timeout=60,
            )
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            await trigger.cleanup()  # a restart: the task is still deferred, the session must survive

        with mock.patch.object(
            BackendAISessionTrigger, "log", new_callable=mock.PropertyMock, return_value=first_log
        ):
            asyncio.run(until_requeued())
        assert emulator.get_session(trigger.session_id).status == "PENDING"
        # Its startup deadline has passed (the first run alone outlasted startup_timeout).
        assert trigger.startup_deadline < time.time()
        restarted_log = RecordingLog()
        event = run_trigger(BackendAISessionTrigger(**trigger.serialize()[1]), restarted_log)
    assert (event["status"], event["result"]) == ("ended", "SUCCESS"), event["message"]
    assert_told_the_preemption(restarted_log)
    assert "runs the job again from the beginning" in restarted_log.text()
    result = victim(tmp_path / "ignored", deferrable=True).execute_complete(context, event)
    assert result["logs"].strip() == "rerun"
    assert emulator.get_session(high.victim).runs == 2


def test_the_sensor_waits_through_a_requeue(emulator, context, tmp_path):
    busy(emulator, "reschedule")
    with preemptor(emulator, after=1.0) as high:
        created = victim(tmp_path / "ran").hook.create_batch_session(
            victim(tmp_path / "ran").session_spec(context)
        )
        sensor = BackendAISessionSensor(
            task_id="wait", session_id=created.session_id, poke_interval=1, timeout=120, mode="poke"
        )
        with task_log(BackendAISessionSensor) as log:
            sensor.execute(context)
    assert high.victim == created.session_id
    assert emulator.get_session(created.session_id).result == "SUCCESS"
    assert "was preempted at " in log.text()


# -- terminate mode --------------------------------------------------------------------------------------


def test_sync_terminate_raises_preempted(emulator, context, tmp_path):
    busy(emulator, "terminate")
    with preemptor(emulator) as high, pytest.raises(BackendAIPreemptedError) as raised:
        victim(tmp_path / "ran").execute(context)
    error = raised.value
    assert error.session_id == high.victim
    assert error.status_info == "preempted-by-scheduler"
    assert error.ran_for is not None
    assert error.ran_for >= RUNS_BEFORE_PREEMPTION
    assert f"after running {error.ran_for:.0f} s" in str(error)
    assert "first-run" in error.log_tail
    assert emulator.get_session(high.victim).runs == 1


def test_deferrable_terminate_raises_preempted(emulator, context, tmp_path):
    busy(emulator, "terminate")
    with preemptor(emulator) as high:
        trigger = defer(victim(tmp_path / "ran", deferrable=True), context)
        event = run_trigger(trigger, RecordingLog())
    assert (event["status"], event["status_info"]) == ("ended", "preempted-by-scheduler")
    with pytest.raises(BackendAIPreemptedError, match="preempted by the scheduler after running"):
        victim(tmp_path / "ignored", deferrable=True).execute_complete(context, event)
    assert high.victim == trigger.session_id


def test_a_sensor_fails_on_a_terminated_preemption(emulator, context, tmp_path):
    busy(emulator, "terminate")
    with preemptor(emulator, after=1.0):
        created = victim(tmp_path / "ran").hook.create_batch_session(
            victim(tmp_path / "ran").session_spec(context)
        )
        sensor = BackendAISessionSensor(
            task_id="wait", session_id=created.session_id, poke_interval=1, timeout=120, mode="poke"
        )
        with pytest.raises(AirflowFailException, match="preempted the session"):
            sensor.execute(context)


# -- priority ---------------------------------------------------------------------------------------------


def test_an_older_manager_is_refused_before_any_session_exists(emulator, context):
    """25.x-26.2 would refuse the whole create, 26.3-26.7 drop the fields silently: say so, create nothing."""
    emulator.settings.manager_version = "26.4.3"
    op = BackendAIRunBatchOperator(task_id="urgent", image=IMAGE, command="echo hi", job_priority=5)
    with pytest.raises(BackendAIManagerVersionError, match=r"job_priority needs Backend.AI manager 26.8"):
        op.execute(context)
    assert emulator.sessions() == []
    assert emulator.request_count(route="create") == 0


def test_without_the_fields_the_sdks_own_request_goes_out(emulator, context):
    """No version check, no change: a task that sets neither field sends what get_or_create sends."""
    emulator.settings.manager_version = "26.4.3"
    result = BackendAIRunBatchOperator(task_id="plain", image=IMAGE, command="echo hi").execute(context)
    snapshot = emulator.get_session(result["session_id"])
    assert (snapshot.job_priority, snapshot.is_preemptible) == (0, True)


# -- why a job waits -------------------------------------------------------------------------------------


def test_the_startup_timeout_quotes_why_the_job_waited(emulator, context, tmp_path):
    busy(emulator, "terminate")
    holder = victim(tmp_path / "blocker", session_name="blocker-0001")
    blocker = holder.hook.create_batch_session(holder.session_spec(context))
    emulator.wait_for_session(blocker.session_id, status="RUNNING")
    waiting = BackendAIRunBatchOperator(
        task_id="waits", image=IMAGE, command="echo never", session_resources=BIG, startup_timeout=3
    )
    try:
        with (
            mock.patch.object(step, "WAIT_REASON_FIRST", 0.5),
            task_log(BackendAIRunBatchOperator) as log,
            pytest.raises(BackendAIStartupTimeoutError) as raised,
        ):
            waiting.execute(context)
    finally:
        waiting.hook.destroy_session(blocker.session_id)
    said = [line for line in log.lines if "waits in the queue at position 0" in line]
    assert len(said) == 1, log.text()  # once: it did not change
    assert said[0] in str(raised.value)
    assert "last reason: Session" in str(raised.value)
    assert "could not be placed" in said[0]


# -- in a Dag: the retry policy, and job_priority ---------------------------------------------------------

RETRIED_DAG = """
from datetime import datetime, timedelta

from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator
from airflow.providers.backend.ai.retry_policy import BackendAIRetryPolicy
from airflow.sdk import DAG

with DAG("busy_retry", start_date=datetime(2026, 1, 1), schedule=None, catchup=False):
    BackendAIRunBatchOperator(
        task_id="victim",
        image="IMAGE",
        command=COMMAND,
        session_resources={"cpu": 5, "mem": "1g"},
        poll_interval=1,
        retries=1,
        retry_delay=timedelta(hours=1),  # only the policy's "at once" lets the retry run in this test
        retry_policy=BackendAIRetryPolicy(),
    )
"""

PRIORITY_DAG = """
from datetime import datetime

from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

with DAG("busy_priority", start_date=datetime(2026, 1, 1), schedule=None, catchup=False):
    BackendAIRunBatchOperator(
        task_id="urgent",
        image="IMAGE",
        command="echo urgent-done",
        session_resources={"cpu": 5, "mem": "1g"},
        job_priority=10,
        is_preemptible=False,
        poll_interval=1,
    )
"""


#: A metadata database migrated once per test session (the docs examples' fixture).
migrated_db = test_doc_examples.migrated_db


def run_dag(code: str, emulator: EmulatorHandle, tmp_path: Path, database: Path) -> Any:
    """Run a Dag file with ``dag.test()`` in a subprocess, as the docs examples run."""
    example = DocExample(path=tmp_path / "busy.rst", line=1, code=code.replace("IMAGE", IMAGE))
    return test_doc_examples.run_example(example, emulator, tmp_path, database)


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="retry_policy arrived in Airflow 3.3")
def test_terminate_with_the_retry_policy_and_one_retry_succeeds(emulator, tmp_path, migrated_db):
    busy(emulator, "terminate")
    # The first try runs until it is preempted; the retry finds the marker and ends at once.
    command = repr(rerun_command(str(tmp_path / "ran")))
    with preemptor(emulator, after=2.0) as high:
        proc = run_dag(RETRIED_DAG.replace("COMMAND", command), emulator, tmp_path, migrated_db)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tries = [s for s in emulator.sessions() if not s.name.startswith("preemptor-")]
    assert [s.result for s in tries] == ["UNDEFINED", "SUCCESS"]  # the retry's may be destroyed at its result
    assert tries[0].status_info == "preempted-by-scheduler"
    assert str(tries[0].id) == high.victim
    output = proc.stdout + proc.stderr
    assert "BackendAIPreemptedError" in output
    assert "the session was preempted for a higher-priority one; retrying the job" in output


def test_a_dags_job_priority_preempts_a_lower_session_of_the_same_user(
    emulator, context, tmp_path, migrated_db
):
    busy(emulator, "terminate")
    holder = victim(tmp_path / "low", session_name="low-priority-0001")
    low = holder.hook.create_batch_session(holder.session_spec(context))
    emulator.wait_for_session(low.session_id, status="RUNNING")
    proc = run_dag(PRIORITY_DAG, emulator, tmp_path, migrated_db)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    preempted = emulator.get_session(low.session_id)
    assert (preempted.status, preempted.status_info) == ("TERMINATED", "preempted-by-scheduler")
    (urgent,) = [s for s in emulator.sessions() if s.id != preempted.id]
    assert (urgent.job_priority, urgent.is_preemptible, urgent.result) == (10, False, "SUCCESS")
    assert preempted.preempted_by == urgent.id
