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
"""Shared pytest configuration: Airflow isolation, connection helpers and the emulator fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Airflow reads its configuration at import: point it at a throw-away home before any test imports it.
if "BACKEND_AI_TESTS_AIRFLOW_HOME" not in os.environ:
    os.environ["BACKEND_AI_TESTS_AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-home-")
os.environ["AIRFLOW_HOME"] = os.environ["BACKEND_AI_TESTS_AIRFLOW_HOME"]
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# dag.test() on Airflow 3 syncs the Dag from the configured bundle: the example Dags are the Dag folder.
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).parent / "system" / "backend" / "ai")
os.environ["AIRFLOW__METRICS__TIMER_UNIT_CONSISTENCY"] = "True"  # silences an Airflow 2.11 warning

pytest_plugins = ["backend_ai_emulator.pytest_plugin"]


@pytest.fixture
def make_connection(monkeypatch: pytest.MonkeyPatch):
    """Define a connection through an ``AIRFLOW_CONN_*`` variable, as a deployment would (no database)."""

    def make(conn_id: str = "backend_ai_default", **fields: object) -> str:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "backend_ai", **fields})
        )
        return conn_id

    return make


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Create the SQLite metadata database in the tests' throw-away AIRFLOW_HOME (once per session)."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=300)
