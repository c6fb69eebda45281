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
The provider on a busy real manager (26.9.6): preemption turned on through the admin API, restored after.

* Reschedule: a sync and a deferrable task, each with a ``startup_timeout`` shorter than the time its job
  ran before it was preempted, succeed after the rerun, with one session each and a task log that tells
  the preemption. Both are preempted by one session, so the scenario costs one requeue, not two.
* Terminate: the task fails with ``BackendAIPreemptedError``; with ``BackendAIRetryPolicy`` and
  ``retries=1`` its retry runs the job to success (a Dag run with ``dag.test()``).
* A ``job_priority`` set in a Dag preempts a lower-priority session of the same user.

The preemptor is destroyed while RESERVED once it has done its work: the manager would keep it there for
one or two 60 s passes, and the reruns (or the retry) would wait for it. Costs: see dev/real-cluster/README.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import time
import uuid
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook, BatchSessionSpec
from airflow.providers.backend.ai.operators.backend_ai import (
    BackendAIRunBatchOperator,
)
from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger
from integration.backend.ai import test_doc_examples
from integration.backend.ai.busy import (
    Preemptor,
    RecordingLog,
    preemptor_spec,
    rerun_command,
    session_ids,
    since_first_seen_running,
)
from integration.backend.ai.contract.busy import PreemptionSwitch, priority_fields
from integration.backend.ai.contract.sdk import ContractTarget, open_async_session
from integration.backend.ai.doc_examples import DocExample

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from integration.backend.ai.real_cluster.conftest import RealCluster

_ENV = "BACKEND_AI_TEST_"
#: Longer than the manager takes to start a session (about 10 s) and to requeue a preempted one (its
#: RESCHEDULING to PENDING waits for a 60 s long-cycle pass: 2-57 s measured); the victims run longer.
STARTUP_TIMEOUT = 60
RUNS_BEFORE_PREEMPTION = STARTUP_TIMEOUT + 5
POLL = 2


@pytest.fixture
def target() -> ContractTarget:
    needed = ("ADMIN_ACCESS_KEY", "ADMIN_SECRET_KEY", "AGENT_CPU")
    if not all(os.environ.get(_ENV + key) for key in needed):
        pytest.skip(f"needs {', '.join(_ENV + k for k in needed)} (cluster.env of dev/real-cluster)")
    return ContractTarget(
        endpoint=os.environ[_ENV + "ENDPOINT"].rstrip("/"),
        access_key=os.environ[_ENV + "ACCESS_KEY"],
        secret_key=os.environ[_ENV + "SECRET_KEY"],
        image=os.environ.get(_ENV + "IMAGE", "cr.backend.ai/stable/python:3.9-ubuntu20.04"),
        admin_access_key=os.environ[_ENV + "ADMIN_ACCESS_KEY"],
        admin_secret_key=os.environ[_ENV + "ADMIN_SECRET_KEY"],
        agent_cpu=int(os.environ[_ENV + "AGENT_CPU"]),
    )


@pytest.fixture
def preemption(target: ContractTarget) -> Iterator[Callable[[str], None]]:
    """Turn preemption of the ``default`` resource group on in a mode; the settings are restored after."""
    switch = PreemptionSwitch(target)
    try:
        yield lambda mode: asyncio.run(switch.set(True, mode))
    finally:
        asyncio.run(switch.restore())


def slots(cpu: int) -> dict[str, Any]:
    return {"cpu": cpu, "mem": "1g"}


def facts_status(hook: BackendAIHook) -> Callable[[str], str | None]:
    return lambda session_id: hook.get_session_facts(session_id).status


@contextlib.contextmanager
def marker_files(count: int) -> Iterator[list[str]]:
    """Paths the jobs (run as ``nobody`` by the dummy agent) can create in /tmp; removed after."""
    paths = [f"/tmp/rc-busy-{uuid.uuid4().hex}" for _ in range(count)]
    try:
        yield paths
    finally:
        for path in paths:
            with contextlib.suppress(OSError):
                os.remove(path)


def told_the_preemption(log: RecordingLog, session_id: str) -> bool:
    text = log.text()
    return (
        f"Session {session_id} was preempted at " in text and "runs the job again from the beginning" in text
    )


# -- reschedule ------------------------------------------------------------------------------------------


