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
Run one batch job end to end: through the operator (sync or deferrable), the sensor, or the bare SDK.

The operator runs as a worker would run it (``execute(context)`` with a task-instance stand-in); the
deferrable path hands the trigger through ``serialize()`` to a long-lived event loop, as a triggerer would,
and resumes a fresh operator instance with ``execute_complete``. Wall-clock times are ``time.time()`` so
they compare with the server's timestamps (same host clock). Each run also notes when the provider *knew*
the job had ended (:attr:`JobRun.detected`), which items 2-5 do not need and item 6 measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from unittest import mock

from benchmarks.common import DEFAULT_CONN_ID, IMAGE

if TYPE_CHECKING:
    import concurrent.futures
    from collections.abc import Callable

_counter = itertools.count()
#: How long a sync run's ``on_created`` waits for the operator to push its session id.
CREATED_WAIT = 240.0


@dataclass
class JobRun:
    """Client-side times of one job (Unix epoch seconds)."""

    kind: str
    session_id: str
    started: float  # just before execute() / the SDK script began
    done: float  # just after execute() or execute_complete() returned
    result: str
    deferred: bool = False
    event_at: float | None = None  # deferrable: when the trigger yielded its event
    #: When the provider knew the job ended: the sync operator's wait returned it, the trigger yielded, the
    #: sensor returned (``done`` where there is no earlier point to take).
    detected: float | None = None


def preload() -> None:
    """Import Airflow, the provider and the SDK once, in this thread (two threads importing them deadlock)."""
    import airflow.providers.backend.ai.operators.backend_ai  # noqa: F401
    from airflow.providers.backend.ai._sdk.client import import_sdk

    import_sdk()
    import ai.backend.client.config  # noqa: F401


# -- the task instance stand-in ---------------------------------------------------------------------------


def context(run_id: str) -> dict[str, Any]:
    ti = mock.MagicMock(dag_id="bench_dag", task_id="bench_job", run_id=run_id, map_index=-1, try_number=1)
    return {"ti": ti}


def new_context(prefix: str) -> dict[str, Any]:
    """A context with a run id of its own (the operator derives the session name from it)."""
    return context(f"{prefix}__{int(time.time() * 1000)}_{next(_counter)}")


def pushed_session_id(ctx: dict[str, Any]) -> str | None:
    """The session id the operator pushed to XCom in this context, if it did."""
    for call in ctx["ti"].xcom_push.call_args_list:
        if call.kwargs.get("key") == "session_id":
            return str(call.kwargs["value"])
    return None


# -- the operator as a Dag declares it --------------------------------------------------------------------


