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
Item 6, part 2: requests per second per watched session in steady state. Per path and event-stream mode a
few jobs that outlast the window are watched through a port of the counting proxy of their own, and the
requests that port saw are counted over a window after the polling backoff's ramp.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchmarks.common import set_connection
from benchmarks.floor.config import JOB_DEADLINE, LAG_CONN, PATHS, Sizes, mode_label
from benchmarks.floor.lag_run import JobResult, run_path

if TYPE_CHECKING:
    from benchmarks.counting_proxy import ProxyProcess
    from benchmarks.floor.targets import Target
    from benchmarks.jobs import TriggerLoop


@dataclass
class RateGroup:
    path: str
    mode: bool | None
    label: str
    conn_id: str
    session_ids: list[str] = field(default_factory=list)
    results: list[JobResult] = field(default_factory=list)
    futures: list[concurrent.futures.Future[None]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


class RateRun:
    """Long jobs watched through the proxy, one port per path and mode; counted over a steady-state window."""

    def __init__(
        self,
        target: Target,
        proxy: ProxyProcess,
        modes: list[bool | None],
        sizes: Sizes,
        loop: TriggerLoop,
        poll_interval: float,
        job_seconds: float,
    ) -> None:
        self.target, self.proxy, self.sizes, self.loop = target, proxy, sizes, loop
        self.poll_interval = poll_interval
        self.groups: list[RateGroup] = []
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            len(PATHS) * len(modes) * sizes.rate_sessions, thread_name_prefix="floor-rate"
        )
        command = f"sleep {int(job_seconds)}; echo floor-long-job-done"
        for path in PATHS:
            for mode in modes:
                label = f"rate-{path}-{mode_label(mode).split()[0]}"
                conn_id = f"bfloor_{label.replace('-', '_')}"
                set_connection(conn_id, target.connection_json(proxy.listen(label)))
                group = RateGroup(path, mode, label, conn_id)
                self.groups.append(group)
                for _ in range(sizes.rate_sessions):
                    result = JobResult(path, mode, job_seconds)
                    group.results.append(result)

                    def created(session_id: str, g: RateGroup = group) -> None:
                        with self._lock:
                            g.session_ids.append(session_id)

                    group.futures.append(
                        self._pool.submit(
                            run_path,
                            path,
                            mode,
                            command,
                            conn_id,
                            loop,
                            poll_interval,
                            result,
                            created,
                            job_seconds + JOB_DEADLINE,
                        )
                    )
        self.started = time.time()
        self.window: tuple[float, float] | None = None

    @property
    def session_ids(self) -> list[str]:
        with self._lock:
            return [s for g in self.groups for s in g.session_ids]

    def wait_running(self, timeout: float) -> float:
        """Block until every watched job runs; return when the last one started (Unix time)."""
        from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

        expected = len(self.groups) * self.sizes.rate_sessions
        hook = BackendAIHook(backend_ai_conn_id=LAG_CONN)
        deadline = time.monotonic() + timeout
        with hook.get_conn():
            while True:
                ids = self.session_ids
                if len(ids) == expected:
                    states = [hook.get_session_facts(s).status for s in ids]
                    if all(s == "RUNNING" for s in states):
                        started = self.target.running_since(ids)
                        return max(started.values()) if len(started) == len(ids) else time.time()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the rate-phase jobs did not all run within {timeout:.0f} s")
                time.sleep(1.0)

    def collect(self) -> None:
        assert self.window is not None
        stats = self.proxy.stats(*self.window)
        for group in self.groups:
            group.stats = stats.get(group.label, {})

    def stop(self) -> None:
        """Destroy the long jobs (the watchers then end with a failure, ignored) and wait for the watchers."""
        from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

        hook = BackendAIHook(backend_ai_conn_id=LAG_CONN)
        with hook.get_conn():
            for session_id in self.session_ids:
                with contextlib.suppress(Exception):
                    hook.destroy_session(session_id, forced=True)
        concurrent.futures.wait([f for g in self.groups for f in g.futures], timeout=120)
        self._pool.shutdown(wait=False, cancel_futures=True)
