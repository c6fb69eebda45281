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
Item 6: the completion floor. How soon after a job's end the provider knows it, and what watching costs
the manager: on the real manager harness (``dev/real-cluster``) when ``BACKEND_AI_TEST_ENDPOINT`` and its
keys are set, else on the emulator with realistic timing (2 s scheduler tick).

Three measurements, each for every path (sync operator, deferrable operator, sensor in poke mode) with the
event stream on (the default) and off (``use_event_stream=False``); a provider without that parameter is
measured in its one (polling) configuration:

* **lag**: from the job's end, as the server recorded it, to the provider knowing it (the operator
  returned, the trigger yielded, the sensor returned), over N jobs of random 1-3 s;
* **requests per second per watched session** in steady state, counted by a reverse proxy in front of the
  server (one port per path and mode), over a window of jobs that outlast it;
* **200 deferred sessions in one event loop** (triggers as a triggerer runs them, jobs ending at random
  over ~30 s): lag, requests per second, and the event streams open at the proxy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import math
import os
import random
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from unittest import mock

from benchmarks.common import IMAGE, Section, percentile, ramp_seconds, sec, set_connection

if TYPE_CHECKING:
    from collections.abc import Callable

PATHS = ("sync", "deferrable", "sensor")
LAG_P50_BUDGET = 0.5
LAG_P95_BUDGET = 1.5
RATE_BUDGET = 0.2  # requests/s per watched session, steady state
SCALE_P95_BUDGET = 2.0
POLLING_SLACK = 1.0  # events off: every job within poll_interval + this
TIME_LIMIT = {True: 240.0, False: 720.0}  # quick, full (this item alone)

LAG_CONN = "backend_ai_floor"  # direct connection for the lag runs
JOB_DEADLINE = 240.0  # one job: create to detected, generous for a loaded manager


@dataclass(frozen=True)
class Sizes:
    jobs: int  # per path and mode
    concurrency: int  # jobs of one path and mode at once
    rate_sessions: int  # long jobs watched per path and mode
    rate_window: float  # seconds of steady state counted
    scale: int  # deferred sessions in one loop
    scale_spread: float  # their jobs end at random within this many seconds after starting
    scale_modes: tuple[bool, ...]  # event stream on/off for the 200-session run


#: (quick, full) per target. The real manager gets fewer jobs at once: on 2 shared cores its scheduler and
#: API slow down with every session it holds, and the floor is to measure the provider, not an overload.
SIZES = {
    ("emulator", True): Sizes(6, 3, 3, 30, 200, 30, (True,)),
    ("emulator", False): Sizes(20, 10, 5, 45, 200, 30, (True,)),  # keeps the whole full suite under 10 min
    ("real", True): Sizes(6, 1, 3, 30, 100, 30, (True,)),  # 200 creates alone take ~2 min there
    ("real", False): Sizes(20, 2, 5, 60, 200, 30, (True, False)),
}


def sizes_for(target: Target, quick: bool) -> Sizes:
    """The sizes for this target; ``BENCH_FLOOR_SCALE`` overrides the number of deferred sessions."""
    sizes = SIZES[(target.kind, quick)]
    if os.environ.get("BENCH_FLOOR_SCALE"):
        sizes = dataclasses.replace(sizes, scale=int(os.environ["BENCH_FLOOR_SCALE"]))
    return sizes


# -- where the jobs run, and when they ended (server side) ---------------------------------------------


class Target:
    """The server the floor is measured against, and its record of when each job ended."""

    kind = "?"
    description = "?"
    job_end_source = "?"
    endpoint = ""
    access_key = ""
    secret_key = ""
    image = IMAGE

    def connection_json(self, endpoint: str | None = None) -> str:
        return json.dumps(
            {
                "conn_type": "backend_ai",
                "host": endpoint or self.endpoint,
                "login": self.access_key,
                "password": self.secret_key,
            }
        )

    def job_ends(self, session_ids: list[str]) -> dict[str, float]:
        """Unix time at which each job ended, as the server recorded it (missing ids: unknown)."""
        raise NotImplementedError

    def manager_knew(self, session_ids: list[str]) -> dict[str, float]:
        """Unix time at which the manager had the result and moved the session to TERMINATING."""
        raise NotImplementedError

    def running_since(self, session_ids: list[str]) -> dict[str, float]:
        """Unix time at which each session became RUNNING (the job started)."""
        raise NotImplementedError

    def cross_check(self, session_ids: list[str]) -> str | None:
        """A note comparing the job-end source with a second server-side record, if there is one."""
        return None

    def close(self) -> None:
        pass


