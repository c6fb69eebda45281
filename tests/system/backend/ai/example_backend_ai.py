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
Example Dag for the Backend.AI provider, run as a system test.

It runs against whatever the ``backend_ai_default`` connection points at: the local emulator in the test
suite, a real cluster when ``AIRFLOW_CONN_BACKEND_AI_DEFAULT`` (and ``BACKEND_AI_IMAGE``) are set. The job
commands use only ``echo``, ``sleep`` and ``exit``, which every Backend.AI agent can run.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, AirflowException, TriggerRule, task

from airflow.providers.backend.ai.operators.backend_ai import (
    BackendAICreateSessionOperator,
    BackendAIDestroySessionOperator,
    BackendAIRunBatchOperator,
)
from airflow.providers.backend.ai.sensors.backend_ai import BackendAISessionSensor

ENV_ID = os.environ.get("SYSTEM_TESTS_ENV_ID", "local")
DAG_ID = "example_backend_ai"
IMAGE = os.environ.get("BACKEND_AI_IMAGE", "cr.backend.ai/stable/python:3.9-ubuntu20.04")

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "backend.ai"],
) as dag:
    # [START howto_operator_backend_ai_run_batch]
    prepare = BackendAIRunBatchOperator(
        task_id="prepare_data",
        image=IMAGE,
        command="echo preparing data for $ENV_ID; sleep 1; echo prepared",
        environment={"ENV_ID": ENV_ID},
        session_resources={"cpu": 1, "mem": "1g"},
    )
    # [END howto_operator_backend_ai_run_batch]

    # [START howto_operator_backend_ai_run_batch_deferrable]
    train = BackendAIRunBatchOperator(
        task_id="train_model",
        image=IMAGE,
        command=(
            "echo training on the output of {{ ti.xcom_pull(task_ids='prepare_data')['session_name'] }}; "
            "sleep 2; echo training finished"
        ),
        environment={"RUN_ID": "{{ run_id }}"},
        session_resources={"cpu": 2, "mem": "2g"},
        batch_timeout=600,
        deferrable=True,
        poll_interval=5,
    )
    # [END howto_operator_backend_ai_run_batch_deferrable]

    # [START howto_operator_backend_ai_failure]
    fails_on_purpose = BackendAIRunBatchOperator(
        task_id="fails_on_purpose",
        image=IMAGE,
        command="echo about to fail; exit 3",
        on_finish_action="destroy_on_success",
        retries=0,
    )

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report_failure(ti=None) -> str:
        """Runs whatever happened upstream; here it checks that the job ran and that its failure was caught."""
        session_id = ti.xcom_pull(task_ids="fails_on_purpose", key="session_id")
        if session_id is None or ti.xcom_pull(task_ids="fails_on_purpose") is not None:
            raise AirflowException("fails_on_purpose should have started a session and then failed")
        return f"session {session_id} failed as expected"

    # [END howto_operator_backend_ai_failure]

    # [START howto_operator_backend_ai_create_sense_destroy]
    create = BackendAICreateSessionOperator(
        task_id="create_session",
        image=IMAGE,
        command="sleep 2; echo evaluation done",
    )
    wait = BackendAISessionSensor(
        task_id="wait_for_session",
        session_id="{{ ti.xcom_pull(task_ids='create_session')['session_id'] }}",
        poke_interval=1,
        timeout=600,
    )
    destroy = BackendAIDestroySessionOperator(
        task_id="destroy_session",
        session_id="{{ ti.xcom_pull(task_ids='create_session')['session_id'] }}",
        trigger_rule=TriggerRule.ALL_DONE,
    )
    # [END howto_operator_backend_ai_create_sense_destroy]

    prepare >> train
    fails_on_purpose >> report_failure()
    create >> wait >> destroy

    from tests_common.test_utils.watcher import watcher

    # destroy_session and report_failure run whatever happened upstream (ALL_DONE), so the run's state alone
    # would hide a failed task: the watcher fails the run when any task but the one meant to fail fails.
    [t for t in dag.tasks if t.task_id != "fails_on_purpose"] >> watcher()


from tests_common.test_utils.system_tests import get_test_run  # noqa: E402

# Needed to run the example Dag with pytest (tests_common's get_test_run; see dev/standalone/tests_common).
test_run = get_test_run(dag)
