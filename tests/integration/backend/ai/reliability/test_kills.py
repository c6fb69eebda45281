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
Fault-matrix cells where something acts on the job from outside: a cancel through another API client,
``on_kill``, a user marking a deferred task failed, a triggerer restart, and a worker killed with SIGKILL
followed by the task's retry. As in ``test_fault_matrix``, the ``emulator`` fixture counts leaks.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests_common.test_utils.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_3_PLUS

from airflow.providers.backend.ai._session.params import session_tag
from airflow.providers.backend.ai.exceptions import BackendAIException, BackendAIJobFailedError
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator
from integration.backend.ai.reliability.harness import (
    MODES,
    batch_operator,
    defer,
    file_task_state_store,
    make_context,
    resumed,
    run_job,
    run_trigger,
)

pytestmark = [pytest.mark.integration, pytest.mark.fault_matrix]

#: The folder the test packages (unit, integration, system) are imported from, as pytest does.
TESTS = Path(__file__).resolve().parents[4]
LONG_JOB = "echo started; sleep 60"


def running_session(emulator, marker: str = "started"):
    """Wait until a session's job runs and has printed ``marker``; return its snapshot."""
    return emulator.wait_until(
        lambda: next((s for s in emulator.sessions() if s.status == "RUNNING" and marker in s.logs), None),
        timeout=20,
    )


# -- cancelled from outside, killed by Airflow ---------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_job_cancelled_from_outside(mode, emulator, context):
    """Somebody destroys the session through another client while the task waits for it."""

    def cancel(_op) -> None:
        session = running_session(emulator)
        assert BackendAIHook().destroy_session(str(session.id)) is True

    with pytest.raises(
        BackendAIJobFailedError, match=r"ended as TERMINATED without a result \(user-requested\)"
    ):
        run_job(mode, context, LONG_JOB, meanwhile=cancel)
    (session,) = emulator.sessions()
    assert session.status_info == "user-requested"
    assert not emulator.running_job_pids()


def test_on_kill_from_another_thread_while_execute_waits(emulator, context):
    """Airflow calls ``on_kill`` from another thread (SIGTERM handler) while ``execute`` polls."""

    def kill(op) -> None:
        running_session(emulator)
        op.on_kill()

    with pytest.raises(BackendAIJobFailedError, match="user-requested"):
        run_job("sync", context, LONG_JOB, meanwhile=kill)
    (session,) = emulator.sessions()
    assert session.status_info == "user-requested"


def test_on_kill_with_keep_leaves_the_session(emulator, context, kept):
    def kill(op) -> None:
        session = running_session(emulator)
        op.on_kill()
        assert emulator.get_session(session.id).status == "RUNNING"
        kept.add(str(session.id))

    result = run_job(
        "sync", context, "echo started; sleep 2; echo done", meanwhile=kill, on_finish_action="keep"
    )
    assert result["result"] == "SUCCESS"
    assert emulator.request_count(route="destroy") == 0


@pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="Airflow 3.3+ calls the trigger's on_kill")
def test_deferred_task_marked_failed_destroys_through_on_kill(emulator, context):
    """A user marks the deferred task failed (or clears it): the triggerer cancels the trigger and calls on_kill."""
    trigger = resumed(defer(batch_operator("deferrable", LONG_JOB), context))

    async def watch_then_user_kill() -> None:
        watching = asyncio.ensure_future(anext(aiter(trigger.run())))
        await asyncio.to_thread(running_session, emulator)
        watching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watching
        await trigger.on_kill()
        await trigger.cleanup()

    asyncio.run(watch_then_user_kill())
    (session,) = emulator.sessions()
    assert emulator.wait_for_session(session.id, status="TERMINATED").status_info == "user-requested"


@pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="Airflow 2 has no trigger on_kill; cleanup destroys")
@pytest.mark.parametrize("ti_state", ["failed", "deferred"])
def test_deferred_task_marked_failed_destroys_through_cleanup(ti_state, emulator, context, airflow2_ti):
    """
    Airflow 2: the triggerer cancels a trigger whose task is no longer deferred (marked failed, cleared) and
    on every restart; ``cleanup`` reads the task instance's state and destroys only in the first case.
    """
    trigger = resumed(defer(batch_operator("deferrable", LONG_JOB), context))
    trigger.task_instance = airflow2_ti("deferred")

    async def watch_then_cancel() -> None:
        watching = asyncio.ensure_future(anext(aiter(trigger.run())))
        await asyncio.to_thread(running_session, emulator)
        trigger.task_instance = airflow2_ti(ti_state)
        watching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watching
        await trigger.cleanup()

    asyncio.run(watch_then_cancel())
    (session,) = emulator.sessions()
    if ti_state == "failed":
        assert emulator.wait_for_session(session.id, status="TERMINATED").status_info == "user-requested"
    else:  # a triggerer restart: the job must survive for the next triggerer
        assert emulator.get_session(session.id).status == "RUNNING"
        assert emulator.request_count(route="destroy") == 0
        assert BackendAIHook().destroy_session(str(session.id))


