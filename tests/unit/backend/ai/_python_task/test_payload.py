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
"""Building the job command: validation, serialization of the arguments, and the size limit."""

from __future__ import annotations

import base64
import datetime
import json
import re
import subprocess
import sys
import zlib
from unittest import mock

import pytest

from airflow.providers.backend.ai._python_task import payload
from airflow.providers.backend.ai._python_task.payload import (
    MAX_COMMAND_BYTES,
    build_command,
    check_python_command,
    check_requirements,
    check_serializer,
)
from airflow.providers.backend.ai.exceptions import BackendAIPythonTaskInputError
from unit.backend.ai._python_task.blobs import job_size, largest_fitting_blob

SOURCE = "def train(epochs, lr=0.1):\n    return {'epochs': epochs, 'lr': lr}\n"


def decode_job(command: str) -> dict:
    """The job JSON inside a built command."""
    (encoded,) = re.findall(r'^main\("([A-Za-z0-9+/=]+)"\)$', command, flags=re.MULTILINE)
    return json.loads(zlib.decompress(base64.b64decode(encoded)))


def test_the_command_is_a_quoted_heredoc_for_the_given_interpreter() -> None:
    job = build_command(function_name="train", source=SOURCE, python_command="/opt/conda/bin/python -X utf8")
    lines = job.command.split("\n")
    assert lines[0] == "exec 2>&1"
    assert lines[1] == "/opt/conda/bin/python -X utf8 - <<'BACKEND_AI_PYTHON_TASK'"
    assert lines[-2] == "BACKEND_AI_PYTHON_TASK"
    assert job.size == len(job.command.encode())
    # Between the heredoc lines: fixed code and base64 only, so nothing can end the heredoc early or be
    # expanded by the shell.
    for line in lines[2:-2]:
        assert re.fullmatch(r'[A-Za-z0-9+/=(), ."<>_\-:]*', line), line[:80]


def test_the_runner_travels_whole() -> None:
    command = build_command(function_name="train", source=SOURCE).command
    (encoded,) = re.findall(r'b64decode\("([A-Za-z0-9+/=]+)"\)', command)
    assert zlib.decompress(base64.b64decode(encoded)).decode() == payload.runner_source()


def test_the_job_carries_source_arguments_and_settings() -> None:
    job = decode_job(
        build_command(
            function_name="train",
            source=SOURCE,
            op_args=[3],
            op_kwargs={"lr": 0.5, "note": 'it\'s "quoted" $HOME `x` \\n'},
            requirements=["scikit-learn==1.5.2"],
        ).command
    )
    assert job == {
        "version": 1,
        "function": "train",
        "source": SOURCE,
        "serializer": "json",
        "requirements": ["scikit-learn==1.5.2"],
        "max_result_chars": payload.MAX_RESULT_CHARS,
        "args": [3],
        "kwargs": {"lr": 0.5, "note": 'it\'s "quoted" $HOME `x` \\n'},
    }


def test_pickle_arguments_keep_python_types() -> None:
    import pickle

    when = datetime.datetime(2026, 1, 2, 3, 4, 5)
    job = decode_job(
        build_command(
            function_name="train",
            source=SOURCE,
            op_args=[{1, 2}],
            op_kwargs={"when": when},
            serializer="pickle",
        ).command
    )
    assert "args" not in job
    assert pickle.loads(base64.b64decode(job["pickled_arguments"])) == ([{1, 2}], {"when": when})


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        pytest.param([datetime.date(2026, 1, 1)], {}, "op_args[0] of type date", id="positional"),
        pytest.param([], {"labels": {1, 2}}, "op_kwargs['labels'] of type set", id="keyword"),
        pytest.param(
            [],
            {"x": float("nan"), "f": len},
            "op_kwargs['f'] of type builtin_function_or_method",
            id="callable",
        ),
    ],
)
def test_an_argument_json_cannot_carry_is_named(args, kwargs, named: str) -> None:
    with pytest.raises(BackendAIPythonTaskInputError, match=re.escape(named)) as err:
        build_command(function_name="train", source=SOURCE, op_args=args, op_kwargs=kwargs)
    assert "serializer='json'" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_an_argument_pickle_cannot_carry_is_named() -> None:
    with pytest.raises(
        BackendAIPythonTaskInputError, match=r"op_kwargs\['f'\] of type function cannot be sent"
    ):
        build_command(function_name="train", source=SOURCE, op_kwargs={"f": lambda: 1}, serializer="pickle")


def test_cloudpickle_missing_on_the_worker_is_a_clear_error() -> None:
    with (
        mock.patch.dict(sys.modules, {"cloudpickle": None}),  # makes ``import cloudpickle`` fail
        pytest.raises(
            BackendAIPythonTaskInputError, match=r"needs the cloudpickle package on the Airflow worker"
        ),
    ):
        build_command(function_name="train", source=SOURCE, op_args=[1], serializer="cloudpickle")


