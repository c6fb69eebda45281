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
"""Shared pieces: paths, the Airflow environment, statistics, result rows and the machine description."""

from __future__ import annotations

import atexit
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
EMULATOR_DIR = REPO_ROOT / "emulator"
IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"
DEFAULT_CONN_ID = "backend_ai_default"
OTHER_CONN_ID = "backend_ai_bench_other"


# -- environment ------------------------------------------------------------------------------------------


def airflow_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a process that imports Airflow: a throw-away AIRFLOW_HOME, no examples, quiet logs."""
    env = dict(os.environ if base is None else base)
    if "BENCH_AIRFLOW_HOME" not in env:
        home = tempfile.mkdtemp(prefix="bench-airflow-home-")
        atexit.register(shutil.rmtree, home, ignore_errors=True)  # removed by the process that made it
        env["BENCH_AIRFLOW_HOME"] = home
    env["AIRFLOW_HOME"] = env["BENCH_AIRFLOW_HOME"]
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    env.setdefault("PYTHONPATH", "")
    paths = [str(REPO_ROOT), str(EMULATOR_DIR)]
    env["PYTHONPATH"] = os.pathsep.join([*paths, *[p for p in env["PYTHONPATH"].split(os.pathsep) if p]])
    return env


def prepare_this_process() -> None:
    """Apply :func:`airflow_env` to this process; call before anything imports Airflow."""
    os.environ.update(airflow_env())
    for path in (str(EMULATOR_DIR), str(REPO_ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)


def set_connection(conn_id: str, conn_json: str) -> None:
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = conn_json


def quiet_airflow_logging() -> None:
    """Keep the operators' INFO lines (one per status change, the job log) off the console."""
    import logging

    for name in ("airflow", "airflow.task", "airflow.triggers", "airflow.providers"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # "execute cannot be called outside of the Task Runner!": true here, and said once per job
    logging.getLogger("airflow.task.operators").setLevel(logging.ERROR)


def raise_fd_limit() -> int:
    """Raise this process's ``RLIMIT_NOFILE`` to its hard limit (hundreds of sessions, streams, sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes() -> int:
    """This process's resident memory, from ``/proc/self/statm``."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- the provider's poll schedule -------------------------------------------------------------------------


def read_times(poll_interval: float, until: float) -> list[float]:
    """
    When the provider reads the status, in seconds after its first read, up to ``until``.

    Taken from the provider's own ``poll_delays`` so that the notes follow the code as it changes.
    """
    from airflow.providers.backend.ai._watch.step import poll_delays

    delays = poll_delays(poll_interval)
    times, at = [0.0], 0.0
    while at < until:
        at += delays[min(len(times) - 1, len(delays) - 1)]
        times.append(at)
    return times


def ramp_seconds(poll_interval: float) -> float:
    """Seconds after its first read until the provider reads every ``poll_interval`` (end of the backoff)."""
    from airflow.providers.backend.ai._watch.step import poll_delays

    return sum(poll_delays(poll_interval)[:-1])


def fmt_times(times: list[float]) -> str:
    return ", ".join(f"{t:.3g}" for t in times)


# -- statistics -------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), as numpy's default."""
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def ms(seconds: float) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def sec(seconds: float, digits: int = 2) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds:.{digits}f} s"


# -- results ----------------------------------------------------------------------------------------------


@dataclass
class Check:
    """One measured value, with its budget if it has one (``ok`` None means "reported only")."""

    item: str
    metric: str
    value: str
    budget: str = ""
    ok: bool | None = None

    @property
    def verdict(self) -> str:
        return "info" if self.ok is None else ("pass" if self.ok else "**FAIL**")


@dataclass
class Section:
    """The outcome of one benchmark item: budget checks plus a detail table and notes."""

    number: int
    title: str
    checks: list[Check] = field(default_factory=list)
    table_header: list[str] = field(default_factory=list)
    table_rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    #: More tables after the main one: (title, header, rows).
    extra_tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)

    def check(self, metric: str, value: str, budget: str = "", ok: bool | None = None) -> Check:
        c = Check(f"{self.number}. {self.title}", metric, value, budget, ok)
        self.checks.append(c)
        return c

    @property
    def failed(self) -> bool:
        return self.error is not None or any(c.ok is False for c in self.checks)


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# -- machine ----------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_description() -> list[tuple[str, str]]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--", "src", "emulator")
    return [
        ("CPU", _cpu_model()),
        ("Cores (os.cpu_count)", str(os.cpu_count())),
        (
            "Usable cores (affinity)",
            str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else "?",
        ),
        ("RAM", _mem_total()),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Airflow", _version("apache-airflow")),
        ("apache-airflow-providers-common-compat", _version("apache-airflow-providers-common-compat")),
        ("backend.ai-client (SDK)", _version("backend.ai-client")),
        ("aiohttp", _version("aiohttp")),
        (
            "Provider source",
            f"git {commit}" + (" + uncommitted changes in src/ or emulator/" if dirty else ""),
        ),
        ("Load average at start (1/5/15 min)", " / ".join(f"{x:.2f}" for x in load)),
    ]


def dump_json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