class EventRecordReader:
    """
    Follows the manager's event stream in Redis (``XREAD`` on ``events``) and keeps the time of every
    ``session_success``/``session_failure`` the agent published: the entry id is Redis's clock (same host)
    in milliseconds. The stream is trimmed to ~100 entries (seconds), hence a reader that follows it live.
    """

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=5)
        self._last = self._redis.xinfo_stream("events")["last-generated-id"]
        self.ends: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="floor-redis-events", daemon=True)
        self._thread.start()
        self.error: str | None = None

    def _follow(self) -> None:
        try:
            while not self._stop.is_set():
                for _, entries in self._redis.xread({"events": self._last}, block=500, count=1000) or []:
                    for entry_id, fields in entries:
                        self._last = entry_id
                        name = fields.get(b"name", b"").decode()
                        if name not in ("session_success", "session_failure"):
                            continue
                        payload = json.loads(fields.get(b"payload", b"{}"))
                        session_id = str(payload.get("session_id", ""))
                        ms = int(entry_id.decode().split("-")[0])
                        self.ends.setdefault(session_id, ms / 1000.0)
        except Exception as exc:  # reported; the status_history fallback takes over
            self.error = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._redis.close()


class RealTarget(Target):
    """The manager named by ``BACKEND_AI_TEST_*`` (``dev/real-cluster/cluster.env``)."""

    kind = "real"

    def __init__(self) -> None:
        env = os.environ
        self.endpoint = env["BACKEND_AI_TEST_ENDPOINT"].rstrip("/")
        self.access_key = env["BACKEND_AI_TEST_ACCESS_KEY"]
        self.secret_key = env["BACKEND_AI_TEST_SECRET_KEY"]
        self.image = env.get("BACKEND_AI_TEST_IMAGE", IMAGE)
        self.reader: EventRecordReader | None = None
        self._histories: dict[str, dict[str, float]] = {}
        url = env.get("BACKEND_AI_TEST_EVENTS_REDIS")
        why = "BACKEND_AI_TEST_EVENTS_REDIS is not set"
        if url:
            try:
                self.reader = EventRecordReader(url)
            except Exception as exc:
                why = f"cannot read {url}: {type(exc).__name__}: {exc}"
        version = self._manager_version()
        self.description = (
            f"real Backend.AI manager {version} at {self.endpoint} (dev/real-cluster, dummy agent)"
        )
        if self.reader is not None:
            self.job_end_source = (
                "the agent's `session_success`/`session_failure` entry in the manager's Redis event stream "
                "(entry id = Redis clock, same host), read live by `XREAD`"
            )
        else:
            self.job_end_source = (
                f"GraphQL `status_history` TERMINATING (written ~15 ms after the job's end; {why})"
            )

    def _manager_version(self) -> str:
        import urllib.request

        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=5) as resp:
                return str(json.load(resp).get("manager", "?"))
        except Exception:
            return "?"

    def _status_history(self, session_ids: list[str]) -> dict[str, dict[str, float]]:
        from ai.backend.client.config import APIConfig
        from ai.backend.client.session import Session

        query = "query($id: UUID!) { compute_session(id: $id) { status_history } }"
        out: dict[str, dict[str, float]] = {
            s: self._histories[s] for s in session_ids if s in self._histories
        }
        session_ids = [s for s in session_ids if s not in out]
        if not session_ids:
            return out
        with mock.patch("ai.backend.client.config.load_dotenv", return_value=False):
            config = APIConfig(
                endpoint=self.endpoint,
                endpoint_type="api",
                access_key=self.access_key,
                secret_key=self.secret_key,
                domain="default",
                group="default",
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Session(config=config) as api:
                for session_id in session_ids:
                    node = api.Admin.query(query, {"id": session_id})["compute_session"] or {}
                    history = node.get("status_history") or {}
                    if isinstance(history, str):
                        history = json.loads(history)
                    out[session_id] = {k: datetime.fromisoformat(v).timestamp() for k, v in history.items()}
                    if "TERMINATED" in out[session_id]:  # final: never changes again
                        self._histories[session_id] = out[session_id]
        return out

    def manager_knew(self, session_ids: list[str]) -> dict[str, float]:
        histories = self._status_history(session_ids)
        return {s: h["TERMINATING"] for s, h in histories.items() if "TERMINATING" in h}

    def running_since(self, session_ids: list[str]) -> dict[str, float]:
        histories = self._status_history(session_ids)
        return {s: h["RUNNING"] for s, h in histories.items() if "RUNNING" in h}

    def job_ends(self, session_ids: list[str]) -> dict[str, float]:
        if self.reader is not None:
            deadline = time.monotonic() + 5  # the reader may be a moment behind
            while time.monotonic() < deadline and not all(s in self.reader.ends for s in session_ids):
                time.sleep(0.1)
            found = {s: self.reader.ends[s] for s in session_ids if s in self.reader.ends}
            if len(found) == len(session_ids):
                return found
        else:
            found = {}
        missing = [s for s in session_ids if s not in found]
        for session_id, history in self._status_history(missing).items():
            if "TERMINATING" in history:
                found[session_id] = history["TERMINATING"]
        return found

    def cross_check(self, session_ids: list[str]) -> str | None:
        if self.reader is None or not session_ids:
            return None
        sample = session_ids[:20]
        histories = self._status_history(sample)
        diffs = [
            histories[s]["TERMINATING"] - self.reader.ends[s]
            for s in sample
            if s in self.reader.ends and "TERMINATING" in histories.get(s, {})
        ]
        if not diffs:
            return None
        return (
            f"Cross-check of the job-end record on {len(diffs)} sessions: `status_history` TERMINATING comes "
            f"{percentile(diffs, 50) * 1000:.0f} ms (median; max {max(diffs) * 1000:.0f} ms) after the "
            "agent's event in Redis."
        )

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


class EmulatorTarget(Target):
    """The emulator in a process of its own, with the manager's timing (2 s steps and ticks)."""

    kind = "emulator"

    def __init__(self) -> None:
        from benchmarks.emulator_proc import EmulatorProcess

        self.emu = EmulatorProcess()
        self.emu.settings(realistic_timing=True)
        self.endpoint, self.access_key, self.secret_key = (
            self.emu.endpoint,
            self.emu.access_key,
            self.emu.secret_key,
        )
        self.description = "emulator with realistic timing (2 s scheduler steps and ticks), its own process"
        self.job_end_source = (
            "the emulator's own record of the moment the job's process exited (`job_exited_at`; "
            "`session_success` follows within milliseconds)"
        )

    def _status_times(self, session_ids: list[str], status: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.emu.sessions(session_ids):
            at = s.status_time(status)
            if at is not None:
                out[s.id] = at
        return out

    def manager_knew(self, session_ids: list[str]) -> dict[str, float]:
        return self._status_times(session_ids, "TERMINATING")

    def running_since(self, session_ids: list[str]) -> dict[str, float]:
        return self._status_times(session_ids, "RUNNING")

    def job_ends(self, session_ids: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.emu.sessions(session_ids):
            end = s.job_exited_at or s.job_end
            if end is not None:
                out[s.id] = end
        return out

    def cross_check(self, session_ids: list[str]) -> str | None:
        diffs = [
            s.job_end - s.job_exited_at
            for s in self.emu.sessions(session_ids[:50])
            if s.job_end is not None and s.job_exited_at is not None
        ]
        if not diffs:
            return None
        return (
            f"Cross-check: the emulator's `session_success` comes {percentile(diffs, 50) * 1000:.1f} ms (median) "
            "after the job's process exited."
        )

    def close(self) -> None:
        self.emu.stop()


class StreamObserver:
    """
    A reference client of the event stream, outside the provider: one signed ``GET /events/session`` (all the
    caller's sessions) in a thread of its own, re-signed on every reconnect. It records when each job's
    ``session_success``/``session_failure`` reached a client, which splits the lag into the server's part
    (job end to event delivered) and the provider's part (event delivered to detected).
    """

    def __init__(self, endpoint: str, access_key: str, secret_key: str) -> None:
        self.url = f"{endpoint}/events/session?sessionName=%2A&scope=session"
        self._keys = (access_key, secret_key)
        self.arrived: dict[str, float] = {}
        self.reconnects = 0
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="floor-observer", daemon=True)
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        import aiohttp

        from backend_ai_emulator import signed_headers

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as http:
            while True:
                headers = signed_headers(
                    "GET", self.url, *self._keys, content_type="application/octet-stream"
                )
                del headers["Content-Type"]
                try:
                    async with http.get(self.url, headers=headers) as resp:
                        if resp.status != 200:
                            await asyncio.sleep(1)
                            continue
                        name = None
                        async for raw in resp.content:
                            line = raw.decode().rstrip("\r\n")
                            if line.startswith("event:"):
                                name = line[6:].strip()
                            elif line.startswith("data:") and name in ("session_success", "session_failure"):
                                with contextlib.suppress(ValueError, KeyError):
                                    sid = str(json.loads(line[5:].strip())["sessionId"])
                                    self.arrived.setdefault(sid, time.time())
                            elif not line:
                                name = None
                except (TimeoutError, aiohttp.ClientError, OSError):
                    pass
                self.reconnects += 1
                await asyncio.sleep(0.5)

    def close(self) -> None:
        async def _cancel() -> None:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def make_target() -> Target:
    if os.environ.get("BACKEND_AI_TEST_ENDPOINT"):
        return RealTarget()
    return EmulatorTarget()


# -- the provider under test -------------------------------------------------------------------------------


def events_supported() -> bool:
    from benchmarks.jobs import operator_accepts

    return operator_accepts("use_event_stream")


def mode_kwargs(mode: bool | None) -> dict[str, Any]:
    return {} if mode is None else {"use_event_stream": mode}


def mode_label(mode: bool | None) -> str:
    return {True: "on", False: "off", None: "n/a (polling)"}[mode]


def default_poll_interval() -> float:
    import inspect

    from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator

    for cls in BackendAIRunBatchOperator.__mro__:
        init = cls.__dict__.get("__init__")
        if init is not None:
            param = inspect.signature(init).parameters.get("poll_interval")
            if param is not None and param.default is not inspect.Parameter.empty:
                return float(param.default)
    return 15.0


class TriggerLoop:
    """The triggerer's event loop, in a thread of its own; triggers are submitted to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="floor-triggerer", daemon=True)
        self._thread.start()

    def submit(self, trigger: Any) -> concurrent.futures.Future[tuple[Any, float]]:
        async def first_event() -> tuple[Any, float]:
            events = trigger.run()
            try:
                event = await events.__anext__()
                return event, time.time()
            finally:
                await events.aclose()
                await trigger.cleanup()

        return asyncio.run_coroutine_threadsafe(first_event(), self.loop)

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def _drain() -> None:
            await self.loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            self.run(_drain(), 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def _rebuild_trigger(deferred: Any) -> Any:
    from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

    classpath, kwargs = deferred.trigger.serialize()
    assert classpath.endswith("BackendAISessionTrigger"), classpath
    return BackendAISessionTrigger(**kwargs)  # as the triggerer rebuilds it


def _context(prefix: str) -> dict[str, Any]:
    from benchmarks import jobs

    return jobs.context(f"{prefix}__{uuid.uuid4().hex[:10]}")


def _pushed_session_id(ctx: dict[str, Any]) -> str | None:
    for call in ctx["ti"].xcom_push.call_args_list:
        if call.kwargs.get("key") == "session_id":
            return str(call.kwargs["value"])
    return None


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
    loop: TriggerLoop,
    poll_interval: float,
    result: JobResult,
    on_created: Callable[[str], None] | None = None,
    deadline: float = JOB_DEADLINE,
) -> None:
    """One job through one path, in the calling thread (a worker); fills ``result``."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
    from airflow.providers.backend.ai.sensors.backend_ai import BackendAISessionSensor
    from benchmarks import jobs

    kwargs = mode_kwargs(mode)
    ctx = _context(f"floor_{path}")
    try:
        if path == "sync":
            op = jobs.make_operator(command, deferrable=False, conn_id=conn_id, **kwargs)
            result.started = time.time()
            if on_created is not None:
                threading.Thread(target=_report_created, args=(ctx, on_created), daemon=True).start()
            _time_the_sync_wait()
            out = op.execute(ctx)
            result.returned = time.time()
            result.session_id, result.outcome = out["session_id"], out["result"]
            # The operator knew when its wait returned; the final log read and the destroy follow.
            result.detected = _SYNC_WAIT_ENDED.pop(result.session_id, result.returned)
        elif path == "deferrable":
            op = jobs.make_operator(command, deferrable=True, conn_id=conn_id, **kwargs)
            result.started = time.time()
            try:
                out = op.execute(ctx)
                result.detected = result.returned = time.time()
            except TaskDeferred as deferred:
                result.session_id = _pushed_session_id(ctx)
                if on_created is not None and result.session_id:
                    on_created(result.session_id)
                event, result.detected = loop.submit(_rebuild_trigger(deferred)).result(deadline)
                resumed = jobs.make_operator(command, deferrable=True, conn_id=conn_id, **kwargs)
                out = getattr(resumed, deferred.method_name)(ctx, event.payload)
                result.returned = time.time()
            result.session_id, result.outcome = out["session_id"], out["result"]
        elif path == "sensor":
            hook = BackendAIHook(backend_ai_conn_id=conn_id)
            spec = jobs.make_operator(command, deferrable=False, conn_id=conn_id).session_spec(ctx)
            result.started = time.time()
            with hook.get_conn():
                result.session_id = hook.create_batch_session(spec).session_id
            if on_created is not None:
                on_created(result.session_id)
            sensor = BackendAISessionSensor(
                task_id="floor_sensor",
                session_id=result.session_id,
                backend_ai_conn_id=conn_id,
                mode="poke",
                poke_interval=poll_interval,
                timeout=deadline,
                **kwargs,
            )
            try:
                sensor.execute(ctx)
                result.outcome = "SUCCESS"
            finally:
                result.detected = result.returned = time.time()
                with contextlib.suppress(Exception), hook.get_conn():
                    hook.destroy_session(result.session_id)  # the Dag's destroy task; not timed
        else:
            raise ValueError(path)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {str(exc)[:300]}"
        result.session_id = result.session_id or _pushed_session_id(ctx)


#: session id -> when the sync operator's wait returned with the job's end (see _time_the_sync_wait).
_SYNC_WAIT_ENDED: dict[str, float] = {}


def _time_the_sync_wait() -> None:
    """
    Note when the sync operator's wait for the job returns, which is when the operator knows the job ended.

    The same point as the trigger's event and the sensor's return; ``execute()`` returns after the final log
    read and the destroy, reported as "task returns". Wraps the function once, in the operator module.
    """
    from airflow.providers.backend.ai._session.state import Verdict
    from airflow.providers.backend.ai.operators import backend_ai as operators

    wait = getattr(operators, "wait_for_session", None)
    if wait is None or getattr(wait, "timed_by_floor", False):
        return  # a provider without this wait: execute() returning is all there is

    def timed_wait(*args: Any, **kwargs: Any) -> Any:
        facts = wait(*args, **kwargs)
        if facts.verdict is not Verdict.RUNNING:
            _SYNC_WAIT_ENDED[facts.session_id] = time.time()
        return facts

    timed_wait.timed_by_floor = True  # type: ignore[attr-defined]
    operators.wait_for_session = timed_wait  # type: ignore[assignment]


def _report_created(ctx: dict[str, Any], on_created: Callable[[str], None]) -> None:
    """The sync operator pushes its session id to XCom right after the create: hand it on."""
    deadline = time.monotonic() + JOB_DEADLINE
    while time.monotonic() < deadline:
        session_id = _pushed_session_id(ctx)
        if session_id:
            on_created(session_id)
            return
        time.sleep(0.2)


# -- lag -----------------------------------------------------------------------------------------------


def lag_runs(
    target: Target,
    modes: list[bool | None],
    sizes: Sizes,
    loop: TriggerLoop,
    poll_interval: float,
    rng: random.Random,
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
    fill_server_times(target, results)
    return results


OBSERVER: StreamObserver | None = None


def fill_server_times(target: Target, results: list[JobResult]) -> None:
    ids = [r.session_id for r in results if r.session_id]
    ends, knew = target.job_ends(ids), target.manager_knew(ids)
    seen = OBSERVER.arrived if OBSERVER is not None else {}
    for r in results:
        if r.session_id:
            r.job_end, r.knew = ends.get(r.session_id), knew.get(r.session_id)
            r.event_seen = seen.get(r.session_id)


# -- requests per second per watched session -----------------------------------------------------------


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
        proxy: Any,
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


# -- 200 deferred sessions in one loop -------------------------------------------------------------------


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
    from urllib.parse import urlsplit

    return (urlsplit(endpoint).hostname or "") in ("127.0.0.1", "localhost", "::1")


def _processes_waiting_on(path: str) -> int:
    """Processes whose command line names ``path`` (the jobs blocked reading the release FIFO)."""
    count, needle = 0, path.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    count += 1
        except OSError:
            continue
    return count


class ReleaseGate:
    """
    A FIFO the jobs block on (``read -r _ < FIFO``, no CPU) until the benchmark opens and closes it for
    writing, which lets every job go on at once. Works where the jobs run on this host (the harness's dummy
    agent runs them as ``nobody``, the emulator as this user), so the sessions can all be created and
    running before any of them ends: creating hundreds of sessions loads the manager for minutes.
    """

    def __init__(self) -> None:
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="floor-release-")
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "go")
        os.mkfifo(self.path, 0o666)
        os.chmod(self.path, 0o666)  # whatever the umask: the jobs run as another user

    def command(self, then: str) -> str:
        return f"read -r _ < {self.path}; {then}"

    def wait_blocked(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            waiting = _processes_waiting_on(self.path)
            if waiting >= count or time.monotonic() > deadline:
                return waiting
            time.sleep(0.5)

    def release(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)  # readers are there: this does not block
        os.close(fd)

    def close(self) -> None:
        import shutil

        with contextlib.suppress(OSError):
            self.release()  # nobody stays blocked
        shutil.rmtree(self.dir, ignore_errors=True)


def scale_run(
    target: Target,
    proxy: Any,
    mode: bool | None,
    sizes: Sizes,
    loop: TriggerLoop,
    rng: random.Random,
) -> ScaleRun:
    """
    N triggers in the one loop, each started as soon as its session is created (as after a deferral).

    On a local server the jobs wait at a release gate until every session runs, then end at random within
    ``scale_spread`` seconds; elsewhere each job just sleeps that long after it starts.
    """
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
    from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger
    from benchmarks import jobs

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
        op = jobs.make_operator(command(durations[0]), deferrable=True, conn_id=conn_id, **mode_kwargs(mode))
        ctx = _context("floor_scale")
        first.started = time.time()
        try:
            op.execute(ctx)
            raise RuntimeError("the operator did not defer")
        except TaskDeferred as deferred:
            _, template = deferred.trigger.serialize()
        first.session_id = template["session_id"]
        futures: dict[int, concurrent.futures.Future[tuple[Any, float]]] = {
            0: loop.submit(BackendAISessionTrigger(**template))
        }
        spec = op.session_spec(ctx)

        async def create_all() -> None:
            hook = BackendAIHook(backend_ai_conn_id=conn_id)
            parallel = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with parallel:
                    r = run.results[i]
                    r.started = time.time()
                    s = dataclasses.replace(
                        spec,
                        name=f"floor-{uuid.uuid4().hex[:16]}",
                        command=command(r.duration),
                        tag=f"airflow-{uuid.uuid4().hex}",
                    )
                    r.session_id = (await hook.a_create_batch_session(s)).session_id
                trigger = BackendAISessionTrigger(
                    **{**template, "session_id": r.session_id, "session_name": s.name}
                )
                futures[i] = loop.submit(trigger)

            async with hook.get_async_conn():
                await asyncio.gather(*(one(i) for i in range(1, sizes.scale)))

        created_at = time.monotonic()
        loop.run(create_all(), timeout=900)
        run.create_seconds = time.monotonic() - created_at
        if gate is not None:
            waiting = gate.wait_blocked(sizes.scale, timeout=600)
            if waiting < sizes.scale:
                run.error = f"only {waiting} of {sizes.scale} jobs reached the release gate in time"
            time.sleep(1.0)  # the last ones into their open()
            run.released = time.time()
            gate.release()
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
    fill_server_times(target, run.results)
    return run


def wait_no_live_sessions(prefix_ids: list[str], timeout: float = 120) -> None:
    """Wait until the given sessions are over (so the next run has the agent's slots and the quota)."""
    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

    hook = BackendAIHook(backend_ai_conn_id=LAG_CONN)
    deadline = time.monotonic() + timeout
    pending = list(prefix_ids)
    with hook.get_conn():
        while pending and time.monotonic() < deadline:
            pending = [
                s
                for s in pending
                if hook.get_session_facts(s).status not in ("TERMINATED", "CANCELLED", "ERROR")
            ]
            if pending:
                time.sleep(1.0)


# -- the item -------------------------------------------------------------------------------------------


def _say(message: str) -> None:
    import sys

    print(f"[floor] {message}", file=sys.stderr, flush=True)


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


def run(section: Section, *, quick: bool) -> None:
    """Item 6 (see the module docstring); fills ``section``."""
    from benchmarks.counting_proxy import ProxyProcess

    rng = random.Random(6)
    with contextlib.suppress(ImportError):  # operators run outside a task runner here, on purpose
        from airflow.sdk.bases.operator import ExecutorSafeguard

        ExecutorSafeguard.test_mode = True
    supported = events_supported()
    modes: list[bool | None] = [True, False] if supported else [None]
    poll_interval = default_poll_interval()
    target = make_target()
    sizes = sizes_for(target, quick)
    set_connection(LAG_CONN, target.connection_json())
    loop = TriggerLoop()
    global OBSERVER
    OBSERVER = StreamObserver(target.endpoint, target.access_key, target.secret_key)
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
                _say(f"{target.kind}: rate phase starts ({len(modes) * 3 * sizes.rate_sessions} long jobs)")
                rate = RateRun(target, proxy, modes, sizes, loop, poll_interval, rate_job)
            try:
                if "lag" in phases:
                    _say(f"lag runs: {sizes.jobs} jobs x {len(PATHS)} paths x {len(modes)} modes")
                    lag_results = lag_runs(target, modes, sizes, loop, poll_interval, rng)
                if rate is not None:
                    last_start = rate.wait_running(timeout=180)
                    # Steady state: once the polling backoff (which restarts when the job starts) has reached
                    # the poll interval; event streams are open long before.
                    window_start = last_start + ramp_seconds(poll_interval) + 1.0
                    rate.window = (window_start, window_start + sizes.rate_window)
                    wait = rate.window[1] - time.time()
                    _say(f"rate window {sizes.rate_window:.0f} s, ends in {max(wait, 0):.0f} s")
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
                _say(f"{sizes.scale} deferred sessions in one loop, events {mode_label(mode)}")
                try:
                    scale_runs.append(scale_run(target, proxy, mode, sizes, loop, rng))
                except Exception as exc:
                    scale_runs.append(ScaleRun(mode, error=f"{type(exc).__name__}: {exc}"))
                wait_no_live_sessions([r.session_id for r in scale_runs[-1].results if r.session_id], 180)
        note = target.cross_check([r.session_id for r in lag_results if r.session_id and r.job_end])
        if note:
            section.notes.append(note)
    finally:
        OBSERVER.close()
        loop.close()
        target.close()
    if os.environ.get("BENCH_FLOOR_RAW"):  # every job's times, for a closer look
        with open(os.environ["BENCH_FLOOR_RAW"], "w") as f:
            rows = [("lag", r) for r in lag_results] + [
                (f"scale-{mode_label(sr.mode)}", r) for sr in scale_runs for r in sr.results
            ]
            json.dump([{"part": part, **dataclasses.asdict(r)} for part, r in rows], f, indent=1)
    report(section, target, modes, sizes, poll_interval, lag_results, rate, scale_runs, supported)


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
