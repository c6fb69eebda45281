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
Run the real Backend.AI agent (``backend = "dummy"``) with batch jobs that really run.

The stock dummy backend fakes every container operation, and its ``execute()`` answers
"not-implemented", so a BATCH session never finishes (``execute_batch`` spins on it). This
launcher patches four methods of the 26.9.6 dummy classes, then hands over to the normal
``backend.ai ag`` CLI (the agent's worker process is forked, so it inherits the patches):

* ``DummyAgent.execute`` (batch mode) runs the startup command with ``bash -c`` as the
  unprivileged user ``nobody`` in a scratch directory, with the session's environment
  variables, and answers ``finished`` with the exit code. The agent's own
  ``execute_batch()`` then emits the real success/failure events, and its
  ``asyncio.timeout`` implements ``batch_timeout``. The output goes through the agent's real
  ``collect_logs()`` path (redis, then the manager stores ``kernels.container_log``), so
  ``get_logs`` works after termination.
* ``DummyKernel.get_logs`` answers the output so far while the kernel lives, and the whole output
  after it was destroyed until the agent drops the kernel (as a stopped container's log).
* ``DummyAgent.destroy_kernel`` kills a job that still runs and collects its logs first.
* One job per kernel *instance*: a duplicate batch trigger for the same kernel waits for its job, but
  a kernel the manager rescheduled (preemption in reschedule mode destroys it and creates it again
  under the same kernel id) runs its command again from the start, with its own output and log.
* ``DummyAgent.enumerate_containers`` reports every live kernel as a running container;
  the stock ``[]`` makes the agent's 60 s registry sweep kill every running kernel.

Usage: ``python run_dummy_agent.py start-server -f agent.toml`` from the directory that
holds ``agent.dummy.toml``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ai.backend.agent.agent import ACTIVE_STATUS_SET
from ai.backend.agent.dummy.agent import DummyAgent
from ai.backend.agent.dummy.kernel import DummyKernel
from ai.backend.agent.types import Container
from ai.backend.common.docker import LabelName
from ai.backend.common.types import ContainerId, ContainerStatus, KernelId, SessionId

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Mapping, Sequence

    from ai.backend.agent.kernel import AbstractKernel

JOB_USER = "nobody"
# Variables the agent sets for a real container that make no sense for a host process.
_DROPPED_ENV = frozenset({"LD_PRELOAD", "LD_LIBRARY_PATH", "PATH", "HOME", "PYTHONPATH"})


@dataclass
class _Job:
    """One batch job of a kernel instance: its process, its output and whether its logs were shipped."""

    #: The kernel object the job runs in. A rescheduled session keeps its kernel id, but the agent creates
    #: a new kernel object for it, so the object tells a rerun from a duplicate trigger of the same run.
    kernel: AbstractKernel | None = None
    output: bytearray = field(default_factory=bytearray)
    pgid: int | None = None
    task: asyncio.Task[Any] | None = None
    logs_collected: bool = False
    #: The job's exit code once it ended (a duplicate batch trigger waits for it instead of running again).
    exit_code: asyncio.Future[int] | None = None
    duplicates: int = 0


_jobs: dict[KernelId, _Job] = {}
_FORGET_AFTER = 300.0  # seconds after destroy_kernel: the kernel is long gone from the agent's registry
_original_execute = DummyAgent.execute
_original_destroy_kernel = DummyAgent.destroy_kernel


def _log_container_id(kernel_id: KernelId) -> str:
    # Every dummy kernel reports container id "", so the logs get a key of their own.
    return f"e2e-dummy-{kernel_id}"


def _job_env(kernel: AbstractKernel, home: str) -> dict[str, str]:
    env = {k: str(v) for k, v in (kernel.environ or {}).items() if k not in _DROPPED_ENV}
    env.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"})
    # down.sh finds leftover job processes by this marker.
    env["BACKEND_AI_RC_JOB"] = os.environ.get("BACKEND_AI_RC_DIR", "")
    return env


def _kill(job: _Job) -> None:
    if job.pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pgid, signal.SIGKILL)


async def _run(command: str, kernel: AbstractKernel, job: _Job) -> int:
    """``bash -c command`` as JOB_USER; output appended to ``job.output``; returns the exit code."""
    user = pwd.getpwnam(JOB_USER)
    scratch = tempfile.mkdtemp(prefix="e2e-dummy-job-")
    os.chown(scratch, user.pw_uid, user.pw_gid)
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                "bash",
                "-c",
                command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=scratch,
                env=_job_env(kernel, scratch),
                user=user.pw_uid,
                group=user.pw_gid,
                extra_groups=[],
                start_new_session=True,
            )
        except OSError as exc:
            # E2BIG for a command or an environment string over 131,071 bytes. A kernel runner
            # (ai.backend.kernel BaseRunner.run_subproc) logs the error and reports exit code -1: the job
            # fails (task-failed) instead of hanging RUNNING, as an uncaught error here would.
            job.output += f"run_dummy_agent: the command could not be started: {exc}\n".encode()
            return -1
        job.pgid = proc.pid
        assert proc.stdout is not None
        try:
            while chunk := await proc.stdout.read(65536):
                job.output += chunk
            code = await proc.wait()
        finally:
            _kill(job)  # background children die with the "container"
        return code if code >= 0 else 128 - code
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def _ship_logs(agent: DummyAgent, kernel_id: KernelId, job: _Job) -> None:
    """Send the output through the agent's real log path (once)."""
    if job.logs_collected:
        return
    job.logs_collected = True

    async def _chunks() -> AsyncGenerator[bytes]:
        yield bytes(job.output)

    await agent.collect_logs(kernel_id, _log_container_id(kernel_id), _chunks())


