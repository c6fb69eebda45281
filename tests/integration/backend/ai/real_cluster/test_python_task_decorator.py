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
``@task.backend_ai``'s operator on a real manager 26.9.6 (``dev/real-cluster``): the dummy agent runs the
job with ``bash -c`` as ``nobody`` with the host's ``/usr/bin/python3``, and its output reaches the log
through the agent's real log path (Redis, then the manager's database after TERMINATED). Values passed
between tasks, the exception and sessions per task are the system test's part (tests/system).
"""

from __future__ import annotations

import hashlib
from typing import Any, NoReturn

from unit.backend.ai._python_task.blobs import blob as make_blob
from unit.backend.ai._python_task.blobs import job_size, largest_fitting_blob

from airflow.providers.backend.ai._python_task.payload import (
    MAX_COMMAND_BYTES,
    function_source,
)
from airflow.providers.backend.ai._python_task.result import return_value
from airflow.providers.backend.ai.decorators.backend_ai import _BackendAIDecoratedOperator
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

from .conftest import DEAD, RealCluster


def run(cluster: RealCluster, context: dict[str, Any], function: Any, *args: Any) -> tuple[Any, str]:
    """Run ``function`` as a ``@task.backend_ai`` task; (what it returned, its session id)."""
    op = _BackendAIDecoratedOperator(
        task_id=context["ti"].task_id,
        python_callable=function,
        op_args=list(args),
        image=cluster.image,
        poll_interval=1,
    )
    value = op.execute(context)
    assert op.session_id is not None
    return value, op.session_id


def _not_called() -> NoReturn:
    raise AssertionError("the job succeeded")


def megabyte(seed: int) -> str:
    import random

    rng = random.Random(seed)
    return "".join(rng.choice("0123456789abcdef") for _ in range(1_000_000))


def measures(blob: str) -> list:
    import hashlib

    return [len(blob), hashlib.sha256(blob.encode()).hexdigest()]


def writes_bytes_that_are_not_utf8() -> str:
    import os

    os.write(1, b"\xff\xfe bad bytes\n")
    return "fine"


def test_a_1_mb_value(real_connection: RealCluster, make_context) -> None:
    value, _ = run(real_connection, make_context("big"), megabyte, 9)
    assert value == megabyte(9)


def test_an_input_just_under_the_limit(real_connection: RealCluster, make_context) -> None:
    fits = largest_fitting_blob("measures", function_source(measures))
    assert MAX_COMMAND_BYTES - 16 < job_size("measures", function_source(measures), fits) <= MAX_COMMAND_BYTES
    blob = make_blob(fits)
    value, _ = run(real_connection, make_context(), measures, blob)
    assert value == [fits, hashlib.sha256(blob.encode()).hexdigest()]


def test_binary_output_keeps_the_log_readable(
    real_connection: RealCluster, make_context, name_prefix: str
) -> None:
    """
    Bytes that are not UTF-8 in a job's output make this manager answer HTTP 500 to every read of the log
    after TERMINATED (it decodes the stored log strictly); the runner replaces them before they get there.
    """
    value, session_id = run(real_connection, make_context(), writes_bytes_that_are_not_utf8)
    assert value == "fine"
    real_connection.wait_for(
        name_prefix, lambda rows: rows and rows[0]["status"] in DEAD, timeout=45, what="the session's end"
    )
    stored = BackendAIHook().get_session_logs(session_id)  # from the manager's database now
    assert "\ufffd\ufffd bad bytes" in stored
    assert (
        return_value(
            stored,
            serializer="json",
            function_name="writes_bytes_that_are_not_utf8",
            job_succeeded=True,
            session_id=session_id,
            job_failed=_not_called,
        )
        == "fine"
    )