def test_reschedule_sync_and_deferrable_succeed_after_the_rerun(
    real_connection: RealCluster, make_context: Any, name_prefix: str, target: ContractTarget, preemption: Any
) -> None:
    preemption("RESCHEDULE")
    assert target.agent_cpu is not None
    victim_cpu = target.agent_cpu // 3  # the two victims fit together; the preemptor needs them both gone
    hook = BackendAIHook()
    started = time.monotonic()

    def requeued(session_id: str) -> bool:
        facts = hook.get_session_facts(session_id)
        return facts.requeued and facts.status == "PENDING"

    victims = lambda: session_ids(f"{name_prefix}victim")  # noqa: E731
    with marker_files(2) as (sync_marker, deferred_marker):

        def victim(task_id: str, marker: str, **kwargs: Any) -> BackendAIRunBatchOperator:
            return BackendAIRunBatchOperator(
                task_id=task_id,
                image=target.image,
                command=rerun_command(marker),
                session_resources=slots(victim_cpu),
                startup_timeout=STARTUP_TIMEOUT,
                poll_interval=POLL,
                **kwargs,
            )

        spec = preemptor_spec(
            target.image, slots(target.agent_cpu - victim_cpu + 1), name=f"{name_prefix}preemptor"
        )
        high = Preemptor(
            hook,
            spec,
            victims=victims,
            running_for=since_first_seen_running(facts_status(hook)),
            after=RUNS_BEFORE_PREEMPTION,
            count=2,
            release_when=lambda: all(requeued(sid) for sid in victims()),
            interval=1.0,
        )
        sync_victim = victim("victim-sync", sync_marker)
        deferred = victim("victim-deferred", deferred_marker, deferrable=True)
        task_log, trigger_log = RecordingLog(), RecordingLog()
        with (
            mock.patch.object(
                BackendAIRunBatchOperator, "log", new_callable=mock.PropertyMock, return_value=task_log
            ),
            mock.patch.object(
                BackendAISessionTrigger, "log", new_callable=mock.PropertyMock, return_value=trigger_log
            ),
            concurrent.futures.ThreadPoolExecutor(1) as pool,
            high,
        ):
            # The operators run on this thread (Airflow 2 refuses execute() on another); the trigger, as in
            # a triggerer, in an event loop of its own thread.
            with pytest.raises(TaskDeferred) as deferral:
                deferred.execute(make_context("victim-deferred"))
            trigger = deferral.value.trigger
            assert isinstance(trigger, BackendAISessionTrigger)
            watching = pool.submit(
                asyncio.run, _run_trigger(BackendAISessionTrigger(**trigger.serialize()[1]))
            )
            try:
                sync_result = sync_victim.execute(make_context("victim-sync"))
            except BaseException:
                hook.destroy_session(trigger.session_id)  # ends the trigger's watch: fail now, not in 10 min
                raise
            event = watching.result(timeout=600)
        deferred_result = victim("victim-deferred", deferred_marker, deferrable=True).execute_complete(
            make_context("victim-deferred"), event
        )
    took = time.monotonic() - started

    assert sorted(high.preempted) == sorted(
        row["id"] for row in real_connection.sessions(f"{name_prefix}victim")
    )
    assert high.released, "the preemptor was not destroyed while RESERVED"
    for result in (sync_result, deferred_result):
        assert (result["result"], result["logs"].strip()) == ("SUCCESS", "rerun")
    for task_id, result in (("victim-sync", sync_result), ("victim-deferred", deferred_result)):
        (row,) = real_connection.sessions(f"{name_prefix}{task_id}-")  # one session: the same, rerun
        assert row["id"] == result["session_id"]
    assert told_the_preemption(task_log, sync_result["session_id"])
    assert told_the_preemption(trigger_log, trigger.session_id)
    print(f"reschedule, sync and deferrable: {took:.0f} s")
    for name, log in (("sync task", task_log), ("trigger", trigger_log)):
        print(
            f"-- {name} log:",
            *[line for line in log.lines if line.startswith(("Session", "The manager", "["))],
            sep="\n  ",
        )


async def _run_trigger(trigger: BackendAISessionTrigger) -> dict[str, Any]:
    try:
        (event,) = [event.payload async for event in trigger.run()]
    finally:
        await trigger.cleanup()
    return event


# -- terminate, and the retry policy ------------------------------------------------------------------------


RETRIED_DAG = """
from datetime import datetime, timedelta

from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator
from airflow.providers.backend.ai.retry_policy import BackendAIRetryPolicy
from airflow.sdk import DAG

with DAG("DAG_ID", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    BackendAIRunBatchOperator(
        task_id="victim",
        image="IMAGE",
        command=COMMAND,
        session_resources={"cpu": CPU, "mem": "1g"},
        poll_interval=2,
        retries=1,
        retry_delay=timedelta(hours=1),  # only the policy's "at once" lets the retry run in this test
        retry_policy=BackendAIRetryPolicy(),
    )
"""


def run_dag(code: str, real_cluster: RealCluster, workdir: Path, database: Path) -> Any:
    """Run a Dag file with ``dag.test()`` in a subprocess against the real manager (as the docs examples run)."""
    example = DocExample(path=workdir / "busy.rst", line=1, code=code)
    return test_doc_examples.run_example(example, real_cluster, workdir, database)  # type: ignore[arg-type]


#: A metadata database migrated once per test session (the docs examples' fixture).
migrated_db = test_doc_examples.migrated_db


