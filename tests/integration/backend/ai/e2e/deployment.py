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
A small real Airflow deployment for end-to-end tests: metadata DB on SQLite, scheduler, triggerer (and on
Airflow 3 the api-server and dag-processor), every process in its own session on 127.0.0.1, stopped by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tests_common.test_utils.version_compat import AIRFLOW_V_3_0_PLUS

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_task_dag(dag_id: str, **operator_args: Any) -> str:
    """The source of a Dag file whose one task, ``train``, is a BackendAIRunBatchOperator with ``operator_args``."""
    args = "".join(f"        {name}={value!r},\n" for name, value in operator_args.items())
    return (
        "import datetime\n\n"
        "from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator\n"
        "from airflow.providers.common.compat.sdk import DAG\n\n"
        f"with DAG({dag_id!r}, schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False):\n"
        "    BackendAIRunBatchOperator(\n"
        '        task_id="train",\n'
        '        image="cr.backend.ai/stable/python:3.9-ubuntu20.04",\n'
        f"{args}"
        "    )\n"
    )


@dataclass
class AirflowDeployment:
    """Airflow components running from ``home`` against the Dags in ``dags_folder``."""

    home: Path
    dags_folder: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @classmethod
    def for_emulator(
        cls, emulator: Any, tmp_path: Path, dag_files: dict[str, str], *, connection_extra: dict | None = None
    ) -> AirflowDeployment:
        """A deployment of ``dag_files`` (file name → source) whose ``backend_ai_default`` is the emulator."""
        dags = tmp_path / "dags"
        dags.mkdir()
        for name, source in dag_files.items():
            (dags / name).write_text(source)
        connection = {
            "conn_type": "backend_ai",
            "host": emulator.endpoint,
            "login": emulator.access_key,
            "password": emulator.secret_key,
            **({"extra": connection_extra} if connection_extra else {}),
        }
        return cls(
            home=tmp_path / "airflow-home",
            dags_folder=dags,
            extra_env={"AIRFLOW_CONN_BACKEND_AI_DEFAULT": json.dumps(connection)},
        )

    def __post_init__(self) -> None:
        self.api_port = free_port()
        self.env = {
            **os.environ,
            **self.extra_env,
            "AIRFLOW_HOME": str(self.home),
            # Airflow 2's SequentialExecutor starts tasks as `airflow tasks run ...` from PATH.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            "AIRFLOW__METRICS__TIMER_UNIT_CONSISTENCY": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        }
        if not AIRFLOW_V_3_0_PLUS:
            self.env["AIRFLOW__CORE__EXECUTOR"] = "SequentialExecutor"
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def airflow(self) -> str:
        return str(Path(sys.executable).with_name("airflow"))

    def cli(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(
            [self.airflow, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> None:
        self.cli("db", "migrate")
        components = [["scheduler", "--skip-serve-logs"], ["triggerer", "--skip-serve-logs"]]
        if AIRFLOW_V_3_0_PLUS:
            components += [["api-server", "-H", "127.0.0.1", "-p", str(self.api_port)], ["dag-processor"]]
        for args in components:
            log = (self.home / f"{args[0]}.log").open("w")
            self.processes[args[0]] = subprocess.Popen(
                [self.airflow, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL what is left (LocalExecutor workers ignore SIGTERM)."""
        for proc in self.processes.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=10)

    def log(self, component: str) -> str:
        return (self.home / f"{component}.log").read_text(errors="replace")

    def task_logs(self, dag_id: str, task_id: str) -> str:
        """Every log file of the task (worker and trigger logs), concatenated."""
        files = sorted((self.home / "logs").glob(f"**/*{dag_id}*/**/*{task_id}*/**/*.log"))
        files += sorted((self.home / "logs").glob(f"{dag_id}/{task_id}/**/*.log"))  # Airflow 2 layout
        return "\n".join(f.read_text(errors="replace") for f in files)

    def wait_until(
        self, predicate: Callable[[], T], timeout: float, what: str, *, dag_id: str, task_id: str
    ) -> T:
        """Call ``predicate`` every 0.2 s until it returns something true; fail with the logs after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(
            f"{what} not reached in {timeout} s\n{self.log('scheduler')[-3000:]}\n"
            f"{self.log('triggerer')[-3000:]}\n{self.task_logs(dag_id, task_id)[-3000:]}"
        )

    def query(self, sql: str, *args: Any) -> list[tuple]:
        """Rows of ``sql`` from the metadata database."""
        with sqlite3.connect(self.home / "airflow.db", timeout=5) as db:
            return db.execute(sql, args).fetchall()

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Wait until the Dag processor has written ``dag_id`` to the metadata database."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.query("SELECT 1 FROM dag WHERE dag_id = ?", dag_id):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{dag_id} was not parsed within {timeout} s:\n{self.log(self.parser)[-3000:]}")

    @property
    def parser(self) -> str:
        return "dag-processor" if AIRFLOW_V_3_0_PLUS else "scheduler"

    def task_states(self, dag_id: str) -> dict[str, str | None]:
        return dict(self.query("SELECT task_id, state FROM task_instance WHERE dag_id = ?", dag_id))

    def xcom(self, dag_id: str, task_id: str, key: str) -> bytes | str | None:
        """The raw stored XCom value (JSON) of the task's latest run."""
        rows = self.query(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = ?", dag_id, task_id, key
        )
        return rows[0][0] if rows else None

    def api_get(self, path: str) -> dict:
        """GET a REST API path of the Airflow 3 api-server (all users are admins in this deployment)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}{path}", timeout=30) as response:
            return json.loads(response.read())

    def dag_run_state(self, dag_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = ?", dag_id)
        return rows[0][0] if rows else None

    def run_id(self, dag_id: str) -> str:
        """The run id of the Dag's only run."""
        ((run_id,),) = self.query("SELECT run_id FROM dag_run WHERE dag_id = ?", dag_id)
        return run_id


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
