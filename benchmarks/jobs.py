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
Run one batch job end to end: through the operator (sync or deferrable) or through the bare SDK.

The operator runs as a worker would run it (``execute(context)`` with a task-instance stand-in); the
deferrable path hands the trigger through ``serialize()`` to an asyncio loop, as a triggerer would, and
resumes a fresh operator instance with ``execute_complete``. Wall-clock times are ``time.time()`` so they
compare with the emulator's server-side timestamps (same host clock).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any
from unittest import mock

from benchmarks.common import DEFAULT_CONN_ID, IMAGE

_counter = itertools.count()


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


def preload() -> None:
    """Import Airflow, the provider and the SDK once, in this thread (two threads importing them deadlock)."""
    import airflow.providers.backend.ai.operators.backend_ai  # noqa: F401
    from airflow.providers.backend.ai.triggers.backend_ai import _import_sdk

    _import_sdk()
    import ai.backend.client.config  # noqa: F401


def context(run_id: str) -> dict[str, Any]:
    ti = mock.MagicMock(dag_id="bench_dag", task_id="bench_job", run_id=run_id, map_index=-1, try_number=1)
    return {"ti": ti}


def _unique_run_id(prefix: str) -> str:
    return f"{prefix}__{int(time.time() * 1000)}_{next(_counter)}"


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


def _operator(command: str, poll_interval: float, conn_id: str, deferrable: bool, **kwargs: Any) -> Any:
    return make_operator(
        command, deferrable=deferrable, conn_id=conn_id, poll_interval=poll_interval, **kwargs
    )


def operator_accepts(name: str) -> bool:
    """Whether ``BackendAIRunBatchOperator`` has this argument (the benchmarks follow the provider as it changes)."""
    import inspect

    from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator

    # Arguments may be declared by a base class (the ``**kwargs`` of the subclass pass them on).
    return any(
        name in inspect.signature(cls.__dict__["__init__"]).parameters
        for cls in BackendAIRunBatchOperator.__mro__
        if "__init__" in cls.__dict__ and cls.__module__.startswith("airflow.providers.backend.ai")
    )


def run_sync(
    command: str, *, poll_interval: float = 15, conn_id: str = DEFAULT_CONN_ID, **kwargs: Any
) -> JobRun:
    op = _operator(command, poll_interval, conn_id, deferrable=False, **kwargs)  # Dag-parse work, not timed
    ctx = context(_unique_run_id("sync"))
    started = time.time()
    result = op.execute(ctx)
    done = time.time()
    return JobRun("sync", result["session_id"], started, done, result["result"])


async def first_event(trigger: Any) -> Any:
    """Run a trigger to its first event, then close it and call ``cleanup`` as the triggerer does."""
    events = trigger.run()
    try:
        return await events.__anext__()
    finally:
        await events.aclose()
        await trigger.cleanup()


class TriggerLoop:
    """One long-lived event loop standing in for the triggerer's (not a new loop per job)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run_trigger(self, trigger: Any) -> Any:
        return self.loop.run_until_complete(first_event(trigger))

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


def run_deferrable(
    command: str,
    loop: TriggerLoop,
    *,
    poll_interval: float = 15,
    conn_id: str = DEFAULT_CONN_ID,
    **kwargs: Any,
) -> JobRun:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

    op = _operator(command, poll_interval, conn_id, deferrable=True, **kwargs)
    ctx = context(_unique_run_id("deferrable"))
    started = time.time()
    try:
        result = op.execute(ctx)
    except TaskDeferred as deferred:
        classpath, trigger_kwargs = deferred.trigger.serialize()
        assert classpath.endswith("BackendAISessionTrigger"), classpath
        trigger = BackendAISessionTrigger(**trigger_kwargs)  # as the triggerer rebuilds it
        event = loop.run_trigger(trigger)
        event_at = time.time()
        resumed = _operator(command, poll_interval, conn_id, deferrable=True, **kwargs)  # as after a deferral
        result = getattr(resumed, deferred.method_name)(ctx, event.payload)
        done = time.time()
        return JobRun("deferrable", result["session_id"], started, done, result["result"], True, event_at)
    done = time.time()
    return JobRun("deferrable", result["session_id"], started, done, result["result"], False)


#: What the hand-written script asks for: the two fields a user needs to know whether the job ended.
_BARE_QUERY = "query($id: UUID!) { compute_session(id: $id) { status result } }"


def run_bare_sdk(
    command: str, *, endpoint: str, access_key: str, secret_key: str, poll_every: float = 0.5
) -> JobRun:
    """
    The same job written plainly against the SDK, as a user would: no Airflow, no retries.

    Create (enqueue only), read the GraphQL result every ``poll_every`` seconds, fetch the log, destroy.
    """
    from ai.backend.client.config import APIConfig
    from ai.backend.client.session import Session

    config = APIConfig(
        endpoint=endpoint,
        endpoint_type="api",
        access_key=access_key,
        secret_key=secret_key,
        domain="default",
        group="default",
    )
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