def test_terminate_fails_with_preempted_and_the_retry_policy_retries_it(
    real_connection: RealCluster,
    migrated_db: Path,
    dag_id: str,
    name_prefix: str,
    target: ContractTarget,
    preemption: Any,
    tmp_path: Path,
) -> None:
    pytest.importorskip("airflow.sdk.definitions.retry_policy", reason="retry_policy arrived in Airflow 3.3")
    preemption("TERMINATE")
    assert target.agent_cpu is not None
    cpu = target.agent_cpu // 2 + 1
    hook = BackendAIHook()
    first_try = lambda: session_ids(f"{name_prefix}victim-t1-")  # noqa: E731
    high = Preemptor(
        hook,
        preemptor_spec(target.image, slots(cpu), name=f"{name_prefix}preemptor"),
        victims=first_try,
        running_for=since_first_seen_running(facts_status(hook)),
        after=5.0,
        release_when=lambda: all(hook.get_session_facts(sid).status == "TERMINATED" for sid in first_try()),
        interval=1.0,
    )
    code = RETRIED_DAG.replace("DAG_ID", dag_id).replace("IMAGE", target.image).replace("CPU", str(cpu))
    started = time.monotonic()
    # The first try runs until it is preempted (had it ended by itself meanwhile, the manager would record
    # its result); the retry finds the marker and ends at once.
    with marker_files(1) as (marker,), high:
        proc = run_dag(
            code.replace("COMMAND", repr(rerun_command(marker))), real_connection, tmp_path, migrated_db
        )
    took = time.monotonic() - started
    output = proc.stdout + proc.stderr

    assert proc.returncode == 0, output[-3000:]
    rows = sorted(real_connection.sessions(f"{name_prefix}victim-"), key=lambda row: row["name"])
    # The retry's session is destroyed as soon as its result is known, so its status_info may say so.
    assert [(row["name"][len(name_prefix) :].split("-")[1], row["result"]) for row in rows] == [
        ("t1", "UNDEFINED"),
        ("t2", "SUCCESS"),
    ]
    assert rows[0]["status_info"] == "preempted-by-scheduler"
    assert high.preempted == [rows[0]["id"]]
    assert high.released, "the preemptor was not destroyed while RESERVED"
    assert "BackendAIPreemptedError" in output
    assert "the session was preempted for a higher-priority one; retrying the job" in output
    print(f"terminate + retry policy: {took:.0f} s")
    told = ("Session ", "Backend.AI session ", "Retry policy", "[the job")
    print(
        "-- the Dag run's log:",
        *[line for line in output.splitlines() if any(t in line for t in told)],
        sep="\n  ",
    )


# -- job_priority from a Dag ----------------------------------------------------------------------------


PRIORITY_DAG = """
from datetime import datetime

from airflow.providers.backend.ai.operators.backend_ai import BackendAICreateSessionOperator

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

with DAG("DAG_ID", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    BackendAICreateSessionOperator(
        task_id="urgent",
        image="IMAGE",
        command="echo urgent",
        session_resources={"cpu": CPU, "mem": "1g"},
        job_priority=10,
        is_preemptible=False,
        wait_for_start=False,
    )
"""


def test_a_dags_job_priority_preempts_a_lower_session_of_the_same_user(
    real_connection: RealCluster,
    migrated_db: Path,
    dag_id: str,
    name_prefix: str,
    target: ContractTarget,
    preemption: Any,
    tmp_path: Path,
) -> None:
    preemption("TERMINATE")
    assert target.agent_cpu is not None
    cpu = target.agent_cpu // 2 + 1
    hook = BackendAIHook()
    started = time.monotonic()
    plain = BatchSessionSpec(
        image=target.image, command="sleep 600", name=f"{name_prefix}low", resources=slots(cpu)
    )
    low = hook.create_batch_session(plain).session_id
    urgent: str | None = None
    try:
        real_connection.wait_for(
            f"{name_prefix}low",
            lambda rows: rows and rows[0]["status"] == "RUNNING",
            timeout=90,
            what="the low-priority session to run",
        )
        code = PRIORITY_DAG.replace("DAG_ID", dag_id).replace("IMAGE", target.image).replace("CPU", str(cpu))
        proc = run_dag(code, real_connection, tmp_path, migrated_db)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        (row,) = real_connection.sessions(f"{name_prefix}urgent-")
        urgent = row["id"]
        (preempted,) = real_connection.wait_for(
            f"{name_prefix}low",
            lambda rows: rows and rows[0]["status"] == "TERMINATED",
            timeout=60,
            what="the low-priority session to be preempted",
        )
        assert (preempted["status_info"], preempted["result"]) == ("preempted-by-scheduler", "UNDEFINED")

        async def stored() -> dict[str, Any]:
            async with open_async_session(target.config()):
                return await priority_fields(uuid.UUID(urgent))

        assert asyncio.run(stored()) == {"jobPriority": 10, "isPreemptible": False}
    finally:
        for session_id in (low, urgent):
            if session_id is not None:
                hook.destroy_session(session_id)
    print(f"job_priority from a Dag: {time.monotonic() - started:.0f} s")
