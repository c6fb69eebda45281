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
What to do next while a session is watched, decided without any I/O: the one step both waiting paths drive.

A :class:`Watch` is told what happened (a read of the session's state, a failed read, a wake-up from the
event stream, or a pause that ran out) and answers with what to do next: :class:`ReadNow`, :class:`Pause`
or :class:`Done`. The worker's loop and the trigger (``_watch.loop``) perform those actions with sync and
async I/O; everything else, the schedule, the deadlines and the verdict, is here once.

With the event stream open (``_watch.hub``) a watch reads the state when an event says the job ended (or
the session was preempted), when the stream (re)opens, and otherwise once per ``poll_interval`` (a safety
poll that bounds what a lost event can cost). Without the stream it polls alone, fast while the job is
young (see :func:`poll_delays`).

A preempted session that the manager requeues is not a failure: :class:`~._watch.requeue.Requeues` moves
the deadlines. While a session waits to start, the watch asks now and then why (:class:`ReadWhy`) and
logs the answer when it changed.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from airflow.providers.backend.ai._session.state import SessionFacts, Verdict
from airflow.providers.backend.ai._session.waiting import WAITING_STATUSES, WaitReason
from airflow.providers.backend.ai._watch.hub import StreamState, Wake
from airflow.providers.backend.ai._watch.requeue import Requeues

if TYPE_CHECKING:
    from typing import Any

    from airflow.providers.backend.ai.exceptions import BackendAITransientError

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
#: When to ask why a session waits: first after it waited this long (a session on an idle cluster starts
#: within seconds, unasked), then at most once per WAIT_REASON_EVERY seconds.
WAIT_REASON_FIRST = 10.0
WAIT_REASON_EVERY = 60.0


class TaskLog(Protocol):
    """What is needed of a logger: a stdlib ``logging.Logger`` (Airflow 2) or a structlog one (Airflow 3)."""

    def debug(self, msg: Any, /, *args: Any) -> Any: ...

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...

    def error(self, msg: Any, /, *args: Any) -> Any: ...


class StreamStatus(Protocol):
    """How the event stream is doing, as a watch sees it (``_watch.hub``'s event watches)."""

    @property
    def state(self) -> StreamState: ...

    @property
    def unavailable_reason(self) -> str | None: ...


def poll_delays(poll_interval: float) -> list[float]:
    """The delays before the first reads: growing from FIRST_POLL_DELAY, then poll_interval forever."""
    delays, delay = [], min(FIRST_POLL_DELAY, poll_interval)
    while delay < poll_interval:
        delays.append(delay)
        delay *= BACKOFF
    return [*delays, poll_interval]


# -- what happened (the step's input) ------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """A read of the session's state: its facts, or the transient error that a read ended with."""

    facts: SessionFacts | None = None
    error: BackendAITransientError | None = None
    #: The ``reason`` of the session's end event, when one came (the manager records it ~30 ms later).
    event_reason: str | None = None


#: A pause ends with a wake-up from the event stream, or with None when it ran its full length; a
#: :class:`ReadWhy` with the :class:`WaitReason` it read.
Happened = Reading | WaitReason | Wake | None


# -- what to do (the step's output) --------------------------------------------------------------------


@dataclass(frozen=True)
class ReadNow:
    """Forget the stream's pending wake-ups, then read the session's state and report it as a :class:`Reading`."""


@dataclass(frozen=True)
class ReadWhy:
    """Read why the session waits to start (queue position, the scheduler's message); report a :class:`WaitReason`."""


@dataclass(frozen=True)
class Pause:
    """
    Wait ``seconds``, then report how the pause ended.

    :param on_events: an event from the stream may cut the pause short; else it is a plain sleep.
    :param stream_log: first copy the new lines of the session's log into the task log (``log_streaming``).
    """

    seconds: float
    on_events: bool = False
    stream_log: bool = False


