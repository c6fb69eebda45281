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
Run an example Dag as a pytest test, as apache/airflow's ``tests_common...system_tests.get_test_run`` does.

``tests_common`` is not published on PyPI, so this standalone provider keeps its own small version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def get_test_run(dag: Any) -> Callable[[], None]:
    """Return a test function that runs ``dag`` with ``dag.test()`` and requires the run to succeed."""

    def test_run() -> None:
        dag_run = dag.test()
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
        assert dag_run.state == "success", f"Dag run {dag_run.run_id} ended {dag_run.state}: {states}"

    test_run.dag = dag  # type: ignore[attr-defined]
    return test_run
