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
Operators that run batch jobs in Backend.AI sessions, or create and destroy sessions as separate tasks.

The watch machinery (``_watch``) is imported inside the methods that run a job, so that a Dag file that
only builds these operators never loads it: parsing pays for what parsing uses.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow.providers.backend.ai._base_operator import SessionOperatorBase
from airflow.providers.backend.ai._resumable import ResumableBatchMixin
from airflow.providers.backend.ai._session import params
from airflow.providers.backend.ai._session.events import EventKind, TriggerOutcome
from airflow.providers.backend.ai._session.finish import DEFAULT_XCOM_LOG_LIMIT, FinishAction, finish_batch
from airflow.providers.backend.ai._session.state import Verdict
from airflow.providers.backend.ai.exceptions import (
    BackendAIException,
    BackendAISessionNotVisibleError,
    BackendAIStartupTimeoutError,
)
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.version_compat import AIRFLOW_V_3_0_PLUS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow.providers.backend.ai._session.state import SessionFacts
    from airflow.providers.backend.ai._watch.end import FinalLog
    from airflow.providers.backend.ai._watch.log_follower import LogFollower

#: Extra seconds a deferred run may take beyond startup_timeout + batch_timeout (the manager's own lag).
DEFERRAL_GRACE = 60
#: Preemptions of a deferred job (reschedule mode) that Airflow's deferral timeout leaves room for: the
#: trigger moves its end deadline at each rerun, by up to startup_timeout + the run limit.
REQUEUES_COVERED = 3


