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
# ruff: noqa: I002, UP006, UP035, UP031
"""
The script a ``@task.backend_ai`` job runs inside the session: call the function, frame its result.

This file is sent to the session as text (``payload.build_command``) and must run on any Python 3 from
3.6 up with the standard library alone: hence no ``from __future__ import annotations``, ``typing``
names instead of ``list[str]``, and ``%`` formatting. ``tests/unit/python_task/test_runner_exec.py`` runs it with every
interpreter it finds.

What it does, in order:

1. Take over the output. File descriptors 1 and 2 are pointed at a pipe that one thread (``_Output``)
   copies to the real standard output. On the way every chunk is decoded as UTF-8 (invalid bytes become
   U+FFFD: a manager stores the log as bytes and answers HTTP 500 to every later read of a log that is not
   UTF-8), and a line of the function's output that starts with the frame marker gets a space in front,
   so nothing the function or its child processes print can pass for a frame.
2. Install ``requirements`` with ``<this python> -m pip install`` if there are any.
3. Load the arguments, compile the function's source in a fresh namespace (annotations unevaluated
   where the interpreter can), and call it.
4. Serialize the return value, or describe the exception (its traceback goes to the log).
5. Stop the function's output (fds 1 and 2 go to /dev/null; Python threads it left running write there
   from now on), let the copier drain the pipe, and write one frame: a begin line with the kind, the
   payload's length and SHA-256, data lines of base64 (zlib-compressed payload), and an end line with
   the number of data lines. Every frame line starts with the marker and a run id drawn here from
   ``os.urandom``, which the function never sees. The frame starts on a line of its own.
6. Exit 0 after an ``ok`` frame, 1 after an ``error`` frame, so the batch job's result agrees.
"""

import base64
import codecs
import contextlib
import hashlib
import json
import os
import sys
import threading
import traceback
import zlib
from typing import Any, Dict, List, Tuple

#: Every frame line starts with this, then a space, the run id, a space and the verb (B, D or E).
MARKER = "@@backend.ai-python-task@@"
FORMAT_VERSION = "1"
#: Base64 characters per data line (a multiple of 4, so each line decodes on its own).
LINE_CHARS = 4000
#: How long to wait, after the function returned, for processes it left running to release the output.
DRAIN_SECONDS = 2.0
#: The name compiled code of the function carries in tracebacks.
SOURCE_FILENAME = "<backend.ai task function>"

