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
The ``@task.backend_ai`` tasks of the example Dag, run on their own, with the checks a run's state cannot make.

The example's own ``test_run`` only requires its run to succeed. Here the same decorated tasks (and the
task that reports the expected failure), wired as in the example, run in a Dag of their own: the test checks
what they returned against the functions called locally, that the raising task's error carries the
function's exception, that each task instance made exactly one session, that no result frame reached the
task log, and that no session is left alive. It runs against the emulator or, under
dev/real-cluster/test.sh, the real manager. (``Dag.partial_subset`` of the example would be shorter, but
on Airflow 3.3 it breaks mapped TaskFlow tasks: their copies fail with "unexpected expand_input".)
"""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest
from airflow.providers.common.compat.sdk import DAG

from airflow.providers.backend.ai._session.params import default_session_name, session_tag
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

try:  # under pytest, tests/ is on sys.path and the example module is imported once, under this name
    from system.backend.ai import example_backend_ai as example
except ImportError:  # Airflow parsing its Dag folder (dev/demo.sh): this module then defines no Dag
    example = None

SESSION_TASKS = ("make_folds", "train_fold", "summarize", "check_labels")
#: The example's arguments.
FOLDS = 5
SEED = 42
LABELS = [0, 1, 1, 2, 0, -1]
ENDED = ("TERMINATED", "CANCELLED")
#: A real manager takes a few seconds from a destroy to TERMINATED.
END_DEADLINE = 60.0
FRAME_LINE = re.compile(r"@@backend\.ai-python-task@@ [0-9a-f]{32} [BDE] ")


def expected_values() -> tuple[list[dict], list[dict], dict]:
    """What the decorated functions return when called here, on the test's own interpreter."""
    folds = example.make_folds.function(FOLDS, SEED)
    metrics = [example.train_fold.function(fold) for fold in folds]
    return folds, metrics, example.summarize.function(metrics)


def expected_error() -> str:
    with pytest.raises(ValueError, match=r".") as raised:
        example.check_labels.function(LABELS)
    return f"ValueError: {raised.value}"


# The example's @task.backend_ai sections, wired as there, in a Dag of their own. It is defined at module
# level because Airflow 3's dag.test() runs the Dag it finds in the Dag folder (this one). Importing the
# example anew there would define its Dag a second time, in this file.
if example is not None:
    with DAG(
        dag_id="example_backend_ai_python_tasks",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["example", "backend.ai"],
    ) as dag:
        example.summarize(example.train_fold.expand(config=example.make_folds(n_folds=FOLDS, seed=SEED)))
        example.check_labels(LABELS) >> example.report_bad_labels()


def test_the_python_tasks_pass_values_fail_clearly_and_leave_nothing(backend_ai_target, capfd):
    run = dag.test()
    output = "".join(capfd.readouterr())
    tis = {(ti.task_id, ti.map_index): ti for ti in run.get_task_instances()}
    states = {key: str(ti.state).rsplit(".", 1)[-1].lower() for key, ti in tis.items()}
    assert run.state == "success", states
    assert states.pop(("check_labels", -1)) == "failed"
    assert set(states.values()) == {"success"}, states
    assert sorted(key for key in tis if key[0] == "train_fold") == [("train_fold", i) for i in range(FOLDS)]

    folds, metrics, summary = expected_values()
    any_ti = tis[("summarize", -1)]
    assert any_ti.xcom_pull(task_ids="make_folds") == folds
    assert [any_ti.xcom_pull(task_ids="train_fold", map_indexes=i) for i in range(FOLDS)] == metrics
    assert any_ti.xcom_pull(task_ids="summarize") == summary
    assert any_ti.xcom_pull(task_ids="check_labels") is None

    # The task's error names the function's exception; its traceback is in the task log.
    assert f"BackendAIPythonTaskError: {expected_error()}" in output
    assert 'raise ValueError(f"{len(wrong)} labels are neither 0 nor 1: {wrong}")' in output
    assert not FRAME_LINE.search(output), "a result frame line reached the task log"

    # Each task instance made exactly one session (per try), and none is left alive.
    keys = {
        (ti.task_id, ti.map_index, try_number): (ti.dag_id, ti.task_id, ti.run_id, ti.map_index, try_number)
        for (task_id, _), ti in tis.items()
        if task_id in SESSION_TASKS
        for try_number in range(1, ti.try_number + 1)
    }
    tags = {key: session_tag(*fields) for key, fields in keys.items()}
    names = [default_session_name(*fields) for fields in keys.values()]
    hook = BackendAIHook()
    deadline = time.monotonic() + END_DEADLINE
    while True:
        found = hook.find_sessions_by_tag(tags.values(), names=names)
        live = [facts for sessions in found.values() for facts in sessions if facts.status not in ENDED]
        if not live or time.monotonic() > deadline:
            break
        time.sleep(1)
    per_instance = {key: len(found.get(tag, [])) for key, tag in tags.items()}
    assert set(per_instance.values()) == {1}, per_instance
    assert len(per_instance) == 3 + FOLDS
    assert live == [], f"sessions left alive: {live}"
    if backend_ai_target is not None:  # the emulator: nothing at all is alive on the server
        assert backend_ai_target.live_sessions() == []
        assert len(backend_ai_target.sessions()) == 3 + FOLDS
