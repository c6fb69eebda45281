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
The loops that drive a :class:`~._watch.step.Watch`: on a worker (sync) and in the triggerer (async).

Each performs the actions the watch asks for, reads, pauses and log copies, with its own kind of I/O, and
nothing else. The worker's wait for a batch job (:func:`wait_for_session`) and the final log read of an
ended job (:func:`read_final_log`, which the manager cannot serve for a few seconds) are here too.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

from airflow.providers.backend.ai._session.state import TERMINAL_STATUSES, SessionFacts
from airflow.providers.backend.ai._session.waiting import WaitReason
from airflow.providers.backend.ai._watch.hub import Wake, watch_session_events, watch_session_events_sync
from airflow.providers.backend.ai._watch.step import (
    Done,
    End,
    Pause,
    Reading,
    ReadNow,
    ReadWhy,
    Watch,
    WatchPlan,
)
from airflow.providers.backend.ai.exceptions import (
    BackendAIException,
    BackendAINotFoundError,
    BackendAIStartupTimeoutError,
    BackendAITransientError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig
    from airflow.providers.backend.ai._watch.hub import AsyncEventWatch, SyncEventWatch
    from airflow.providers.backend.ai._watch.step import Action, Happened, TaskLog

#: When the log of an ended job cannot be read yet (see ``read_final_log``): how long to wait for the session
#: to terminate (the manager then serves the stored log), and how often to look.
FINAL_LOG_WAIT = 60.0
FINAL_LOG_CHECK = 1.0


class SessionReader(Protocol):
    """What the worker's wait needs of a hook: its connection settings and three reads."""

    @property
    def settings(self) -> BackendAIConnectionConfig: ...

    def get_session_facts(self, session_id: str) -> SessionFacts: ...

    def get_session_logs(self, session_id: str) -> str: ...

    def get_wait_reason(self, session_id: str) -> WaitReason: ...


def run_watch(
    watch: Watch,
    read: Callable[[], SessionFacts],
    events: SyncEventWatch | None,
    stream_log: Callable[[SessionFacts], object],
    read_why: Callable[[], WaitReason] | None = None,
) -> Done:
    """Drive ``watch`` on a worker thread until it is done."""
    action: Action = watch.start(now=time.time(), stream=events)
    while not isinstance(action, Done):
        if isinstance(action, ReadNow):
            happened: Happened = _read(read, events)
        elif isinstance(action, ReadWhy):
            happened = _read_why(read_why)
        else:
            if action.stream_log and watch.facts is not None:
                stream_log(watch.facts)
            happened = _pause(action, events)
        action = watch.step(happened, now=time.time(), stream=events)
    return action


async def a_run_watch(
    watch: Watch,
    read: Callable[[], Awaitable[SessionFacts]],
    events: AsyncEventWatch | None,
    stream_log: Callable[[SessionFacts], Awaitable[object]],
    read_why: Callable[[], Awaitable[WaitReason]] | None = None,
) -> Done:
    """Async twin of :func:`run_watch`, for the triggerer's event loop."""
    action: Action = watch.start(now=time.time(), stream=events)
    while not isinstance(action, Done):
        if isinstance(action, ReadNow):
            happened: Happened = await _a_read(read, events)
        elif isinstance(action, ReadWhy):
            happened = await _a_read_why(read_why)
        else:
            if action.stream_log and watch.facts is not None:
                await stream_log(watch.facts)
            happened = await _a_pause(action, events)
        action = watch.step(happened, now=time.time(), stream=events)
    return action


def _read(read: Callable[[], SessionFacts], events: SyncEventWatch | None) -> Reading:
    if events is not None:
        events.drain()  # this read answers every wake-up so far
    try:
        return Reading(read(), event_reason=events.event_reason if events else None)
    except BackendAITransientError as exc:
        return Reading(error=exc)


async def _a_read(read: Callable[[], Awaitable[SessionFacts]], events: AsyncEventWatch | None) -> Reading:
    if events is not None:
        events.drain()
    try:
        return Reading(await read(), event_reason=events.event_reason if events else None)
    except BackendAITransientError as exc:
        return Reading(error=exc)


#: What a watch hears when its loop was given nothing to read why a session waits with.
_CANNOT_SAY_WHY = WaitReason(error="this watch cannot read why a session waits")


def _read_why(read_why: Callable[[], WaitReason] | None) -> WaitReason:
    try:
        return _CANNOT_SAY_WHY if read_why is None else read_why()
    except BackendAIException as exc:
        return _why_unknown(exc)


async def _a_read_why(read_why: Callable[[], Awaitable[WaitReason]] | None) -> WaitReason:
    try:
        return _CANNOT_SAY_WHY if read_why is None else await read_why()
    except BackendAIException as exc:
        return _why_unknown(exc)


def _why_unknown(exc: BackendAIException) -> WaitReason:
    """A failed read of why a session waits: asked again later only if the failure may pass."""
    return WaitReason(error=str(exc), transient=isinstance(exc, BackendAITransientError))


def _pause(pause: Pause, events: SyncEventWatch | None) -> Wake | None:
    if pause.on_events and events is not None:
        return events.wait(pause.seconds)
    time.sleep(pause.seconds)
    return None


async def _a_pause(pause: Pause, events: AsyncEventWatch | None) -> Wake | None:
    if pause.on_events and events is not None:
        return await events.wait(pause.seconds)
    await asyncio.sleep(pause.seconds)
    return None


def watch_events(settings: BackendAIConnectionConfig | None, session_id: str) -> AbstractContextManager[Any]:
    """The session's event watch on a worker (None inside when ``settings`` is None: poll alone)."""
    return nullcontext() if settings is None else watch_session_events_sync(settings, session_id)


def a_watch_events(
    settings: BackendAIConnectionConfig | None, session_id: str
) -> AbstractAsyncContextManager[Any]:
    """Async twin of :func:`watch_events`, for the triggerer's event loop."""
    return nullcontext() if settings is None else watch_session_events(settings, session_id)


def wait_for_session(
    hook: SessionReader,
    session_id: str,
    *,
    startup_timeout: float,
    poll_interval: float,
    log: TaskLog,
    until_started: bool = False,
    on_read: Callable[[SessionFacts], object] | None = None,
    use_event_stream: bool = True,
    give_up_at: float | None = None,
) -> SessionFacts:
    """
    Read the session's state until its job ended (or, with ``until_started``, until it started).

    ``on_read`` is called with the state while the job runs, when the log is due (the operator streams the
    log there). At ``give_up_at`` (Unix time) the last state read is returned, whatever it is; a requeue
    does not move it. The event stream only announces ends (and preemptions), so waiting for a start
    always polls. A session that was preempted and requeued must start again within ``startup_timeout``
    of the requeue; while a session waits, why it waits is logged when that changes.

    :raises BackendAIStartupTimeoutError: the session did not start within ``startup_timeout`` seconds.
    """
    plan = WatchPlan(
        poll_interval,
        startup_deadline=time.time() + startup_timeout,
        end_deadline=give_up_at,
        until_started=until_started,
        stream_logs=on_read is not None,
        startup_timeout=startup_timeout,
        explain_waits=True,
    )
    watch = Watch(session_id, plan, log)
    settings = hook.settings if use_event_stream and not until_started else None
    with watch_events(settings, session_id) as events:
        done = run_watch(
            watch,
            lambda: hook.get_session_facts(session_id),
            events,
            on_read or (lambda facts: None),
            lambda: hook.get_wait_reason(session_id),
        )
    if done.end is End.START_TIMEOUT:
        raise startup_timeout_error(session_id, startup_timeout, done.facts, done.waiting_reason)
    assert done.facts is not None  # every other end comes from a read
    return done.facts


def startup_timeout_error(
    session_id: str, startup_timeout: float, facts: SessionFacts | None, waiting_reason: str | None = None
) -> BackendAIStartupTimeoutError:
    return BackendAIStartupTimeoutError(
        f"Session {session_id} did not start within startup_timeout={startup_timeout:g}s"
        f"{start_timeout_detail(facts, waiting_reason)}",
        session_id=session_id,
        facts=facts,
    )


def start_timeout_detail(facts: SessionFacts | None, waiting_reason: str | None) -> str:
    """``; last status PENDING (…)`` and the scheduler's last word on the session, for a timeout's message."""
    status = facts.status if facts else "unknown"
    info = f" ({facts.status_info})" if facts and facts.status_info else ""
    requeued = " after it was preempted and requeued" if facts is not None and facts.requeued else ""
    why = f"; last reason: {waiting_reason}" if waiting_reason else ""
    return f"{requeued}; last status {status}{info}{why}"


def read_final_log(hook: SessionReader, session_id: str, *, log: TaskLog) -> str:
    """
    Read the whole log of a session whose job has ended.

    The manager asks the agent for it until the agent drops the kernel (about a scheduler tick after the job
    ends), answers HTTP 500 from then until the session is TERMINATED, and serves the stored log after that.
    A loaded manager can record the result inside that gap, or hold the gap longer than the hook's retries:
    so after a transient failure the log is read once more when the session has terminated.

    :raises BackendAIException: the log could not be read even then.
    """
    try:
        return hook.get_session_logs(session_id)
    except BackendAITransientError as exc:
        log.info(
            "The log of session %s cannot be read until the session has terminated (%s); waiting up to %gs",
            session_id,
            exc,
            FINAL_LOG_WAIT,
        )
    wait_until_terminal(hook, session_id, timeout=FINAL_LOG_WAIT, check_every=FINAL_LOG_CHECK)
    return hook.get_session_logs(session_id)


def wait_until_terminal(hook: SessionReader, session_id: str, *, timeout: float, check_every: float) -> str:
    """
    Read the session's status every ``check_every`` seconds until it is terminal or ``timeout`` has passed.

    :return: the last status read; a session the manager no longer knows counts as TERMINATED.
    """
    deadline = time.time() + timeout
    while True:
        try:
            status = hook.get_session_facts(session_id).status
        except BackendAINotFoundError:
            return "TERMINATED"
        if status in TERMINAL_STATUSES or time.time() >= deadline:
            return status
        time.sleep(check_every)