def test_trigger_cancelled_mid_wait_is_resumed_by_a_fresh_instance(emulator, context):
    """A triggerer restart cancels the trigger; the job survives and a fresh instance finishes the watch."""
    trigger = defer(batch_operator("deferrable", "echo started; sleep 3; echo finished"), context)

    async def cancel_mid_wait() -> None:
        watching = asyncio.ensure_future(anext(aiter(trigger.run())))
        await asyncio.to_thread(running_session, emulator)
        watching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watching
        await trigger.cleanup()

    asyncio.run(cancel_mid_wait())
    assert emulator.get_session(trigger.session_id).status == "RUNNING"
    event = run_trigger(resumed(trigger))
    assert (event["status"], event["result"]) == ("ended", "SUCCESS")
    result = batch_operator("deferrable", "ignored").execute_complete(context, event)
    assert "finished" in result["logs"]
    assert emulator.request_count(route="create") == 1


def test_trigger_error_event_destroys_the_session(emulator, context):
    """The API keeps failing while the trigger watches: the error event ends the task and the job."""
    trigger = resumed(defer(batch_operator("deferrable", LONG_JOB), context))
    running_session(emulator)
    fault = emulator.faults.add("gql", "error", status=503)
    event = run_trigger(trigger)
    emulator.faults.remove(fault)
    assert event["status"] == "error"
    with pytest.raises(BackendAIException, match=r"Watching Backend.AI session .* failed: .*HTTP 503"):
        batch_operator("deferrable", "ignored").execute_complete(context, event)
    (session,) = emulator.sessions()
    assert emulator.wait_for_session(session.id, status="TERMINATED").status_info == "user-requested"


# -- hard kill of the worker, then the retry -------------------------------------------------------------


def start_worker(
    mode: str, command: str, *, task_state_store: Path | None = None, hang_on_set: bool = False, **kwargs
) -> subprocess.Popen:
    """Run try 1 of the task in a worker process (it inherits the connection from the environment)."""
    args = {
        "mode": mode,
        "command": command,
        "try_number": 1,
        "kwargs": kwargs,
        "task_state_store": str(task_state_store) if task_state_store else None,
        "hang_on_set": hang_on_set,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "integration.backend.ai.reliability.worker", json.dumps(args)],
        cwd=TESTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def hard_kill(worker: subprocess.Popen) -> None:
    os.kill(worker.pid, signal.SIGKILL)
    assert worker.wait(timeout=10) == -signal.SIGKILL


def kill_worker_mid_job(emulator, mode: str, command: str, **kwargs):
    """Start try 1, SIGKILL its worker once the job runs, and return the session it left behind."""
    # Deferrable: hold the worker on its first status read, before it hands the job to the triggerer.
    hold = emulator.faults.add("gql", "hang", times=1) if mode == "deferrable" else None
    worker = start_worker(mode, command, **kwargs)
    try:
        session = running_session(emulator)
    finally:
        hard_kill(worker)
        if hold is not None:
            emulator.faults.remove(hold)
    assert emulator.get_session(session.id).live, "the dead worker's session must still be there"
    return session


def retry_durably(mode: str, *, task_state_store: Any = None, **kwargs: Any) -> dict[str, Any]:
    """Run try 2 (the last) of the killed durable task: it must take over try 1's job, not run its own."""
    context = make_context(try_number=2, max_tries=1, task_state_store=task_state_store)
    return run_job(mode, context, "echo must not run", durable=True, retries=1, **kwargs)


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_hard_kill_destroys_the_orphan_then_starts_anew(mode, emulator):
    orphan = kill_worker_mid_job(emulator, mode, LONG_JOB)
    result = run_job(mode, make_context(try_number=2, max_tries=1), "echo second try", retries=1)
    assert result["logs"].strip() == "second try"
    first, second = emulator.sessions()
    assert first.id == orphan.id
    assert first.status_info == "user-requested"
    assert first.status_time("TERMINATING") <= second.created_at  # destroyed before the new one started


@pytest.mark.parametrize("mode", MODES)
def test_durable_retry_adopts_the_running_job(mode, emulator):
    orphan = kill_worker_mid_job(emulator, mode, "echo started; sleep 2; echo finished", durable=True)
    result = retry_durably(mode)
    assert result["session_id"] == str(orphan.id)
    assert "finished" in result["logs"]
    assert emulator.request_count(route="create") == 1  # the paid job ran once
    assert [s.id for s in emulator.sessions()] == [orphan.id]


