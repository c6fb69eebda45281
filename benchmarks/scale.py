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
Item 3: N triggers in one asyncio loop against N sleeping jobs (three processes: emulator, setup, triggerer).

The emulator runs in its own process (:mod:`benchmarks.emulator_server`), so its CPU and memory stay out
of the triggerer's measurements; the request rate is read from its request log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import jobs
from benchmarks.common import (
    REPO_ROOT,
    Section,
    airflow_env,
    percentile,
    ramp_seconds,
    sec,
    set_connection,
)
from benchmarks.emulator_proc import EmulatorProcess
from benchmarks.release_gate import ReleaseGate

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

LAG_BUDGET = 0.100
MEMORY_BUDGET_MB = 150.0
RATE_FACTOR = 1.2
MB = 1024 * 1024


SCALE_CONN_ID = "bench_scale"


# -- N deferred sessions, as a triggerer gets them (items 3 and 6) -------------------------------------------


def defer_first(
    command: str, conn_id: str, ctx: dict[str, Any], **kwargs: Any
) -> tuple[str, dict[str, Any], Any]:
    """
    The first session, through ``BackendAIRunBatchOperator(deferrable=True).execute()``: its serialized
    trigger (classpath and arguments, the operator's defaults) is what every trigger of the run reuses, and
    its session spec what the other sessions copy. Returns ``(classpath, trigger kwargs, spec)``.
    """
    from airflow.providers.common.compat.sdk import TaskDeferred

    op = jobs.make_operator(command, deferrable=True, conn_id=conn_id, **kwargs)
    try:
        op.execute(ctx)
        raise RuntimeError("the operator did not defer")
    except TaskDeferred as deferred:
        classpath, template = deferred.trigger.serialize()
    return classpath, template, op.session_spec(ctx)


@dataclass(frozen=True)
class MadeSession:
    index: int  # in the ``commands`` given to :func:`create_like`
    session_id: str
    name: str
    asked_at: float  # the create request began (Unix time)


async def create_like(
    spec: Any,
    conn_id: str,
    commands: Sequence[str],
    *,
    prefix: str,
    parallel: int,
    on_created: Callable[[MadeSession], None] | None = None,
    **changes: Any,
) -> list[MadeSession]:
    """
    One session per command, copies of ``spec`` (own name, command and tag; ``changes`` on top), made with
    the hook's async create, ``parallel`` at a time; ``on_created`` hears of each as soon as it exists.
    """
    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

    hook = BackendAIHook(backend_ai_conn_id=conn_id)
    limit = asyncio.Semaphore(parallel)

    async def one(i: int) -> MadeSession:
        async with limit:
            asked_at = time.time()
            copy = dataclasses.replace(
                spec,
                name=f"{prefix}-{uuid.uuid4().hex[:16]}",
                command=commands[i],
                tag=f"airflow-{uuid.uuid4().hex}",
                **changes,
            )
            made = MadeSession(i, (await hook.a_create_batch_session(copy)).session_id, copy.name, asked_at)
        if on_created is not None:
            on_created(made)
        return made

    async with hook.get_async_conn():
        return list(await asyncio.gather(*(one(i) for i in range(len(commands)))))


def make_sessions(n: int, command: str) -> dict[str, Any]:
    """
    Make the N sessions of item 3, in this process (Airflow and the SDK are loaded here already): the first
    deferred by the operator, the other N-1 alike, 32 at a time, to keep the setup short.
    """
    classpath, template, spec = defer_first(command, SCALE_CONN_ID, jobs.context("scale__template"))
    made = asyncio.run(
        create_like(
            spec,
            SCALE_CONN_ID,
            [command] * (n - 1),
            prefix="scale",
            parallel=32,
            batch_timeout=1800,  # a safety net only: the benchmark releases the jobs long before
        )
    )
    sessions = [(template["session_id"], template["session_name"])]
    sessions += [(m.session_id, m.name) for m in made]
    return {"classpath": classpath, "template": template, "sessions": sessions}


