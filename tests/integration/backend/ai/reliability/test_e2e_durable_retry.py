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
End to end through a real Airflow 3.3 deployment (scheduler, api-server, dag-processor, LocalExecutor): the
task process of a ``durable=True`` task with a custom ``session_name`` is killed with SIGKILL while its job
runs; Airflow's retry must reconnect to the same session through the real task state store (written by the
dead try through the supervisor and the Execution API) and the paid job must run once.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from tests_common.test_utils.version_compat import AIRFLOW_V_3_3_PLUS

from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator
from integration.backend.ai.e2e.deployment import AirflowDeployment, one_task_dag

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.fault_matrix,
    pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="the task state store arrived in Airflow 3.3"),
]

DAG_ID = "e2e_backend_ai_durable_retry"
SESSION_NAME = "e2e-durable-train"
DAG_FILE = one_task_dag(
    DAG_ID,
    command="echo started; sleep 12; echo finished",
    session_name=SESSION_NAME,
    durable=True,
    retries=1,
    retry_delay=timedelta(seconds=1),
    poll_interval=1,
)


def task_process(ti_id: str) -> int | None:
    """The pid of the task process the supervisor forked for ``ti_id`` (titled ``airflow worker -- <id>``)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.strip() == f"airflow worker -- {ti_id}":
            return int(proc.name)
    return None


def test_killed_durable_task_reconnects_through_the_task_state_store(emulator, tmp_path):
    emu = emulator
    deployment = AirflowDeployment.for_emulator(emu, tmp_path, {"e2e_durable_retry.py": DAG_FILE})
    deployment.start()
    try:
        deployment.wait_for_dag(DAG_ID)
        deployment.cli("dags", "trigger", DAG_ID)
        session = deployment.wait_until(
            lambda: next((s for s in emu.sessions() if s.status == "RUNNING" and "started" in s.logs), None),
            120,
            "the job running",
            dag_id=DAG_ID,
            task_id="train",
        )
        assert session.name == SESSION_NAME
        stored = deployment.wait_until(
            lambda: deployment.query(
                "SELECT value FROM task_state_store WHERE dag_id = ? AND task_id = 'train' AND key = ?",
                DAG_ID,
                BackendAIRunBatchOperator.external_id_key,
            ),
            30,
            "the session id in the task state store",
            dag_id=DAG_ID,
            task_id="train",
        )
        assert json.loads(stored[0][0]) == {"session_id": str(session.id), "try_number": 1}

        ((ti_id, try_number),) = deployment.query(
            "SELECT id, try_number FROM task_instance WHERE dag_id = ?", DAG_ID
        )
        assert try_number == 1
        pid = deployment.wait_until(
            lambda: task_process(str(uuid.UUID(ti_id))),
            30,
            "the task process",
            dag_id=DAG_ID,
            task_id="train",
        )
        os.kill(pid, signal.SIGKILL)  # no finally, no on_kill: the session keeps running

        deployment.wait_until(
            lambda: deployment.task_states(DAG_ID).get("train") == "success",
            120,
            "success",
            dag_id=DAG_ID,
            task_id="train",
        )
        ((try_number,),) = deployment.query("SELECT try_number FROM task_instance WHERE dag_id = ?", DAG_ID)
        assert try_number == 2  # Airflow retried the killed try
        assert emu.request_count(route="create") == 1  # the paid job ran once
        assert [s.id for s in emu.sessions()] == [session.id]
        assert emu.get_session(session.id).result == "SUCCESS"
        value = json.loads(deployment.xcom(DAG_ID, "train", "return_value"))
        assert (value["session_id"], value["session_name"]) == (str(session.id), SESSION_NAME)
        assert "finished" in value["logs"]
        logs = deployment.task_logs(DAG_ID, "train")
        assert f"Reconnecting to Backend.AI session {session.id}" in logs, logs[-3000:]
    finally:
        deployment.stop()
