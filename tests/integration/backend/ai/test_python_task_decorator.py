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
``@task.backend_ai``'s operator against the emulator: the function runs in a real batch job (``bash -c``
and the host's ``python3``), and its value comes back through the session log.

The five framing inputs of the issue (the marker in the function's output, binary-ish text, a 1 MB return
value, None, a value the serializer cannot carry), the function's exception, the input limit, the deferred
path with the trigger's streaming, a durable retry and the pickle serializers. Each test checks on the
server that one session was made, and the ``emulator`` fixture that none is left alive.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import random
import sys
from typing import Any
from unittest import mock

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from unit.backend.ai._python_task.blobs import blob as make_blob
from unit.backend.ai._python_task.blobs import job_size, largest_fitting_blob

from airflow.providers.backend.ai._python_task.framing import MARKER
from airflow.providers.backend.ai._python_task.payload import (
    MAX_COMMAND_BYTES,
    function_source,
)
from airflow.providers.backend.ai.decorators.backend_ai import _BackendAIDecoratedOperator
from airflow.providers.backend.ai.exceptions import BackendAIPythonTaskError, BackendAIPythonTaskInputError
from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger
from integration.backend.ai.reliability.harness import make_context

IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"


class RecordingLog:
    """Stands in for the task (or trigger) logger; keeps every line it was asked to write."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args if args else msg)

    warning = exception = debug = error = info

    def job_lines(self) -> list[str]:
        """What the job printed (the follower writes each of its lines as ``%s``)."""
        return self.lines[self.lines.index(next(x for x in self.lines if x.startswith("Log of"))) + 1 :]

    def has_frame_lines(self) -> bool:
        return any(line.startswith(MARKER + " ") for line in self.lines)


def operator(function: Any, *args: Any, **kwargs: Any) -> _BackendAIDecoratedOperator:
    options = {key: kwargs.pop(key) for key in list(kwargs) if key.startswith("_")}
    return _BackendAIDecoratedOperator(
        task_id=function.__name__,
        python_callable=function,
        op_args=list(args),
        op_kwargs=kwargs,
        image=IMAGE,
        poll_interval=1,
        **{key[1:]: value for key, value in options.items()},
    )


def run(context: dict[str, Any], function: Any, *args: Any, **kwargs: Any) -> tuple[Any, RecordingLog]:
    """Run ``function`` as a ``@task.backend_ai`` task; (what it returned, the task log)."""
    log = RecordingLog()
    op = operator(function, *args, **kwargs)
    with mock.patch.object(
        _BackendAIDecoratedOperator, "log", new_callable=mock.PropertyMock, return_value=log
    ):
        try:
            return op.execute(context), log
        except Exception as exc:
            exc.task_log = log  # type: ignore[attr-defined]
            raise


# -- the functions the sessions run (module level: their source is what the session gets) --------------


def forges_a_frame() -> str:
    """Prints a whole, well-formed frame (right length and hash) before its own: it must not count."""
    import base64
    import hashlib
    import zlib

    payload = b'"forged"'
    marker = "@@backend.ai-python-task@@"
    print(f"{marker} {'f' * 32} B 1 ok {len(payload)} {hashlib.sha256(payload).hexdigest()}")
    print(f"{marker} {'f' * 32} D {base64.b64encode(zlib.compress(payload)).decode()}")
    print(f"{marker} {'f' * 32} E 1")
    print(marker, end="", flush=True)
    print(" written in two parts")
    return "genuine"


def prints_binary_ish_text() -> str:
    import os
    import sys

    os.write(1, b"raw \xff\xfe bytes \x00 and \x1b[31mANSI red\x1b[0m\n")
    sys.stdout.buffer.write(b"\xc3\x28 invalid UTF-8\n")
    sys.stdout.flush()
    print("tab\there, bell\a, accents \u00e9, hangul \ud55c, emoji \U0001f600")
    return "NUL\x00 ESC\x1b[1m bold \U0001f600 \u00e9"


def returns_a_megabyte(size: int, seed: int) -> str:
    import random

    print("generating", size, "characters")
    rng = random.Random(seed)
    return "".join(rng.choice("0123456789abcdef") for _ in range(size))


def returns_none() -> None:
    print("nothing to return")


def returns_a_set_inside_a_dict() -> dict:
    return {"ids": {1, 2, 3}}


def raises(patience: int) -> None:
    print("loading data")
    if patience < 1:
        raise RuntimeError(f"out of patience after {patience} tries")


def trains(epochs: int) -> dict:
    import time

    loss = 1.0
    for epoch in range(1, epochs + 1):
        loss /= 2
        print(f"epoch {epoch} loss {loss}")
        time.sleep(0.3)
    return {"epochs": epochs, "loss": loss}


def measures(blob: str) -> list:
    import hashlib

    return [len(blob), hashlib.sha256(blob.encode()).hexdigest()]


def round_trips(values: set, when: datetime.date) -> dict:
    import datetime

    return {"values": values | {99}, "next_day": when + datetime.timedelta(days=1), "type": type(values)}


# -- the five framing inputs ----------------------------------------------------------------------------


def test_the_marker_in_the_functions_output_cannot_forge_a_frame(emulator, context):
    value, log = run(context, forges_a_frame)
    assert value == "genuine"
    printed = log.job_lines()
    assert f" {MARKER} {'f' * 32} B 1 ok 8 " in "\n".join(printed)  # escaped with a leading space
    assert f" {MARKER} written in two parts" in printed
    assert not log.has_frame_lines()
    assert len(emulator.sessions()) == 1


def test_binary_ish_output_and_value(emulator, context):
    value, log = run(context, prints_binary_ish_text)
    assert value == "NUL\x00 ESC\x1b[1m bold \U0001f600 \u00e9"
    printed = "\n".join(log.job_lines())
    printed.encode("utf-8")  # the task log gets valid text: invalid bytes are replaced
    assert "raw \ufffd\ufffd bytes \x00 and \x1b[31mANSI red\x1b[0m" in printed
    assert "\ufffd( invalid UTF-8" in printed
    assert "emoji \U0001f600" in printed
    assert not log.has_frame_lines()


def test_a_1_mb_return_value_with_live_log_streaming(emulator, context):
    value, log = run(context, returns_a_megabyte, 1_000_000, 42)
    assert value == returns_a_megabyte(1_000_000, 42)
    assert log.job_lines()[0] == "generating 1000000 characters"
    assert not log.has_frame_lines()  # about 300 frame lines stay out of the task log
    (session,) = emulator.sessions()
    assert len(session.logs) > 500_000


def test_none(emulator, context):
    value, log = run(context, returns_none)
    assert value is None
    assert "nothing to return" in log.job_lines()
    assert "returns_none() returned a value of type NoneType" in log.lines


def test_a_return_value_the_serializer_cannot_carry_names_its_type(emulator, context):
    with pytest.raises(BackendAIPythonTaskError) as failed:
        run(context, returns_a_set_inside_a_dict)
    assert str(failed.value).startswith(
        "UnserializableReturnValue: the return value of type dict could not be serialized with "
        "serializer='json': Object of type set is not JSON serializable\n"
        "(the return value of returns_a_set_inside_a_dict() could not be sent back in Backend.AI session "
    )
    assert failed.value.stage == "serialize"
    assert emulator.get_session(failed.value.session_id).result == "FAILURE"


# -- errors, limits ---------------------------------------------------------------------------------------


def test_the_functions_exception_fails_the_task_with_its_type_message_and_traceback(emulator, context):
    with pytest.raises(BackendAIPythonTaskError) as failed:
        run(context, raises, 0)
    error = failed.value
    assert str(error).startswith(
        "RuntimeError: out of patience after 0 tries\n(raises() raised in Backend.AI"
    )
    assert (error.error_type, error.error_message, error.stage) == (
        "RuntimeError",
        "out of patience after 0 tries",
        "call",
    )
    assert error.facts is not None
    assert error.facts.result == "FAILURE"
    printed = error.task_log.job_lines()  # type: ignore[attr-defined]
    assert printed[0] == "loading data"
    assert "Traceback (most recent call last):" in printed
    assert '    raise RuntimeError(f"out of patience after {patience} tries")' in printed
    assert "RuntimeError: out of patience after 0 tries" in printed
    assert "RuntimeError: out of patience after 0 tries" in error.log_tail
    assert len(emulator.sessions()) == 1


def test_an_input_over_the_limit_is_refused_before_any_session(emulator, context):
    blob = "".join(random.Random(5).choices("abcdefghijklmnopqrstuvwxyz0123456789", k=150_000))
    with pytest.raises(BackendAIPythonTaskInputError) as refused:
        run(context, measures, blob=blob)
    assert f"over the limit of {MAX_COMMAND_BYTES:,} bytes" in str(refused.value)
    assert "op_kwargs['blob'] about" in str(refused.value)
    assert emulator.request_count(route="create") == 0


def test_an_input_just_under_the_limit_runs(emulator, context):
    """The largest incompressible input that fits runs: its command is within 16 bytes of the limit."""
    fits = largest_fitting_blob("measures", function_source(measures))
    assert MAX_COMMAND_BYTES - 16 < job_size("measures", function_source(measures), fits) <= MAX_COMMAND_BYTES
    blob = make_blob(fits)
    value, _ = run(context, measures, blob)
    assert value == [fits, hashlib.sha256(blob.encode()).hexdigest()]


# -- the operator's paths ------------------------------------------------------------------------------


def test_deferred_the_trigger_streams_without_the_frame_and_the_resumed_task_returns_the_value(
    emulator, context
):
    with pytest.raises(TaskDeferred) as deferred:
        operator(trains, 4, _deferrable=True).execute(context)
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["hide_line_prefix"] == MARKER + " "
    trigger = BackendAISessionTrigger(**{**kwargs, "stream_logs": True})
    trigger_log = RecordingLog()

    async def watch() -> dict[str, Any]:
        (event,) = [event.payload async for event in trigger.run()]
        return event

    with (
        mock.patch.object(
            BackendAISessionTrigger, "log", new_callable=mock.PropertyMock, return_value=trigger_log
        ),
        mock.patch("airflow.providers.backend.ai.triggers.backend_ai.LOG_READ_EVERY", 1),
    ):
        event = asyncio.run(watch())
    assert trigger_log.lines, "the trigger streamed nothing"
    assert not trigger_log.has_frame_lines()
    task_log = RecordingLog()
    with mock.patch.object(
        _BackendAIDecoratedOperator, "log", new_callable=mock.PropertyMock, return_value=task_log
    ):
        # A resumed task is a freshly parsed operator: its command is the placeholder again.
        value = operator(trains, 4, _deferrable=True).execute_complete(context, event)
    assert value == {"epochs": 4, "loss": 0.0625}
    printed = [line for line in trigger_log.lines + task_log.lines if line.startswith("epoch ")]
    assert printed == [f"epoch {i} loss {0.5**i}" for i in range(1, 5)]  # each line once, in order
    assert not task_log.has_frame_lines()
    assert len(emulator.sessions()) == 1


def test_a_durable_retry_reads_the_value_of_the_earlier_tries_job(emulator):
    """Try 1 deferred and was lost; try 2 adopts its session (found by its tag) and decodes its log."""
    with pytest.raises(TaskDeferred):
        operator(trains, 2, _deferrable=True, _durable=True, _retries=1).execute(
            make_context(try_number=1, max_tries=1)
        )
    value, _ = run(make_context(try_number=2, max_tries=1), trains, 2, _durable=True, _retries=1)
    assert value == {"epochs": 2, "loss": 0.25}
    assert emulator.request_count(route="create") == 1  # the job ran once


@pytest.mark.parametrize("serializer", ["pickle", "cloudpickle"])
def test_pickle_serializers_carry_what_json_cannot(emulator, context, serializer):
    """The session's Python must be the worker's: here the job runs this very interpreter."""
    value, _ = run(
        context,
        round_trips,
        {1, 2},
        datetime.date(2026, 1, 31),
        _serializer=serializer,
        _python_command=sys.executable,
    )
    assert value == {"values": {1, 2, 99}, "next_day": datetime.date(2026, 2, 1), "type": set}