def run(section: Section, *, quick: bool) -> None:
    n = 200 if quick else 1000
    gate = ReleaseGate()  # the jobs sleep until the triggerer process lets them go
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, EmulatorProcess() as emu:
        set_connection(SCALE_CONN_ID, emu.connection_json())
        env = airflow_env()
        plan_path, measure_out = str(Path(tmp) / "plan.json"), str(Path(tmp) / "measure.json")

        # The triggerer process starts at once: it imports Airflow and the SDK while the sessions are made.
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.scale_worker",
                "--plan",
                plan_path,
                "--fifo",
                gate.path,
                "--out",
                measure_out,
            ],
            cwd=str(REPO_ROOT),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            t0 = time.monotonic()
            plan = make_sessions(n, gate.command("echo released"))
            # Steady state starts once the backoff is over (37.4 s after a trigger starts, at the default
            # 15 s poll_interval): the full run waits the minute, the quick one (CI, < 3 min in all)
            # 45 s; a few seconds more if the provider's schedule grows. The window holds one (quick) or two
            # (full) reads per trigger.
            poll = float(plan["template"].get("poll_interval", 15))
            ramp = ramp_seconds(poll)
            plan["warmup"] = warmup = max(45.0 if quick else 60.0, ramp + 7.5)
            plan["window"] = window = poll * (1 if quick else 2)
            deadline = time.monotonic() + 120
            while emu.stats()["jobs"] < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {emu.stats()['jobs']} of {n} jobs run: {emu.status_counts()}")
                time.sleep(0.1)
            setup_seconds = time.monotonic() - t0
            emu_before = emu.stats()
            with open(plan_path + ".tmp", "w") as f:
                json.dump(plan, f)
            os.replace(plan_path + ".tmp", plan_path)
            _, stderr = child.communicate(timeout=warmup + window + 2 * poll + 300)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            gate.close()
        if child.returncode != 0:
            raise RuntimeError(f"the triggerer process failed ({child.returncode}): {stderr[-3000:]}")
        emu_after = emu.stats()
        with open(measure_out) as f:
            m = json.load(f)
        requests = emu.requests()
        sessions = {s.id: s for s in emu.sessions()}

    w0, w1 = m["window"]
    started, released = m["started"], m["released"]

    # loop lag
    steady_lags = [lag for t, lag in m["lags"] if w0 <= t <= w1]
    ramp_lags = [lag for t, lag in m["lags"] if started <= t < w0]
    end_lags = [lag for t, lag in m["lags"] if t >= released]
    lag_p99 = percentile(steady_lags, 99)
    section.check(
        f"event-loop lag p99 in steady state ({window:g} s window from {warmup:g} s after the triggers started)",
        f"{lag_p99 * 1000:.1f} ms (max {max(steady_lags) * 1000:.1f} ms, {len(steady_lags)} ticks)",
        f"< {LAG_BUDGET * 1000:.0f} ms",
        lag_p99 < LAG_BUDGET,
    )

    # memory and sockets
    base = m["base"]
    steady_rss = m["steady"]["rss"]
    added = (steady_rss - base["rss"]) / MB
    triggers_only = (steady_rss - m["after_sdk_rss"]) / MB
    peak = (max(s["rss"] for s in m["samples"]) - base["rss"]) / MB
    section.check(
        f"resident memory added by {n} triggers in steady state (incl. the one-time SDK import)",
        f"{added:.1f} MB (SDK import {(m['after_sdk_rss'] - base['rss']) / MB:.1f} MB, triggers "
        f"{triggers_only:.1f} MB = {triggers_only * 1024 / n:.0f} KiB each; peak {peak:.1f} MB)",
        f"< {MEMORY_BUDGET_MB:.0f} MB",
        added < MEMORY_BUDGET_MB,
    )
    steady_sockets = m["steady"]["sockets"] - base["sockets"]
    max_sockets = max(s["sockets"] for s in m["samples"]) - base["sockets"]
    section.check(
        "open sockets added (fds of type socket in /proc/self/fd), steady / max",
        f"{steady_sockets} / {max_sockets}",
    )

    # request rate at the server
    in_window = [r for r in requests if w0 <= r.at <= w1]
    rate = len(in_window) / (w1 - w0)
    limit = n / poll * RATE_FACTOR
    by_route = Counter(r.route for r in in_window)
    section.check(
        f"requests/s reaching the server in steady state (poll_interval {poll:g} s)",
        f"{rate:.1f}/s (" + ", ".join(f"{k} {v / (w1 - w0):.1f}/s" for k, v in by_route.most_common()) + ")",
        f"≤ {n} / {poll:g} x {RATE_FACTOR} = {limit:.0f}/s",
        rate <= limit,
    )
    bins = Counter(int(r.at - started) for r in requests if started <= r.at < w0)
    peak_rate = max(bins.values()) if bins else 0
    steady_bins = Counter(int(r.at - w0) for r in in_window)
    steady_peak = max(steady_bins.values()) if steady_bins else 0
    busy_seconds = sum(1 for v in steady_bins.values() if v >= 0.1 * n)
    section.check(
        "steady state: busiest second at the server (the triggers' reads come in bursts, not evenly)",
        f"{steady_peak} requests; {busy_seconds} of {int(w1 - w0)} s had ≥ {int(0.1 * n)} requests",
    )

    # events
    events = m["events"]
    statuses = Counter(status for _, status in events.values())
    ok_events = len(events) == n and statuses.get("SUCCESS") == n and not m["pending"]
    section.check(
        "events yielded (all for a job that ended with `SUCCESS`)",
        f"{len(events)} of {n} ({', '.join(f'{k} {v}' for k, v in statuses.items())}; "
        f"{m['pending']} still pending, {m['error_count']} errors)",
        f"{n} SUCCESS",
        ok_events,
    )
    job_ends = {sid: sessions[sid].job_end for sid in events if sid in sessions and sessions[sid].job_end}
    waits = [events[sid][0] - end for sid, end in job_ends.items()]
    last_end = max(job_ends.values()) if job_ends else float("nan")
    first_end = min(job_ends.values()) if job_ends else float("nan")
    last_event = max(at for at, _ in events.values()) if events else float("nan")
    section.check(
        "time until all events are yielded, from the release of the jobs",
        f"{sec(last_event - released, 1)} (jobs ended within {sec(last_end - first_end, 2)}; last job end → last "
        f"event {sec(last_event - last_end, 1)}; per trigger job end → event p50 {sec(percentile(waits, 50), 1)}, "
        f"p95 {sec(percentile(waits, 95), 1)}, max {sec(max(waits) if waits else float('nan'), 1)})",
    )

    section.table_header = [
        "phase",
        "duration",
        "loop lag p50 / p99 / max",
        "requests/s at the server",
        "RSS added (max)",
        "sockets (max)",
    ]

    def phase_samples(a: float, b: float) -> list[dict]:
        inside = [s for s in m["samples"] if a <= s["t"] <= b]
        return inside or [min(m["samples"], key=lambda s: abs(s["t"] - a))]

    def row(label: str, a: float, b: float, lags: list[float]) -> list[str]:
        reqs = sum(1 for r in requests if a <= r.at <= b)
        ss = phase_samples(a, b)
        rss = max(s["rss"] for s in ss)
        socks = max(s["sockets"] for s in ss)
        return [
            label,
            sec(b - a, 1),
            " / ".join(f"{percentile(lags, q) * 1000:.1f}" for q in (50, 99))
            + f" / {max(lags, default=0) * 1000:.1f} ms",
            f"{reqs / max(b - a, 1e-9):.1f}",
            f"≤ {(rss - base['rss']) / MB:.1f} MB",
            f"≤ {socks - base['sockets']}",
        ]

    idle = [lag for t, lag in m["lags"] if t < started]
    section.table_rows = [
        row("idle loop, before the triggers start", m["samples"][0]["t"], started - 1e-3, idle),
        row(
            f"ramp: triggers start, backoff 0.5 s → {poll:g} s (peak {peak_rate} req/s in one second)",
            started,
            w0,
            ramp_lags,
        ),
        row("steady state (budgeted)", w0, w1, steady_lags),
        row("jobs released → all events yielded", released, m["all_done"], end_lags),
    ]
    worst = sorted(m["lags"], key=lambda tl: tl[1], reverse=True)[:3]
    pauses = m.get("gc_pauses", [])
    section.notes.append(
        "Largest loop lags: "
        + ", ".join(f"{lag * 1000:.0f} ms at +{t - started:.1f} s" for t, lag in worst)
        + f" after the triggers started (window +{w0 - started:.0f}…+{w1 - started:.0f} s, release "
        f"+{released - started:.1f} s). Garbage-collector pauses ≥ 5 ms: {len(pauses)}"
        + (
            ", longest "
            + ", ".join(
                f"{p * 1000:.0f} ms (gen {g}) at +{t - started:.1f} s"
                for t, g, p in sorted(pauses, key=lambda x: x[2], reverse=True)[:3]
            )
            if pauses
            else ""
        )
        + "."
    )
    section.notes.append(
        f"{n} sessions made in {sec(setup_seconds, 1)} (the first by `BackendAIRunBatchOperator(deferrable=True)."
        f"execute()`, whose serialised trigger arguments every trigger reuses: "
        f"{json.dumps({k: v for k, v in m['trigger_kwargs'].items() if k not in ('startup_deadline', 'end_deadline')})}). "
        f"Each job blocks reading a FIFO (no CPU) until the triggerer process opens and closes it for writing at "
        f"the end of the window. RSS added and sockets are over the baseline taken with Airflow and the provider "
        f"imported and the SDK not yet ({base['rss'] / MB:.0f} MB RSS); "
        f"importing the SDK took {sec(m['sdk_import_seconds'], 2)}. Ticker: `asyncio.sleep({0.01})` in a loop, lag = "
        f"overshoot. The emulator process used {emu_after['cpu'] - emu_before['cpu']:.1f} s of CPU during the "
        f"run and peaked at {emu_after['rss'] / MB:.0f} MB RSS (its own, not counted). RLIMIT_NOFILE raised to "
        f"{m['fd_limit']}. Trigger log lines are at WARNING level (a real triggerer writes them to the task logs)."
    )
