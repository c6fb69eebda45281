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
Trigger that watches a Backend.AI batch session from the triggerer until its job ends.

The watch machinery (``_watch``) is imported when the trigger runs, not with this module: a Dag file that
imports it (or an operator that only builds one to defer) does not pay for it.
"""

from __future__ import annotations

import asyncio
from functools import cached_property
from typing import TYPE_CHECKING, Any
from uuid import UUID

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow.providers.backend.ai._session.events import SESSION_ID_XCOM_KEY, EventKind, TriggerOutcome
from airflow.providers.backend.ai._watch.log_follower import LogFollower
from airflow.providers.backend.ai.exceptions import BackendAIException
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.version_compat import AIRFLOW_V_3_0_PLUS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow.providers.backend.ai._session.state import SessionFacts
    from airflow.providers.backend.ai._watch.step import Done

#: The trigger reads the log every LOG_READ_EVERY status reads: hundreds of triggers share one triggerer
#: and one manager, so streaming adds an eighth to the status reads' load. Each trigger reads at its own
#: phase of that cycle, so that triggers started together do not all read their logs in the same round.
LOG_READ_EVERY = 8
#: How long ``on_kill`` waits for the task's state before it destroys the session anyway.
TASK_STATE_TIMEOUT = 20.0
#: The running ``on_kill`` work (the event loop keeps only weak references to tasks).
_KILLS: set[asyncio.Future[None]] = set()


class BackendAISessionTrigger(BaseTrigger):
    """
    Watch a batch session until its job ends, then yield one event with the facts (never a verdict).

    The event says why the watch stopped (``ended``, ``timeout`` when a deadline passed, ``error`` when the
    API kept failing after retries) and the session's last state; the resumed task judges that state. The
    trigger never destroys the session on its own: a triggerer restart must not kill the job. Only a user's
    kill or clear of the deferred task does (``on_kill`` on Airflow 3.3+, ``cleanup`` once the task is no
    longer deferred on Airflow 2).

    :param session_id: Id of the session to watch.
    :param backend_ai_conn_id: The ``backend_ai`` connection to use.
    :param poll_interval: Longest pause between two status reads, in seconds: the safety poll while the event
        stream is open, the slowest poll without it.
    :param session_name: Name of the session, reported back in the event.
    :param startup_deadline: Unix time by which the session must have started, or None.
    :param end_deadline: Unix time by which the job must have ended, or None.
    :param destroy_on_kill: Destroy the session when the user kills or clears the deferred task.
    :param stream_logs: Copy new log lines into the trigger's log (shown in the task log on Airflow 3) while
        the job runs; the event then says how much was written (``log_offset``).
    :param use_event_stream: Learn of the job's end from the manager's event stream, shared by every trigger
        of the triggerer for this connection; poll alone when False or when the stream is not available.
    :param startup_timeout: How long a session the scheduler preempted and requeued may take to start again
        (its startup deadline restarts at the requeue), in seconds; None: 600.
    :param requeue_extends_end_deadline: A requeue moves ``end_deadline`` (by the time from the preempted
        run's start to the rerun's); off for a sensor, whose timeout is the user's whole wait.
    :param hide_line_prefix: Log lines that start with this are not streamed (``@task.backend_ai``'s result
        frame); the resumed task still reads the whole log. None (the default, and what triggers serialized
        before this parameter existed load with) streams every line.

    The two parameters on preemption came later than the others: a trigger serialized without them gets
    the defaults, which keep its earlier deadlines.
    """

    def __init__(
        self,
        *,
        session_id: str,
        backend_ai_conn_id: str = BackendAIHook.default_conn_name,
        poll_interval: float = 15,
        session_name: str | None = None,
        startup_deadline: float | None = None,
        end_deadline: float | None = None,
        destroy_on_kill: bool = True,
        stream_logs: bool = False,
        use_event_stream: bool = True,
        startup_timeout: float | None = None,
        requeue_extends_end_deadline: bool = False,
        hide_line_prefix: str | None = None,
    ) -> None:
        super().__init__()
        self.session_id = session_id
        self.backend_ai_conn_id = backend_ai_conn_id
        self.poll_interval = poll_interval
        self.session_name = session_name
        self.startup_deadline = startup_deadline
        self.end_deadline = end_deadline
        self.destroy_on_kill = destroy_on_kill
        self.stream_logs = stream_logs
        self.use_event_stream = use_event_stream
        self.startup_timeout = startup_timeout
        self.requeue_extends_end_deadline = requeue_extends_end_deadline
        self.hide_line_prefix = hide_line_prefix
        self._event_yielded = False
        self._follower = LogFollower(self._write_line)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "session_id": self.session_id,
                "backend_ai_conn_id": self.backend_ai_conn_id,
                "poll_interval": self.poll_interval,
                "session_name": self.session_name,
                "startup_deadline": self.startup_deadline,
                "end_deadline": self.end_deadline,
                "destroy_on_kill": self.destroy_on_kill,
                "stream_logs": self.stream_logs,
                "use_event_stream": self.use_event_stream,
                "startup_timeout": self.startup_timeout,
                "requeue_extends_end_deadline": self.requeue_extends_end_deadline,
                "hide_line_prefix": self.hide_line_prefix,
            },
        )

    def _write_line(self, line: str) -> None:
        if self.hide_line_prefix is None or not line.startswith(self.hide_line_prefix):
            self.log.info("%s", line)

    @cached_property
    def hook(self) -> BackendAIHook:
        return BackendAIHook(backend_ai_conn_id=self.backend_ai_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            async with self.hook.get_async_conn():
                outcome = self._outcome(await self._watch())
        except BackendAIException as exc:
            message = f"Watching Backend.AI session {self.session_id} failed: {exc}"
            outcome = TriggerOutcome(EventKind.ERROR, self.session_id, self.session_name, message)
        self._event_yielded = True
        yield TriggerEvent(outcome.to_payload())

    async def _watch(self) -> Done:
        from airflow.providers.backend.ai._watch.loop import a_run_watch, a_watch_events
        from airflow.providers.backend.ai._watch.step import Watch, WatchPlan

        plan = WatchPlan(
            self.poll_interval,
            startup_deadline=self.startup_deadline,
            end_deadline=self.end_deadline,
            read_first=False,  # the task read the state just before deferring
            stream_logs=self.stream_logs,
            log_every=LOG_READ_EVERY,
            log_phase=UUID(self.session_id).int % LOG_READ_EVERY,
            startup_timeout=self.startup_timeout,
            requeue_extends_end=self.requeue_extends_end_deadline,
            explain_waits=True,
        )
        watch = Watch(self.session_id, plan, self.log)
        settings = await self.hook.a_settings() if self.use_event_stream else None
        async with a_watch_events(settings, self.session_id) as events:
            return await a_run_watch(
                watch,
                lambda: self.hook.a_get_session_facts(self.session_id),
                events,
                self._stream_log,
                lambda: self.hook.a_get_wait_reason(self.session_id),
            )

    def _outcome(self, done: Done) -> TriggerOutcome:
        from airflow.providers.backend.ai._watch.loop import start_timeout_detail
        from airflow.providers.backend.ai._watch.step import End

        facts = done.facts
        if done.end is End.ENDED:
            message = f"The job ended: {facts.result if facts else 'unknown'}"
            kind = EventKind.ENDED
        else:
            what = "start" if done.end is End.START_TIMEOUT else "end"
            message = f"The session did not {what} in time{start_timeout_detail(facts, done.waiting_reason)}"
            kind = EventKind.TIMEOUT
        return TriggerOutcome(
            kind,
            self.session_id,
            self.session_name,
            message,
            facts,
            log_offset=self._follower.written,
            log_run=self._follower.run,
        )

    async def _stream_log(self, facts: SessionFacts) -> None:
        if not self._follower.streaming:
            return
        try:
            self._follower.update(await self.hook.a_get_session_logs(self.session_id), facts.running_since)
        except BackendAIException as exc:
            self.log.warning("Could not read the session log (%s); it is written when the task resumes", exc)

    async def on_kill(self) -> None:
        """
        Airflow 3.3+: the user killed, cleared or marked the deferred task; destroy the session (idempotent).

        Airflow 3.3 also calls ``on_kill`` when a triggerer that stalled past its heartbeat comes back and
        finds its triggers reassigned: the task is then still DEFERRED and another triggerer watches the job,
        which must survive. So the job is kept only while the task is DEFERRED *and* its session id in XCom
        is this session's (a cleared task's next try may be deferred already, with a session of its own);
        anything else, or no answer within TASK_STATE_TIMEOUT seconds, counts as the user's action.

        The triggerer cancels a trigger's task again at each sync with its supervisor while the task still
        runs, which cancels ``on_kill`` too (measured: the reads take 1-8 s there). The reads and the
        destroy therefore run in a task of their own that such a cancel does not reach.
        """
        if not self.destroy_on_kill:
            return
        kill = asyncio.ensure_future(self._kill())
        _KILLS.add(kill)
        kill.add_done_callback(_KILLS.discard)
        await asyncio.shield(kill)

    async def _kill(self) -> None:
        if await self._task_still_watches_this_session():
            self.log.info(
                "The task is still deferred on session %s (its trigger moved to another triggerer): keeping it",
                self.session_id,
            )
            return
        await self._destroy("the deferred task was killed or cleared")

    async def _task_still_watches_this_session(self) -> bool:
        """
        Ask the triggerer's supervisor (on this loop) for the task's state and its ``session_id`` XCom.

        The requests go through the runner's async channel (``asend``): a sync SDK call from another thread
        did not complete there in time on a LocalExecutor deployment.
        """
        ti = self.task_instance
        if ti is None or not AIRFLOW_V_3_0_PLUS:
            return False
        try:
            from airflow.sdk.execution_time import task_runner
            from airflow.sdk.execution_time.comms import GetTaskStates, GetXCom
            from airflow.sdk.execution_time.xcom import resolve_xcom_backend

            comms = task_runner.SUPERVISOR_COMMS
            dag_id, task_id, run_id, map_index = ti.dag_id, ti.task_id, ti.run_id, ti.map_index

            async def ask() -> tuple[Any, Any]:
                states = await comms.asend(
                    GetTaskStates(dag_id=dag_id, task_ids=[task_id], run_ids=[run_id], map_index=map_index)
                )
                pushed = await comms.asend(
                    GetXCom(
                        key=SESSION_ID_XCOM_KEY,
                        dag_id=dag_id,
                        task_id=task_id,
                        run_id=run_id,
                        map_index=map_index,
                    )
                )
                return states, pushed

            states, pushed = await asyncio.wait_for(ask(), TASK_STATE_TIMEOUT)
            pushed_id = None if pushed.value is None else resolve_xcom_backend().deserialize_value(pushed)
        except Exception as exc:
            self.log.warning(
                "Could not read the state of the deferred task (%s): destroying its session", exc
            )
            return False
        key = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
        state = states.task_states.get(ti.run_id, {}).get(key)
        return state is not None and str(state) == "deferred" and pushed_id == self.session_id

    async def cleanup(self) -> None:
        """
        Before Airflow 3.3 there is no ``on_kill`` for triggers: destroy here, but only if the task is no longer deferred.

        ``cleanup`` also runs on every triggerer restart or trigger redistribution, when the task is still
        DEFERRED; the session must then survive so that the next triggerer can pick it up.
        """
        if AIRFLOW_V_3_0_PLUS or self._event_yielded or not self.destroy_on_kill:
            return  # 3.3+ has on_kill; 3.0-3.2 give a trigger no safe way to tell (see the docs)
        if await asyncio.to_thread(self._task_is_still_deferred):
            return
        await self._destroy("the deferred task is no longer deferred")

    def _task_is_still_deferred(self) -> bool:
        """Airflow 2: read the task instance's state from the database (False if it cannot be found)."""
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        ti = self.task_instance
        if ti is None:
            return True  # unknown: err on the side of keeping the job
        with create_session() as db:
            state = (
                db.query(TaskInstance.state)
                .filter_by(dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index)
                .scalar()
            )
        return state == TaskInstanceState.DEFERRED

    async def _destroy(self, reason: str) -> None:
        try:
            if await BackendAIHook(backend_ai_conn_id=self.backend_ai_conn_id).a_destroy_session(
                self.session_id
            ):
                self.log.info("Destroyed Backend.AI session %s: %s", self.session_id, reason)
        except Exception:
            self.log.exception("Could not destroy Backend.AI session %s", self.session_id)
