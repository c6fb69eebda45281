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
import threading
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
) -> dict[str, Any]:
    """A task context with the task instance fields the operators read (XCom pushes are recorded)."""
    ti = mock.MagicMock(
        dag_id=dag_id,
        task_id=task_id,
        run_id=run_id,
        map_index=map_index,
        try_number=try_number,
        max_tries=max_tries,
    )
    return {"ti": ti}


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
