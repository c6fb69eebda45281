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
"""Item 6's section of the report: the lag, rate and scale tables, their budget checks, and the notes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from benchmarks.common import Section, percentile, ramp_seconds, sec
from benchmarks.floor.config import (
    LAG_P50_BUDGET,
    LAG_P95_BUDGET,
    PATHS,
    POLLING_SLACK,
    RATE_BUDGET,
    SCALE_P95_BUDGET,
    Sizes,
    mode_label,
)

if TYPE_CHECKING:
    from benchmarks.floor.lag_run import JobResult
    from benchmarks.floor.rate_run import RateRun
    from benchmarks.floor.scale_run import ScaleRun
    from benchmarks.floor.targets import Target


def _lag_cells(results: list[JobResult], lags: list[float]) -> list[str]:
    """The table cells shared by the lag rows: manager had the result, event at a client, lag p50/p95/max."""
    knew, seen = _knew(results), _seen(results)
    return [
        f"{sec(percentile(knew, 50))} / {sec(percentile(knew, 95))}",
        f"{sec(percentile(seen, 50))} / {sec(percentile(seen, 95))}",
        sec(percentile(lags, 50)),
        sec(percentile(lags, 95)),
        sec(max(lags) if lags else math.nan),
    ]


def _lags(results: list[JobResult]) -> list[float]:
    return [r.lag for r in results if r.lag is not None and r.error is None]


def _seen(results: list[JobResult]) -> list[float]:
    """How long after the job's end its end event reached the reference observer, per job."""
    return [r.event_seen - r.job_end for r in results if r.event_seen is not None and r.job_end is not None]


def _knew(results: list[JobResult]) -> list[float]:
    """How long after the job's end the manager had its result (TERMINATING), per job."""
    return [r.knew - r.job_end for r in results if r.knew is not None and r.job_end is not None]


