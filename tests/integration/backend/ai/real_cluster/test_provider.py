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
The provider against a real Backend.AI 26.9.6 manager with a dummy agent (``dev/real-cluster``).

The dummy agent runs the startup command with ``bash`` as ``nobody``; the jobs here keep to ``echo``,
``sleep N`` and ``exit N``. Every test checks through the real API (see ``conftest.real_connection``) that
none of its sessions is left alive.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow.providers.backend.ai.exceptions import BackendAIJobFailedError
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator
from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

from .conftest import DEAD, RealCluster

pytestmark = pytest.mark.usefixtures("real_connection")


def run_batch(
    cluster: RealCluster, command: str, *, task_id: str = "job", **kwargs: Any
) -> BackendAIRunBatchOperator:
    kwargs.setdefault("poll_interval", 1)
    return BackendAIRunBatchOperator(task_id=task_id, image=cluster.image, command=command, **kwargs)


def test_sync_success_logs_and_xcom(real_connection: RealCluster, make_context, name_prefix: str) -> None:
    context = make_context()
    op = run_batch(
        real_connection, 'echo "hello $GREETING"; sleep 1; echo done', environment={"GREETING": "real"}
    )
    result = op.execute(context)
    assert result["result"] == "SUCCESS"
    assert result["status_info"] == "task-finished"
    assert result["logs"].splitlines() == ["hello real", "done"]
    assert result["session_name"].startswith(name_prefix)
    context["ti"].xcom_push.assert_any_call(key="session_name", value=result["session_name"])
    # The manager agrees, and the operator's destroy let the session end.
    (row,) = real_connection.wait_for(
        name_prefix, lambda rows: rows and rows[0]["status"] in DEAD, timeout=45, what="TERMINATED"
    )
    assert row["id"] == result["session_id"]
    assert row["result"] == "SUCCESS"
    assert row["status"] == "TERMINATED"


def test_exit_code_fails_with_the_log_tail(
    real_connection: RealCluster, make_context, name_prefix: str
) -> None:
    with pytest.raises(BackendAIJobFailedError) as err:
        run_batch(real_connection, "echo preparing; echo 'Traceback: boom'; exit 3").execute(make_context())
    assert "the command exited with a non-zero code (task-failed)" in str(err.value)
    assert "Traceback: boom" in str(err.value)
    assert err.value.result == "FAILURE"
    (row,) = real_connection.sessions(name_prefix)
    assert row["result"] == "FAILURE"


def test_batch_timeout(real_connection: RealCluster, make_context, name_prefix: str) -> None:
    started = time.monotonic()
    with pytest.raises(BackendAIJobFailedError, match="batch_timeout expired"):
        run_batch(real_connection, "echo start; sleep 60", batch_timeout=2).execute(make_context())
    assert time.monotonic() - started < 45
    (row,) = real_connection.sessions(name_prefix)
    assert (row["result"], row["status_info"]) == ("FAILURE", "task-timeout")


def test_on_kill_from_another_thread_destroys_the_session(
    real_connection: RealCluster, make_context, name_prefix: str
) -> None:
    """``on_kill`` arrives from another thread while ``execute`` waits for the job."""
    context = make_context()
    op = run_batch(real_connection, "echo started; sleep 120")
    killed = threading.Event()

    def kill_when_running() -> None:
        try:
            real_connection.wait_for(
                name_prefix,
                lambda rows: any(row["status"] == "RUNNING" for row in rows),
                timeout=60,
                what="the job to run",
            )
            time.sleep(1)  # let the job print its first line
        finally:
            op.on_kill()
            killed.set()

    killer = threading.Thread(target=kill_when_running, daemon=True)
    killer.start()
    started = time.monotonic()
    try:
        with pytest.raises(BackendAIJobFailedError, match="user-requested"):
            op.execute(context)
    finally:
        killer.join(timeout=90)
    assert killed.is_set()
    assert time.monotonic() - started < 90  # far less than the job's 120 s
    (row,) = real_connection.wait_for(
        name_prefix,
        lambda rows: rows and rows[0]["status"] in DEAD,
        timeout=45,
        what="the killed session to end",
    )
    assert row["status"] == "TERMINATED"
    assert row["status_info"] == "user-requested"
    assert row["result"] == "UNDEFINED"


