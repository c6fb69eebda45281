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
"""Sensor that waits for a Backend.AI batch session's job to end."""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    BaseSensorOperator,
    conf,
)

from airflow.providers.backend.ai._session.events import EventKind, TriggerOutcome
from airflow.providers.backend.ai._session.finish import describe_failure
from airflow.providers.backend.ai._session.state import Verdict
from airflow.providers.backend.ai.exceptions import BackendAIException, BackendAINotFoundError
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow.providers.backend.ai._session.state import SessionFacts


#: Seconds Airflow's deferral timeout waits beyond the trigger's own deadline (which reports it properly).
DEFERRAL_BACKSTOP = 60


class BackendAISessionSensor(BaseSensorOperator):
    """
    Wait until a Backend.AI batch session's job has ended; fail (without retries) if it did not succeed.

    A session the scheduler preempts and requeues (preemption mode reschedule) is waited for until its rerun
    ends; one it preempts in terminate mode fails the sensor (the sensor did not create it, so a retry of
    the sensor cannot rerun the job).

    Works in ``poke`` and ``reschedule`` mode. The job counts as ended as soon as Backend.AI knows its
    result, which is seconds before the session reaches TERMINATED. In ``poke`` mode the sensor holds its
    worker slot anyway, so a poke waits for the job itself: it learns of the end from the manager's event
    stream within milliseconds and reads the state every ``poke_interval`` as a safety net, until the
    sensor's ``timeout``. In ``reschedule`` mode each poke is one read.

    .. seealso::
        :ref:`howto/operator:BackendAISessionSensor`

    :param session_id: Id of the session to watch, typically from :class:`BackendAICreateSessionOperator`'s
        XCom. (templated)
    :param session_name: Name of the session to watch, instead of its id; the newest session of this name is
        watched. (templated)
    :param backend_ai_conn_id: The ``backend_ai`` connection to use.
    :param deferrable: Wait in the triggerer (with :class:`BackendAISessionTrigger`) instead of poking from a
        worker. The sensor never destroys the session: it did not create it.
    :param use_event_stream: Learn of the job's end from the manager's event stream (poke mode and deferrable);
        poll alone when False or when the stream is not available.
    """

    template_fields: Sequence[str] = ("session_id", "session_name")

    def __init__(
        self,
        *,
        session_id: str | None = None,
        session_name: str | None = None,
        backend_ai_conn_id: str = BackendAIHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        use_event_stream: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.use_event_stream = use_event_stream
        self._give_up_at: float | None = None
        if (session_id is None) == (session_name is None):
            raise ValueError("Pass exactly one of session_id and session_name to BackendAISessionSensor")
        self.session_id = session_id
        self.session_name = session_name
        self.backend_ai_conn_id = backend_ai_conn_id

    @cached_property
    def hook(self) -> BackendAIHook:
        return BackendAIHook(backend_ai_conn_id=self.backend_ai_conn_id)

    def _session_id(self) -> str:
        if self.session_id:
            return str(self.session_id)
        try:
            self.session_id = self.hook.find_session_id(str(self.session_name))
        except BackendAINotFoundError as exc:
            raise AirflowFailException(f"No Backend.AI session is named {self.session_name!r}") from exc
        return self.session_id

    def poke(self, context: Context) -> bool:
        session_id = self._session_id()
        try:
            if self.mode == "poke" and self._give_up_at is not None:
                facts = self._wait(session_id)
            else:
                facts = self.hook.get_session_facts(session_id)
        except BackendAINotFoundError as exc:
            raise AirflowFailException(f"Backend.AI session {session_id} does not exist") from exc
        self.log.info("Session %s is %s (result %s)", session_id, facts.status, facts.result)
        if facts.requeued:
            self.log.info(
                "Session %s was preempted at %s by a higher-priority session of its user and waits to run "
                "its job again from the beginning",
                session_id,
                facts.preempted_at or "an unknown time",
            )
        return self._judge(facts)

    @staticmethod
    def _judge(facts: SessionFacts) -> bool:
        """True when the job succeeded, False while it goes on; a failed job fails the sensor."""
        if facts.verdict is Verdict.FAILED:
            raise AirflowFailException(f"Backend.AI session {facts.session_id}: {describe_failure(facts)}")
        return facts.verdict is Verdict.SUCCEEDED

    def _wait(self, session_id: str) -> SessionFacts:
        """Poke mode: read, and wait for the job's end (events, a read every poke_interval), on one API session."""
        from airflow.providers.backend.ai._watch.loop import wait_for_session  # not at Dag parse

        with self.hook.get_conn():
            facts = self.hook.get_session_facts(session_id)
            if facts.verdict is not Verdict.RUNNING:
                return facts
            return wait_for_session(
                self.hook,
                session_id,
                startup_timeout=float("inf"),
                poll_interval=float(self.poke_interval),
                log=self.log,
                use_event_stream=self.use_event_stream,
                give_up_at=self._give_up_at,
            )

    def execute(self, context: Context) -> None:
        timeout = float(self.timeout.total_seconds() if isinstance(self.timeout, timedelta) else self.timeout)
        if not self.deferrable:
            self._give_up_at = time.time() + timeout  # in poke mode, one poke waits for the job (see poke)
            super().execute(context)
            return
        if self.poke(context):
            return
        from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

        self.defer(
            trigger=BackendAISessionTrigger(
                session_id=self._session_id(),
                backend_ai_conn_id=self.backend_ai_conn_id,
                poll_interval=float(self.poke_interval),
                end_deadline=time.time() + timeout,
                destroy_on_kill=False,
                use_event_stream=self.use_event_stream,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=timeout + DEFERRAL_BACKSTOP),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        """Judge the facts the trigger saw exactly as :meth:`poke` judges a status read."""
        outcome = TriggerOutcome.from_payload(event)
        if outcome.kind is EventKind.ENDED and outcome.facts is not None:
            self._judge(outcome.facts)
            return
        if outcome.kind is EventKind.TIMEOUT:
            raise AirflowSensorTimeout(f"Sensor timed out: {outcome.message}")
        raise BackendAIException(outcome.message)
