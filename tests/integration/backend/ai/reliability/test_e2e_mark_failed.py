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
End to end through a real Airflow deployment (scheduler, triggerer; api-server on Airflow 3): a user marks a
deferred task failed while its job runs, and the session must be destroyed by the triggerer.

Airflow 3 goes through the public REST API (``PATCH .../taskInstances/{task_id}``, as the UI does; the
deployment runs the simple auth manager with ``simple_auth_manager_all_admins``). The Airflow 2 deployment
runs no web server (starting one costs more than the rest of the test), so the test calls
``DAG.set_task_instance_state`` in a process of the deployment: the function that the Airflow 2 UI and
REST API call for "mark failed".
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from tests_common.test_utils.version_compat import AIRFLOW_V_3_0_PLUS

from integration.backend.ai.e2e.deployment import AirflowDeployment, one_task_dag

pytestmark = [pytest.mark.e2e, pytest.mark.fault_matrix]

DAG_ID = "e2e_backend_ai_mark_failed"
DAG_FILE = one_task_dag(DAG_ID, command="echo started; sleep 300", deferrable=True, poll_interval=1)


def mark_failed(deployment: AirflowDeployment, run_id: str) -> None:
    if AIRFLOW_V_3_0_PLUS:
        request = urllib.request.Request(
            f"http://127.0.0.1:{deployment.api_port}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/train",
            data=json.dumps({"new_state": "failed"}).encode(),
            headers={"Content-Type": "application/json"},
            method="PATCH",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200, response.read()
        return
    code = (
        "from airflow.models import DagBag; from airflow.utils.state import TaskInstanceState; "
        f"dag = DagBag(read_dags_from_db=True).get_dag({DAG_ID!r}); "
        f"print(dag.set_task_instance_state(task_id='train', run_id={run_id!r}, state=TaskInstanceState.FAILED))"
    )
    subprocess.run(
        [sys.executable, "-c", code], env=deployment.env, check=True, capture_output=True, timeout=120
    )


def test_marking_a_deferred_task_failed_destroys_its_session(emulator, tmp_path):
    emu = emulator
    deployment = AirflowDeployment.for_emulator(emu, tmp_path, {"e2e_mark_failed.py": DAG_FILE})
    deployment.start()
    try:
        deployment.wait_for_dag(DAG_ID)
        deployment.cli("dags", "trigger", DAG_ID)
        deployment.wait_until(
            lambda: deployment.task_states(DAG_ID).get("train") == "deferred",
            120,
            "deferred",
            dag_id=DAG_ID,
            task_id="train",
        )
        session = deployment.wait_until(
            lambda: next((s for s in emu.sessions() if s.status == "RUNNING" and "started" in s.logs), None),
            60,
            "the job running",
            dag_id=DAG_ID,
            task_id="train",
        )
        # The worker read the status once before deferring; a second read comes from the triggerer. Marking
        # the task failed before the triggerer picked the trigger up would leave nobody to call on_kill or
        # cleanup: a gap in Airflow that no provider can close (see the report).
        deployment.wait_until(
            lambda: emu.request_count(route="gql") >= 2,
            60,
            "the trigger watching",
            dag_id=DAG_ID,
            task_id="train",
        )
        mark_failed(deployment, deployment.run_id(DAG_ID))

        ended = deployment.wait_until(
            lambda: (s := emu.get_session(session.id)) and s.status == "TERMINATED" and s,
            60,
            "the session destroyed",
            dag_id=DAG_ID,
            task_id="train",
        )
        assert ended.status_info == "user-requested"
        assert deployment.task_states(DAG_ID).get("train") == "failed"
        assert emu.request_count(route="create") == 1
        triggerer_log = deployment.log("triggerer") + deployment.task_logs(DAG_ID, "train")
        if AIRFLOW_V_3_0_PLUS:
            assert "Trigger cancelled by user action, invoking on_kill" in triggerer_log, triggerer_log[
                -3000:
            ]
        assert f"Destroyed Backend.AI session {session.id}" in triggerer_log, triggerer_log[-3000:]
    finally:
        deployment.stop()
