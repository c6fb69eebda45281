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
Item 6, part 1, the lag: N jobs of random 1-3 s per path and event-stream mode, all side by side, each timed
from its end (server side) to the provider knowing it. One job through one path (:func:`run_path`) and the
server-side times (:func:`fill_server_times`) serve the rate and the scale runs too.
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchmarks import jobs
from benchmarks.common import set_connection
from benchmarks.floor.config import JOB_DEADLINE, LAG_CONN, PATHS, Sizes, mode_kwargs

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    from benchmarks.floor.observer import StreamObserver
    from benchmarks.floor.targets import Target


@dataclass
class JobResult:
    path: str
    mode: bool | None
    duration: float  # the job's sleep
    session_id: str | None = None
    started: float = 0.0
    detected: float | None = None  # sync wait returned / trigger yielded / sensor returned
    returned: float | None = None  # the task's work returned (execute / execute_complete)
    outcome: str = ""
    error: str | None = None
    job_end: float | None = None
    knew: float | None = None  # the manager had the result (TERMINATING)
    event_seen: float | None = None  # the job-end event reached the reference observer

    @property
    def lag(self) -> float | None:
        if self.detected is None or self.job_end is None:
            return None
        return self.detected - self.job_end


def run_path(
    path: str,
    mode: bool | None,
    command: str,
    conn_id: str,
    loop: jobs.TriggerLoop,
    poll_interval: float,
    result: JobResult,
    on_created: Callable[[str], None] | None = None,
    deadline: float = JOB_DEADLINE,
) -> None:
    """One job through one path (:mod:`benchmarks.jobs`), in the calling thread (a worker); fills ``result``."""
    kwargs = mode_kwargs(mode)
    ctx = jobs.new_context(f"floor_{path}")

    def created(session_id: str) -> None:
        result.session_id = session_id
        if on_created is not None:
            on_created(session_id)

    try:
        if path == "sync":  # the session id comes from XCom, by a thread: only when asked for
            run = jobs.run_sync(
                command,
                poll_interval=poll_interval,
                conn_id=conn_id,
                ctx=ctx,
                on_created=created if on_created is not None else None,
                **kwargs,
            )
        elif path == "deferrable":
            run = jobs.run_deferrable(
                command,
                loop,
                poll_interval=poll_interval,
                conn_id=conn_id,
                ctx=ctx,
                on_created=created,
                timeout=deadline,
                **kwargs,
            )
        elif path == "sensor":  # the sensor's poke_interval: the operator's poll_interval
            run = jobs.run_sensor(
                command,
                poke_interval=poll_interval,
                timeout=deadline,
                conn_id=conn_id,
                ctx=ctx,
                on_created=created,
                **kwargs,
            )
        else:
            raise ValueError(path)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {str(exc)[:300]}"
        result.session_id = result.session_id or jobs.pushed_session_id(ctx)
        return
    result.session_id, result.outcome = run.session_id, run.result
    result.started, result.detected, result.returned = run.started, run.detected, run.done


def fill_server_times(target: Target, results: list[JobResult], observer: StreamObserver | None) -> None:
    """Each job's end, when the manager had its result, and when its end event reached the observer."""
    ids = [r.session_id for r in results if r.session_id]
    ends, knew = target.job_ends(ids), target.manager_knew(ids)
    seen = observer.arrived if observer is not None else {}
    for r in results:
        if r.session_id:
            r.job_end, r.knew = ends.get(r.session_id), knew.get(r.session_id)
            r.event_seen = seen.get(r.session_id)


def lag_runs(
    target: Target,
    modes: list[bool | None],
    sizes: Sizes,
    loop: jobs.TriggerLoop,
    poll_interval: float,
    rng: random.Random,
    observer: StreamObserver | None,
) -> list[JobResult]:
    """N jobs of random 1-3 s per path and mode, ``concurrency`` at a time per path and mode, all at once."""
    set_connection(LAG_CONN, target.connection_json())
    results: list[JobResult] = []
    pools = []
    futures = []
    for path in PATHS:
        for mode in modes:
            pool = concurrent.futures.ThreadPoolExecutor(
                sizes.concurrency, thread_name_prefix=f"floor-{path}"
            )
            pools.append(pool)
            for _ in range(sizes.jobs):
                duration = round(rng.uniform(1.0, 3.0), 2)
                result = JobResult(path, mode, duration)
                results.append(result)
                command = f"sleep {duration}; echo floor-job-done"
                stagger = rng.uniform(0.0, 2.0)

                def one(
                    r: JobResult = result,
                    c: str = command,
                    p: str = path,
                    m: bool | None = mode,
                    s: float = stagger,
                ) -> None:
                    time.sleep(s)
                    run_path(p, m, c, LAG_CONN, loop, poll_interval, r)

                futures.append(pool.submit(one))
    concurrent.futures.wait(futures, timeout=JOB_DEADLINE * math.ceil(sizes.jobs / sizes.concurrency) + 60)
    for pool in pools:
        pool.shutdown(wait=False, cancel_futures=True)
    fill_server_times(target, results, observer)
    return results