class BackendAIRunBatchOperator(ResumableBatchMixin, SessionOperatorBase):
    """
    Run a command in a Backend.AI batch session, wait for it to end, and return its result and log.

    The session runs ``bootstrap_script`` and then ``command``; the task succeeds when the command exits 0.
    The container log is written into the task log and returned (truncated) in the XCom value
    ``{"session_id", "session_name", "status", "result", "status_info", "logs"}``. A failed, timed out or
    cancelled job raises :class:`~airflow.providers.backend.ai.exceptions.BackendAIJobFailedError` quoting
    the end of the log. The session is destroyed at the end according to ``on_finish_action``.

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:BackendAIRunBatchOperator` and the connection :ref:`howto/connection:backend_ai`.

    :param image: Container image of the session, e.g. ``cr.backend.ai/stable/python:3.9-ubuntu20.04``. (templated)
    :param command: Shell command the batch session runs; the job. (templated)
    :param bootstrap_script: Script run in the container before ``command``. (templated)
    :param backend_ai_conn_id: The ``backend_ai`` connection to use.
    :param session_name: Session name (4-64 characters of letters, digits, ``_.-``). By default a name derived
        from the Dag, task, run and try, unique per try, so a retry never reuses an earlier session. (templated)
    :param session_resources: Backend.AI resource slots, e.g. ``{"cpu": 4, "mem": "8g", "cuda.device": 1}``
        (``cuda.shares`` for fractional GPUs, ``rocm.device`` for AMD). Not ``resources``: that is
        ``BaseOperator``'s executor hint, and a mapping passed there is refused. (templated)
    :param vfolder_mounts: Names of existing virtual folders to mount. (templated)
    :param mount_map: Mount path per virtual folder, e.g. ``{"data": "/home/work/data"}``. (templated)
    :param environment: Environment variables of the session. (templated)
    :param cluster_size: Number of containers of the session.
    :param cluster_mode: ``single-node`` or ``multi-node``.
    :param domain_name: Domain of the session; the connection's by default.
    :param group_name: Project (group) of the session; the connection's by default.
    :param architecture: CPU architecture of the image; the worker's by default (as the SDK does).
    :param scaling_group: Resource group (scaling group) to schedule the session in.
    :param job_priority: The session's priority among the same user's sessions on a busy cluster (Backend.AI
        26.8+; an integer, default the manager's 0): where the resource group has preemption turned on, a
        session that does not fit may preempt running sessions of the same user with a lower
        ``job_priority``. Not the manager's scheduling ``priority``. A manager older than 26.8 is refused
        before any session exists
        (:class:`~airflow.providers.backend.ai.exceptions.BackendAIManagerVersionError`).
    :param is_preemptible: Whether a higher-priority session may preempt this one (default the manager's:
        True). See :ref:`busy-cluster`.
    :param startup_timeout: Seconds the session may take to start running; then it is destroyed and the task
        fails with :class:`~airflow.providers.backend.ai.exceptions.BackendAIStartupTimeoutError`, quoting
        the scheduler's last reason. A session that was preempted and requeued gets this long again, from
        the requeue, to start its rerun.
    :param batch_timeout: Seconds the job may run; Backend.AI then kills it and the task fails.
    :param poll_interval: Longest pause between two status reads, in seconds. While the manager's event stream
        is open, the job's end is known from its event within milliseconds and the state is read once per
        interval as a safety net; without the stream, reads start every 0.25 s and slow down to this interval.
    :param use_event_stream: Learn of the job's end from the manager's session event stream (one stream per
        connection and process, shared by all waiting tasks); poll alone when False or when the stream is
        not available (a log line then says why).
    :param on_finish_action: ``destroy`` (default) the session at the end, ``keep`` it, or
        ``destroy_on_success`` (keep failed sessions for debugging). A job that did not end (startup timeout,
        killed task) is destroyed unless the action is ``keep``.
    :param xcom_log_limit: Characters of the log kept in the XCom value (the end of the log is kept).
    :param log_streaming: Copy the session's log into the task log while the job runs (each poll reads it),
        not only at the end. Deferred tasks stream from the triggerer on Airflow 3.
    :param deferrable: Wait in the triggerer instead of occupying a worker slot.
    :param durable: When a retry finds the session of an earlier try (its worker died), adopt it: wait for it
        if it still runs, return its result if it succeeded, start anew only if it failed; so a job is never
        run twice because a worker died. On Airflow 3.3+ the session id is kept in the task state store
        (``ResumableJobMixin``); earlier tries' sessions are also found by their per-try Backend.AI tag, on
        every Airflow line and with any ``session_name``. By default (``False``) a session an earlier try
        left running is destroyed (unless ``keep``) before the retry starts anew.
    """

    #: The task state store key of the session a durable run watches (Airflow 3.3+): a JSON object with the
    #: ``session_id`` and the ``try_number`` that made it. Renaming it would orphan the sessions of tasks
    #: that are being retried during an upgrade.
    external_id_key = "backend_ai_session"
    #: Lines of the session log that start with this are left out of the task log, on the worker and in the
    #: trigger's streaming (``@task.backend_ai`` sets its result frame's marker); None keeps every line.
    hidden_log_prefix: str | None = None

    def __init__(
        self,
        *,
        on_finish_action: str = "destroy",
        xcom_log_limit: int = DEFAULT_XCOM_LOG_LIMIT,
        log_streaming: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        durable: bool = False,
        **kwargs: Any,
    ) -> None:
        # ``durable`` is not passed on: the mixin defaults it to True on Airflow 3.3+, and its stand-in on
        # older lines warns and turns it off, while here it also drives the tag search on every line.
        super().__init__(**kwargs)
        self.durable = params.check_bool("durable", durable)
        self.on_finish_action = FinishAction.parse(on_finish_action)
        if isinstance(xcom_log_limit, bool) or not isinstance(xcom_log_limit, int) or xcom_log_limit < 0:
            raise ValueError(f"Invalid xcom_log_limit {xcom_log_limit!r}: expected a non-negative integer")
        self.xcom_log_limit = xcom_log_limit
        self.log_streaming = log_streaming
        self.deferrable = deferrable

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.backend.ai._watch.loop import wait_for_session

        self.spec = self.session_spec(context)
        with self.hook.get_conn():
            try:
                # Picks the session to watch: the stored one of an earlier try (durable, Airflow 3.3+), one
                # found by the earlier tries' tags, or a new one; a new one is stored before any wait.
                self.execute_resumable(context)
            except BaseException:
                if self.session_id is not None:  # made or adopted, then storing its id failed
                    self._tear_down(None)
                raise
            if self.watched is None:
                raise RuntimeError("no Backend.AI session was created or adopted")
            session_id, session_name = self.watched
            follower = self._log_follower(session_id)
            try:
                if self.deferrable:
                    facts = self.hook.get_session_facts(session_id)
                else:
                    facts = wait_for_session(
                        self.hook,
                        session_id,
                        startup_timeout=self.startup_timeout,
                        poll_interval=self.poll_interval,
                        log=self.log,
                        on_read=(lambda facts: self._stream_log(follower, facts))
                        if self.log_streaming
                        else None,
                        use_event_stream=self.use_event_stream,
                    )
            except BaseException:
                self._tear_down(None)
                raise
            if facts.verdict is not Verdict.RUNNING:
                return self._finish(facts, session_name, follower)
        self._defer(session_id, session_name)

    def _log_follower(self, session_id: str, start: int = 0, run: str | None = None) -> LogFollower:
        from airflow.providers.backend.ai._watch.log_follower import LogFollower, task_log_writer

        return LogFollower(
            task_log_writer(self.log, session_id, hide=self.hidden_log_prefix), start=start, run=run
        )

    def _stream_log(self, follower: LogFollower, facts: SessionFacts) -> None:
        """Copy new log lines into the task log while the job runs (``log_streaming``)."""
        if not follower.streaming:
            return
        try:
            follower.update(self.hook.get_session_logs(facts.session_id), facts.running_since)
        except BackendAIException as exc:
            self.log.warning(
                "Could not read the session log (%s); it is written in full when the job ends", exc
            )
            return
        if not follower.streaming:
            self.log.info(
                "The session log is over %d characters: no longer streamed, the rest follows when the job ends",
                follower.stream_limit,
            )

    def _defer(self, session_id: str, session_name: str) -> NoReturn:
        """
        Hand the waiting to the triggerer with absolute deadlines.

        Airflow does not enforce ``execution_timeout`` once a task is deferred, and a deferral that times out
        on Airflow's side never reaches ``execute_complete``, so the trigger enforces the deadlines itself
        (and reports a ``timeout`` event, which destroys the session); Airflow's own timeout is a backstop,
        with room for REQUEUES_COVERED preemptions, each of which moves the trigger's end deadline.
        """
        from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

        now = time.time()
        run_limit = self.batch_timeout or (
            self.execution_timeout.total_seconds() if self.execution_timeout else None
        )
        end_deadline = None if run_limit is None else now + self.startup_timeout + run_limit + DEFERRAL_GRACE
        requeues = 0.0 if run_limit is None else REQUEUES_COVERED * (self.startup_timeout + run_limit)
        self.defer(
            trigger=BackendAISessionTrigger(
                session_id=session_id,
                backend_ai_conn_id=self.backend_ai_conn_id,
                poll_interval=self.poll_interval,
                session_name=session_name,
                startup_deadline=now + self.startup_timeout,
                end_deadline=end_deadline,
                destroy_on_kill=self.on_finish_action.destroys(None),
                stream_logs=self.log_streaming and AIRFLOW_V_3_0_PLUS,
                use_event_stream=self.use_event_stream,
                startup_timeout=self.startup_timeout,
                requeue_extends_end_deadline=True,
                hide_line_prefix=self.hidden_log_prefix,
            ),
            method_name="execute_complete",
            timeout=None
            if end_deadline is None
            else timedelta(seconds=end_deadline - now + requeues + DEFERRAL_GRACE),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: judge the facts it saw, with the worker path's log and teardown."""
        outcome = TriggerOutcome.from_payload(event)
        self.session_id = outcome.session_id
        with self.hook.get_conn():
            if outcome.kind is EventKind.ENDED and outcome.facts is not None:
                # The trigger may have streamed the first part of the log already (Airflow 3).
                follower = self._log_follower(outcome.session_id, outcome.log_offset, outcome.log_run)
                return self._finish(outcome.facts, outcome.session_name, follower)
            self._tear_down(None)
        if outcome.kind is EventKind.TIMEOUT:
            raise BackendAIStartupTimeoutError(
                f"{outcome.message}; the session was destroyed"
                if self.on_finish_action.destroys(None)
                else outcome.message,
                session_id=outcome.session_id,
                facts=outcome.facts,
            )
        raise BackendAIException(outcome.message)

    def _finish(self, facts: SessionFacts, session_name: str | None, follower: LogFollower) -> Any:
        """Write the rest of the log, return the task's outcome (or raise), and apply ``on_finish_action``."""
        from airflow.providers.backend.ai._watch.end import final_log

        try:
            logs = final_log(
                self.hook, facts.session_id, log=self.log, follower=follower, run=facts.running_since
            )
            return self.job_outcome(facts, logs, session_name)
        finally:
            self._tear_down(facts)

    def job_outcome(self, facts: SessionFacts, logs: FinalLog, session_name: str | None) -> Any:
        """
        The XCom value of a job that ended, or its failure (``BackendAIJobFailedError``).

        Subclasses that read the job's result from its output (the ``@task.backend_ai`` decorator) override
        this; ``logs`` says whether the whole log could be fetched.
        """
        return finish_batch(facts, logs.text, session_name=session_name, xcom_log_limit=self.xcom_log_limit)

    def _tear_down(self, facts: SessionFacts | None) -> None:
        from airflow.providers.backend.ai._watch.end import tear_down

        if self.session_id is not None:
            verdict = facts.verdict if facts is not None else None
            tear_down(self.hook, self.session_id, self.on_finish_action, verdict, log=self.log)


class BackendAICreateSessionOperator(SessionOperatorBase):
    """
    Create a Backend.AI batch session and return ``{"session_id", "session_name"}`` without waiting for its end.

    Use it with :class:`~airflow.providers.backend.ai.sensors.backend_ai.BackendAISessionSensor` and
    :class:`BackendAIDestroySessionOperator` when waiting and cleaning up are separate tasks. The session is
    destroyed if this task fails or is killed before handing it over.

    .. seealso::
        :ref:`howto/operator:BackendAICreateSessionOperator`

    Takes the session parameters of :class:`BackendAIRunBatchOperator` (from ``image`` to ``poll_interval``),
    plus:

    :param wait_for_start: Wait (up to ``startup_timeout``) until the session has started running.
    """

    def __init__(self, *, wait_for_start: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wait_for_start = wait_for_start

    def execute(self, context: Context) -> dict[str, str]:
        from airflow.providers.backend.ai._watch.loop import wait_for_session

        spec = self.session_spec(context)
        with self.hook.get_conn():
            session_id = self.create_session(context, spec)
            handed_over = False
            try:
                if self.wait_for_start:
                    wait_for_session(
                        self.hook,
                        session_id,
                        startup_timeout=self.startup_timeout,
                        poll_interval=self.poll_interval,
                        log=self.log,
                        until_started=True,
                        use_event_stream=False,  # the stream wakes on ends only; starting is polled
                    )
                handed_over = True
            finally:
                if not handed_over:
                    self.destroy_session("the task failed before handing the session over")
        return {"session_id": session_id, "session_name": spec.name}


class BackendAIDestroySessionOperator(BaseOperator):
    """
    Destroy a Backend.AI session; succeed if it is already gone. Suited to ``trigger_rule="all_done"`` cleanup.

    "Already gone" means the manager no longer has it live: a name no live session has (404), or this
    keypair's session that had ended. A session id the manager will not show to this keypair (unknown, or
    another keypair's: a 403 under Backend.AI's RBAC) fails the task with
    :class:`~airflow.providers.backend.ai.exceptions.BackendAISessionNotVisibleError`: nothing was destroyed.

    .. seealso::
        :ref:`howto/operator:BackendAIDestroySessionOperator`

    :param session_id: Session id, or the name of a live session. (templated)
    :param backend_ai_conn_id: The ``backend_ai`` connection to use.
    :param forced: Skip the graceful termination.
    """

    template_fields: Sequence[str] = ("session_id",)

    def __init__(
        self,
        *,
        session_id: str,
        backend_ai_conn_id: str = BackendAIHook.default_conn_name,
        forced: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.session_id = session_id
        self.backend_ai_conn_id = backend_ai_conn_id
        self.forced = params.check_bool("forced", forced)

    def execute(self, context: Context) -> bool:
        session = params.check_non_empty_string("session_id", self.session_id)
        hook = BackendAIHook(backend_ai_conn_id=self.backend_ai_conn_id)
        try:
            destroyed = hook.destroy_session(session, forced=self.forced)
        except BackendAISessionNotVisibleError:
            self.log.error(
                "The manager does not show Backend.AI session %s to this connection's keypair (the id is "
                "unknown, or the session is another keypair's): nothing was destroyed",
                session,
            )
            raise
        if destroyed:
            self.log.info("Destroyed Backend.AI session %s", session)
        else:
            self.log.info("Backend.AI session %s had already ended; nothing to destroy", session)
        return destroyed
