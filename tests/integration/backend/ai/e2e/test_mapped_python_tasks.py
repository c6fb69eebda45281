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
"""``@task.backend_ai`` mapped with ``.expand()`` through a real scheduler and triggerer: one session each, at once."""

from __future__ import annotations

import time

import pytest

from integration.backend.ai.e2e.deployment import AirflowDeployment

pytestmark = pytest.mark.e2e

DAG_ID = "e2e_backend_ai_mapped_python"
FOLDS = 4
DAG_FILE = f"""
import datetime

from airflow.providers.common.compat.sdk import DAG, task

with DAG({DAG_ID!r}, schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False, max_active_tasks=8):

    @task.backend_ai(image="cr.backend.ai/stable/python:3.9-ubuntu20.04", deferrable=True, poll_interval=1)
    def train(fold: int) -> dict:
        import time

        time.sleep(10)  # long enough that the folds can only overlap if they run at the same time
        return {{"fold": fold, "score": fold / 10}}

    @task
    def best(scores: list) -> int:
        return max(scores, key=lambda s: s["score"])["fold"]

    best(train.expand(fold=list(range({FOLDS}))))
"""


def test_mapped_instances_run_at_once_each_in_its_own_session(backend_ai_emulator, tmp_path):
    emu = backend_ai_emulator
    deployment = AirflowDeployment.for_emulator(emu, tmp_path, {"mapped_dag.py": DAG_FILE})
    deployment.start()
    try:
        deployment.wait_for_dag(DAG_ID)
        deployment.cli("dags", "trigger", DAG_ID)
        deadline = time.monotonic() + 240
        while deployment.dag_run_state(DAG_ID) in (None, "queued", "running") and time.monotonic() < deadline:
            time.sleep(0.5)
        states = deployment.query(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? ORDER BY task_id, map_index",
            DAG_ID,
        )
        assert deployment.dag_run_state(DAG_ID) == "success", (
            states,
            deployment.log("scheduler")[-3000:],
            deployment.log("triggerer")[-3000:],
        )
        assert [(t, i, s) for t, i, s in states if t == "train"] == [
            ("train", i, "success") for i in range(FOLDS)
        ]
        assert deployment.xcom(DAG_ID, "best", "return_value") in (3, "3", b"3")  # as each line stores it
        sessions = emu.sessions()
        assert len(sessions) == FOLDS  # one session per mapped instance
        started = [max(at for status, at in s.history if status == "RUNNING") for s in sessions]
        ended = [s.job_exited_at for s in sessions]
        assert None not in ended
        assert max(started) < min(ended), "the mapped instances' jobs did not all run at the same time"
        emu.wait_until(lambda: not emu.live_sessions(), timeout=10)
    finally:
        deployment.stop()
