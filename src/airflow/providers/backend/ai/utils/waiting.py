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
Watch a session until it has started, or until its job has ended: when to read its state, and the worker's loop.
Then read the log of the ended job (``read_final_log``), which the manager cannot serve for a few seconds.

With the event stream open (``utils.session_events``) a waiter reads the state when an event says the job
ended, when the stream (re)opens, and otherwise once per ``poll_interval`` (a safety poll that bounds what a
lost event can cost). Without the stream it polls alone, fast while the job is young (see ``poll_delays``).
"""

from __future__ import annotations

import itertools
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from airflow.providers.backend.ai.exceptions import (
    BackendAINotFoundError,
    BackendAIStartupTimeoutError,
    BackendAITransientError,
)
from airflow.providers.backend.ai.utils.session_events import StreamState, Wake, watch_session_events_sync
from airflow.providers.backend.ai.utils.session_state import TERMINAL_STATUSES, SessionFacts, Verdict

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
    from airflow.providers.backend.ai.utils.outcome import TaskLog
    from airflow.providers.backend.ai.utils.session_events import SyncEventWatch

#: First delay between two status reads when polling alone. Reads then slow down by BACKOFF up to the poll
#: interval, so a short job is seen to end within about a second while a long one costs one request per
#: poll interval. The backoff starts again when the job is first seen running: on a real manager a session
#: takes ~10 s to start, and a job that ends soon after would otherwise fall between two far-apart reads.
FIRST_POLL_DELAY = 0.25
BACKOFF = 1.5
#: How long reads may keep failing (each after the hook's own retries) before the wait gives up, in poll
#: intervals: a manager restart takes some 20 s, and the job goes on meanwhile.
OUTAGE_POLL_INTERVALS = 2
#: Longest wait for the event stream to open before the first read (a read after it opens sees any end
#: that came before).
STREAM_OPEN_WAIT = 2.0
#: When the log of an ended job cannot be read yet (see ``read_final_log``): how long to wait for the session
#: to terminate (the manager then serves the stored log), and how often to look.
FINAL_LOG_WAIT = 60.0
FINAL_LOG_CHECK = 1.0


def poll_delays(poll_interval: float) -> list[float]:
    """The delays before the first reads: growing from FIRST_POLL_DELAY, then poll_interval forever."""
    delays, delay = [], min(FIRST_POLL_DELAY, poll_interval)
    while delay < poll_interval:
        delays.append(delay)
        delay *= BACKOFF
    return [*delays, poll_interval]


class WatchSchedule:
    """
    When to read a watched session next, and what to say about it; one schedule for worker and triggerer.

    :param session_id: the watched session.
    :param poll_interval: the longest pause between two reads (the safety poll while events arrive).
    :param log: where status changes and the switch to polling are written.
    """

    def __init__(self, session_id: str, poll_interval: float, log: TaskLog) -> None:
        self.session_id = session_id
        self.poll_interval = poll_interval
        self._log = log
        self._delays = poll_delays(poll_interval)
        self._reads = itertools.count()
        self._started = False
        self._last_status: str | None = None
        self._said_polling = False
        self._failing_since: float | None = None
        self._end_announced = False

    def saw(self, facts: SessionFacts) -> None:
        """Note a read: log a new status, and restart the fast reads when the job is first seen running."""
        self._failing_since = None
        if facts.status != self._last_status:
            self._log.info("Session %s is %s %s", self.session_id, facts.status, facts.status_info or "")
            self._last_status = facts.status
        if facts.has_started and not self._started:
            self._started, self._reads = True, itertools.count()

    def end_announced(self) -> None:
        """
        An event said the job ended, but the read does not show the result yet: read again soon.

        A busy manager can take seconds to record a result its agent already announced (measured: 6 s with
        200 sessions on 2 cores); waiting a whole poll interval for the next read would add all of it.
        """
        if not self._end_announced:
            self._end_announced, self._reads = True, itertools.count()

    @property
    def end_pending(self) -> bool:
        """
        An event said the job ended: skip the log reads of a running job until a read confirms it.

        The final log read follows at once; a read meanwhile may meet the manager's HTTP 500 window (the
        kernel is gone, the session not yet TERMINATED), whose retries would hold up the wait by seconds.
        """
        return self._end_announced

    def read_failed(self, error: BackendAITransientError) -> None:
        """Tolerate failed reads for OUTAGE_POLL_INTERVALS poll intervals, then re-raise the last one."""
        now = time.time()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since > OUTAGE_POLL_INTERVALS * self.poll_interval:
            raise error
        self._log.warning("Could not read the state of session %s (%s); trying again", self.session_id, error)

    def next_delay(self, stream: StreamState | None) -> float:
        """The pause before the next read: the poll interval while events arrive, else the fast schedule."""
        reads = next(self._reads)
        if stream is StreamState.OPEN and not self._end_announced:
            return self.poll_interval
        return self._delays[min(reads, len(self._delays) - 1)]

    def note_stream(self, stream: StreamState | None, reason: str | None) -> None:
        """Say once why this wait polls although events were asked for."""
        if stream not in (StreamState.UNAVAILABLE, StreamState.CONNECTING) or self._said_polling:
            return
        self._said_polling = True
        why = f"is not available ({reason})" if stream is StreamState.UNAVAILABLE else "did not open (yet)"
        self._log.info(
            "The Backend.AI event stream %s; watching session %s by polling, at most every %g s",
            why,
            self.session_id,
            self.poll_interval,
        )


def with_reason(facts: SessionFacts, event_reason: str | None) -> SessionFacts:
    """Fill in the end reason from the session's event: the manager records it ~30 ms after the result."""
    if facts.status_info is None and event_reason is not None and facts.verdict is not Verdict.RUNNING:
        return SessionFacts(**{**facts.to_dict(), "status_info": event_reason})
    return facts