@pytest.mark.parametrize("mode", MODES)
def test_durable_retry_returns_the_result_of_a_job_that_already_succeeded(mode, emulator):
    orphan = kill_worker_mid_job(emulator, mode, "echo started; sleep 1; echo finished", durable=True)
    emulator.wait_for_session(orphan.id, result="SUCCESS")
    result = retry_durably(mode)
    assert result["result"] == "SUCCESS"
    assert result["session_id"] == str(orphan.id)
    assert "finished" in result["logs"]
    assert emulator.request_count(route="create") == 1


@pytest.mark.parametrize("mode", MODES)
def test_durable_retry_starts_anew_when_the_earlier_job_failed(mode, emulator):
    orphan = kill_worker_mid_job(emulator, mode, "echo started; sleep 1; exit 3", durable=True)
    emulator.wait_for_session(orphan.id, result="FAILURE")
    result = run_job(
        mode, make_context(try_number=2, max_tries=1), "echo second try", durable=True, retries=1
    )
    assert result["logs"].strip() == "second try"
    assert emulator.request_count(route="create") == 2


def test_durable_ignores_tries_before_the_task_was_cleared(emulator):
    """After a clear, Airflow raises max_tries: earlier tries' sessions belong to a finished attempt."""
    orphan = kill_worker_mid_job(emulator, "sync", "echo started; sleep 1; echo finished", durable=True)
    emulator.wait_for_session(orphan.id, result="SUCCESS")
    # Cleared after try 1 with retries=1: max_tries = try_number + retries = 2, so try 2 is a first try.
    result = run_job("sync", make_context(try_number=2, max_tries=2), "echo rerun", durable=True, retries=1)
    assert result["logs"].strip() == "rerun"
    assert emulator.request_count(route="create") == 2


# -- custom session names: earlier tries' sessions are found by their per-try tag ------------------------

#: The custom name of try 1 and of try 2: the same on every try, or different per try (``{{ ti.try_number }}``).
CUSTOM_NAMES = {"same-name": ("nightly-train", "nightly-train"), "per-try-name": ("train-try1", "train-try2")}


def tagged(try_number: int) -> set[str]:
    """Ids of the sessions the emulator holds with the tag of ``try_number`` (of task ``rel_dag.job``)."""
    found = BackendAIHook().find_sessions_by_tag({session_tag("rel_dag", "job", "manual__1", -1, try_number)})
    return {facts.session_id for sessions in found.values() for facts in sessions}


@pytest.mark.parametrize("naming", CUSTOM_NAMES)
@pytest.mark.parametrize("mode", MODES)
def test_retry_after_hard_kill_destroys_an_orphan_with_a_custom_name(mode, naming, emulator):
    first_name, second_name = CUSTOM_NAMES[naming]
    orphan = kill_worker_mid_job(emulator, mode, LONG_JOB, session_name=first_name)
    assert orphan.name == first_name
    assert tagged(1) == {str(orphan.id)}  # the dead try's session carries that try's tag
    result = run_job(
        mode, make_context(try_number=2, max_tries=1), "echo second try", retries=1, session_name=second_name
    )
    assert result["logs"].strip() == "second try"
    assert result["session_name"] == second_name
    first, second = emulator.sessions()
    assert first.id == orphan.id
    assert first.status_info == "user-requested"
    assert first.status_time("TERMINATING") <= second.created_at  # destroyed before the new one started
    assert emulator.request_count(route="create") == 2
    # Zero leaked: both sessions end (the new one's teardown may still be in flight); the fixture also counts.
    emulator.wait_until(lambda: not emulator.live_sessions(), timeout=10)


@pytest.mark.parametrize("mode", MODES)
def test_durable_retry_adopts_a_custom_named_running_job(mode, emulator):
    orphan = kill_worker_mid_job(
        emulator, mode, "echo started; sleep 2; echo finished", durable=True, session_name="nightly-train"
    )
    result = retry_durably(mode, session_name="nightly-train")
    assert (result["session_id"], result["session_name"]) == (str(orphan.id), "nightly-train")
    assert "finished" in result["logs"]
    assert emulator.request_count(route="create") == 1  # the paid job ran once
    assert [s.id for s in emulator.sessions()] == [orphan.id]


