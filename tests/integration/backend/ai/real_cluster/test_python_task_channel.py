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
The ``@task.backend_ai`` channel on a real manager 26.9.6 (``dev/real-cluster``): a job built by
``_python_task.payload`` runs through today's ``BackendAIRunBatchOperator``; the dummy agent runs it with
``bash -c`` as ``nobody`` with the host's ``/usr/bin/python3``, and its output reaches the log through the
agent's real log path (Redis, then the manager's database after TERMINATED).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, NoReturn

import pytest

from airflow.providers.backend.ai._python_task.payload import MAX_COMMAND_BYTES, build_command
from airflow.providers.backend.ai._python_task.result import return_value
from airflow.providers.backend.ai.exceptions import (
    BackendAIJobFailedError,
    BackendAIPythonTaskError,
    BackendAIPythonTaskInputError,
)
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator

from .conftest import DEAD, RealCluster

pytestmark = pytest.mark.usefixtures("real_connection")


class StandardFailure(Exception):
    pass


def _standard_failure() -> NoReturn:
    raise StandardFailure


def call(cluster: RealCluster, context: dict[str, Any], name: str, source: str, **build: Any) -> Any:
    """Run ``name`` from ``source`` in one batch session and return its return value."""
    return call_in_session(cluster, context, name, source, **build)[0]


def call_in_session(
    cluster: RealCluster, context: dict[str, Any], name: str, source: str, **build: Any
) -> tuple[Any, str]:
    job = build_command(function_name=name, source=source, **build)
    op = BackendAIRunBatchOperator(
        task_id=context["ti"].task_id,
        image=cluster.image,
        command=job.command,
        xcom_log_limit=50_000_000,
        poll_interval=1,
    )
    try:
        result = op.execute(context)
    except BackendAIJobFailedError as exc:
        logs, succeeded = BackendAIHook().get_session_logs(exc.session_id), False
    else:
        logs, succeeded = result["logs"], True
    value = return_value(
        logs,
        serializer="json",
        function_name=name,
        job_succeeded=succeeded,
        session_id=op.session_id,
        job_failed=_standard_failure,
    )
    assert op.session_id is not None
    return value, op.session_id


def test_values_a_1_mb_value_and_an_exception(
    real_connection: RealCluster, make_context, name_prefix: str
) -> None:
    train = (
        "def train(epochs, learning_rate=0.1):\n"
        "    loss = 1.0\n"
        "    for epoch in range(epochs):\n"
        "        loss *= 1 - learning_rate\n"
        "        print('epoch', epoch, 'loss', loss)\n"
        "    return {'loss': loss, 'epochs': epochs}\n"
    )
    assert call(
        real_connection, make_context("train"), "train", train, op_args=[3], op_kwargs={"learning_rate": 0.5}
    ) == {
        "loss": 0.125,
        "epochs": 3,
    }
    big = "def big(seed):\n    import random\n    rng = random.Random(seed)\n    return ''.join(rng.choice('0123456789abcdef') for _ in range(1000000))\n"
    rng = random.Random(9)
    assert call(real_connection, make_context("big"), "big", big, op_args=[9]) == "".join(
        rng.choice("0123456789abcdef") for _ in range(1_000_000)
    )
    with pytest.raises(BackendAIPythonTaskError, match=r"^ZeroDivisionError: division by zero\n") as err:
        call(real_connection, make_context("fails"), "fails", "def fails():\n    return 1 / 0\n")
    assert "Traceback (most recent call last):" in err.value.log_tail
    rows = real_connection.wait_for(
        name_prefix,
        lambda rows: len(rows) == 3 and all(r["status"] in DEAD for r in rows),
        timeout=45,
        what="3 ended sessions",
    )
    assert sorted(r["result"] for r in rows) == ["FAILURE", "SUCCESS", "SUCCESS"]


def test_an_input_just_under_the_limit(real_connection: RealCluster, make_context) -> None:
    source = "def f(blob):\n    import hashlib\n    return [len(blob), hashlib.sha256(blob.encode()).hexdigest()]\n"
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

    def build(chars: int) -> tuple[str, int]:
        blob = "".join(random.Random(5).choices(alphabet, k=chars))
        return blob, build_command(function_name="f", source=source, op_args=[blob]).size

    low, high = 50_000, 200_000
    while high - low > 1:
        middle = (low + high) // 2
        try:
            build(middle)
        except BackendAIPythonTaskInputError:
            high = middle
        else:
            low = middle
    blob, size = build(low)
    assert MAX_COMMAND_BYTES - 16 < size <= MAX_COMMAND_BYTES
    assert call(real_connection, make_context(), "f", source, op_args=[blob]) == [
        len(blob),
        hashlib.sha256(blob.encode()).hexdigest(),
    ]


def test_binary_output_keeps_the_log_readable(
    real_connection: RealCluster, make_context, name_prefix: str
) -> None:
    """
    Bytes that are not UTF-8 in a job's output make this manager answer HTTP 500 to every read of the log
    after TERMINATED (it decodes the stored log strictly); the runner replaces them before they get there.
    """
    source = "def f():\n    import os\n    os.write(1, b'\\xff\\xfe bad bytes\\n')\n    return 'fine'\n"
    value, session_id = call_in_session(real_connection, make_context(), "f", source)
    assert value == "fine"
    real_connection.wait_for(
        name_prefix, lambda rows: rows and rows[0]["status"] == "TERMINATED", timeout=45, what="TERMINATED"
    )
    stored = BackendAIHook().get_session_logs(session_id)  # from the manager's database now
    assert "\ufffd\ufffd bad bytes" in stored
    assert (
        return_value(
            stored,
            serializer="json",
            function_name="f",
            job_succeeded=True,
            session_id=session_id,
            job_failed=_standard_failure,
        )
        == "fine"
    )
