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
Item 6, part 3: N deferred sessions in one event loop, as a triggerer holds them. The sessions are made as
item 3 makes them (:func:`benchmarks.scale.defer_first`, :func:`benchmarks.scale.create_like`), but each
trigger starts in this process's trigger loop as soon as its session exists, and the lag, the requests and
the event streams are counted at the proxy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from benchmarks import jobs
from benchmarks.common import set_connection
from benchmarks.floor.config import Sizes, mode_kwargs, mode_label
from benchmarks.floor.lag_run import JobResult, fill_server_times
from benchmarks.release_gate import ReleaseGate
from benchmarks.scale import MadeSession, create_like, defer_first

if TYPE_CHECKING:
    import concurrent.futures
    import random

    from benchmarks.counting_proxy import ProxyProcess
    from benchmarks.floor.observer import StreamObserver
    from benchmarks.floor.targets import Target


@dataclass
class ScaleRun:
    mode: bool | None
    results: list[JobResult] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    began: float = 0.0
    released: float = 0.0  # the jobs were let go (all sessions running)
    ended: float = 0.0
    create_seconds: float = 0.0
    error: str | None = None
    ending_stats: dict[str, Any] = field(default_factory=dict)


def _is_local(endpoint: str) -> bool:
    return (urlsplit(endpoint).hostname or "") in ("127.0.0.1", "localhost", "::1")


def scale_run(
    target: Target,
    proxy: ProxyProcess,
    mode: bool | None,
    sizes: Sizes,
    loop: jobs.TriggerLoop,
    rng: random.Random,
    observer: StreamObserver | None,
) -> ScaleRun:
    """
    N triggers in the one loop, each started as soon as its session is created (as after a deferral).

    On a local server the jobs wait at a release gate until every session runs, then end at random within
    ``scale_spread`` seconds (creating hundreds of sessions loads a manager for minutes); elsewhere each job
    just sleeps that long after it starts.
    """
    from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

    label = f"scale-{mode_label(mode).split()[0]}"
    conn_id = f"bfloor_{label.replace('-', '_')}"
    set_connection(conn_id, target.connection_json(proxy.listen(label)))
    run = ScaleRun(mode)
    gate = ReleaseGate() if _is_local(target.endpoint) else None
    durations = [round(rng.uniform(1.0, sizes.scale_spread), 2) for _ in range(sizes.scale)]
    run.results = [JobResult("deferrable", mode, d) for d in durations]

    def command(duration: float) -> str:
        job = f"sleep {duration}; echo floor-scale-done"
        return gate.command(job) if gate is not None else job

    try:
        run.began = time.time()
        # The first through the operator: its serialized trigger is what every trigger gets (defaults).
        first = run.results[0]
        first.started = time.time()
        ctx = jobs.new_context("floor_scale")
        _, template, spec = defer_first(command(durations[0]), conn_id, ctx, **mode_kwargs(mode))
        first.session_id = template["session_id"]
        futures: dict[int, concurrent.futures.Future[tuple[Any, float]]] = {
            0: loop.submit(BackendAISessionTrigger(**template))
        }

        def created(made: MadeSession) -> None:  # in the trigger loop: the trigger starts at once
            r = run.results[made.index + 1]
            r.started, r.session_id = made.asked_at, made.session_id
            trigger = BackendAISessionTrigger(
                **{**template, "session_id": made.session_id, "session_name": made.name}
            )
            futures[made.index + 1] = loop.submit(trigger)

        created_at = time.monotonic()
        commands = [command(d) for d in durations[1:]]
        loop.run(create_like(spec, conn_id, commands, prefix="floor", parallel=16, on_created=created), 900)
        run.create_seconds = time.monotonic() - created_at
        if gate is not None:
            waiting = gate.wait_blocked(sizes.scale, timeout=600)
            if waiting < sizes.scale:
                run.error = f"only {waiting} of {sizes.scale} jobs reached the release gate in time"
            run.released = gate.release()
        else:
            run.released = run.began
        deadline = time.monotonic() + sizes.scale_spread + 300
        for i, future in futures.items():
            r = run.results[i]
            try:
                event, r.detected = future.result(max(1.0, deadline - time.monotonic()))
                r.outcome = str(event.payload.get("status"))
            except Exception as exc:
                r.error = f"{type(exc).__name__}: {exc}"
        run.ended = time.time()
    finally:
        if gate is not None:
            gate.close()
    run.stats = proxy.stats(run.began, run.ended).get(label, {})
    run.ending_stats = proxy.stats(run.released, run.ended).get(label, {})
    fill_server_times(target, run.results, observer)
    return run