@pytest.mark.parametrize("mode", MODES)
def test_durable_retry_returns_the_result_of_a_custom_named_job_that_already_succeeded(mode, emulator):
    orphan = kill_worker_mid_job(
        emulator, mode, "echo started; sleep 1; echo finished", durable=True, session_name="nightly-train"
    )
    emulator.wait_for_session(orphan.id, result="SUCCESS")
    result = retry_durably(mode, session_name="nightly-train")
    assert (result["session_id"], result["result"]) == (str(orphan.id), "SUCCESS")
    assert "finished" in result["logs"]
    assert emulator.request_count(route="create") == 1


# -- durable on Airflow 3.3+: the session id in the task state store (ResumableJobMixin) -----------------

needs_task_state_store = pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS, reason="the task state store and ResumableJobMixin arrived in Airflow 3.3"
)
STORE_KEY = BackendAIRunBatchOperator.external_id_key


@pytest.fixture
def state_store(tmp_path, monkeypatch):
    """The task state store of ``rel_dag.job`` in a JSON file: the killed worker's and this process's."""
    from airflow.sdk.execution_time import task_runner

    path = tmp_path / "task_state_store.json"
    accessor, comms = file_task_state_store(path)
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    return path, accessor, comms


@needs_task_state_store
@pytest.mark.parametrize("session_name", [None, "nightly-train"])
@pytest.mark.parametrize("mode", MODES)
def test_durable_retry_reconnects_through_the_task_state_store(mode, session_name, emulator, state_store):
    path, accessor, comms = state_store
    orphan = kill_worker_mid_job(
        emulator,
        mode,
        "echo started; sleep 2; echo finished",
        durable=True,
        session_name=session_name,
        task_state_store=path,
    )
    # The dead try stored its session before it started waiting.
    assert comms.read() == {STORE_KEY: {"session_id": str(orphan.id), "try_number": 1}}
    assert accessor.get(STORE_KEY) == {"session_id": str(orphan.id), "try_number": 1}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BackendAIHook, "find_sessions_by_tag", _no_tag_search)
        result = retry_durably(mode, task_state_store=accessor, session_name=session_name)
    assert result["session_id"] == str(orphan.id)
    assert "finished" in result["logs"]
    assert emulator.request_count(route="create") == 1  # the paid job ran once
    assert comms.read() == {STORE_KEY: {"session_id": str(orphan.id), "try_number": 1}}


@needs_task_state_store
def test_durable_retry_returns_the_stored_result_of_a_job_that_already_succeeded(emulator, state_store):
    path, accessor, comms = state_store
    orphan = kill_worker_mid_job(
        emulator, "sync", "echo started; sleep 1; echo finished", durable=True, task_state_store=path
    )
    assert comms.read() == {STORE_KEY: {"session_id": str(orphan.id), "try_number": 1}}
    emulator.wait_for_session(orphan.id, result="SUCCESS")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BackendAIHook, "find_sessions_by_tag", _no_tag_search)
        result = retry_durably("sync", task_state_store=accessor)
    assert (result["session_id"], result["result"]) == (str(orphan.id), "SUCCESS")
    assert emulator.request_count(route="create") == 1


@needs_task_state_store
def test_durable_retry_after_a_kill_before_the_store_write_adopts_by_tag(emulator, state_store):
    """The worker died between its create request and the store write: the store is empty, the tag remains."""
    path, accessor, comms = state_store
    orphan = kill_worker_mid_job(
        emulator,
        "sync",
        "echo started; sleep 2; echo finished",
        durable=True,
        session_name="nightly-train",
        task_state_store=path,
        hang_on_set=True,
    )
    assert comms.read() == {}
    result = retry_durably("sync", task_state_store=accessor, session_name="nightly-train")
    assert result["session_id"] == str(orphan.id)
    assert emulator.request_count(route="create") == 1
    # Adopted, and now stored (as made by try 1) for a further retry.
    assert comms.read() == {STORE_KEY: {"session_id": str(orphan.id), "try_number": 1}}


@needs_task_state_store
def test_durable_retry_runs_again_when_the_stored_job_failed(emulator, state_store):
    path, accessor, comms = state_store
    orphan = kill_worker_mid_job(
        emulator, "sync", "echo started; sleep 1; exit 3", durable=True, task_state_store=path
    )
    emulator.wait_for_session(orphan.id, result="FAILURE")
    result = run_job(
        "sync",
        make_context(try_number=2, max_tries=1, task_state_store=accessor),
        "echo second try",
        durable=True,
        retries=1,
    )
    assert result["logs"].strip() == "second try"
    assert emulator.request_count(route="create") == 2
    assert comms.read() == {STORE_KEY: {"session_id": result["session_id"], "try_number": 2}}


def _no_tag_search(*args, **kwargs):
    raise AssertionError("the retry searched by tag although the task state store held the session")