def make_operator(command: str, *, deferrable: bool, conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> Any:
    """The operator as a Dag would declare it: only image, command and the given arguments set."""
    from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator

    return BackendAIRunBatchOperator(
        task_id="bench_job",
        image=IMAGE,
        command=command,
        backend_ai_conn_id=conn_id,
        deferrable=deferrable,
        **kwargs,
    )


def operator_parameters() -> dict[str, inspect.Parameter]:
    """
    The arguments ``BackendAIRunBatchOperator`` takes: its own and those of the provider's base classes
    (the subclass's ``**kwargs`` pass them on), the subclass's first. The benchmarks follow the provider as
    it changes.
    """
    from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator

    params: dict[str, inspect.Parameter] = {}
    for cls in BackendAIRunBatchOperator.__mro__:
        if "__init__" in cls.__dict__ and cls.__module__.startswith("airflow.providers.backend.ai"):
            for name, param in inspect.signature(cls.__dict__["__init__"]).parameters.items():
                params.setdefault(name, param)
    return params


def operator_accepts(name: str) -> bool:
    """Whether ``BackendAIRunBatchOperator`` has this argument."""
    return name in operator_parameters()


def operator_default(name: str, fallback: float) -> float:
    """The operator's default for a numeric argument (``fallback`` if it has none)."""
    param = operator_parameters().get(name)
    if param is None or param.default is inspect.Parameter.empty:
        return fallback
    return float(param.default)


# -- the triggerer ----------------------------------------------------------------------------------------


async def first_event(trigger: Any) -> tuple[Any, float]:
    """Run a trigger to its first event, then close it and call ``cleanup`` as the triggerer does."""
    events = trigger.run()
    try:
        event = await events.__anext__()
        return event, time.time()
    finally:
        await events.aclose()
        await trigger.cleanup()


class LoopThread:
    """A long-lived asyncio event loop in a thread of its own; coroutines are handed to it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        """Run a coroutine in the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.loop.shutdown_asyncgens(), 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


class TriggerLoop(LoopThread):
    """The triggerer's event loop: one for all the triggers of a run (not a new loop per job)."""

    def __init__(self) -> None:
        super().__init__("bench-triggerer")

    def submit(self, trigger: Any) -> concurrent.futures.Future[tuple[Any, float]]:
        """Start the trigger; the future gives its first event and when it came."""
        return asyncio.run_coroutine_threadsafe(first_event(trigger), self.loop)

    def run_trigger(self, trigger: Any, timeout: float | None = None) -> tuple[Any, float]:
        return self.submit(trigger).result(timeout)


def rebuild_trigger(deferred: Any) -> Any:
    """The trigger of a ``TaskDeferred``, rebuilt from ``serialize()`` as the triggerer rebuilds it."""
    from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

    classpath, kwargs = deferred.trigger.serialize()
    assert classpath.endswith("BackendAISessionTrigger"), classpath
    return BackendAISessionTrigger(**kwargs)


# -- one job through each path ----------------------------------------------------------------------------


def run_sync(
    command: str,
    *,
    poll_interval: float = 15,
    conn_id: str = DEFAULT_CONN_ID,
    ctx: dict[str, Any] | None = None,
    on_created: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> JobRun:
    """``execute()`` of a sync operator; ``on_created`` gets the session id once the operator pushed it."""
    op = make_operator(command, deferrable=False, conn_id=conn_id, poll_interval=poll_interval, **kwargs)
    ctx = ctx if ctx is not None else new_context("sync")
    started = time.time()  # the operator is Dag-parse work, not timed
    if on_created is not None:
        threading.Thread(target=_report_created, args=(ctx, on_created), daemon=True).start()
    _time_the_sync_wait()
    result = op.execute(ctx)
    done = time.time()
    session_id = result["session_id"]
    detected = _SYNC_WAIT_ENDED.pop(session_id, done)
    return JobRun("sync", session_id, started, done, result["result"], detected=detected)


def run_deferrable(
    command: str,
    loop: TriggerLoop,
    *,
    poll_interval: float = 15,
    conn_id: str = DEFAULT_CONN_ID,
    ctx: dict[str, Any] | None = None,
    on_created: Callable[[str], None] | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> JobRun:
    """
    ``execute()`` of a deferrable operator; its trigger runs in ``loop`` (at most ``timeout`` s), then a
    fresh operator instance runs the resume method, as after a deferral.
    """
    from airflow.providers.common.compat.sdk import TaskDeferred

    def operator() -> Any:
        return make_operator(command, deferrable=True, conn_id=conn_id, poll_interval=poll_interval, **kwargs)

    op = operator()
    ctx = ctx if ctx is not None else new_context("deferrable")
    started = time.time()
    try:
        result = op.execute(ctx)
    except TaskDeferred as deferred:
        trigger = rebuild_trigger(deferred)
        if on_created is not None:
            on_created(trigger.session_id)
        event, event_at = loop.run_trigger(trigger, timeout)
        result = getattr(operator(), deferred.method_name)(ctx, event.payload)
        done = time.time()
        return JobRun(
            "deferrable",
            result["session_id"],
            started,
            done,
            result["result"],
            deferred=True,
            event_at=event_at,
            detected=event_at,
        )
    done = time.time()
    return JobRun("deferrable", result["session_id"], started, done, result["result"], detected=done)


def run_sensor(
    command: str,
    *,
    poke_interval: float,
    timeout: float,
    conn_id: str = DEFAULT_CONN_ID,
    ctx: dict[str, Any] | None = None,
    on_created: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> JobRun:
    """
    ``BackendAISessionSensor(mode="poke").execute()`` on a session the hook made right before (as a
    create task would), then destroyed (the Dag's destroy task; not timed).
    """
    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
    from airflow.providers.backend.ai.sensors.backend_ai import BackendAISessionSensor

    hook = BackendAIHook(backend_ai_conn_id=conn_id)
    ctx = ctx if ctx is not None else new_context("sensor")
    spec = make_operator(command, deferrable=False, conn_id=conn_id).session_spec(ctx)
    started = time.time()
    with hook.get_conn():
        session_id = hook.create_batch_session(spec).session_id
    if on_created is not None:
        on_created(session_id)
    sensor = BackendAISessionSensor(
        task_id="bench_sensor",
        session_id=session_id,
        backend_ai_conn_id=conn_id,
        mode="poke",
        poke_interval=poke_interval,
        timeout=timeout,
        **kwargs,
    )
    try:
        sensor.execute(ctx)
    finally:
        done = time.time()
        _SYNC_WAIT_ENDED.pop(session_id, None)  # the poke waits with the same (wrapped) function
        with contextlib.suppress(Exception), hook.get_conn():
            hook.destroy_session(session_id)
    return JobRun("sensor", session_id, started, done, "SUCCESS", detected=done)


#: session id -> when the watch loop's ``wait_for_session`` returned with the job's end (_time_the_sync_wait).
_SYNC_WAIT_ENDED: dict[str, float] = {}


def _time_the_sync_wait() -> None:
    """
    Note when the sync operator's wait for the job returns, which is when the operator knows the job ended.

    The same point as the trigger's event and the sensor's return; ``execute()`` returns after the final log
    read and the destroy. Wraps ``wait_for_session`` once, where it lives (``_watch.loop``): the operator
    imports it from there when it runs, so the wrapper is what it calls. No fallback: should the wait move,
    this fails loudly rather than let the sync rows time the final log read as well.
    """
    from airflow.providers.backend.ai._session.state import Verdict
    from airflow.providers.backend.ai._watch import loop

    wait = loop.wait_for_session
    if getattr(wait, "timed_by_benchmarks", False):
        return

    def timed_wait(*args: Any, **kwargs: Any) -> Any:
        facts = wait(*args, **kwargs)
        if facts.verdict is not Verdict.RUNNING:
            _SYNC_WAIT_ENDED[facts.session_id] = time.time()
        return facts

    timed_wait.timed_by_benchmarks = True  # type: ignore[attr-defined]
    loop.wait_for_session = timed_wait  # type: ignore[assignment]


def _report_created(ctx: dict[str, Any], on_created: Callable[[str], None]) -> None:
    """The sync operator pushes its session id to XCom right after the create: hand it on."""
    deadline = time.monotonic() + CREATED_WAIT
    while time.monotonic() < deadline:
        session_id = pushed_session_id(ctx)
        if session_id:
            on_created(session_id)
            return
        time.sleep(0.2)


# -- the same job without the provider --------------------------------------------------------------------


def sdk_config(endpoint: str, access_key: str, secret_key: str) -> Any:
    """The SDK's ``APIConfig`` for these keys, as a user would write it (no ``.env`` file read)."""
    from ai.backend.client.config import APIConfig

    with mock.patch("ai.backend.client.config.load_dotenv", return_value=False):
        return APIConfig(
            endpoint=endpoint,
            endpoint_type="api",
            access_key=access_key,
            secret_key=secret_key,
            domain="default",
            group="default",
        )


#: What the hand-written script asks for: the two fields a user needs to know whether the job ended.
_BARE_QUERY = "query($id: UUID!) { compute_session(id: $id) { status result } }"


def run_bare_sdk(
    command: str, *, endpoint: str, access_key: str, secret_key: str, poll_every: float = 0.5
) -> JobRun:
    """
    The same job written plainly against the SDK, as a user would: no Airflow, no retries.

    Create (enqueue only), read the GraphQL result every ``poll_every`` seconds, fetch the log, destroy.
    """
    from ai.backend.client.session import Session

    config = sdk_config(endpoint, access_key, secret_key)
    name = f"bare-sdk-{next(_counter)}-{int(time.time() * 1000)}"
    started = time.time()
    with Session(config=config) as api:
        job = api.ComputeSession.get_or_create(
            IMAGE, name=name, type_="batch", startup_command=command, enqueue_only=True
        )
        while True:
            node = api.Admin.query(_BARE_QUERY, {"id": str(job.id)})["compute_session"]
            if node["result"] != "UNDEFINED" or node["status"] in ("TERMINATED", "CANCELLED", "ERROR"):
                break
            time.sleep(poll_every)
        logs = job.get_logs()["result"]["logs"]
        job.destroy()
    done = time.time()
    assert isinstance(logs, str)
    return JobRun("bare-sdk", str(job.id), started, done, node["result"])
