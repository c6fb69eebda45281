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
"""Item 6 from end to end: the target, the proxy, the three parts in their order, the raw dump, the report."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import time

from benchmarks import jobs
from benchmarks.common import Section, ramp_seconds, set_connection
from benchmarks.floor.config import LAG_CONN, PATHS, events_supported, mode_label, say, sizes_for
from benchmarks.floor.lag_run import JobResult, lag_runs
from benchmarks.floor.observer import StreamObserver
from benchmarks.floor.rate_run import RateRun
from benchmarks.floor.report import report
from benchmarks.floor.scale_run import ScaleRun, scale_run
from benchmarks.floor.targets import make_target


def run(section: Section, *, quick: bool) -> None:
    """Item 6 (see :mod:`benchmarks.floor`); fills ``section``."""
    from benchmarks.counting_proxy import ProxyProcess

    rng = random.Random(6)
    with contextlib.suppress(ImportError):  # operators run outside a task runner here, on purpose
        from airflow.sdk.bases.operator import ExecutorSafeguard

        ExecutorSafeguard.test_mode = True
    supported = events_supported()
    modes: list[bool | None] = [True, False] if supported else [None]
    poll_interval = jobs.operator_default("poll_interval", 15.0)
    target = make_target()
    sizes = sizes_for(target.kind, quick)
    set_connection(LAG_CONN, target.connection_json())
    loop = jobs.TriggerLoop()
    observer = StreamObserver(target.endpoint, target.access_key, target.secret_key)
    section.notes.append(f"Target: {target.description}.")
    section.notes.append(f"Job end (server side): {target.job_end_source}.")
    if not supported:
        section.notes.append(
            "The provider has no `use_event_stream` parameter: its one configuration (polling) is measured, "
            "against the events-off budget."
        )
    phases = {p.strip() for p in os.environ.get("BENCH_FLOOR_PHASES", "lag,rate,scale").split(",")}
    lag_results: list[JobResult] = []
    rate: RateRun | None = None
    scale_runs: list[ScaleRun] = []
    try:
        with ProxyProcess(target.endpoint) as proxy:
            if "rate" in phases:  # long jobs first: their steady-state window passes while the lag runs go on
                rate_job = ramp_seconds(poll_interval) + sizes.rate_window + 120
                say(
                    f"{target.kind}: rate phase starts ({len(modes) * len(PATHS) * sizes.rate_sessions} long jobs)"
                )
                rate = RateRun(target, proxy, modes, sizes, loop, poll_interval, rate_job)
            try:
                if "lag" in phases:
                    say(f"lag runs: {sizes.jobs} jobs x {len(PATHS)} paths x {len(modes)} modes")
                    lag_results = lag_runs(target, modes, sizes, loop, poll_interval, rng, observer)
                if rate is not None:
                    last_start = rate.wait_running(timeout=180)
                    # Steady state: once the polling backoff (which restarts when the job starts) has reached
                    # the poll interval; event streams are open long before.
                    window_start = last_start + ramp_seconds(poll_interval) + 1.0
                    rate.window = (window_start, window_start + sizes.rate_window)
                    wait = rate.window[1] - time.time()
                    say(f"rate window {sizes.rate_window:.0f} s, ends in {max(wait, 0):.0f} s")
                    if wait > 0:
                        time.sleep(wait)
                    rate.collect()
            finally:
                if rate is not None:
                    rate.stop()
            done = (rate.session_ids if rate else []) + [r.session_id for r in lag_results if r.session_id]
            wait_no_live_sessions(done)
            scale_modes = (
                [m for m in modes if m in sizes.scale_modes or m is None] if "scale" in phases else []
            )
            for mode in scale_modes:
                say(f"{sizes.scale} deferred sessions in one loop, events {mode_label(mode)}")
                try:
                    scale_runs.append(scale_run(target, proxy, mode, sizes, loop, rng, observer))
                except Exception as exc:
                    scale_runs.append(ScaleRun(mode, error=f"{type(exc).__name__}: {exc}"))
                wait_no_live_sessions([r.session_id for r in scale_runs[-1].results if r.session_id], 180)
        note = target.cross_check([r.session_id for r in lag_results if r.session_id and r.job_end])
        if note:
            section.notes.append(note)
    finally:
        observer.close()
        loop.close()
        target.close()
    if os.environ.get("BENCH_FLOOR_RAW"):  # every job's times, for a closer look
        with open(os.environ["BENCH_FLOOR_RAW"], "w") as f:
            rows = [("lag", r) for r in lag_results] + [
                (f"scale-{mode_label(sr.mode)}", r) for sr in scale_runs for r in sr.results
            ]
            json.dump([{"part": part, **dataclasses.asdict(r)} for part, r in rows], f, indent=1)
    report(section, target, modes, sizes, poll_interval, lag_results, rate, scale_runs, supported)


def wait_no_live_sessions(session_ids: list[str], timeout: float = 120) -> None:
    """Wait until the given sessions are over (so the next part has the agent's slots and the quota)."""
    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

    hook = BackendAIHook(backend_ai_conn_id=LAG_CONN)
    deadline = time.monotonic() + timeout
    pending = list(session_ids)
    with hook.get_conn():
        while pending and time.monotonic() < deadline:
            pending = [
                s
                for s in pending
                if hook.get_session_facts(s).status not in ("TERMINATED", "CANCELLED", "ERROR")
            ]
            if pending:
                time.sleep(1.0)