class End(enum.StrEnum):
    """Why a watch is over."""

    ENDED = "ended"  # the job ended (its verdict is not RUNNING)
    STARTED = "started"  # it started, and the watch was only waiting for that
    START_TIMEOUT = "start_timeout"  # the startup deadline passed before it started
    END_TIMEOUT = "end_timeout"  # the end deadline passed before it ended


@dataclass(frozen=True)
class Done:
    """
    The watch is over: why, and the last facts read (None when no read succeeded).

    :param waiting_reason: after a deadline, the last reason the session was said to wait for, if any.
    """

    end: End
    facts: SessionFacts | None
    waiting_reason: str | None = None


Action = ReadNow | ReadWhy | Pause | Done


class _Phase(enum.Enum):
    FIRST_PAUSE = enum.auto()  # waiting before the first read
    OPENING = enum.auto()  # waiting for the event stream to open
    WATCHING = enum.auto()


@dataclass(frozen=True)
class WatchPlan:
    """
    What a watch is for: how often to read, its deadlines, and what it asks for besides reads.

    :param poll_interval: the longest pause between two reads (the safety poll while events arrive).
    :param startup_deadline: Unix time by which the session must have started, or None.
    :param end_deadline: Unix time by which the job must have ended, or None.
    :param startup_timeout: how long a preempted and requeued session may take to start again (its startup
        deadline restarts then); None: ``requeue.DEFAULT_RESTART_WINDOW``.
    :param requeue_extends_end: a requeue moves the end deadline (see ``_watch.requeue``).
    :param explain_waits: ask why the session waits (:class:`ReadWhy`) while it does.
    :param until_started: the watch is over as soon as the session has started.
    :param read_first: read at once; else pause first (the task read the state just before deferring).
    :param stream_logs: ask for the log to be streamed while the job runs.
    :param log_every: stream the log on every ``log_every``-th read, at ``log_phase`` of that cycle.
    """

    poll_interval: float
    startup_deadline: float | None = None
    end_deadline: float | None = None
    until_started: bool = False
    read_first: bool = True
    stream_logs: bool = False
    log_every: int = 1
    log_phase: int = 0
    startup_timeout: float | None = None
    requeue_extends_end: bool = False
    explain_waits: bool = False


