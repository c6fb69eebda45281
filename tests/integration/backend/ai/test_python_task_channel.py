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
The ``@task.backend_ai`` channel end to end on the emulator, before the decorator exists: a job built by
``_python_task.payload`` runs through today's ``BackendAIRunBatchOperator`` (the emulator runs it with
``bash -c`` and the ``python3`` on its PATH), and its return value is read back from the session log.
"""

from __future__ import annotations

import hashlib
import random
import textwrap
from typing import Any, NoReturn

import pytest

from airflow.providers.backend.ai._python_task.framing import MARKER
from airflow.providers.backend.ai._python_task.payload import MAX_COMMAND_BYTES, build_command
from airflow.providers.backend.ai._python_task.result import output_lines, return_value
from airflow.providers.backend.ai.exceptions import (
    BackendAIJobFailedError,
    BackendAIPythonTaskError,
    BackendAIPythonTaskInputError,
)
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator

IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"
#: Large enough that the operator's XCom value carries the whole log, as the decorator's finish will.
WHOLE_LOG = 50_000_000


class StandardFailure(Exception):
    pass


def _standard_failure() -> NoReturn:
    raise StandardFailure


def call(context: dict[str, Any], source: str, **build: Any) -> tuple[Any, str]:
    """Run the function in ``source`` in one batch session; (its return value, the session log)."""
    source = textwrap.dedent(source)
    name = source.split("def ", 1)[1].split("(", 1)[0]
    job = build_command(function_name=name, source=source, **build)
    op = BackendAIRunBatchOperator(
        task_id="job", image=IMAGE, command=job.command, xcom_log_limit=WHOLE_LOG, poll_interval=1
    )
    try:
        result = op.execute(context)
    except BackendAIJobFailedError as exc:
        # The operator quotes only the log's end; the decorator will read the whole log before it raises.
        logs = BackendAIHook().get_session_logs(exc.session_id)
        succeeded = False
    else:
        logs, succeeded = result["logs"], True
    value = return_value(
        logs,
        serializer=build.get("serializer", "json"),
        function_name=name,
        job_succeeded=succeeded,
        session_id=op.session_id,
        job_failed=_standard_failure,
    )
    return value, logs


def test_an_ml_looking_function(emulator, context) -> None:
    value, logs = call(
        context,
        """
        def train(epochs, learning_rate=0.1):
            import math
            loss = 1.0
            for epoch in range(1, epochs + 1):
                loss *= 1 - learning_rate
                print("epoch %d loss %.4f" % (epoch, loss))
            return {"loss": round(loss, 6), "accuracy": round(1 - loss / 2, 6), "epochs": epochs}
        """,
        op_args=[3],
        op_kwargs={"learning_rate": 0.5},
    )
    assert value == {"loss": 0.125, "accuracy": 0.9375, "epochs": 3}
    assert output_lines(logs)[:3] == ["epoch 1 loss 0.5000", "epoch 2 loss 0.2500", "epoch 3 loss 0.1250"]
    assert len(emulator.sessions()) == 1


def test_a_1_mb_return_value_with_live_log_streaming(emulator, context) -> None:
    value, logs = call(
        context,
        """
        def f(size, seed):
            import random
            rng = random.Random(seed)
            print("generating", size)
            return "".join(rng.choice("0123456789abcdef") for _ in range(size))
        """,
        op_args=[1_000_000, 42],
    )
    rng = random.Random(42)
    assert value == "".join(rng.choice("0123456789abcdef") for _ in range(1_000_000))
    assert len(logs) > 600_000


def test_an_input_just_under_the_limit(emulator, context) -> None:
    """The largest incompressible input that fits runs; the command is within 16 bytes of the limit."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    source = "def f(blob):\n    import hashlib\n    return [len(blob), hashlib.sha256(blob.encode()).hexdigest()]\n"

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
    value, _ = call(context, source, op_args=[blob])
    assert value == [len(blob), hashlib.sha256(blob.encode()).hexdigest()]


def test_an_input_over_the_limit_is_refused_before_any_session(emulator, context) -> None:
    blob = "".join(random.Random(5).choices("abcdefghijklmnopqrstuvwxyz0123456789", k=150_000))
    with pytest.raises(BackendAIPythonTaskInputError, match=r"op_kwargs\['blob'\] about [\d,]+ bytes"):
        call(context, "def f(blob):\n    return len(blob)\n", op_kwargs={"blob": blob})
    assert emulator.request_count(route="create") == 0
    assert emulator.sessions() == []


def test_the_functions_exception(emulator, context) -> None:
    with pytest.raises(BackendAIPythonTaskError) as err:
        call(context, "def f():\n    print('loading data')\n    raise RuntimeError('out of patience')\n")
    assert str(err.value).startswith("RuntimeError: out of patience\n")
    assert "Traceback (most recent call last):" in err.value.log_tail
    session = emulator.get_session(err.value.session_id)
    assert session.result == "FAILURE"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("def f():\n    return None\n", None, id="none"),
        pytest.param(
            f"def f():\n    print('{MARKER} ' + 'f' * 32 + ' B 1 ok 4 ' + '0' * 64)\n    print('{MARKER}')\n    return 'real'\n",
            "real",
            id="marker-in-output",
        ),
        pytest.param(
            "def f():\n    import os, sys\n    os.write(1, b'\\xff\\xfe\\x00\\x1b[31m\\n')\n    return 'NUL\\x00 \\x1b[1m \\ud83d\\ude00'\n",
            "NUL\x00 \x1b[1m \U0001f600",
            id="binary-ish",
        ),
    ],
)
def test_framing_inputs(emulator, context, source: str, expected: Any) -> None:
    value, logs = call(context, source)
    assert value == expected
    logs.encode("utf-8")  # the log stays valid UTF-8


def test_a_return_value_json_cannot_carry(emulator, context) -> None:
    with pytest.raises(
        BackendAIPythonTaskError, match=r"^UnserializableReturnValue: the return value of type set"
    ):
        call(context, "def f():\n    return {1, 2, 3}\n")
