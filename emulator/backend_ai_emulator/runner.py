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
Runs a batch session's bootstrap script and startup command with bash, like a container would.

Each command runs in its own process group in a scratch directory; stdout and stderr share one pipe
so the log keeps their interleaving. Timeouts, destroys and resets kill the whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

TIMEOUT_EXIT_CODE = -2  # what the agent reports for task-timeout
_CHUNK = 64 * 1024
_DRAIN_TIMEOUT = 2.0


@dataclass(frozen=True)
class JobOutcome:
    """How the job ended: exit code of the failing or last command, and whether it timed out."""

    exit_code: int
    timed_out: bool = False
    stage: str = "startup"

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def job_environment(scratch_dir: str, extra: Mapping[str, str]) -> dict[str, str]:
    """A minimal environment (PATH, HOME, LANG) with the session's ``envs`` merged over it."""
    env = {
        "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
        "HOME": scratch_dir,
        "LANG": "C.UTF-8",
    }
    env.update(extra)
    return env


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _pump(stream: asyncio.StreamReader, sink: Callable[[bytes], None]) -> None:
    while chunk := await stream.read(_CHUNK):
        sink(chunk)


async def run_command(
    shell: str,
    script: str,
    *,
    cwd: str,
    env: Mapping[str, str],
    timeout: float | None,
    on_output: Callable[[bytes], None],
    on_start: Callable[[int], None],
    on_exit: Callable[[], None] | None = None,
) -> tuple[int, bool]:
    """
    Run ``shell -c script``; return (exit code, timed out). Cancelling kills the process group.

    ``on_exit`` is called the moment the process has exited (or timed out), before its output is drained.
    """
    proc = await asyncio.create_subprocess_exec(
        shell,
        "-c",
        script,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )
    on_start(proc.pid)
    assert proc.stdout is not None
    pump = asyncio.ensure_future(_pump(proc.stdout, on_output))
    timed_out = False
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            timed_out = True
        if on_exit is not None:
            on_exit()
    finally:
        # Leftover background children die with the "container", and a cancel kills everything.
        kill_group(proc.pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(proc.wait()), _DRAIN_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(pump), _DRAIN_TIMEOUT)
        if not pump.done():
            pump.cancel()
    return (proc.returncode if proc.returncode is not None else -9), timed_out


async def run_batch_job(
    *,
    shell: str,
    bootstrap_script: str | None,
    startup_command: str,
    environ: Mapping[str, str],
    timeout: float | None,
    on_output: Callable[[bytes], None],
    on_start: Callable[[int], None],
    on_exit: Callable[[], None] | None = None,
) -> JobOutcome:
    """
    Bootstrap (if any) then the startup command, in a fresh scratch dir removed afterwards.

    ``timeout`` (the batch timeout) covers the startup command only, as in the agent.
    """
    scratch = tempfile.mkdtemp(prefix="backend-ai-emulator-")
    try:
        env = job_environment(scratch, environ)
        if bootstrap_script:
            code, _ = await run_command(
                shell,
                bootstrap_script,
                cwd=scratch,
                env=env,
                timeout=None,
                on_output=on_output,
                on_start=on_start,
                on_exit=on_exit,
            )
            if code != 0:
                return JobOutcome(code, stage="bootstrap")
        code, timed_out = await run_command(
            shell,
            startup_command,
            cwd=scratch,
            env=env,
            timeout=timeout,
            on_output=on_output,
            on_start=on_start,
            on_exit=on_exit,
        )
        if timed_out:
            return JobOutcome(TIMEOUT_EXIT_CODE, timed_out=True)
        return JobOutcome(code)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