class Watch:
    """
    The state of one watched session, stepped by a loop that performs the I/O it asks for.

    :param session_id: the watched session.
    :param plan: what the watch is for.
    :param log: where status changes, failed reads and the switch to polling are written.
    """

    def __init__(self, session_id: str, plan: WatchPlan, log: TaskLog) -> None:
        self.session_id = session_id
        self.plan = plan
        self.facts: SessionFacts | None = None
        self._log = log
        self._phase = _Phase.WATCHING if plan.read_first else _Phase.FIRST_PAUSE
        self._delays = poll_delays(plan.poll_interval)
        self._pauses = itertools.count()  # pauses since the schedule last started over
        self._running_reads = itertools.count(1)
        self._started = False
        self._last_status: str | None = None
        self._said_polling = False
        self._failing_since: float | None = None
        self._end_announced = False
        self._woken_by: Wake | None = None
        self._reread_for_reason = False
        self.requeues = Requeues(
            session_id,
            log,
            startup_deadline=plan.startup_deadline,
            startup_timeout=plan.startup_timeout,
            end_deadline=plan.end_deadline,
            extends_end=plan.requeue_extends_end,
        )
        self._waiting_since: float | None = None
        self._asked_why_at: float | None = None
        self._explain = plan.explain_waits
        self._said_why: tuple[str, int | None, str | None] | None = None
        self._asked_at_timeout = False
        self.waiting_reason: str | None = None

    def start(self, *, now: float, stream: StreamStatus | None) -> Action:
        """The first action."""
        if self._phase is _Phase.FIRST_PAUSE:
            return Pause(self._next_delay(None))
        return self._open_or_read(stream)

    def step(self, happened: Happened, *, now: float, stream: StreamStatus | None) -> Action:
        """The next action, after ``happened``; ``stream`` is the event stream's state (None without one)."""
        if isinstance(happened, Reading):
            return self._after_read(happened, now, stream)
        if isinstance(happened, WaitReason):
            self._heard_why(happened)
            return self._pause(now, stream)
        if self._phase is _Phase.FIRST_PAUSE:
            return self._open_or_read(stream)
        if self._phase is _Phase.OPENING:
            self._phase = _Phase.WATCHING
            return ReadNow()
        self._woken_by = happened
        if happened is Wake.LOST:  # a lost stream calls for faster reads, not for one now
            return self._pause(now, stream)
        return ReadNow()

    # -- reads -----------------------------------------------------------------------------------------

    def _open_or_read(self, stream: StreamStatus | None) -> Action:
        if (
            stream is not None and stream.state is StreamState.CONNECTING
        ):  # read once the stream is open: the read sees any earlier end
            self._phase = _Phase.OPENING
            return Pause(STREAM_OPEN_WAIT, on_events=True)
        self._phase = _Phase.WATCHING
        return ReadNow()

    def _after_read(self, reading: Reading, now: float, stream: StreamStatus | None) -> Action:
        woken_by, self._woken_by = self._woken_by, None
        if reading.facts is None:
            assert reading.error is not None
            self._read_failed(reading.error, now)
            return self._pause(now, stream)
        facts = self._saw(reading.facts, reading.event_reason, now)
        if facts.verdict is not Verdict.RUNNING:
            if facts.status_info is None and not self._reread_for_reason:
                self._reread_for_reason = True  # the reason is recorded just after the result
                return Pause(FIRST_POLL_DELAY)
            return Done(End.ENDED, facts)
        if self.plan.until_started and facts.has_started:
            return Done(End.STARTED, facts)
        if woken_by is Wake.EVENT and not self._end_announced:
            # A busy manager can take seconds to record a result its agent already announced (measured:
            # 6 s with 200 sessions on 2 cores): read again soon rather than after a whole poll interval.
            self._end_announced, self._pauses = True, itertools.count()
        if self._why_due(facts, now):
            self._asked_why_at = now
            return ReadWhy()
        return self._pause(now, stream, stream_log=self._log_due(facts))

    def _saw(self, facts: SessionFacts, event_reason: str | None, now: float) -> SessionFacts:
        """Note a read: log a new status, restart the fast reads when the job is first seen running."""
        self._failing_since = None
        if facts.status != self._last_status:
            self._log.info("Session %s is %s %s", self.session_id, facts.status, facts.status_info or "")
            self._last_status = facts.status
        if facts.has_started and not self._started:
            self._started, self._pauses = True, itertools.count()
        if self.requeues.saw(facts, now):
            self._pauses = itertools.count()  # a rerun started: see a short one end soon, as a first run
        if facts.status_info is None and event_reason is not None and facts.verdict is not Verdict.RUNNING:
            facts = replace(facts, status_info=event_reason)  # the end event's reason, recorded ~30 ms later
        self.facts = facts
        return facts

    def _read_failed(self, error: BackendAITransientError, now: float) -> None:
        """Tolerate failed reads for OUTAGE_POLL_INTERVALS poll intervals, then re-raise the last one."""
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since > OUTAGE_POLL_INTERVALS * self.plan.poll_interval:
            raise error
        self._log.warning("Could not read the state of session %s (%s); trying again", self.session_id, error)

    # -- why the session waits -------------------------------------------------------------------------

    def _why_due(self, facts: SessionFacts, now: float) -> bool:
        """Ask after WAIT_REASON_FIRST seconds of waiting, then every WAIT_REASON_EVERY; not past a deadline."""
        if facts.status not in WAITING_STATUSES:
            self._waiting_since = None
            return False
        if self._waiting_since is None:
            self._waiting_since = now
        if not self._explain or now - self._waiting_since < WAIT_REASON_FIRST:
            return False
        if self._asked_why_at is not None and now - self._asked_why_at < WAIT_REASON_EVERY:
            return False
        deadline, _ = self._deadline()
        return deadline is None or now < deadline

    def _last_word_due(self, now: float) -> bool:
        """Ask once more at the startup timeout, unless asked just now: the error quotes the answer."""
        recent = self._asked_why_at is not None and now - self._asked_why_at < WAIT_REASON_FIRST
        if self._asked_at_timeout or recent or not self._explain or self.facts is None:
            return False
        self._asked_at_timeout, self._asked_why_at = True, now
        return self.facts.status in WAITING_STATUSES

    def _heard_why(self, why: WaitReason) -> None:
        """Log why the session waits if that changed; stop asking a manager that cannot say."""
        if why.error is not None:
            if not why.transient:
                self._explain = False
            self._log.debug("Could not read why session %s waits: %s", self.session_id, why.error)
            return
        status = self.facts.status if self.facts is not None else "PENDING"
        said = why.describe(self.session_id, status)
        key = (status, why.position, why.message)
        if said is None or key == self._said_why:
            return
        self._said_why, self.waiting_reason = key, said
        self._log.info("%s", said)

    def _log_due(self, facts: SessionFacts) -> bool:
        """
        Whether to stream the log now. Not once an event said the job ended: the final log read follows at
        once, and a read now may meet the manager's HTTP 500 window (the kernel is gone, the session not yet
        TERMINATED), whose retries would hold up the wait by seconds.
        """
        reads = next(self._running_reads)
        return (
            self.plan.stream_logs
            and facts.has_started
            and not self._end_announced
            and reads % self.plan.log_every == self.plan.log_phase % self.plan.log_every
        )

    # -- pauses and deadlines --------------------------------------------------------------------------

    def _pause(self, now: float, stream: StreamStatus | None, *, stream_log: bool = False) -> Action:
        delay = self._next_delay(stream)
        deadline, end = self._deadline()
        if deadline is not None:
            if now >= deadline:
                if end is End.START_TIMEOUT and self._last_word_due(now):
                    return ReadWhy()  # for the timeout's message
                return Done(end, self.facts, self.waiting_reason if end is End.START_TIMEOUT else None)
            delay = min(delay, deadline - now)
        if stream is None:
            return Pause(delay, stream_log=stream_log)
        self._note_stream(stream)
        return Pause(delay, on_events=True, stream_log=stream_log)

    def _deadline(self) -> tuple[float | None, End]:
        """
        The deadline that applies now: the startup deadline until the job started (again, after a requeue),
        and the end deadline (held while requeued, when requeues move it).

        None before the first successful read: there is nothing to judge yet, and failing reads end the
        watch on their own (after OUTAGE_POLL_INTERVALS).
        """
        if self.facts is None:
            return None, End.END_TIMEOUT
        startup = None if self.facts.has_started else self.requeues.startup_deadline
        end = self.requeues.end_deadline
        if startup is not None and (end is None or startup <= end):
            return startup, End.START_TIMEOUT
        return end, End.END_TIMEOUT

    def _next_delay(self, stream: StreamStatus | None) -> float:
        """The pause before the next read: the poll interval while events arrive, else the fast schedule."""
        pauses = next(self._pauses)
        if stream is not None and stream.state is StreamState.OPEN and not self._end_announced:
            return self.plan.poll_interval
        return self._delays[min(pauses, len(self._delays) - 1)]

    def _note_stream(self, stream: StreamStatus) -> None:
        """Say once why this watch polls although events were asked for."""
        if stream.state is StreamState.OPEN or self._said_polling:
            return
        self._said_polling = True
        if stream.state is StreamState.UNAVAILABLE:
            why = f"is not available ({stream.unavailable_reason})"
        else:
            why = "did not open (yet)"
        self._log.info(
            "The Backend.AI event stream %s; watching session %s by polling, at most every %g s",
            why,
            self.session_id,
            self.plan.poll_interval,
        )