def report(
    section: Section,
    target: Target,
    modes: list[bool | None],
    sizes: Sizes,
    poll_interval: float,
    lag_results: list[JobResult],
    rate: RateRun | None,
    scale_runs: list[ScaleRun],
    supported: bool,
) -> None:
    where = "real manager" if target.kind == "real" else "emulator"
    # Lag per path and mode.
    section.table_header = [
        "path",
        "events",
        "jobs",
        "manager had the result (p50 / p95)",
        "event at a client (p50 / p95)",
        "lag p50",
        "lag p95",
        "lag max",
        "task returns (p50)",
        "errors",
    ]
    for path in PATHS if lag_results else ():
        for mode in modes:
            rows = [r for r in lag_results if r.path == path and r.mode == mode]
            lags = _lags(rows)
            returns = [r.returned - r.job_end for r in rows if r.returned and r.job_end and not r.error]
            errors = [r.error for r in rows if r.error]
            section.table_rows.append(
                [
                    path,
                    mode_label(mode),
                    f"{len(lags)}/{len(rows)}",
                    *_lag_cells(rows, lags),
                    sec(percentile(returns, 50)),
                    str(len(errors)),
                ]
            )
            label = f"lag after job end, {path}, events {mode_label(mode)} ({where})"
            complete = len(lags) == len(rows) and not errors
            if mode is True:
                p50, p95 = percentile(lags, 50), percentile(lags, 95)
                section.check(
                    label,
                    f"p50 {sec(p50)} / p95 {sec(p95)}",
                    f"p50 ≤ {LAG_P50_BUDGET} s, p95 ≤ {LAG_P95_BUDGET} s",
                    complete and p50 <= LAG_P50_BUDGET and p95 <= LAG_P95_BUDGET,
                )
            else:
                worst = max(lags) if lags else math.nan
                section.check(
                    label,
                    f"max {sec(worst)} (p50 {sec(percentile(lags, 50))})",
                    f"every job ≤ poll_interval + {POLLING_SLACK:g} s = {poll_interval + POLLING_SLACK:g} s",
                    complete and worst <= poll_interval + POLLING_SLACK,
                )
            for e in errors[:3]:
                section.notes.append(f"Lag run error ({path}, events {mode_label(mode)}): {e}")
    # Requests per second per watched session.
    header = [
        "path",
        "events",
        "sessions",
        "window",
        "requests",
        "req/s per session",
        "streams open",
        "by route",
    ]
    rows_out = []
    window = sizes.rate_window
    for group in rate.groups if rate is not None else ():
        st = group.stats
        n = len(group.results)
        per = st.get("requests", 0) / window / n if n and st else math.nan
        rows_out.append(
            [
                group.path,
                mode_label(group.mode),
                str(n),
                f"{window:.0f} s",
                str(st.get("requests", "n/a")),
                f"{per:.3f}",
                str(st.get("peak_streams_in_window", "n/a")),
                ", ".join(f"{k} {v}" for k, v in sorted(st.get("routes", {}).items())) or "-",
            ]
        )
        default = group.mode is True or group.mode is None
        if default:
            section.check(
                f"requests/s per watched session, steady state, {group.path}, events {mode_label(group.mode)} ({where})",
                f"{per:.3f}",
                f"≤ {RATE_BUDGET}",
                bool(st) and per <= RATE_BUDGET,
            )
    if rows_out:
        section.extra_tables.append(
            (
                f"Requests per second per watched session in steady state (counted at the proxy, {window:.0f} s window "
                f"starting {ramp_seconds(poll_interval) + 1:.0f} s after the last job started)",
                header,
                rows_out,
            )
        )
    # 200 deferred sessions.
    header = [
        "events",
        "sessions",
        "manager had the result (p50 / p95)",
        "event at a client (p50 / p95)",
        "lag p50",
        "lag p95",
        "lag max",
        "requests/s, whole run (per session)",
        "requests/s while the jobs end (per session)",
        "streams open (peak)",
        "streams opened",
        "creates took",
        "errors",
    ]
    rows_out = []
    for sr in scale_runs:
        lags = _lags(sr.results)
        seconds = max(sr.ended - sr.began, 1e-9)
        st = sr.stats
        total = st.get("requests", 0) / seconds if st else math.nan
        ending_seconds = max(sr.ended - sr.released, 1e-9)
        ending = sr.ending_stats.get("requests", 0) / ending_seconds if sr.ending_stats else math.nan
        n = max(len(sr.results), 1)
        errors = [r.error for r in sr.results if r.error] + ([sr.error] if sr.error else [])
        rows_out.append(
            [
                mode_label(sr.mode),
                f"{len(lags)}/{len(sr.results) or sizes.scale}",
                *_lag_cells(sr.results, lags),
                f"{total:.1f} ({total / n:.3f})",
                f"{ending:.1f} ({ending / n:.3f})",
                str(st.get("peak_streams", "n/a")),
                str(st.get("streams_opened", "n/a")),
                sec(sr.create_seconds, 1),
                str(len(errors)),
            ]
        )
        for e in errors[:3]:
            section.notes.append(f"{sizes.scale}-session run error (events {mode_label(sr.mode)}): {e}")
        p95 = percentile(lags, 95)
        complete = bool(lags) and len(lags) == len(sr.results) and not errors
        if sr.mode is True:
            section.check(
                f"{sizes.scale} deferred sessions in one loop, events on ({where})",
                f"lag p95 {sec(p95)}, {st.get('peak_streams', 'n/a')} stream(s) open at most",
                f"p95 ≤ {SCALE_P95_BUDGET} s",
                complete and p95 <= SCALE_P95_BUDGET,
            )
        else:
            worst = max(lags) if lags else math.nan
            section.check(
                f"{sizes.scale} deferred sessions in one loop, events {mode_label(sr.mode)} ({where})",
                f"lag max {sec(worst)} (p95 {sec(p95)})",
                f"every job ≤ {poll_interval + POLLING_SLACK:g} s",
                complete and worst <= poll_interval + POLLING_SLACK,
            )
    if rows_out:
        section.extra_tables.append(
            (
                f"{sizes.scale} deferred sessions in one event loop (created 16 at a time, each trigger started "
                "at its create; on a local server the jobs wait until all run, then end at random within "
                f"{sizes.scale_spread:.0f} s; requests and streams counted at the proxy from the first create, "
                "or from the release, to the last event)",
                header,
                rows_out,
            )
        )
    section.notes.append(
        f"Lag = detected - job end; detected is when the operator's wait returned the job's end (sync; 'task "
        f"returns' is `execute()` returning, after the final log read and the destroy), the trigger yielded its "
        f"event (deferrable; 'task returns' is `execute_complete` returning), or the sensor's `execute()` returned "
        f"(poke mode). {sizes.jobs} jobs per path and mode (`sleep` 1-3 s, random), {sizes.concurrency} at a "
        f"time per path and mode, all paths and modes side by side; operator defaults (`poll_interval` "
        f"{poll_interval:g} s), the sensor's `poke_interval` set to the same."
    )
    if supported:
        section.notes.append("Events on = the default; off = `use_event_stream=False`.")
