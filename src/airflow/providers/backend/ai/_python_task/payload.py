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
Build the batch command that runs a Python function in a session, and refuse one that cannot run.

The command is one shell string (``/bin/sh -c`` in a real kernel, ``bash -c`` in the dummy agent and the
emulator)::

    exec 2>&1
    python3 - <<'BACKEND_AI_PYTHON_TASK'
    import base64, zlib
    exec(compile(zlib.decompress(base64.b64decode("<runner.py>")), "<backend.ai task runner>", "exec"))
    main("<the job: function source and arguments as zlib-compressed JSON>")
    BACKEND_AI_PYTHON_TASK

Everything user-supplied travels as base64 inside a quoted here-document, so no shell quoting can break it
and no environment variable carries it. Its limit is Linux's: a single argument of ``execve`` (the
command of ``sh -c``) may have at most 131,072 bytes with its terminating NUL (``MAX_ARG_STRLEN``), so
the command may have 131,071. A larger command is never created: the session would start and the shell
would fail with ``E2BIG``.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from airflow.providers.backend.ai._session.params import MAX_ARG_BYTES
from airflow.providers.backend.ai.exceptions import BackendAIPythonTaskInputError

SERIALIZERS = ("json", "pickle", "cloudpickle")
#: The longest ``sh -c`` command (Linux's ``MAX_ARG_STRLEN`` less the NUL).
MAX_COMMAND_BYTES = MAX_ARG_BYTES
#: The most characters a return value may take in the log. A container agent keeps the last 8 to 10 MiB
#: of a container's log (``container-logs.max-length`` 10M in 5 rotated files), so a larger frame would
#: lose its beginning; 6 MiB leaves room for what the job prints after it.
MAX_RESULT_CHARS = 6 * 1024 * 1024
HEREDOC_END = "BACKEND_AI_PYTHON_TASK"
JOB_FORMAT_VERSION = 1
#: Pickle protocol 4 loads on every Python from 3.4 up.
PICKLE_PROTOCOL = 4


@dataclass(frozen=True)
class PythonJob:
    """A built job: the command to run and its size in bytes (at most ``MAX_COMMAND_BYTES``)."""

    command: str
    size: int


def check_serializer(value: Any) -> str:
    if value not in SERIALIZERS:
        raise ValueError(f"Invalid serializer {value!r}: expected one of {', '.join(map(repr, SERIALIZERS))}")
    return str(value)


def check_python_command(value: Any) -> str:
    """The interpreter command in the image: shell words on one line, e.g. ``python3`` or ``conda run -n x python``."""
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
        raise ValueError(
            f"Invalid python_command {value!r}: expected the command that starts Python in the image, on one "
            "line (e.g. 'python3' or '/opt/conda/bin/python')"
        )
    return value.strip()


