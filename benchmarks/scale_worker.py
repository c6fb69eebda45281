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
Item 3's triggerer stand-in, a fresh process started by :mod:`benchmarks.scale`.

One asyncio loop runs N ``BackendAISessionTrigger`` (rebuilt from the operator's serialised trigger, one per
session) plus a ticker that measures scheduling delay and a sampler of RSS and open sockets. The jobs block
on a FIFO; at the end of the steady-state window this process releases them all and waits for every
trigger's event. Nothing else runs in this process, so its RSS and sockets are the triggers' (over the
baseline taken after Airflow and the provider are imported, before the SDK is).

The parent makes the sessions while this process imports Airflow; it then writes the plan file, which this
process waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import threading
import time
from typing import Any

from benchmarks.common import prepare_this_process, quiet_airflow_logging, raise_fd_limit, rss_bytes
from benchmarks.jobs import first_event
from benchmarks.release_gate import release

TICK = 0.01
SAMPLE_EVERY = 0.5


# -- measure ----------------------------------------------------------------------------------------------


def _fd_counts() -> tuple[int, int]:
    sockets = total = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        total += 1
        sockets += target.startswith("socket:")
    return sockets, total


def _wait_for_plan(path: str, timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"no plan at {path} after {timeout:g} s")
        time.sleep(0.05)
    with open(path) as f:
        return json.load(f)


def measure(plan_path: str, fifo: str, out_path: str) -> None:
    fd_limit = raise_fd_limit()
    prepare_this_process()
    import airflow.providers.backend.ai.triggers.backend_ai as trigger_module
    from airflow.providers.backend.ai._sdk.client import import_sdk

    quiet_airflow_logging()
    gc.collect()
    base = {
        "rss": rss_bytes(),
        "sockets": _fd_counts()[0],
        "fds": _fd_counts()[1],
        "threads": threading.active_count(),
    }
    t_sdk = time.perf_counter()
    import_sdk()  # what the first trigger does (off the loop); measured apart
    sdk_import_seconds = time.perf_counter() - t_sdk
    gc.collect()
    after_sdk_rss = rss_bytes()
    plan = _wait_for_plan(plan_path)
    n, warmup, window = len(plan["sessions"]), float(plan["warmup"]), float(plan["window"])
    if fd_limit < n + 200:
        raise SystemExit(f"RLIMIT_NOFILE {fd_limit} is too low for {n} triggers")

    cls = trigger_module.BackendAISessionTrigger
    triggers = [
        cls(**{**plan["template"], "session_id": sid, "session_name": name}) for sid, name in plan["sessions"]
    ]
    gc_pauses: list[tuple[float, int, float]] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            pause = time.perf_counter() - gc_started[0]
            if pause >= 0.005:
                gc_pauses.append((time.time(), int(info.get("generation", -1)), pause))

    gc.callbacks.append(on_gc)
    result = asyncio.run(_triggerer(triggers, fifo, warmup, window))
    gc.callbacks.remove(on_gc)
    result.update(
        n=n,
        fd_limit=fd_limit,
        base=base,
        after_sdk_rss=after_sdk_rss,
        sdk_import_seconds=sdk_import_seconds,
        gc_pauses=gc_pauses,
        trigger_kwargs={k: v for k, v in plan["template"].items() if k not in ("session_id", "session_name")},
    )
    with open(out_path, "w") as f:
        json.dump(result, f)


async def _triggerer(triggers: list[Any], fifo: str, warmup: float, window: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    lags: list[tuple[float, float]] = []
    samples: list[dict[str, float]] = []
    events: dict[str, tuple[float, str]] = {}
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(TICK)
            lags.append((time.time(), loop.time() - before - TICK))

    async def sampler() -> None:
        while not stop.is_set():
            sockets, fds = _fd_counts()
            samples.append(
                {
                    "t": time.time(),
                    "rss": rss_bytes(),
                    "sockets": sockets,
                    "fds": fds,
                    "events": len(events),
                    "threads": threading.active_count(),
                }
            )
            await asyncio.sleep(SAMPLE_EVERY)

    async def watch(trigger: Any) -> None:
        event, at = await first_event(trigger)
        payload = event.payload  # an ended job's outcome is its result; else why the trigger stopped
        events[trigger.session_id] = (
            at,
            str(payload["result"] if payload["status"] == "ended" else payload["status"]),
        )

    helpers = [asyncio.ensure_future(ticker()), asyncio.ensure_future(sampler())]
    await asyncio.sleep(0.5)  # idle lag and memory samples before the triggers start
    started = time.time()
    tasks = [asyncio.ensure_future(watch(t)) for t in triggers]
    window_start = started + warmup
    await asyncio.sleep(max(0.0, window_start - time.time()))
    window_end = window_start + window
    await asyncio.sleep(max(0.0, window_end - time.time()))
    steady_sample = {"rss": rss_bytes(), "sockets": _fd_counts()[0], "events": len(events)}

    released = release(fifo)  # every job at once
    poll = float(triggers[0].poll_interval)
    done, pending = await asyncio.wait(tasks, timeout=2 * poll + 60)
    all_done = time.time()
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    errors = [repr(t.exception()) for t in done if t.exception() is not None]
    await asyncio.sleep(0.5)  # last samples after the triggers ended
    stop.set()
    await asyncio.gather(*helpers)
    return {
        "started": started,
        "window": [window_start, window_end],
        "released": released,
        "all_done": all_done,
        "pending": len(pending),
        "errors": errors[:5],
        "error_count": len(errors),
        "events": events,
        "lags": lags,
        "samples": samples,
        "steady": steady_sample,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_worker")
    parser.add_argument("--plan", required=True)
    parser.add_argument("--fifo", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    measure(args.plan, args.fifo, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
