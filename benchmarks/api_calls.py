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
Item 5: the requests the server receives for one successful 10 s job, per route, sync and deferrable.

Each job runs against an emulator process of its own, so a server's whole request log is its job's.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

from airflow.providers.backend.ai._watch.step import FIRST_POLL_DELAY
from benchmarks import jobs
from benchmarks.common import Section, set_connection
from benchmarks.emulator_proc import EmulatorProcess

if TYPE_CHECKING:
    from benchmarks.emulator_proc import Request

COMMAND = "sleep 10; echo finished"
POLL = 15.0
#: The operator's first poll delay; two reads closer than this learn nothing new (the job was just created).
MIN_GAP = 0.9 * FIRST_POLL_DELAY  # the provider's first poll delay, less timing noise
ROUTES = ["root", "create", "gql", "logs", "destroy", "get_info", "status_history", "events"]


def _schedule_reads(elapsed: float, poll_interval: float) -> int:
    """Reads the provider's own backoff schedule makes for a job that ends ``elapsed`` s after its first read."""
    from airflow.providers.backend.ai._watch.step import poll_delays

    delays = poll_delays(poll_interval)
    at, reads = 0.0, 1
    while at < elapsed:
        at += delays[min(reads - 1, len(delays) - 1)]
        reads += 1
    return reads


def _one(emu: EmulatorProcess, conn_id: str, kind: str, **kwargs: Any) -> tuple[jobs.JobRun, list[Request]]:
    if kind == "sync":
        run_ = jobs.run_sync(COMMAND, poll_interval=POLL, conn_id=conn_id, **kwargs)
    else:
        loop = jobs.TriggerLoop()
        try:
            run_ = jobs.run_deferrable(COMMAND, loop, poll_interval=POLL, conn_id=conn_id, **kwargs)
        finally:
            loop.close()
        if not run_.deferred:
            raise RuntimeError("the deferrable job finished without deferring")
    return run_, emu.requests()


def _judge(
    section: Section, emu: EmulatorProcess, label: str, run_: jobs.JobRun, mine: list[Request], budgeted: bool
) -> Counter[str]:
    s = emu.session(run_.session_id)
    end = s.job_end
    if run_.result != "SUCCESS" or end is None:
        raise RuntimeError(f"{run_.kind} job did not succeed: {s.status} {s.result}")
    c = Counter(r.route or "?" for r in mine)
    reads = sorted(r.at for r in mine if r.route == "gql")
    after_end = [at for at in reads if at >= end]
    # the watcher's first read: the sync loop's first read, or the trigger's first read
    watcher_reads = reads[1:] if run_.kind == "deferrable" else reads
    # The backoff starts again at the first read that sees the job running (_watch/step.py).
    start = s.job_start
    seen_running = next((at for at in watcher_reads if start is not None and at >= start), watcher_reads[0])
    implied = (
        _schedule_reads(seen_running - watcher_reads[0], POLL)
        + _schedule_reads(end - seen_running, POLL)
        - 1
        + (1 if run_.kind == "deferrable" else 0)
    )
    checks = {
        "create 1": c["create"] == 1,
        "logs 1": c["logs"] == 1,
        "destroy 1": c["destroy"] == 1,
        "no get_info / status_history": c["get_info"] + c["status_history"] == 0,
        "at most one event stream": c["events"] <= 1,
        "exactly one status read after the job end": len(after_end) == 1,
        f"no two status reads < {FIRST_POLL_DELAY} s apart": all(
            b - a >= MIN_GAP for a, b in itertools.pairwise(reads)
        ),
        "status reads ≤ the backoff schedule's": len(reads) <= implied,
    }
    failed = [name for name, good in checks.items() if not good]
    section.check(
        f"{label}: requests for one 10 s job (poll_interval {POLL:g} s)",
        f"{sum(c.values())} total: "
        + ", ".join(f"{route} {c[route]}" for route in ROUTES if c[route])
        + f"; status reads {len(reads)} (schedule implies ≤ {implied}), {len(after_end)} after the job end"
        + (f"; broken: {', '.join(failed)}" if failed else ""),
        f"create 1, logs 1, destroy 1, ≤ 1 event stream, no other reads; status reads ≤ schedule, "
        f"none < {FIRST_POLL_DELAY} s apart, 1 after job end"
        if budgeted
        else "",
        (not failed) if budgeted else None,
    )
    gaps = [f"{b - a:.2f}" for a, b in itertools.pairwise(reads)]
    logs_at = [f"+{r.at - s.created_at:.2f}" for r in mine if r.route == "logs"]
    section.notes.append(
        f"{label}: status reads at +"
        + ", +".join(f"{at - s.created_at:.2f}" for at in reads)
        + f" s after the create (gaps {', '.join(gaps)} s); log reads at {', '.join(logs_at)} s; "
        f"job ended at +{end - s.created_at:.2f} s."
    )
    return c


