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
"""Turn the frame a job's runner wrote into the function's return value, or into the error it reported."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.backend.ai._python_task.framing import is_frame_line, scan_frames
from airflow.providers.backend.ai._python_task.payload import check_serializer
from airflow.providers.backend.ai.exceptions import BackendAIPythonTaskError, BackendAIPythonTaskResultError

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.backend.ai._session.state import SessionFacts

#: How many trailing lines of the function's own output an error quotes (its traceback).
ERROR_TAIL_LINES = 20


@dataclass(frozen=True)
class FunctionResult:
    """
    What the first intact frame of a log says.

    :param ok: the function returned (``value`` holds what it returned) rather than failed.
    :param value: the deserialized return value when ``ok``.
    :param error: the error the runner reported when not ``ok``: ``{"stage", "type", "message"}``.
    :param ignored: sentences on the other frames of the log (another run of the job, damaged frames).
    """

    ok: bool
    value: Any = None
    error: dict[str, str] | None = None
    ignored: tuple[str, ...] = ()


def output_lines(log: str) -> list[str]:
    """The log without its frame lines: what the function and the job printed."""
    return [line for line in log.split("\n") if not is_frame_line(line)]


def read_function_result(
    log: str, *, serializer: str, session_id: str | None = None
) -> FunctionResult | None:
    """
    The result in ``log``: from the first intact frame (a job run twice by the agent writes two).

    Returns None when the log holds no frame at all; raises :class:`BackendAIPythonTaskResultError` when it holds
    frames but none arrived whole, or an intact frame cannot be read.
    """
    check_serializer(serializer)
    scan = scan_frames(log)
    if not scan.frames:
        if scan.problems:
            raise BackendAIPythonTaskResultError(
                "The session log holds no intact result frame", session_id=session_id, problems=scan.problems
            )
        return None
    first, *others = scan.frames
    ignored = tuple(f"another intact frame {frame.run_id} ({frame.kind}), ignored" for frame in others)
    ignored += scan.problems
    if first.kind == "error":
        try:
            error = json.loads(first.payload.decode("utf-8"))
            error = {key: str(error[key]) for key in ("stage", "type", "message")}
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendAIPythonTaskResultError(
                f"The error frame {first.run_id} cannot be read: {exc}", session_id=session_id
            ) from exc
        return FunctionResult(ok=False, error=error, ignored=ignored)
    try:
        value = _load(first.payload, serializer)
    except Exception as exc:
        raise BackendAIPythonTaskResultError(
            f"The return value in frame {first.run_id} cannot be loaded with serializer={serializer!r}: "
            f"{type(exc).__name__}: {exc}",
            session_id=session_id,
        ) from exc
    return FunctionResult(ok=True, value=value, ignored=ignored)


def _load(payload: bytes, serializer: str) -> Any:
    if serializer == "json":
        return json.loads(payload.decode("utf-8"))
    if serializer == "cloudpickle":
        import cloudpickle

        return cloudpickle.loads(payload)
    import pickle

    return pickle.loads(payload)  # the session runs the Dag author's code in the Dag author's image


def return_value(
    log: str,
    *,
    serializer: str,
    function_name: str,
    job_succeeded: bool,
    session_id: str | None,
    job_failed: Callable[[], NoReturn],
    warn: Callable[[str], None] | None = None,
    facts: SessionFacts | None = None,
) -> Any:
    """
    Decide the task's outcome from the job's result and its log: the return value, or an exception.

    * An error frame raises :class:`BackendAIPythonTaskError` with the exception's type and message (the
      job failed too: the runner exits 1 after it).
    * A failed job without an error frame (killed, timed out, no Python in the image) calls ``job_failed``,
      which raises the operator's usual job failure.
    * A successful job without an intact result frame raises :class:`BackendAIPythonTaskResultError`.

    ``facts`` (the session's final state) is carried by the function's error.
    """
    result = read_function_result(log, serializer=serializer, session_id=session_id)
    if warn is not None and result is not None:
        for sentence in result.ignored:
            warn(sentence)
    if result is not None and not result.ok:
        assert result.error is not None
        raise BackendAIPythonTaskError(
            function_name=function_name,
            error_type=result.error["type"],
            error_message=result.error["message"],
            stage=result.error["stage"],
            session_id=session_id,
            facts=facts,
            log_tail="\n".join(output_lines(log.rstrip("\n"))[-ERROR_TAIL_LINES:]),
        )
    if not job_succeeded:
        job_failed()
    if result is None:
        raise BackendAIPythonTaskResultError(
            "The job succeeded but its log holds no result frame (was the log cut at the end?)",
            session_id=session_id,
        )
    return result.value
