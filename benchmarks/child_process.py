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
Both sides of the channel to the benchmarks' helper servers (the emulator, the counting proxy).

Each runs in a child process of its own, so that its CPU time is not the measured process's. The parent
(:class:`JsonLineChild`) drives it over stdin/stdout, one JSON object a line: the child
(:func:`serve_json_lines`) first says hello (with at least its ``pid``), then answers each ``{"cmd": ...}``
with ``{"reply": ...}``, and returns on ``stop`` or when its stdin closes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any, Self

from benchmarks.common import REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import Callable


def serve_json_lines(hello: dict[str, Any], answer: Callable[[str, dict[str, Any]], Any]) -> None:
    """
    The child side: write ``hello``, then ``answer(cmd, message)`` each command until ``stop`` or end of input.

    ``answer`` raises (``SystemExit`` for an unknown command) to end the child; the parent then sees it exit.
    """
    out = sys.stdout
    out.write(json.dumps(hello) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        if message["cmd"] == "stop":
            return
        out.write(json.dumps({"ok": True, "reply": answer(message["cmd"], message)}) + "\n")
        out.flush()


class JsonLineChild:
    """
    ``python -m module *args`` in a child process, driven by :meth:`call`; a context manager.

    :param what: names the child in the error raised when it exits unexpectedly.
    :param stop_timeout: how long :meth:`stop` waits for a clean exit before it terminates the child.
    """

    def __init__(
        self, module: str, *args: str, what: str, stop_timeout: float, env: dict[str, str] | None = None
    ) -> None:
        self._what = what
        self._stop_timeout = stop_timeout
        self._proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=str(REPO_ROOT),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()
        self.hello: dict[str, Any] = self._read()
        self.pid: int = self.hello["pid"]

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self._what} exited (status {self._proc.poll()})")
        return json.loads(line)

    def _send(self, cmd: str, **args: Any) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self._proc.stdin.flush()

    def call(self, cmd: str, **args: Any) -> Any:
        """Send one command and return the child's reply."""
        with self._lock:
            self._send(cmd, **args)
            return self._read()["reply"]

    def stop(self) -> None:
        """Ask the child to stop; terminate it, then kill it, if it does not exit in time."""
        if self._proc.poll() is None:
            try:
                with self._lock:
                    self._send("stop")
                self._proc.wait(timeout=self._stop_timeout)
            except Exception:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