def check_requirements(value: Any) -> tuple[str, ...]:
    """pip requirement specifiers, e.g. ``["scikit-learn==1.5.2"]``; None for none."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"Invalid requirements {value!r}: expected a list of pip requirement strings")
    for item in value:
        if not isinstance(item, str) or not item.strip() or "\n" in item:
            raise ValueError(
                f"Invalid requirements entry {item!r}: expected a non-empty pip requirement string on one line"
            )
    return tuple(item.strip() for item in value)


def function_source(function: Callable[..., Any]) -> str:
    """
    The source of ``function`` as the session gets it: its ``def`` and body, without any decorator.

    Every decorator goes, not only ``@task.backend_ai``: the function is sent alone, so a decorator would
    name something the session does not have (``@setup``, ``@task.backend_ai`` imported under another name,
    a helper from the Dag file). Comments and strings are kept exactly as written: an indented function
    (defined in a class or another function) is not dedented, which could change its multi-line strings,
    but sent inside ``if True:``, which defines it at module level all the same.
    """
    if inspect.iscoroutinefunction(function):
        raise ValueError(
            f"{function.__qualname__} is a coroutine function: @task.backend_ai runs plain functions"
        )
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError) as exc:
        raise ValueError(f"The source of {function.__qualname__} cannot be read: {exc}") from exc
    head = "if True:\n" if source[:1].isspace() else ""
    tree = ast.parse(head + source)
    body = tree.body[0].body if head and tree.body and isinstance(tree.body[0], ast.If) else tree.body
    definition = body[0] if body else None
    if not isinstance(definition, ast.FunctionDef) or definition.name != function.__name__:
        raise ValueError(
            f"{function.__qualname__} is not a function defined with def (a lambda or a callable object "
            "cannot be sent to the session)"
        )
    lines = (head + source).splitlines(keepends=True)
    return head + "".join(lines[definition.lineno - 1 :])


@cache
def runner_source() -> str:
    """The text of ``runner.py``, as it is sent to the session."""
    return Path(__file__).with_name("runner.py").read_text(encoding="utf-8")


def _encode(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def _serializer_module(serializer: str) -> Any:
    if serializer == "cloudpickle":
        try:
            import cloudpickle
        except ImportError as exc:
            raise BackendAIPythonTaskInputError(
                "serializer='cloudpickle' needs the cloudpickle package on the Airflow worker "
                "(pip install cloudpickle) and in the image"
            ) from exc
        return cloudpickle
    import pickle

    return pickle


def _serialize_arguments(serializer: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The job fields that carry the arguments; a value that cannot be serialized is named."""
    named = [(f"op_args[{i}]", value) for i, value in enumerate(args)]
    named += [(f"op_kwargs[{key!r}]", value) for key, value in kwargs.items()]
    if serializer == "json":
        for name, value in named:
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise BackendAIPythonTaskInputError(
                    f"Argument {name} of type {type(value).__name__} cannot be sent with serializer='json': {exc}. "
                    "Pass JSON values (str, int, float, bool, None, lists, dicts with str keys), or use "
                    "serializer='pickle' or 'cloudpickle'."
                ) from exc
        return {"args": list(args), "kwargs": dict(kwargs)}
    module = _serializer_module(serializer)
    for name, value in named:
        try:
            module.dumps(value, protocol=PICKLE_PROTOCOL)
        except Exception as exc:
            raise BackendAIPythonTaskInputError(
                f"Argument {name} of type {type(value).__name__} cannot be sent with serializer={serializer!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    pickled = module.dumps((list(args), dict(kwargs)), protocol=PICKLE_PROTOCOL)
    return {"pickled_arguments": base64.b64encode(pickled).decode("ascii")}


def build_command(
    *,
    function_name: str,
    source: str,
    op_args: Sequence[Any] = (),
    op_kwargs: Mapping[str, Any] | None = None,
    serializer: str = "json",
    python_command: str = "python3",
    requirements: Sequence[str] | None = None,
    max_result_chars: int = MAX_RESULT_CHARS,
) -> PythonJob:
    """
    The batch command that calls ``function_name`` (defined by ``source``) with the given arguments.

    Raises :class:`BackendAIPythonTaskInputError` (a ``ValueError``) before anything is created when an argument
    cannot be serialized, or when the command would exceed ``MAX_COMMAND_BYTES``; the message names the
    largest inputs.
    """
    serializer = check_serializer(serializer)
    python_command = check_python_command(python_command)
    kwargs = dict(op_kwargs or {})
    job = {
        "version": JOB_FORMAT_VERSION,
        "function": function_name,
        "source": source,
        "serializer": serializer,
        "requirements": list(check_requirements(requirements)),
        "max_result_chars": max_result_chars,
        **_serialize_arguments(serializer, list(op_args), kwargs),
    }
    encoded_job = _encode(json.dumps(job).encode("utf-8"))
    command = (
        "exec 2>&1\n"
        f"{python_command} - <<'{HEREDOC_END}'\n"
        "import base64, zlib\n"
        f'exec(compile(zlib.decompress(base64.b64decode("{_encode(runner_source().encode("utf-8"))}")), '
        '"<backend.ai task runner>", "exec"))\n'
        f'main("{encoded_job}")\n'
        f"{HEREDOC_END}\n"
    )
    size = len(command.encode("utf-8"))
    if size > MAX_COMMAND_BYTES:
        raise BackendAIPythonTaskInputError(
            _too_large_message(function_name, size, source, serializer, list(op_args), kwargs)
        )
    return PythonJob(command=command, size=size)


def _too_large_message(
    function_name: str, size: int, source: str, serializer: str, args: list[Any], kwargs: dict[str, Any]
) -> str:
    """Say how large the job is, what the limit is, and which inputs take the room."""
    parts = [("the function source", len(_encode(source.encode("utf-8"))))]
    for name, value in [(f"op_args[{i}]", v) for i, v in enumerate(args)] + [
        (f"op_kwargs[{k!r}]", v) for k, v in kwargs.items()
    ]:
        if serializer == "json":
            data = json.dumps(value).encode("utf-8")
        else:
            data = _serializer_module(serializer).dumps(value, protocol=PICKLE_PROTOCOL)
        parts.append((name, len(_encode(data))))
    largest = sorted(parts, key=lambda part: part[1], reverse=True)[:3]
    listed = ", ".join(f"{name} about {chars:,} bytes" for name, chars in largest)
    return (
        f"The Backend.AI job for {function_name}() would be a {size:,}-byte command, over the limit of "
        f"{MAX_COMMAND_BYTES:,} bytes (Linux's limit on one command-line argument, MAX_ARG_STRLEN, which the "
        f"session's shell receives the command as). Largest inputs, compressed and base64-encoded: {listed}. "
        "Put large data in a virtual folder (vfolder_mounts) and pass its path instead."
    )
