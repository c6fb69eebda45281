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
"""Shared helpers: contexts for any try, running a batch job on the worker or deferred, and running triggers."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from airflow.providers.common.compat.sdk import TaskDeferred

from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator
from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

if TYPE_CHECKING:
    from collections.abc import Callable

IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"
MODES = ("sync", "deferrable")


def make_context(
    *,
    try_number: int = 1,
    max_tries: int = 0,
    dag_id: str = "rel_dag",
    task_id: str = "job",
    run_id: str = "manual__1",
    map_index: int = -1,
    task_state_store: Any = None,
) -> dict[str, Any]:
    """
    A task context with the task instance fields the operators read (XCom pushes are recorded), and the
    ``task_state_store`` when one is given (Airflow 3.3+; see :func:`file_task_state_store`).
    """
    ti = mock.MagicMock(
        dag_id=dag_id,
        task_id=task_id,
        run_id=run_id,
        map_index=map_index,
        try_number=try_number,
        max_tries=max_tries,
    )
    ti.stats_tags = {"dag_id": dag_id, "task_id": task_id}
    context: dict[str, Any] = {"ti": ti}
    if task_state_store is not None:
        context["task_state_store"] = task_state_store
    return context


class FileStateStoreComms:
    """
    The supervisor's side of the task state store (Airflow 3.3+), kept in a JSON file instead of the
    metadata database, so that a worker process killed with SIGKILL and the task's retry share one store.

    It answers the same messages with the same replies as ``ActivitySubprocess._handle_request``: the
    operator talks to the SDK's real ``TaskStateStoreAccessor``. ``hang_on_set`` blocks every write, to
    hold a worker between its create request and the store write.
    """

    def __init__(self, path: Path, *, hang_on_set: bool = False) -> None:
        self.path, self.hang_on_set = Path(path), hang_on_set

    def read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def send(self, msg: Any) -> Any:
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time.comms import (
            ErrorResponse,
            GetTaskStateStore,
            OKResponse,
            SetTaskStateStore,
            TaskStateStoreResult,
        )

        if isinstance(msg, GetTaskStateStore):
            data = self.read()
            if msg.key not in data:
                return ErrorResponse(error=ErrorType.TASK_STORE_NOT_FOUND, detail={"key": msg.key})
            return TaskStateStoreResult(value=data[msg.key])
        if isinstance(msg, SetTaskStateStore):
            while self.hang_on_set:
                time.sleep(1)
            data = self.read()
            data[msg.key] = msg.value
            partial = self.path.with_suffix(".partial")
            partial.write_text(json.dumps(data))
            os.replace(partial, self.path)
            return OKResponse(ok=True)
        raise NotImplementedError(f"the test supervisor does not handle {type(msg).__name__}")


def file_task_state_store(
    path: Path, *, hang_on_set: bool = False, dag_id: str = "rel_dag", task_id: str = "job"
) -> tuple[Any, FileStateStoreComms]:
    """
    The SDK's ``TaskStateStoreAccessor`` for task ``dag_id.task_id`` (run ``manual__1``), its supervisor
    replaced by a :class:`FileStateStoreComms` on ``path``; returns (accessor, comms).

    The caller installs the comms as ``task_runner.SUPERVISOR_COMMS`` (a worker process sets it, a test
    uses ``monkeypatch``), which is where the accessor sends its messages.
    """
    from airflow.sdk._shared.state import TaskScope
    from airflow.sdk.execution_time.context import TaskStateStoreAccessor

    scope = TaskScope(dag_id=dag_id, run_id="manual__1", task_id=task_id, map_index=-1)
    return TaskStateStoreAccessor(ti_id=uuid.uuid5(uuid.NAMESPACE_URL, str(path)), scope=scope), (
        FileStateStoreComms(path, hang_on_set=hang_on_set)
    )


def batch_operator(mode: str, command: str, **kwargs: Any) -> BackendAIRunBatchOperator:
    kwargs.setdefault("poll_interval", 1)
    kwargs.setdefault("task_id", "job")
    return BackendAIRunBatchOperator(image=IMAGE, command=command, deferrable=mode == "deferrable", **kwargs)


def resumed(trigger: BackendAISessionTrigger) -> BackendAISessionTrigger:
    """A fresh trigger built from the serialized one, as a triggerer does."""
    _, kwargs = trigger.serialize()
    return BackendAISessionTrigger(**kwargs)


def run_trigger(trigger: BackendAISessionTrigger) -> dict[str, Any]:
    """Run a trigger as a triggerer does: in an event loop to its single event, then ``cleanup``."""

    async def main() -> list[dict[str, Any]]:
        try:
            return [event.payload async for event in trigger.run()]
        finally:
            await trigger.cleanup()

    (payload,) = asyncio.run(main())
    return payload


def defer(op: BackendAIRunBatchOperator, context: dict[str, Any]) -> BackendAISessionTrigger:
    """Run ``execute`` up to the deferral and return the trigger (it must defer)."""
    try:
        op.execute(context)
    except TaskDeferred as deferred:
        method_name, trigger = deferred.method_name, deferred.trigger
    else:
        raise AssertionError("the operator did not defer")
    assert method_name == "execute_complete"
    return trigger


def run_job(
    mode: str,
    context: dict[str, Any],
    command: str,
    *,
    meanwhile: Callable[[BackendAIRunBatchOperator], Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """
    Run a batch job to its end on the worker (``sync``) or through the trigger (``deferrable``).

    The deferred path is what Airflow does: ``execute`` until it defers, the trigger rebuilt from its
    serialized form, then ``execute_complete`` on a fresh operator. ``meanwhile`` runs in another thread
    for the whole run (given the first operator), to interfere from outside.
    """
    op = batch_operator(mode, command, **kwargs)
    helper = _start(meanwhile, op)
    try:
        if mode == "sync":
            return op.execute(context)
        try:
            return op.execute(context)  # the job had already ended: no deferral
        except TaskDeferred as deferred:
            trigger = resumed(deferred.trigger)
        event = run_trigger(trigger)
        return batch_operator(mode, command, **kwargs).execute_complete(context, event)
    finally:
        if helper is not None:
            helper.join(timeout=30)
            assert not helper.is_alive(), "the helper thread did not finish"
            if helper.error is not None:
                raise helper.error


class _Helper(threading.Thread):
    def __init__(self, fn: Callable[[BackendAIRunBatchOperator], Any], op: BackendAIRunBatchOperator):
        super().__init__(daemon=True)
        self.fn, self.op, self.error = fn, op, None

    def run(self) -> None:
        try:
            self.fn(self.op)
        except BaseException as exc:
            self.error = exc


def _start(
    fn: Callable[[BackendAIRunBatchOperator], Any] | None, op: BackendAIRunBatchOperator
) -> _Helper | None:
    if fn is None:
        return None
    helper = _Helper(fn, op)
    helper.start()
    return helper