def test_deferrable_success_through_the_real_trigger(
    real_connection: RealCluster, make_context, name_prefix: str
) -> None:
    context = make_context()
    op = run_batch(real_connection, "echo deferred; sleep 2; echo finished", deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    assert isinstance(trigger, BackendAISessionTrigger)
    # The worker left the job running for the triggerer.
    (row,) = real_connection.sessions(name_prefix)
    assert row["status"] not in DEAD
    # A triggerer rebuilds the trigger from its serialized form and runs it in its event loop.
    classpath, kwargs = trigger.serialize()
    assert classpath.endswith("BackendAISessionTrigger")
    resumed = BackendAISessionTrigger(**kwargs)

    async def main() -> list[dict[str, Any]]:
        try:
            return [event.payload async for event in resumed.run()]
        finally:
            await resumed.cleanup()

    (event,) = asyncio.run(main())
    assert (event["status"], event["result"]) == ("ended", "SUCCESS")
    result = run_batch(real_connection, "ignored", deferrable=True).execute_complete(context, event)
    assert result["result"] == "SUCCESS"
    assert result["logs"].splitlines() == ["deferred", "finished"]
    assert result["session_name"] == trigger.session_name
    assert result["session_name"].startswith(name_prefix)


def test_four_sessions_in_parallel(real_connection: RealCluster, make_context, name_prefix: str) -> None:
    results: dict[int, Any] = {}

    def one(i: int) -> None:
        # Airflow 2 lets execute() run only in the thread that built the operator: build it here.
        try:
            op = run_batch(real_connection, f"echo job-{i}; sleep 2; echo end-{i}", task_id=f"par{i}")
            results[i] = op.execute(make_context(f"par{i}"))
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=150)
    assert sorted(results) == [0, 1, 2, 3], results
    for i, result in results.items():
        assert isinstance(result, dict), f"job {i}: {result!r}"
        assert result["result"] == "SUCCESS"
        assert result["logs"].splitlines() == [f"job-{i}", f"end-{i}"]
        assert result["session_name"].startswith(f"{name_prefix}par{i}-")
    assert len({r["session_id"] for r in results.values()}) == 4
    rows = real_connection.sessions(name_prefix)
    assert sorted(row["id"] for row in rows) == sorted(r["session_id"] for r in results.values())


def test_connection_succeeds(real_connection: RealCluster) -> None:
    ok, message = BackendAIHook().test_connection()
    assert ok, message


def test_connection_fails_with_a_wrong_secret(
    real_connection: RealCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_BACKEND_AI_DEFAULT", real_connection.connection_json(secret_key="wrong-" + "x" * 34)
    )
    ok, message = BackendAIHook().test_connection()
    assert not ok
    assert "Authentication failed" in message
    assert "signature" in message.lower() or "401" in message, message


def test_an_unknown_slot_fails_before_any_session_exists(
    real_connection: RealCluster, make_context, name_prefix: str
) -> None:
    """The epic's ``cuda.devices``: refused with the manager's own slot list, nothing created on the manager."""
    before = real_connection.session_count()
    op = run_batch(
        real_connection, "echo never", session_resources={"cpu": 1, "mem": "1g", "cuda.devices": 1}
    )
    with pytest.raises(ValueError, match=r"^Invalid session_resources slot name 'cuda.devices'") as caught:
        op.execute(make_context())
    message = str(caught.value)
    assert "'cuda.device'" in message  # the spelling Backend.AI uses
    assert f"the Backend.AI manager at {real_connection.endpoint}" in message
    assert "Known slots: 'cpu', 'mem'" in message
    assert real_connection.session_count() == before
    assert real_connection.sessions(name_prefix) == []


def test_known_slots_pass(real_connection: RealCluster, make_context) -> None:
    result = run_batch(real_connection, "echo fits", session_resources={"cpu": 1, "mem": "1g"}).execute(
        make_context()
    )
    assert result["logs"] == "fits\n"
