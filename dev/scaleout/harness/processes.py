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
"""The deployment's processes: the process table, killing a component's group, whether it lives, memory."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from pathlib import Path

from harness.deployment import DIR, log, pid_of


def processes() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, pgid, rss bytes) of every process."""
    out = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            out[int(proc.name)] = (int(fields[1]), int(fields[2]), int(fields[21]) * page)
        except (OSError, ValueError, IndexError):
            continue
    return out


def tree(pgids: set[int], procs: dict[int, tuple[int, int, int]]) -> set[int]:
    """Every process in the groups ``pgids`` and all their descendants (task processes start own sessions)."""
    keep = {pid for pid, (_, pgid, _) in procs.items() if pgid in pgids}
    changed = True
    while changed:
        new = {pid for pid, (ppid, _, _) in procs.items() if ppid in keep and pid not in keep}
        keep |= new
        changed = bool(new)
    return keep


def kill_group(name: str) -> None:
    """SIGKILL the component's process group and every descendant: what a dead host or container does."""
    pgid = pid_of(name)
    victims = tree({pgid}, processes())
    log(f"SIGKILL process group {pgid} ({name}) and its descendants: {len(victims)} processes")
    os.killpg(pgid, signal.SIGKILL)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    """True while the process group has a member that is not a zombie."""
    for pid, (_, group, _) in processes().items():
        if group != pgid:
            continue
        with contextlib.suppress(OSError):
            if (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return True
    return False


def triggerer_of_job(job_id: int) -> str:
    """
    The triggerer process (by name) that runs as TriggererJob ``job_id``.

    The job table has no pid; a triggerer holds its triggers' log files ``*.trigger.<job id>.log`` open.
    """
    pattern = re.compile(r"\.trigger\.(\d+)\.log$")
    for name in ("triggerer1", "triggerer2"):
        pgid = pid_of(name)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if os.getpgid(int(proc.name)) != pgid:
                    continue
                for fd in (proc / "fd").iterdir():
                    m = pattern.search(os.readlink(fd))
                    if m and int(m.group(1)) == job_id:
                        return name
            except OSError:
                continue
    raise RuntimeError(f"no triggerer process holds a log of TriggererJob {job_id}")


def deployment_rss() -> int:
    """Sum of RSS (bytes) of the deployment's process groups and their descendants (incl. task processes)."""
    pgids = set()
    for f in (DIR / "pids").glob("*.pid"):
        with contextlib.suppress(ValueError):
            pgids.add(int(f.read_text()))
    procs = processes()
    return sum(procs[pid][2] for pid in tree(pgids, procs))


class MemorySampler(threading.Thread):
    """Samples :func:`deployment_rss` every second: ``peak`` since the last :meth:`reset`, ``overall`` peak."""

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0
        self.overall = 0
        self.stop = threading.Event()

    def reset(self) -> None:
        self.peak = 0

    def sample(self) -> None:
        with contextlib.suppress(OSError):
            rss = deployment_rss()
            self.peak = max(self.peak, rss)
            self.overall = max(self.overall, rss)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)
