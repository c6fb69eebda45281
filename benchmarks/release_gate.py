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
A FIFO that batch jobs block on until the benchmark lets them all go at once (items 3 and 6).

A job ``read -r _ < FIFO; ...`` sleeps in ``open``/``read`` (no CPU) until someone opens the FIFO for
writing and closes it, which gives every reader end-of-file together. So hundreds of sessions can be
created and running before any of them ends. Works where the jobs run on this host: the emulator runs them
as this user, the real-cluster harness's dummy agent as ``nobody`` (hence the open permissions).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time


def release(path: str) -> float:
    """Let every job blocked on the FIFO at ``path`` go on; returns when (Unix time)."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # readers are there: this does not block
    released = time.time()
    os.close(fd)
    return released


def processes_waiting_on(path: str) -> int:
    """
    Processes blocked opening the FIFO at ``path``: their command line names it and the kernel has them
    asleep in the FIFO's open (``wchan`` ``wait_for_partner``), so a release now lets every one of them go.

    A process whose command line names the path may not have reached its ``open`` yet: counting those would
    release before them (a running process's ``wchan`` reads "0").
    """
    count, needle = 0, path.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle not in f.read():
                    continue
            with open(f"/proc/{entry}/wchan") as f:
                wchan = f.read().strip()
        except OSError:
            continue
        if wchan == "wait_for_partner":
            count += 1
    return count


class ReleaseGate:
    """The FIFO in a directory of its own; :meth:`close` lets any job still blocked go and removes both."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-release-")
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "go")
        os.mkfifo(self.path, 0o666)
        os.chmod(self.path, 0o666)  # whatever the umask: the jobs may run as another user

    def command(self, then: str) -> str:
        """The job's command: block on the gate, then run ``then``."""
        return f"read -r _ < {self.path}; {then}"

    def wait_blocked(self, count: int, timeout: float) -> int:
        """Wait until ``count`` jobs block on the gate or ``timeout`` passes; returns how many do."""
        deadline = time.monotonic() + timeout
        while True:
            waiting = processes_waiting_on(self.path)
            if waiting >= count or time.monotonic() > deadline:
                return waiting
            time.sleep(0.5)

    def release(self) -> float:
        return release(self.path)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.release()  # nobody stays blocked
        shutil.rmtree(self.dir, ignore_errors=True)
