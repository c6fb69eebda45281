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
Reliability fixtures: the emulator behind ``backend_ai_default``, a leak count read from the emulator's own
state after every scenario, and the fault-matrix summary line.

A *leak* is a session the server still reports alive once a scenario is over (after a short grace for
teardowns in flight), other than those the scenario kept on purpose (``on_finish_action="keep"``) and
registered with the ``kept`` fixture. The count comes from ``emu.live_sessions()``, never from whether the
test passed.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from integration.backend.ai.reliability.harness import make_context

#: Seconds a scenario's teardown may still take on the server (destroy -> TERMINATED is two ticks).
LEAK_GRACE = 10.0
#: Base of the hook's exponential backoff in these tests (1 s in production). The number of attempts, which
#: is what the scenarios check, is unchanged; only the pauses between them are shorter.
FAST_RETRY_DELAY = 0.05


@dataclass
class MatrixTally:
    scenarios: int = 0
    leaked: int = 0
    leaks: list[str] = field(default_factory=list)


TALLY = pytest.StashKey[MatrixTally]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault_matrix: one cell of the fault matrix (counted in the summary)")
    config.stash[TALLY] = MatrixTally()


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    tally = config.stash.get(TALLY, None)
    if tally is None or not tally.scenarios:
        return
    terminalreporter.write_line(
        f"fault matrix: {tally.scenarios} scenarios, {tally.leaked} sessions leaked", bold=True
    )
    for leak in tally.leaks:
        terminalreporter.write_line(f"  leaked: {leak}", red=True)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = {**BackendAIHook.__init__.__kwdefaults__, "retry_delay": FAST_RETRY_DELAY}
    monkeypatch.setattr(BackendAIHook.__init__, "__kwdefaults__", defaults)


@pytest.fixture
def kept() -> set[str]:
    """Session ids a scenario keeps alive on purpose; they are not leaks (and are cleaned up afterwards)."""
    return set()


@pytest.fixture
def emulator(backend_ai_emulator, make_connection, kept, request):
    """
    The emulator behind ``backend_ai_default``; after the test, count the sessions left alive on the server.

    Cells of the fault matrix add to the summary line; any leak fails the test.
    """
    emu = backend_ai_emulator
    make_connection("backend_ai_default", host=emu.endpoint, login=emu.access_key, password=emu.secret_key)
    yield emu

    def leftovers() -> list:
        return [s for s in emu.live_sessions() if str(s.id) not in kept]

    with contextlib.suppress(TimeoutError):
        emu.wait_until(lambda: not leftovers(), timeout=LEAK_GRACE)
    leaked = leftovers()
    if request.node.get_closest_marker("fault_matrix") is not None:
        tally = request.config.stash[TALLY]
        tally.scenarios += 1
        tally.leaked += len(leaked)
        tally.leaks += [f"{request.node.nodeid}: {s.id} {s.name} {s.status}" for s in leaked]
    if leaked:
        pytest.fail(f"sessions leaked on the server: {[(str(s.id), s.name, s.status) for s in leaked]}")


@pytest.fixture
def context():
    """A task context for try 1 (see :func:`integration.backend.ai.reliability.harness.make_context` for other tries)."""
    return make_context()


class TaskLog:
    """What the task wrote to its log: stdlib records (Airflow 2) and structlog output (Airflow 3)."""

    def __init__(self, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
        self._caplog, self._capsys, self._printed = caplog, capsys, ""

    @property
    def text(self) -> str:
        captured = self._capsys.readouterr()
        self._printed += captured.out + captured.err
        return self._caplog.text + self._printed


@pytest.fixture
def task_log(caplog, capsys) -> TaskLog:
    caplog.set_level(logging.INFO)
    return TaskLog(caplog, capsys)


@pytest.fixture
def airflow2_ti(airflow_db):
    """
    Airflow 2 only: ``set_state(state)`` writes the task instance ``rel_dag.job`` of a fresh Dag run with
    ``state`` to the metadata database, as a user marking it in the UI would, and returns it.
    """
    from airflow.models.dag import DAG
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.operators.empty import EmptyOperator
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    run_id = f"manual__{uuid.uuid4().hex}"
    with DAG("rel_dag", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)):
        task = EmptyOperator(task_id="job")
    with create_session() as db:
        db.add(
            DagRun(
                dag_id="rel_dag",
                run_id=run_id,
                run_type=DagRunType.MANUAL,
                execution_date=datetime.now(UTC),
                state=DagRunState.RUNNING,
            )
        )

    def set_state(state: str) -> TaskInstance:
        ti = TaskInstance(task, run_id=run_id, state=state)
        with create_session() as db:
            db.merge(ti)
        return ti

    return set_state