def run(section: Section, emu: EmulatorProcess, *, quick: bool) -> None:
    """
    Each job gets an emulator process of its own, so that every request that server logs is that job's.

    ``GET /`` is unsigned and carries no access key, so a shared server could not attribute it. With one
    server per job the jobs can run side by side (they mostly wait), which keeps the item short.
    """
    # The "one log read" budget applies without live log streaming: streaming reads the log on purpose
    # (every status read on a worker, every fifth in a trigger); its cost is reported, not budgeted.
    variants: list[tuple[str, str, dict[str, object], bool]] = [
        ("sync", "sync, log_streaming=False", {"log_streaming": False}, True),
        ("deferrable", "deferrable, log_streaming=False", {"log_streaming": False}, True),
    ]
    if not quick:
        variants += [
            ("sync", "sync, operator defaults (log streaming)", {}, False),
            ("deferrable", "deferrable, operator defaults (log streaming)", {}, False),
        ]
    servers: list[EmulatorProcess] = []
    try:
        for i, _ in enumerate(variants):
            server = EmulatorProcess()
            servers.append(server)
            set_connection(f"bench_api_calls_{i}", server.connection_json())
        outcomes: list[tuple[jobs.JobRun, list[Request]] | BaseException | None] = [None] * len(variants)

        def worker(i: int) -> None:
            kind, _, kwargs, _ = variants[i]
            try:
                outcomes[i] = _one(servers[i], f"bench_api_calls_{i}", kind, **kwargs)
            except BaseException as exc:
                outcomes[i] = exc

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(variants))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        columns: list[tuple[str, Counter[str]]] = []
        for i, (_, label, _, budgeted) in enumerate(variants):
            outcome = outcomes[i]
            if not isinstance(outcome, tuple):
                raise RuntimeError(f"{label}: {outcome!r}") from (
                    outcome if isinstance(outcome, BaseException) else None
                )
            run_, mine = outcome
            columns.append((label, _judge(section, servers[i], label, run_, mine, budgeted)))
    finally:
        for server in servers:
            server.stop()
    section.table_header = ["route", *(label for label, _ in columns)]
    seen = set().union(*(c for _, c in columns))
    for route in [*ROUTES, *sorted(seen - set(ROUTES))]:
        section.table_rows.append([route, *(str(c[route]) for _, c in columns)])
    section.table_rows.append(["total", *(str(sum(c.values())) for _, c in columns)])
    section.notes.append(
        "`root` is `GET /`, the SDK's API-version negotiation on every session open: one per `get_conn()` on "
        "the worker and one per trigger run (deferrable: `execute`, the trigger and `execute_complete`), and one "
        "for the event stream's own session (`events`: one stream per connection and process, shared by every "
        "waiter; here each job has a process of its own). "
        "Each job ran against an emulator process of its own (side by side), so all requests a server logged "
        "are its job's."
    )