def test_cloudpickle_carries_what_json_cannot() -> None:
    """The arguments travel pickled by cloudpickle (a lambda too), and the job stays a valid command."""
    job = build_command(
        function_name="train",
        source=SOURCE,
        op_args=[{1, 2}],
        op_kwargs={"f": lambda: 1},
        serializer="cloudpickle",
    )
    assert job.size <= MAX_COMMAND_BYTES


def test_a_job_just_under_the_limit_is_built_and_one_byte_more_is_refused() -> None:
    base = build_command(function_name="train", source=SOURCE, op_args=[""]).size
    fits = largest_fitting_blob("train", SOURCE, seed=3)
    assert base < job_size("train", SOURCE, fits, seed=3) <= MAX_COMMAND_BYTES
    assert MAX_COMMAND_BYTES - job_size("train", SOURCE, fits, seed=3) < 16
    with pytest.raises(BackendAIPythonTaskInputError) as err:
        job_size("train", SOURCE, fits + 1, seed=3)
    message = str(err.value)
    assert "over the limit of 131,071 bytes" in message
    assert "MAX_ARG_STRLEN" in message
    assert re.search(
        r"Largest inputs, compressed and base64-encoded: op_args\[0\] about [\d,]+ bytes", message
    )
    assert "vfolder_mounts" in message


def test_the_limit_is_the_kernels() -> None:
    """bash -c takes a command of MAX_COMMAND_BYTES and refuses one byte more (E2BIG), as /bin/sh -c does."""
    fits = "true #" + "x" * (MAX_COMMAND_BYTES - 6)
    assert subprocess.run(["bash", "-c", fits], check=False).returncode == 0
    with pytest.raises(OSError, match="Argument list too long"):
        subprocess.run(["bash", "-c", fits + "x"], check=False)


@pytest.mark.parametrize("value", ["json", "pickle", "cloudpickle"])
def test_serializers(value: str) -> None:
    assert check_serializer(value) == value


@pytest.mark.parametrize("value", ["dill", None, "JSON"])
def test_bad_serializer(value) -> None:
    with pytest.raises(
        ValueError, match=r"Invalid serializer .*: expected one of 'json', 'pickle', 'cloudpickle'"
    ):
        check_serializer(value)


@pytest.mark.parametrize("value", ["", "  ", "python3\nrm -rf /", None, 3])
def test_bad_python_command(value) -> None:
    with pytest.raises(ValueError, match=r"Invalid python_command .*on one line"):
        check_python_command(value)


def test_requirements() -> None:
    assert check_requirements(None) == ()
    assert check_requirements([" numpy>=2 ", "--no-index"]) == ("numpy>=2", "--no-index")
    with pytest.raises(ValueError, match=r"Invalid requirements 'numpy': expected a list"):
        check_requirements("numpy")
    with pytest.raises(ValueError, match=r"Invalid requirements entry ''"):
        check_requirements(["numpy", ""])
    with pytest.raises(ValueError, match=r"Invalid requirements entry 'a\\nb'"):
        check_requirements(["a\nb"])


def _decorator(**_kwargs):
    return _plain


def _plain(function):
    return function


class _Holder:
    @staticmethod
    @_decorator(
        image="x",
        # a comment inside the decorator call
        resources={"cpu": 1},
    )
    @_plain
    def method_like(a, b=2):
        # a comment the function keeps
        text = """
# not a comment: a line of a string
"""
        return a + b, text


def test_function_source_drops_every_decorator_and_keeps_the_rest() -> None:
    source = payload.function_source(_Holder.method_like)
    assert source.startswith(
        "if True:\n    def method_like(a, b=2):\n        # a comment the function keeps\n"
    )
    assert "# not a comment: a line of a string\n" in source
    assert "_decorator" not in source
    assert "_plain" not in source
    namespace: dict = {}
    exec(compile(source, "<test>", "exec"), namespace)
    assert namespace["method_like"](1) == (3, "\n# not a comment: a line of a string\n")


def test_function_source_refuses_what_cannot_be_sent() -> None:
    async def coroutine() -> None:
        pass

    with pytest.raises(ValueError, match="is a coroutine function"):
        payload.function_source(coroutine)
    with pytest.raises(ValueError, match="is not a function defined with def"):
        payload.function_source(lambda: 1)
    with pytest.raises(ValueError, match="cannot be read"):
        payload.function_source(len)


def test_function_source_of_a_top_level_function() -> None:
    assert payload.function_source(_plain) == "def _plain(function):\n    return function\n"
