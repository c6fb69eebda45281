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
Run one extracted documentation example as a user would; exit 0 only if it worked.

``python _run_doc_example.py dag FILE``: load the Dags of FILE with ``DagBag`` (the example is alone in the
Dags folder) and run each with ``dag.test()``; every Dag run must succeed. ``script`` examples are run with
``python FILE`` by the caller and do not come here. Started by ``test_doc_examples.py`` with AIRFLOW_HOME,
the Dags folder and the connection set.
"""

from __future__ import annotations

import sys


def run_dags(path: str) -> int:
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3
    except ImportError:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef,attr-defined]  # Airflow 2.11

    bag = DagBag(dag_folder=path)
    if bag.import_errors:
        for file, error in bag.import_errors.items():
            print(f"DOC-EXAMPLE import error in {file}:\n{error}", file=sys.stderr)
        return 2
    if not bag.dags:
        print(f"DOC-EXAMPLE {path} builds no Dag", file=sys.stderr)
        return 3
    failed = 0
    for dag_id, dag in sorted(bag.dags.items()):
        run = dag.test()
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        print(f"DOC-EXAMPLE dag {dag_id}: run {run.state}, tasks {states}", file=sys.stderr)
        failed += str(run.state) != "success"
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "dag":
        sys.exit("usage: _run_doc_example.py dag FILE")
    sys.exit(run_dags(sys.argv[2]))