async def execute(
    self: DummyAgent,
    session_id: SessionId,
    kernel_id: KernelId,
    run_id: str | None,
    mode: Literal["query", "batch", "input", "continue"],
    text: str,
    *,
    opts: Mapping[str, Any],
    api_version: int,
    flush_timeout: float,
) -> dict[str, Any]:
    if mode not in ("batch", "continue"):
        return await _original_execute(
            self,
            session_id,
            kernel_id,
            run_id,
            mode,
            text,
            opts=opts,
            api_version=api_version,
            flush_timeout=flush_timeout,
        )
    kernel = self.kernel_registry[kernel_id]  # KeyError: execute_batch reports the kernel gone
    job = _jobs.get(kernel_id)
    if job is None or job.kernel is not kernel:
        # The first run of this kernel, or a rerun: the manager rescheduled the session (preemption in
        # reschedule mode), which destroyed the kernel and created it again under the same id. A real
        # agent starts a new container then; so a new job runs the command from the start, with a log of
        # its own that replaces the first run's once shipped.
        if job is not None:
            print(
                f"run_dummy_agent: rerun of kernel {kernel_id} (created again)", file=sys.stderr, flush=True
            )
        job = _jobs[kernel_id] = _Job(kernel=kernel)
    if job.exit_code is not None:
        # The manager triggered this kernel's batch execution once more: its RUNNING hook can run again
        # for a session whose transition a loaded scheduler has not committed yet (seen on 26.9.6: 2-3
        # triggers for half of 200 sessions created at once). One job per kernel: wait for the first run
        # and answer its outcome, rather than run the command again beside it.
        job.duplicates += 1
        print(
            f"run_dummy_agent: duplicate batch trigger #{job.duplicates} for kernel {kernel_id}: "
            "answering the outcome of the first run",
            file=sys.stderr,
            flush=True,
        )
        exit_code = await asyncio.shield(job.exit_code)
        return {"status": "finished", "runId": run_id, "exitCode": exit_code, "console": [], "files": []}
    job.exit_code = asyncio.get_running_loop().create_future()
    job.task = asyncio.current_task()
    try:
        exit_code = await _run(str(opts.get("exec") or ""), kernel, job)
    except BaseException:  # cancelled (batch_timeout or destroy) or failed: a duplicate ends alike
        _kill(job)
        job.exit_code.cancel()
        raise
    job.exit_code.set_result(exit_code)
    await _ship_logs(self, kernel_id, job)
    return {"status": "finished", "runId": run_id, "exitCode": exit_code, "console": [], "files": []}


async def get_logs(self: DummyKernel) -> dict[str, Any]:
    job = _jobs.get(self.kernel_id)
    if job is None or (job.kernel is not None and job.kernel is not self):
        return {"logs": ""}  # a kernel created again whose rerun has not started: a new, empty container log
    return {"logs": bytes(job.output).decode("utf-8", "replace")}


async def destroy_kernel(self: DummyAgent, kernel_id: KernelId, container_id: ContainerId | None) -> None:
    job = _jobs.get(kernel_id)
    if job is not None:
        _kill(job)
        if job.task is not None and not job.task.done():
            job.task.cancel()  # no result for a destroyed job, as with a killed container
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(job.task), 2.0)
        await _ship_logs(self, kernel_id, job)
        # A stopped container keeps its log until the agent removes it, and get_logs reads it until the
        # kernel leaves the agent's registry (then the agent raises KeyError: HTTP 500 until TERMINATED).
        # So the output stays readable here; it is forgotten well after the kernel is gone.
        asyncio.get_running_loop().call_later(_FORGET_AFTER, _forget, kernel_id, job)
    await _original_destroy_kernel(self, kernel_id, container_id)


def _forget(kernel_id: KernelId, job: _Job) -> None:
    """Drop a destroyed kernel's job, unless a rerun of the kernel has replaced it meanwhile."""
    if _jobs.get(kernel_id) is job:
        del _jobs[kernel_id]


async def enumerate_containers(
    self: DummyAgent, status_filter: frozenset[ContainerStatus] = ACTIVE_STATUS_SET
) -> Sequence[tuple[KernelId, Container]]:
    if ContainerStatus.RUNNING not in status_filter:
        return []
    return [
        (
            kernel_id,
            Container(
                id=ContainerId(kernel.container_id or _log_container_id(kernel_id)),
                status=ContainerStatus.RUNNING,
                image=str(kernel.image),
                labels={
                    LabelName.KERNEL_ID: str(kernel_id),
                    LabelName.SESSION_ID: str(kernel.session_id),
                    LabelName.AGENT_ID: str(self.id),
                },
                ports=[],
                backend_obj=None,
            ),
        )
        for kernel_id, kernel in list(self.kernel_registry.items())
    ]


def _patch(cls: type, name: str, fn: Callable[..., Any]) -> None:
    if not callable(getattr(cls, name, None)):
        raise RuntimeError(f"{cls.__name__}.{name} not found: this launcher is written for 26.9.6")
    setattr(cls, name, fn)


def main() -> None:
    _patch(DummyAgent, "execute", execute)
    _patch(DummyAgent, "destroy_kernel", destroy_kernel)
    _patch(DummyAgent, "enumerate_containers", enumerate_containers)
    _patch(DummyKernel, "get_logs", get_logs)
    from ai.backend.cli.__main__ import main as cli_main

    sys.argv = ["backend.ai", "ag", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    main()