_CHUNK = 65536


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _Output:
    """Copies everything written to fds 1 and 2 to the real stdout, cleaned; writes the frame."""

    def __init__(self) -> None:
        self.run_id = codecs.encode(os.urandom(16), "hex").decode("ascii")
        self.out_fd = os.dup(1)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.read_fd = read_fd
        self.lock = threading.Lock()
        self.at_line_start = True
        self.pending = ""
        self.thread = threading.Thread(target=self._pump, name="backend-ai-task-output")
        self.thread.daemon = True
        self.thread.start()
        # Line-buffered UTF-8 text streams on the pipe: output keeps its order across stdout and stderr,
        # and a str that cannot be encoded is shown escaped instead of raising in the function.
        sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115

    def _pump(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            try:
                chunk = os.read(self.read_fd, _CHUNK)
            except OSError:
                break
            if not chunk:
                break
            self._emit(decoder.decode(chunk), final=False)
        self._emit(decoder.decode(b"", True), final=True)

    def _emit(self, text: str, final: bool) -> None:
        with self.lock:
            text = self.pending + text
            self.pending = ""
            parts = []
            start = 0
            at_start = self.at_line_start
            while start < len(text):
                newline = text.find("\n", start)
                end = len(text) if newline < 0 else newline + 1
                segment = text[start:end]
                if at_start:
                    if segment.startswith(MARKER):
                        segment = " " + segment
                    elif newline < 0 and not final and MARKER.startswith(segment):
                        # It may still become the marker: hold it until the line goes on.
                        self.pending = segment
                        break
                parts.append(segment)
                at_start = newline >= 0
                start = end
            self.at_line_start = at_start
            if parts:
                _write_all(self.out_fd, "".join(parts).encode("utf-8"))

    def write_frame(self, kind: str, payload: bytes) -> None:
        text = frame_text(self.run_id, kind, payload)
        with self.lock:
            if self.pending:
                _write_all(self.out_fd, self.pending.encode("utf-8"))
                self.pending = ""
                self.at_line_start = False
            if not self.at_line_start:
                text = "\n" + text
            _write_all(self.out_fd, text.encode("ascii"))
            self.at_line_start = True

    def finish(self, kind: str, payload: bytes) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        # Threads the function left running write into nothing from now on: a daemon thread caught inside
        # a buffered write would otherwise abort the interpreter's shutdown (SIGABRT, and a failed job).
        sys.stdout = sys.stderr = _Discard()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
        # The copier ends when the pipe is drained, unless a process the function started still holds it.
        self.thread.join(DRAIN_SECONDS)
        self.write_frame(kind, payload)


class _Discard:
    """A text stream that drops what it is given."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def frame_text(run_id: str, kind: str, payload: bytes) -> str:
    """The lines of one frame (see ``framing.py`` for their form), each ending with a newline."""
    body = base64.b64encode(zlib.compress(payload, 6)).decode("ascii")
    head = MARKER + " " + run_id + " "
    lines = [
        head + "B %s %s %d %s" % (FORMAT_VERSION, kind, len(payload), hashlib.sha256(payload).hexdigest())
    ]
    for index in range(0, len(body), LINE_CHARS):
        lines.append(head + "D " + body[index : index + LINE_CHARS])
    lines.append(head + "E %d" % (len(lines) - 1))
    return "\n".join(lines) + "\n"


def _type_name(value: object) -> str:
    kind = type(value)
    module = getattr(kind, "__module__", "")
    name = getattr(kind, "__qualname__", kind.__name__)
    return name if module in ("builtins", "__main__", "") else module + "." + name


def _error(stage: str, error_type: str, message: str) -> bytes:
    return json.dumps({"stage": stage, "type": error_type, "message": message}).encode("utf-8")


def _exception_error(stage: str, exc: BaseException) -> bytes:
    return _error(stage, _type_name(exc), str(exc))


def _serializer_module(name: str) -> Any:
    if name == "pickle":
        import pickle

        return pickle
    if name == "cloudpickle":
        import cloudpickle

        return cloudpickle
    raise ValueError("unknown serializer %r" % (name,))


def _install(requirements: List[str]) -> bytes:
    import importlib
    import site
    import subprocess

    command = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
    print("backend.ai task: pip install " + " ".join(requirements), flush=True)
    code = subprocess.call(command + list(requirements))
    if code != 0:
        return _error(
            "requirements",
            "RequirementsInstallError",
            "pip install %s exited with code %d (see the log above)" % (" ".join(requirements), code),
        )
    # A user-site install (pip's fallback without write access) lands where sys.path may not look yet.
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user_site and os.path.isdir(user_site) and user_site not in sys.path:
        site.addsitedir(user_site)
    importlib.invalidate_caches()
    return b""


def _compile_flags() -> int:
    import __future__

    feature = getattr(__future__, "annotations", None)
    return feature.compiler_flag if feature is not None else 0


def _call(job: Dict[str, Any]) -> Tuple[str, bytes]:
    """Run the job; return ("ok", serialized value) or ("error", JSON description)."""
    if job.get("requirements"):
        failed = _install(job["requirements"])
        if failed:
            return "error", failed
    serializer = job["serializer"]
    try:
        if serializer == "json":
            args, kwargs = job["args"], job["kwargs"]
        else:
            args, kwargs = _serializer_module(serializer).loads(base64.b64decode(job["pickled_arguments"]))
    except Exception as exc:
        return "error", _exception_error("load", exc)
    source = job["source"]
    try:
        import linecache

        code = compile(source, SOURCE_FILENAME, "exec", _compile_flags(), True)
        linecache.cache[SOURCE_FILENAME] = (len(source), None, source.splitlines(True), SOURCE_FILENAME)
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}  # type: Dict[str, Any]
        exec(code, namespace)
        function = namespace[job["function"]]
    except Exception as exc:
        traceback.print_exc()
        return "error", _exception_error("compile", exc)
    try:
        value = function(*args, **kwargs)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            _print_user_traceback()
            return "error", _exception_error("call", exc)
        value = None
    except BaseException as exc:
        _print_user_traceback()
        return "error", _exception_error("call", exc)
    try:
        if serializer == "json":
            payload = json.dumps(value).encode("utf-8")
        else:
            payload = _serializer_module(serializer).dumps(value, protocol=4)
    except Exception as exc:
        message = "the return value of type %s could not be serialized with serializer=%r: %s" % (
            _type_name(value),
            serializer,
            exc,
        )
        return "error", _error("serialize", "UnserializableReturnValue", message)
    return "ok", payload


def _print_user_traceback() -> None:
    """Print the exception being handled without the runner's own frame."""
    exc_type, exc, tb = sys.exc_info()
    traceback.print_exception(exc_type, exc, tb.tb_next if tb is not None else None)


def main(encoded_job: str) -> None:
    """Entry point: ``encoded_job`` is the base64 of the zlib-compressed JSON job (``payload.py``)."""
    output = _Output()
    try:
        job = json.loads(zlib.decompress(base64.b64decode(encoded_job)).decode("utf-8"))
        if job.get("version") != 1:
            raise ValueError(
                "job format %r is not 1: the provider and this runner disagree" % (job.get("version"),)
            )
        kind, payload = _call(job)
        limit = job.get("max_result_chars")
        if kind == "ok" and limit:
            encoded = len(base64.b64encode(zlib.compress(payload, 6)))
            if encoded > limit:
                message = (
                    "the return value takes %d characters in the log (compressed, base64), more than %d"
                    % (
                        encoded,
                        limit,
                    )
                )
                kind, payload = "error", _error("serialize", "ReturnValueTooLarge", message)
    except BaseException as exc:
        traceback.print_exc()
        kind, payload = "error", _exception_error("runner", exc)
    output.finish(kind, payload)
    sys.exit(0 if kind == "ok" else 1)
