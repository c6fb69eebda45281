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
Run an example Dag as a pytest test: ``test_run = get_test_run(dag)`` at the end of the Dag file.

Same contract as apache/airflow's helper: the returned test function is marked ``system``, adds a
callback that logs each task's final state, runs the Dag with ``dag.test()`` (through the configured
executor when ``_AIRFLOW__SYSTEM_TEST_USE_EXECUTOR=1``) and requires the run to succeed.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)


def _log_task_states(context: Any) -> None:
    task_instances = sorted(context["dag_run"].get_task_instances(), key=lambda ti: str(ti.end_date))
    summary = "\n".join(f"  {ti.task_id}: {ti.state}" for ti in task_instances)
    log.info("Execution summary:\n%s", summary or "  (no task ran)")


def _with_callback(current: Any, extra: Callable[[Any], None]) -> Any:
    """Add ``extra`` to a Dag's success/failure callback(s), keeping what the Dag file set."""
    if not current:
        return extra
    return [*current, extra] if isinstance(current, list) else [current, extra]


def get_test_run(dag: Any, **test_kwargs: Any) -> Callable[[], None]:
    """Return the pytest test function that runs ``dag`` once and asserts its run succeeded."""

    def test_run() -> None:
        dag.on_success_callback = _with_callback(dag.on_success_callback, _log_task_states)
        dag.on_failure_callback = _with_callback(dag.on_failure_callback, _log_task_states)
        use_executor = os.environ.get("_AIRFLOW__SYSTEM_TEST_USE_EXECUTOR") == "1"
        dag_run = dag.test(use_executor=use_executor, **test_kwargs)
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
        assert dag_run.state == "success", (
            f"The system test failed: Dag run {dag_run.run_id} ended {dag_run.state}; task states: {states}"
        )

    try:  # the Dag file is also parsed by Airflow itself (dev/demo.sh), where pytest need not be importable
        import pytest
    except ImportError:
        return test_run
    return pytest.mark.system(test_run)


def get_test_env_id(env_var_name: str = "SYSTEM_TESTS_ENV_ID") -> str | None:
    """The environment id system tests put into resource names, from ``SYSTEM_TESTS_ENV_ID``."""
    return os.environ.get(env_var_name)
