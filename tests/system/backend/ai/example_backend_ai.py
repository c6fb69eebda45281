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
commands use only ``echo``, ``sleep`` and ``exit``, which every Backend.AI agent can run, and the
``@task.backend_ai`` functions only Python's standard library.
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

    # [START howto_decorator_backend_ai]
    @task.backend_ai(image=IMAGE, session_resources={"cpu": 1, "mem": "1g"})
    def make_folds(n_folds: int, seed: int) -> list[dict]:
        """One training configuration per cross-validation fold."""
        return [{"fold": fold, "n_folds": n_folds, "seed": seed} for fold in range(n_folds)]

    @task.backend_ai(image=IMAGE, session_resources={"cpu": 2, "mem": "4g"}, poll_interval=2)
    def train_fold(config: dict, epochs: int = 100, learning_rate: float = 1.0) -> dict:
        """Fit a logistic regression on all folds but one by gradient descent; validate it on that fold."""
        import math
        import random

        rng = random.Random(config["seed"])  # the same data set in every fold's session
        rows = []
        for _ in range(400):
            x = (rng.random(), rng.random())
            rows.append((x, 1 if x[0] + x[1] + rng.gauss(0, 0.1) > 1 else 0))
        folds = config["n_folds"]
        fit = [row for i, row in enumerate(rows) if i % folds != config["fold"]]
        held_out = [row for i, row in enumerate(rows) if i % folds == config["fold"]]

        def predict(weights, x):
            return 1 / (1 + math.exp(-(weights[0] * x[0] + weights[1] * x[1] + weights[2])))

        weights = [0.0, 0.0, 0.0]
        for epoch in range(1, epochs + 1):
            gradient = [0.0, 0.0, 0.0]
            for x, y in fit:
                error = predict(weights, x) - y
                gradient = [gradient[0] + error * x[0], gradient[1] + error * x[1], gradient[2] + error]
            weights = [weights[i] - learning_rate * gradient[i] / len(fit) for i in range(3)]
            if epoch % 25 == 0:
                loss = -sum(
                    math.log(predict(weights, x) if y else 1 - predict(weights, x)) for x, y in fit
                ) / len(fit)
                print(f"fold {config['fold']} epoch {epoch} loss {loss:.4f}")
        correct = sum((predict(weights, x) > 0.5) == bool(y) for x, y in held_out)
        return {"fold": config["fold"], "accuracy": round(correct / len(held_out), 4), "loss": round(loss, 4)}

    @task.backend_ai(image=IMAGE, deferrable=True, poll_interval=2)
    def summarize(metrics: list[dict]) -> dict:
        """Pick the best fold, and average the folds (a real Dag would register the best model here)."""
        best = max(metrics, key=lambda m: m["accuracy"])
        mean = sum(m["accuracy"] for m in metrics) / len(metrics)
        return {"folds": len(metrics), "best_fold": best["fold"], "mean_accuracy": round(mean, 4)}

    summary = summarize(train_fold.expand(config=make_folds(n_folds=5, seed=42)))
    # [END howto_decorator_backend_ai]

    # [START howto_decorator_backend_ai_failure]
    @task.backend_ai(image=IMAGE, retries=0)
    def check_labels(labels: list) -> int:
        """Refuse a data set with labels other than 0 and 1: the task fails with this ValueError."""
        wrong = [label for label in labels if label not in (0, 1)]
        if wrong:
            raise ValueError(f"{len(wrong)} labels are neither 0 nor 1: {wrong}")
        return len(labels)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report_bad_labels(ti=None) -> str:
        """Runs whatever happened upstream; here it checks that check_labels ran in a session and failed."""
        session_id = ti.xcom_pull(task_ids="check_labels", key="session_id")
        if session_id is None or ti.xcom_pull(task_ids="check_labels") is not None:
            raise AirflowException("check_labels should have run in a session and then failed")
        return f"session {session_id}: the labels were refused as expected"

    check_labels([0, 1, 1, 2, 0, -1]) >> report_bad_labels()
    # [END howto_decorator_backend_ai_failure]

    prepare >> train
    fails_on_purpose >> report_failure()
    create >> wait >> destroy

    from tests_common.test_utils.watcher import watcher

    # destroy_session and report_failure run whatever happened upstream (ALL_DONE), so the run's state alone
    # would hide a failed task: the watcher fails the run when any task but those meant to fail fails.
    [t for t in dag.tasks if t.task_id not in ("fails_on_purpose", "check_labels")] >> watcher()


from tests_common.test_utils.system_tests import get_test_run  # noqa: E402

# Needed to run the example Dag with pytest (tests_common's get_test_run; see dev/standalone/tests_common).
test_run = get_test_run(dag)
