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
One batch job from create to teardown on the calling thread: what ``BackendAIHook.run_batch`` does.

It is the run-batch operator's sync path without Airflow around it (no deferral, no task state store): the
same wait, the same final log read, the same verdict and XCom value, the same ``on_finish_action``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from airflow.providers.backend.ai._session import params
from airflow.providers.backend.ai._session.finish import FinishAction, finish_batch
from airflow.providers.backend.ai._watch.end import SessionDestroyer, final_log, tear_down
from airflow.providers.backend.ai._watch.log_follower import LogFollower, task_log_writer
from airflow.providers.backend.ai._watch.loop import SessionReader, wait_for_session

if TYPE_CHECKING:
    from airflow.providers.backend.ai._sdk.operations import CreatedSession
    from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec
    from airflow.providers.backend.ai._session.state import SessionFacts
    from airflow.providers.backend.ai._watch.step import TaskLog


class BatchRunner(SessionReader, SessionDestroyer, Protocol):
    """What a batch job needs of a hook."""

    def create_batch_session(self, spec: BatchSessionSpec) -> CreatedSession: ...


def run_batch(
    hook: BatchRunner,
    spec: BatchSessionSpec,
    *,
    startup_timeout: float,
    poll_interval: float,
    use_event_stream: bool,
    on_finish_action: str,
    xcom_log_limit: int,
    log: TaskLog,
) -> dict[str, Any]:
    """
    Create the session, wait for its job, write its log into ``log``, and return the operator's XCom value.

    :raises ValueError: a parameter is invalid (before the session is created).
    :raises BackendAIJobFailedError: the job did not succeed (``BackendAIStartupTimeoutError``: it did not
        start in time).
    """
    action = FinishAction.parse(on_finish_action)
    startup_timeout = params.check_positive_number("startup_timeout", startup_timeout)
    poll_interval = params.check_positive_number("poll_interval", poll_interval)
    session_id = hook.create_batch_session(spec).session_id
    log.info("Created Backend.AI batch session %s (%s)", session_id, spec.name)
    facts: SessionFacts | None = None
    try:
        facts = wait_for_session(
            hook,
            session_id,
            startup_timeout=startup_timeout,
            poll_interval=poll_interval,
            log=log,
            use_event_stream=use_event_stream,
        )
        ended = final_log(hook, session_id, log=log, follower=LogFollower(task_log_writer(log, session_id)))
        return finish_batch(facts, ended.text, session_name=spec.name, xcom_log_limit=xcom_log_limit)
    finally:
        tear_down(hook, session_id, action, facts.verdict if facts else None, log=log)
