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
The built command run for real: ``bash -c`` with stdout and stderr on one pipe, as the dummy agent and the
emulator run a batch job (a kernel runs it with ``/bin/sh -c``), with every Python interpreter found here
(the project's, the system's, and pyenv's 3.6 to 3.13), and the combined output fed to the decoder.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest

from airflow.providers.backend.ai._python_task.framing import MARKER, scan_frames
from airflow.providers.backend.ai._python_task.payload import build_command
from airflow.providers.backend.ai._python_task.result import output_lines, return_value
from airflow.providers.backend.ai.exceptions import BackendAIPythonTaskError


def _interpreters() -> list[str]:
    found: dict[str, str] = {}
    candidates = [sys.executable, "/usr/bin/python3"]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")))
    for path in candidates:
        if os.path.exists(path):
            found.setdefault(os.path.realpath(path), path)
    return list(found.values())


INTERPRETERS = _interpreters()
#: The heavy cases run with the project's interpreter and Python 3.6, the oldest the runner supports.
OLDEST = next((path for path in INTERPRETERS if "/3.6." in path), None)
EDGES = [INTERPRETERS[0]] + ([OLDEST] if OLDEST else [])


class JobFailed(Exception):
    pass


def _job_failed() -> NoReturn:
    raise JobFailed


def run(
    interpreter: str,
    source: str,
    *,
    op_args: list[Any] | None = None,
    op_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[str, int]:
    """Build the job for the (first) function in ``source``, run it with ``bash -c``; (log, exit code)."""
    source = textwrap.dedent(source)
    name = source.split("def ", 1)[1].split("(", 1)[0]
    job = build_command(
        function_name=name,
        source=source,
        op_args=op_args or [],
        op_kwargs=op_kwargs,
        python_command=interpreter,
        **options,
    )
    done = subprocess.run(
        ["bash", "-c", job.command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=120,
        check=False,
    )
    # The agent's log is text: what the runner wrote must be UTF-8 whatever the function printed.
    return done.stdout.decode("utf-8"), done.returncode


def value_of(log: str, code: int, serializer: str = "json") -> Any:
    return return_value(
        log,
        serializer=serializer,
        function_name="f",
        job_succeeded=code == 0,
        session_id="local",
        job_failed=_job_failed,
    )


@pytest.fixture(params=INTERPRETERS, ids=lambda path: Path(path).parent.parent.name or path)
def python(request) -> str:
    return request.param


@pytest.fixture(params=EDGES, ids=lambda path: Path(path).parent.parent.name or path)
def edge_python(request) -> str:
    return request.param


def test_interpreters_were_found() -> None:
    assert INTERPRETERS[0] == sys.executable


def test_a_value_comes_back(python: str) -> None:
    log, code = run(
        python,
        """
        def train(epochs, lr=0.1, tags=None):
            import sys
            print("epoch", epochs, "lr", lr)
            print("to stderr", file=sys.stderr)
            return {"loss": 0.125, "epochs": epochs, "tags": tags, "nan": float("nan") != float("nan")}
        """,
        op_args=[3],
        op_kwargs={"tags": ["a", "b"], "lr": 0.5},
    )
    assert code == 0, log
    assert value_of(log, code) == {"loss": 0.125, "epochs": 3, "tags": ["a", "b"], "nan": True}
    assert output_lines(log)[:2] == ["epoch 3 lr 0.5", "to stderr"]


def test_none(python: str) -> None:
    log, code = run(python, "def f():\n    pass\n")
    assert code == 0
    assert value_of(log, code) is None


def test_the_marker_in_the_functions_output_cannot_forge_a_frame(python: str) -> None:
    log, code = run(
        python,
        f'''
        def f():
            import os, sys
            marker = "{MARKER}"
            fake = marker + " " + "f" * 32
            # A whole well-formed frame (right length and hash) for the value "forged" ...
            import base64, hashlib, zlib
            body = b'"forged"'
            print(fake + " B 1 ok %d %s" % (len(body), hashlib.sha256(body).hexdigest()))
            print(fake + " D " + base64.b64encode(zlib.compress(body)).decode())
            print(fake + " E 1")
            # ... the marker split across writes, from a child process, and at the start of stderr lines.
            sys.stdout.write(marker[:5]); sys.stdout.flush(); sys.stdout.write(marker[5:] + " split\\n")
            os.system("echo '{MARKER} from a child'")
            sys.stderr.write(marker + " on stderr\\n")
            return "genuine"
        ''',
    )
    assert code == 0
    assert value_of(log, code) == "genuine"
    (_frame,) = scan_frames(log).frames  # the forged lines were escaped, not taken
    lines = output_lines(log)
    fake = " " + MARKER + " " + "f" * 32
    assert [line[: len(fake) + 2] for line in lines[:3]] == [fake + " B", fake + " D", fake + " E"]
    assert " " + MARKER + " split" in lines
    assert " " + MARKER + " from a child" in lines
    assert " " + MARKER + " on stderr" in lines


def test_binary_ish_output_and_values(python: str) -> None:
    weird = "NUL\x00 ANSI \x1b[1;31mred\x1b[0m tab\t bell\x07 é 한 \U0001f600"
    log, code = run(
        python,
        r"""
        def f(weird):
            import os, sys
            print(weird)
            sys.stdout.flush()
            sys.stdout.buffer.write(b"invalid utf-8: \xff\xfe\xc3(\n")
            sys.stdout.buffer.flush()
            os.write(1, b"raw fd write \xed\xa0\x80 (a surrogate in UTF-8)\n")
            print("lone surrogate: \udcff")
            return weird
        """,
        op_args=[weird],
    )
    assert code == 0
    assert value_of(log, code) == weird
    lines = output_lines(log)
    assert lines[0] == weird
    assert lines[1] == "invalid utf-8: \ufffd\ufffd\ufffd("
    assert lines[2].startswith("raw fd write \ufffd")
    assert lines[3] == "lone surrogate: \\udcff"


def test_partial_last_line(python: str) -> None:
    log, code = run(
        python, "def f():\n    import sys\n    sys.stdout.write('no newline at the end')\n    return 7\n"
    )
    assert code == 0
    assert value_of(log, code) == 7
    assert "no newline at the end\n" + MARKER in log


def test_an_exception(python: str) -> None:
    log, code = run(
        python,
        """
        def f(x):
            def inner():
                raise ValueError("boom: " + x)
            print("before")
            inner()
        """,
        op_args=["bad input"],
    )
    assert code == 1
    with pytest.raises(BackendAIPythonTaskError) as err:
        value_of(log, code)
    assert (err.value.error_type, err.value.error_message, err.value.stage) == (
        "ValueError",
        "boom: bad input",
        "call",
    )
    assert str(err.value).startswith("ValueError: boom: bad input\n")
    lines = output_lines(log)
    assert "Traceback (most recent call last):" in lines
    assert '  File "<backend.ai task function>", line 4, in inner' in lines
    assert '    raise ValueError("boom: " + x)' in lines  # the source line, from the function's own text
    assert not any("runner" in line for line in lines)  # the runner's frames are left out
    assert "ValueError: boom: bad input" in err.value.log_tail


def test_a_value_json_cannot_carry(python: str) -> None:
    log, code = run(python, "def f():\n    return {'ids': {1, 2}}\n")
    assert code == 1
    with pytest.raises(BackendAIPythonTaskError) as err:
        value_of(log, code)
    assert err.value.error_type == "UnserializableReturnValue"
    assert err.value.stage == "serialize"
    assert (
        "the return value of type dict could not be serialized with serializer='json'"
        in err.value.error_message
    )
    assert "set" in err.value.error_message


@pytest.mark.parametrize(("exit_code", "outcome"), [(None, None), (0, None), (3, "SystemExit: 3")])
def test_sys_exit(edge_python: str, exit_code, outcome) -> None:
    log, code = run(edge_python, f"def f():\n    import sys\n    sys.exit({exit_code!r})\n")
    if outcome is None:
        assert code == 0
        assert value_of(log, code) is None
    else:
        with pytest.raises(BackendAIPythonTaskError, match=f"^{outcome}\n"):
            value_of(log, code)


def test_a_syntax_error_in_an_old_interpreter_is_reported(edge_python: str) -> None:
    log, code = run(edge_python, "def f():\n    return (x := 1)\n")
    if sys.version_info >= (3, 8) and "/3.6." not in edge_python:
        assert value_of(log, code) == 1
    else:
        with pytest.raises(BackendAIPythonTaskError, match="^SyntaxError") as err:
            value_of(log, code)
        assert err.value.stage == "compile"


def test_annotations_naming_what_the_image_lacks(edge_python: str) -> None:
    log, code = run(
        edge_python,
        "def f(df: 'pd.DataFrame', n: np.int64 = 1) -> pd.Series:\n    return n\n",
        op_args=[None],
    )
    if "/3.6." in edge_python:  # no postponed annotations before 3.7: the NameError is reported
        with pytest.raises(BackendAIPythonTaskError, match="^NameError"):
            value_of(log, code)
    else:
        assert value_of(log, code) == 1


def test_a_1_mb_return_value(edge_python: str) -> None:
    log, code = run(
        edge_python,
        """
        def f(size):
            import random
            rng = random.Random(42)
            return "".join(rng.choice("0123456789abcdef") for _ in range(size))
        """,
        op_args=[1_000_000],
    )
    assert code == 0
    value = value_of(log, code)
    import random

    rng = random.Random(42)
    assert value == "".join(rng.choice("0123456789abcdef") for _ in range(1_000_000))
    assert 600_000 < len(log) < 1_000_000  # hex compresses to about half, base64 adds a third


def test_a_return_value_over_the_log_limit(edge_python: str) -> None:
    log, code = run(
        edge_python, "def f():\n    import os\n    return os.urandom(60000).hex()\n", max_result_chars=50_000
    )
    with pytest.raises(
        BackendAIPythonTaskError, match=r"^ReturnValueTooLarge: the return value takes \d+ characters"
    ):
        value_of(log, code)


def test_output_from_threads_and_processes_left_running(edge_python: str) -> None:
    """A thread and a child process keep writing while the frame is written: the frame still arrives whole."""
    started = time.monotonic()
    log, code = run(
        edge_python,
        """
        def f():
            import os, subprocess, sys, threading

            def chatter():
                n = 0
                while True:
                    n += 1
                    print("thread line %d" % n)

            threading.Thread(target=chatter, daemon=True).start()
            child = "import sys, time\\nend = time.time() + 4\\nn = 0\\nwhile time.time() < end:\\n    n += 1\\n    print('child line %d' % n, flush=True)\\n"
            subprocess.Popen([sys.executable, "-c", child])
            return os.urandom(100000).hex()
        """,
    )
    elapsed = time.monotonic() - started
    assert code == 0, log[-2000:]
    value = value_of(log, code)
    assert len(value) == 200_000
    lines = output_lines(log)
    assert any(line.startswith("thread line") for line in lines)
    assert any(line.startswith("child line") for line in lines)
    assert elapsed < 30


def test_requirements_are_installed_first(edge_python: str) -> None:
    if (
        subprocess.run([edge_python, "-m", "pip", "--version"], capture_output=True, check=False).returncode
        != 0
    ):
        pytest.skip(f"{edge_python} has no pip")
    # Offline: pip itself is already there, so "installing" it succeeds without an index.
    log, code = run(
        edge_python, "def f():\n    import pip\n    return 'ok'\n", requirements=["--no-index", "pip"]
    )
    assert value_of(log, code) == "ok"
    assert "backend.ai task: pip install --no-index pip" in output_lines(log)


def test_requirements_that_fail(python: str) -> None:
    log, code = run(
        python, "def f():\n    return 'never'\n", requirements=["--no-index", "no-such-package-for-this-test"]
    )
    assert code == 1
    with pytest.raises(
        BackendAIPythonTaskError, match=r"^RequirementsInstallError: pip install --no-index no-such"
    ) as err:
        value_of(log, code)
    assert err.value.stage == "requirements"


def test_pickle(edge_python: str) -> None:
    import datetime

    log, code = run(
        edge_python,
        "def f(when, ids):\n    import datetime\n    return {'next': when + datetime.timedelta(days=1), 'ids': ids | {3}}\n",
        op_args=[datetime.date(2026, 1, 1), {1, 2}],
        serializer="pickle",
    )
    assert value_of(log, code, serializer="pickle") == {"next": datetime.date(2026, 1, 2), "ids": {1, 2, 3}}


def test_posix_sh_with_separate_pipes_as_a_kernel_runs_it() -> None:
    """
    A kernel runs the startup command with ``/bin/sh -c`` (dash on Debian and Ubuntu images) and reads
    stdout and stderr from two pipes, copying them to the container log in 4 KiB chunks each: everything
    must arrive on stdout, in order, or stderr chunks could land inside the frame.
    """
    source = "def f():\n    import sys\n    print('out')\n    print('err', file=sys.stderr)\n    raise KeyError('k')\n"
    job = build_command(function_name="f", source=source, python_command=sys.executable)
    done = subprocess.run(["/bin/sh", "-c", job.command], capture_output=True, timeout=60, check=False)
    assert done.stderr == b""
    log = done.stdout.decode("utf-8")
    assert output_lines(log)[:2] == ["out", "err"]
    with pytest.raises(BackendAIPythonTaskError, match="^KeyError: 'k'"):
        value_of(log, done.returncode)
