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
"""A deferrable task through a real scheduler and triggerer (SQLite), against the emulator."""

from __future__ import annotations

import time

import pytest
from tests_common.test_utils.version_compat import AIRFLOW_V_3_0_PLUS

from integration.backend.ai.e2e.deployment import AirflowDeployment, one_task_dag

pytestmark = pytest.mark.e2e

DAG_ID = "e2e_backend_ai_deferrable"
DAG_FILE = one_task_dag(
    DAG_ID,
    # Long enough for the scheduler to process the worker's exit before the trigger fires: a trigger firing
    # within a second or two of the deferral hits an Airflow scheduler race that fails the task
    # (apache/airflow#66374, #67287, #72716), whatever the operator does.
    command="echo deferred job starts; sleep 10; echo deferred job done",
    deferrable=True,
    poll_interval=1,
)


def test_task_defers_to_the_triggerer_and_succeeds(backend_ai_emulator, tmp_path):
    emu = backend_ai_emulator
    deployment = AirflowDeployment.for_emulator(
        emu, tmp_path, {"e2e_dag.py": DAG_FILE}, connection_extra={"webui_url": "https://webui.example.com"}
    )
    deployment.start()
    try:
        deployment.wait_for_dag(DAG_ID)
        deployment.cli("dags", "trigger", DAG_ID)
        deadline = time.monotonic() + 180
        seen: list[str | None] = []
        while time.monotonic() < deadline:
            state = deployment.task_states(DAG_ID).get("train")
            if not seen or seen[-1] != state:
                seen.append(state)
            if state in ("success", "failed", "upstream_failed"):
                break
            time.sleep(0.2)
        assert seen[-1] == "success", (
            seen,
            deployment.log("scheduler")[-3000:],
            deployment.log("triggerer")[-3000:],
        )
        assert "deferred" in seen, seen
        while deployment.dag_run_state(DAG_ID) == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert deployment.dag_run_state(DAG_ID) == "success"
        (session,) = emu.sessions()
        assert "deferred job done" in session.logs
        task_logs = deployment.task_logs(DAG_ID, "train")
        assert "Created Backend.AI batch session" in task_logs
        assert "deferred job done" in task_logs  # the job's log, written by execute_complete
        # The "Backend.AI session" extra link points at the session in the web UI.
        url = f"https://webui.example.com/session?sessionDetail={session.id}"
        assert url in str(deployment.xcom(DAG_ID, "train", "backend_ai_session_url"))
        if AIRFLOW_V_3_0_PLUS:
            run_id = deployment.api_get(f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"][0]["dag_run_id"]
            links = deployment.api_get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/train/links")
            assert links["extra_links"]["Backend.AI session"] == url, links
        emu.wait_until(lambda: not emu.live_sessions(), timeout=10)
    finally:
        deployment.stop()
