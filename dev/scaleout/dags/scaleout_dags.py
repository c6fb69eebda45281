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
"""The Dags of the scale-out proof (dev/scaleout). Each job prints ``JOB-OUTPUT <task id>`` and sleeps."""

from __future__ import annotations

import hashlib
import inspect
import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator

IMAGE = os.environ.get("BACKEND_AI_IMAGE", "cr.backend.ai/stable/python:3.9-ubuntu20.04")
START = pendulum.datetime(2026, 1, 1, tz="UTC")


def scaleout_session_name(ti, run_id: str) -> str:
    """``scaleout-<task>-<try>-<run hash>``: a valid Backend.AI name, unique per task, try and run."""
    run = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"scaleout-{ti.task_id}-{ti.try_number}-{run}"[:64]


SESSION_NAME = "{{ scaleout_session_name(ti, run_id) }}"
MACROS = {"scaleout_session_name": scaleout_session_name}
#: ``durable`` is new in the provider; without it scenario 2 checks the default behaviour only.
HAS_DURABLE = "durable" in inspect.signature(BackendAIRunBatchOperator.__init__).parameters


def _durable_takes_session_name() -> bool:
    """Whether this provider accepts ``durable=True`` with a ``session_name`` (older ones rejected it)."""
    if not HAS_DURABLE:
        return False
    try:
        BackendAIRunBatchOperator(
            task_id="probe", image="probe", command="probe", session_name="scaleout-probe", durable=True
        )
    except ValueError:
        return False
    return True


#: Scenario 2's durable tasks use ``scaleout-`` names too where the provider allows it.
DURABLE_NAMED = _durable_takes_session_name()


#: Scenarios 2 and 5: a killed or interrupted try is retried once, soon.
RETRY_ONCE = {"retries": 1, "retry_delay": timedelta(seconds=2)}


def job(task_id: str, seconds: int | str) -> str:
    return f"echo JOB-OUTPUT {task_id}; sleep {seconds}; echo JOB-DONE {task_id}"


def scaleout_dag(dag_id: str, **kwargs) -> DAG:
    """A manually triggered Dag that runs all its tasks at once."""
    return DAG(
        dag_id=dag_id,
        start_date=START,
        schedule=None,
        catchup=False,
        max_active_tasks=64,
        user_defined_macros=MACROS,
        tags=["scaleout"],
        **kwargs,
    )


def batch_task(task_id: str, seconds: int | str, **kwargs) -> BackendAIRunBatchOperator:
    """A job of ``seconds``; a 3 s safety poll, and time for a real manager's ~10 s session start."""
    return BackendAIRunBatchOperator(
        task_id=task_id,
        image=IMAGE,
        command=job(task_id, seconds),
        poll_interval=3,
        startup_timeout=120,
        **kwargs,
    )


# 1. Fan-out: 20 sync + 20 deferrable tasks, 10 s jobs.
with scaleout_dag("scaleout_fanout"):
    for i in range(40):
        deferrable = i >= 20
        task_id = f"{'deferred' if deferrable else 'sync'}_{i % 20:02d}"
        batch_task(task_id, 10, session_name=SESSION_NAME, deferrable=deferrable)

# 2. A worker is killed while it runs sync tasks: half durable (the retry adopts the dead try's job), half
#    with the default behaviour (the retry destroys the dead try's session and starts anew).
with scaleout_dag("scaleout_kill_worker", default_args=RETRY_ONCE):
    for i in range(4):
        durable = HAS_DURABLE and i % 2 == 0
        task_id = f"{'durable' if durable else 'plain'}_{i:02d}"
        extra: dict = {"session_name": SESSION_NAME}
        if durable:
            extra = {"durable": True, **(extra if DURABLE_NAMED else {})}
        batch_task(task_id, 45, **extra)

# 3. A triggerer is killed while it holds deferred tasks.
with scaleout_dag("scaleout_kill_triggerer"):
    for i in range(12):
        batch_task(f"deferred_{i:02d}", 40, session_name=SESSION_NAME, deferrable=True)

# 4. Clear and mark-failed through the REST API while the jobs run (sync) or are watched (deferred). The
#    first try's job is long, so only a destroy can end it in time; a cleared task's rerun (try 2) is short.
with scaleout_dag("scaleout_clear_fail"):
    for deferrable in (False, True):
        for i, action in enumerate(("clear", "clear", "fail", "fail")):
            task_id = f"{'deferred' if deferrable else 'sync'}_{action}_{i:02d}"
            seconds = "{{ 600 if ti.try_number == 1 else 5 }}"
            batch_task(task_id, seconds, session_name=SESSION_NAME, deferrable=deferrable)

# 5. The scheduler is restarted while a run's first wave runs (sync) and is deferred; the second wave
#    needs the restarted scheduler to be scheduled at all.
with scaleout_dag("scaleout_restart_scheduler", default_args=RETRY_ONCE):
    waves = []
    for wave, (size, seconds) in enumerate(((6, 30), (2, 10)), start=1):
        waves.append(
            [
                batch_task(
                    f"w{wave}_{'deferred' if deferrable else 'sync'}_{i:02d}",
                    seconds,
                    session_name=SESSION_NAME,
                    deferrable=deferrable,
                )
                for deferrable in (False, True)
                for i in range(size)
            ]
        )
    for upstream in waves[0]:
        upstream >> waves[1]