def wait_for_session(
    hook: BackendAIHook,
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

    ``on_read`` is called with every state read while the job goes on (the operator streams logs there).
    At ``give_up_at`` (Unix time) the last state read is returned, whatever it is. The event stream only
    announces ends, so waiting for a start always polls.

    :raises BackendAIStartupTimeoutError: the session did not start within ``startup_timeout`` seconds.
    """
    watching = use_event_stream and not until_started
    events: Any = watch_session_events_sync(hook, session_id) if watching else nullcontext()
    with events as watch:
        return _wait(
            hook, session_id, watch, startup_timeout, poll_interval, log, until_started, on_read, give_up_at
        )


def _wait(
    hook: BackendAIHook,
    session_id: str,
    events: SyncEventWatch | None,
    startup_timeout: float,
    poll_interval: float,
    log: TaskLog,
    until_started: bool,
    on_read: Callable[[SessionFacts], object] | None,
    give_up_at: float | None,
) -> SessionFacts:
    startup_deadline = time.time() + startup_timeout
    schedule = WatchSchedule(session_id, poll_interval, log)
    facts: SessionFacts | None = None
    if events is not None and events.state is StreamState.CONNECTING:
        events.wait(STREAM_OPEN_WAIT)  # read once the stream is open: the read then sees any earlier end
    wake: Wake | None = None
    while True:
        if wake is not Wake.LOST:  # a lost stream calls for faster reads, not for one now
            if events is not None:
                events.drain()  # this read answers every wake-up so far
            try:
                facts = hook.get_session_facts(session_id)
            except BackendAITransientError as exc:
                schedule.read_failed(exc)
            else:
                schedule.saw(facts)
                facts = with_reason(facts, events.event_reason if events else None)
                if facts.verdict is not Verdict.RUNNING and facts.status_info is None:
                    time.sleep(FIRST_POLL_DELAY)  # the reason is recorded just after the result
                    facts = hook.get_session_facts(session_id)
                if facts.verdict is not Verdict.RUNNING or (until_started and facts.has_started):
                    return facts
                if wake is Wake.EVENT:
                    schedule.end_announced()
                if on_read is not None and not schedule.end_pending:
                    on_read(facts)
        stream = events.state if events else None
        delay = schedule.next_delay(stream)
        if facts is None or not facts.has_started:
            remaining = startup_deadline - time.time()
            if remaining <= 0:
                raise _startup_timeout(session_id, startup_timeout, facts)
            delay = min(delay, remaining)
        if give_up_at is not None:
            if facts is not None and time.time() >= give_up_at:
                return facts
            delay = max(0.0, min(delay, give_up_at - time.time()))
        if events is None:
            time.sleep(delay)
            continue
        schedule.note_stream(stream, events.unavailable_reason)
        wake = events.wait(delay)


def read_final_log(hook: BackendAIHook, session_id: str, *, log: TaskLog) -> str:
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


def wait_until_terminal(hook: BackendAIHook, session_id: str, *, timeout: float, check_every: float) -> str:
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


def _startup_timeout(
    session_id: str, startup_timeout: float, facts: SessionFacts | None
) -> BackendAIStartupTimeoutError:
    status = facts.status if facts else "unknown"
    info = f" ({facts.status_info})" if facts and facts.status_info else ""
    return BackendAIStartupTimeoutError(
        f"Session {session_id} did not start within startup_timeout={startup_timeout:g}s; "
        f"last status {status}{info}",
        session_id=session_id,
        status=status,
        result=facts.result if facts else None,
        status_info=facts.status_info if facts else None,
    )
