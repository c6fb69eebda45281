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
"""From a log to the task's outcome: the return value, the function's error, or the job's own failure."""

from __future__ import annotations

import json
import pickle
from typing import NoReturn
from unittest import mock

import pytest

from airflow.providers.backend.ai._python_task import runner
from airflow.providers.backend.ai._python_task.result import output_lines, read_function_result, return_value
from airflow.providers.backend.ai.exceptions import (
    BackendAIJobFailedError,
    BackendAIPythonTaskError,
    BackendAIPythonTaskResultError,
)

RUN_A = "a" * 32
RUN_B = "b" * 32


class JobFailed(Exception):
    pass


def job_failed() -> NoReturn:
    """Stands for the operator's usual failure (``finish_batch`` raising BackendAIJobFailedError)."""
    raise JobFailed


def ok(value: object, run_id: str = RUN_A) -> str:
    return runner.frame_text(run_id, "ok", json.dumps(value).encode())


def error(type_: str, message: str, stage: str = "call", run_id: str = RUN_A) -> str:
    body = json.dumps({"stage": stage, "type": type_, "message": message}).encode()
    return runner.frame_text(run_id, "error", body)


def outcome(log: str, *, succeeded: bool, serializer: str = "json", warn=None):
    failed = mock.create_autospec(job_failed, side_effect=JobFailed)
    try:
        return return_value(
            log,
            serializer=serializer,
            function_name="train",
            job_succeeded=succeeded,
            session_id="sess-1",
            job_failed=failed,
            warn=warn,
        ), failed
    except JobFailed:
        failed.assert_called_once_with()
        raise


@pytest.mark.parametrize(
    "value", [None, 0, "", [], {"loss": 0.25, "tags": ["a"]}, "NUL\x00 and \x1b[31mANSI\x1b[0m"]
)
def test_the_return_value_of_a_successful_job(value) -> None:
    result, failed = outcome("training\n" + ok(value) + "bye\n", succeeded=True)
    assert result == value
    failed.assert_not_called()


def test_the_function_raised() -> None:
    log = "epoch 1\nTraceback (most recent call last):\n  ...\nValueError: boom\n" + error(
        "ValueError", "boom"
    )
    with pytest.raises(BackendAIPythonTaskError) as err:
        outcome(log, succeeded=False)
    exc = err.value
    assert isinstance(exc, BackendAIJobFailedError)
    assert (exc.error_type, exc.error_message, exc.stage, exc.session_id) == (
        "ValueError",
        "boom",
        "call",
        "sess-1",
    )
    assert str(exc).startswith("ValueError: boom\n(train() raised in Backend.AI session sess-1;")
    # The traceback is quoted, the frame is not.
    assert exc.log_tail.endswith("ValueError: boom")
    assert runner.MARKER not in str(exc)


def test_an_unserializable_return_value() -> None:
    message = "the return value of type set could not be serialized with serializer='json': Object of type set is not JSON serializable"
    with pytest.raises(
        BackendAIPythonTaskError, match=r"UnserializableReturnValue: the return value of type set"
    ) as err:
        outcome(error("UnserializableReturnValue", message, stage="serialize"), succeeded=False)
    assert "the return value of train() could not be sent back" in str(err.value)


def test_an_error_frame_wins_even_if_the_job_was_recorded_as_a_success() -> None:
    with pytest.raises(BackendAIPythonTaskError, match=r"^KeyError: 'x'"):
        outcome(error("KeyError", "'x'"), succeeded=True)


def test_a_failed_job_without_a_frame_is_the_operators_usual_failure() -> None:
    with pytest.raises(JobFailed):
        outcome("Killed\n", succeeded=False)


def test_a_failed_job_with_an_ok_frame_is_still_a_failure() -> None:
    """The function returned, then the job failed (killed at exit, batch_timeout): the job's result decides."""
    with pytest.raises(JobFailed):
        outcome(ok(1), succeeded=False)


def test_a_successful_job_without_a_frame() -> None:
    with pytest.raises(
        BackendAIPythonTaskResultError, match=r"holds no result frame .*\(Backend.AI session sess-1\)"
    ):
        outcome("no frame here\n", succeeded=True)


def test_only_damaged_frames() -> None:
    lines = ok(list(range(3000))).splitlines(keepends=True)
    lines[1] = lines[1][:80] + "garbage" + lines[1][80:]
    with pytest.raises(BackendAIPythonTaskResultError, match=r"no intact result frame") as err:
        outcome("".join(lines), succeeded=True)
    (problem,) = err.value.problems
    assert problem.startswith(f"frame {RUN_A}: ")


def test_the_first_intact_frame_wins_and_the_others_are_reported() -> None:
    warn = mock.Mock(spec=lambda sentence: None)
    damaged = ok("damaged", run_id="c" * 32).replace(" E 1", " E 7")
    result, _ = outcome(ok("first", RUN_A) + damaged + ok("second", RUN_B), succeeded=True, warn=warn)
    assert result == "first"
    assert [c.args[0] for c in warn.call_args_list] == [
        f"another intact frame {RUN_B} (ok), ignored",
        f"frame {'c' * 32}: 1 data lines where the end line says '7'",
    ]


def test_pickle_payloads() -> None:
    log = runner.frame_text(RUN_A, "ok", pickle.dumps({"a": {1, 2}}, protocol=4))
    result, _ = outcome(log, succeeded=True, serializer="pickle")
    assert result == {"a": {1, 2}}


def test_a_payload_the_serializer_cannot_load() -> None:
    log = runner.frame_text(RUN_A, "ok", b"not json")
    with pytest.raises(
        BackendAIPythonTaskResultError, match=r"cannot be loaded with serializer='json': JSONDecodeError"
    ):
        outcome(log, succeeded=True)


def test_an_unreadable_error_frame() -> None:
    log = runner.frame_text(RUN_A, "error", b'{"type": "X"}')
    with pytest.raises(BackendAIPythonTaskResultError, match=r"The error frame a{32} cannot be read"):
        outcome(log, succeeded=False)


def test_no_frame_at_all_reads_as_none() -> None:
    assert read_function_result("just output\n", serializer="json") is None


def test_output_lines_leave_the_frame_out() -> None:
    assert output_lines("a\n" + ok(1) + "b\n") == ["a", "b", ""]
