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
The watch step alone: what it asks for after each thing that happened, with a frozen clock and no I/O.

The worker's loop and the trigger both drive this step; their own tests check only how they perform it.
"""

from __future__ import annotations

from dataclasses import dataclass
from unittest import mock

import pytest

from airflow.providers.backend.ai._session.state import SessionFacts
from airflow.providers.backend.ai._session.waiting import WaitReason
from airflow.providers.backend.ai._watch.hub import StreamState, Wake
from airflow.providers.backend.ai._watch.step import (
    FIRST_POLL_DELAY,
    OUTAGE_POLL_INTERVALS,
    STREAM_OPEN_WAIT,
    WAIT_REASON_EVERY,
    WAIT_REASON_FIRST,
    Done,
    End,
    Pause,
    Reading,
    ReadNow,
    ReadWhy,
    Watch,
    WatchPlan,
    poll_delays,
)
from airflow.providers.backend.ai.exceptions import BackendAITransientError

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
NOW = 1_767_225_600.0
PENDING = SessionFacts(SID, "PENDING")
RUNNING = SessionFacts(SID, "RUNNING")
SUCCEEDED = SessionFacts(SID, "TERMINATING", "SUCCESS", "task-finished")
RESULT_ONLY = SessionFacts(SID, "RUNNING", "SUCCESS")  # the result is recorded ~30 ms before its reason
GONE = BackendAITransientError("read the status of session", status=503)


@dataclass
class Stream:
    """The event stream as a watch sees it."""

    state: StreamState
    unavailable_reason: str | None = None


OPEN = Stream(StreamState.OPEN)


def watch(**kwargs) -> Watch:
    kwargs.setdefault("poll_interval", 15.0)
    return Watch(SID, WatchPlan(**kwargs), mock.Mock())


def read(w: Watch, facts: SessionFacts, *, now: float = NOW, stream=None, reason=None):
    return w.step(Reading(facts, event_reason=reason), now=now, stream=stream)


class TestPollingAlone:
    def test_poll_delays_grow_to_the_poll_interval(self):
        assert poll_delays(2.0) == [0.25, 0.375, 0.5625, 0.84375, 1.265625, 1.8984375, 2.0]
        assert poll_delays(0.1) == [0.1]

    def test_reads_fast_then_slower_and_starts_over_when_the_job_runs(self):
        w = watch(poll_interval=2.0)
        assert w.start(now=NOW, stream=None) == ReadNow()
        assert read(w, PENDING) == Pause(0.25)
        assert w.step(None, now=NOW, stream=None) == ReadNow()
        assert read(w, PENDING) == Pause(0.375)
        assert read(w, RUNNING) == Pause(0.25)  # first seen running: the fast reads start over
        assert read(w, RUNNING) == Pause(0.375)
        for _ in range(10):
            last = read(w, RUNNING)
        assert last == Pause(2.0)

    def test_an_ended_job_is_done(self):
        w = watch()
        w.start(now=NOW, stream=None)
        assert read(w, SUCCEEDED) == Done(End.ENDED, SUCCEEDED)

    def test_a_result_without_its_reason_is_read_once_more(self):
        w = watch()
        w.start(now=NOW, stream=None)
        assert read(w, RESULT_ONLY) == Pause(FIRST_POLL_DELAY)
        assert w.step(None, now=NOW, stream=None) == ReadNow()
        assert read(w, SUCCEEDED) == Done(End.ENDED, SUCCEEDED)

    def test_the_second_read_ends_the_watch_even_without_a_reason(self):
        w = watch()
        w.start(now=NOW, stream=None)
        read(w, RESULT_ONLY)
        assert read(w, RESULT_ONLY) == Done(End.ENDED, RESULT_ONLY)

    def test_the_end_events_reason_saves_the_second_read(self):
        w = watch()
        w.start(now=NOW, stream=OPEN)
        done = read(w, RESULT_ONLY, stream=OPEN, reason="task-finished")
        assert done == Done(End.ENDED, SessionFacts(SID, "RUNNING", "SUCCESS", "task-finished"))

    def test_until_started(self):
        w = watch(until_started=True)
        w.start(now=NOW, stream=None)
        assert read(w, PENDING) == Pause(0.25)
        assert read(w, RUNNING) == Done(End.STARTED, RUNNING)

    def test_status_changes_are_logged_once_each(self):
        w = watch()
        w.start(now=NOW, stream=None)
        for facts in (PENDING, PENDING, RUNNING, RUNNING):
            read(w, facts)
        logged = [c.args[2] for c in w._log.info.call_args_list]
        assert logged == ["PENDING", "RUNNING"]


class TestDeadlines:
    def test_the_startup_deadline_applies_until_the_job_started(self):
        w = watch(startup_deadline=NOW + 10, end_deadline=NOW + 100)
        w.start(now=NOW, stream=None)
        assert read(w, PENDING, now=NOW + 9.9) == Pause(pytest.approx(0.1))  # never past the deadline
        assert read(w, PENDING, now=NOW + 10) == Done(End.START_TIMEOUT, PENDING)

    def test_the_end_deadline_applies_once_it_runs(self):
        w = watch(startup_deadline=NOW + 10, end_deadline=NOW + 100)
        w.start(now=NOW, stream=None)
        assert read(w, RUNNING, now=NOW + 50) == Pause(0.25)  # the startup deadline no longer counts
        assert read(w, RUNNING, now=NOW + 100) == Done(End.END_TIMEOUT, RUNNING)

    def test_the_earlier_deadline_wins_before_the_start(self):
        w = watch(startup_deadline=NOW + 100, end_deadline=NOW + 10)
        w.start(now=NOW, stream=None)
        assert read(w, PENDING, now=NOW + 10) == Done(End.END_TIMEOUT, PENDING)

    def test_no_deadline_before_the_first_successful_read(self):
        """There is nothing to report yet: the failing reads end the watch on their own."""
        w = watch(poll_interval=5.0, startup_deadline=NOW - 1)
        w.start(now=NOW, stream=None)
        assert w.step(Reading(error=GONE), now=NOW, stream=None) == Pause(0.25)


class TestFailedReads:
    def test_tolerated_for_a_while_then_raised(self):
        w = watch(poll_interval=5.0)
        w.start(now=NOW, stream=None)
        limit = OUTAGE_POLL_INTERVALS * 5.0
        assert isinstance(w.step(Reading(error=GONE), now=NOW, stream=None), Pause)
        assert isinstance(w.step(Reading(error=GONE), now=NOW + limit, stream=None), Pause)
        with pytest.raises(BackendAITransientError):
            w.step(Reading(error=GONE), now=NOW + limit + 0.1, stream=None)
        assert w._log.warning.call_count == 2

    def test_a_good_read_resets_the_outage(self):
        w = watch(poll_interval=5.0)
        w.start(now=NOW, stream=None)
        w.step(Reading(error=GONE), now=NOW, stream=None)
        read(w, RUNNING, now=NOW + 9)
        assert isinstance(w.step(Reading(error=GONE), now=NOW + 15, stream=None), Pause)


class TestWithEvents:
    def test_a_read_per_poll_interval_while_the_stream_is_open(self):
        w = watch()
        assert w.start(now=NOW, stream=OPEN) == ReadNow()
        assert read(w, RUNNING, stream=OPEN) == Pause(15.0, on_events=True)
        assert w.step(None, now=NOW, stream=OPEN) == ReadNow()  # the safety poll

    def test_a_connecting_stream_is_given_time_to_open_before_the_first_read(self):
        w = watch()
        connecting = Stream(StreamState.CONNECTING)
        assert w.start(now=NOW, stream=connecting) == Pause(STREAM_OPEN_WAIT, on_events=True)
        assert w.step(Wake.OPENED, now=NOW, stream=OPEN) == ReadNow()

    def test_a_stream_that_does_not_open_still_leads_to_a_read(self):
        w = watch()
        connecting = Stream(StreamState.CONNECTING)
        w.start(now=NOW, stream=connecting)
        assert w.step(Wake.LOST, now=NOW, stream=connecting) == ReadNow()

    def test_an_end_event_asks_for_a_read_and_fast_reads_until_the_result_shows(self):
        w = watch()
        w.start(now=NOW, stream=OPEN)
        read(w, RUNNING, stream=OPEN)
        assert w.step(Wake.EVENT, now=NOW, stream=OPEN) == ReadNow()
        # A busy manager records the result after its event: read again soon, not a poll interval later.
        assert read(w, RUNNING, stream=OPEN) == Pause(0.25, on_events=True)
        assert read(w, RUNNING, stream=OPEN) == Pause(0.375, on_events=True)

    def test_a_lost_stream_asks_for_fast_reads_but_not_for_a_read_now(self):
        w = watch()
        w.start(now=NOW, stream=OPEN)
        read(w, RUNNING, stream=OPEN)
        connecting = Stream(StreamState.CONNECTING)
        assert w.step(Wake.LOST, now=NOW, stream=connecting) == Pause(0.375, on_events=True)

    def test_says_once_why_it_polls(self):
        w = watch()
        unavailable = Stream(StreamState.UNAVAILABLE, "HTTP 404 Not Found")
        w.start(now=NOW, stream=unavailable)
        read(w, RUNNING, stream=unavailable)
        read(w, RUNNING, stream=unavailable)
        (said,) = [c for c in w._log.info.call_args_list if "event stream" in c.args[0]]
        assert said.args[1:] == ("is not available (HTTP 404 Not Found)", SID, 15.0)


class TestTheTriggersWatch:
    def test_pauses_before_the_first_read(self):
        """The task read the state just before deferring."""
        w = watch(read_first=False)
        assert w.start(now=NOW, stream=OPEN) == Pause(0.25)
        assert w.step(None, now=NOW, stream=OPEN) == ReadNow()

    def test_then_lets_a_connecting_stream_open(self):
        w = watch(read_first=False)
        connecting = Stream(StreamState.CONNECTING)
        w.start(now=NOW, stream=connecting)
        assert w.step(None, now=NOW, stream=connecting) == Pause(STREAM_OPEN_WAIT, on_events=True)


class TestLogStreaming:
    def test_every_read_while_the_job_runs(self):
        w = watch(stream_logs=True)
        w.start(now=NOW, stream=None)
        assert read(w, PENDING) == Pause(0.25)  # nothing to stream before the job starts
        assert read(w, RUNNING) == Pause(0.25, stream_log=True)
        assert read(w, RUNNING) == Pause(0.375, stream_log=True)

    def test_one_read_in_n_at_the_watchs_own_phase(self):
        w = watch(stream_logs=True, log_every=8, log_phase=3)
        w.start(now=NOW, stream=None)
        streamed = [read(w, RUNNING).stream_log for _ in range(16)]
        assert [n for n, due in enumerate(streamed, start=1) if due] == [3, 11]

    def test_not_after_an_end_event(self):
        """The final log read follows; a read now may meet the manager's HTTP 500 window."""
        w = watch(stream_logs=True)
        w.start(now=NOW, stream=OPEN)
        assert read(w, RUNNING, stream=OPEN).stream_log
        w.step(Wake.EVENT, now=NOW, stream=OPEN)
        assert not read(w, RUNNING, stream=OPEN).stream_log

    def test_off_unless_asked(self):
        w = watch()
        w.start(now=NOW, stream=None)
        assert not read(w, RUNNING).stream_log


# -- preemption (reschedule mode): a requeue is not a failure -------------------------------------------

R1 = "2026-01-01T00:00:10+00:00"  # the first run reached RUNNING (the manager's clock)
P = "2026-01-01T00:01:00+00:00"  # preempted, 50 s later
R2 = "2026-01-01T00:03:00+00:00"  # the rerun reached RUNNING, 120 s after the preemption
FIRST_RUN = SessionFacts(SID, "RUNNING", running_since=R1)
PREEMPTED = SessionFacts(
    SID, "PREEMPTED", "UNDEFINED", "preempted-by-reservation", running_since=R1, preempted_at=P
)
RESCHEDULING = SessionFacts(
    SID, "RESCHEDULING", "UNDEFINED", "preempted-by-scheduler", running_since=R1, preempted_at=P
)
REQUEUED = SessionFacts(SID, "PENDING", "UNDEFINED", "rescheduled", running_since=R1, preempted_at=P)
RERUN = SessionFacts(SID, "RUNNING", running_since=R2, preempted_at=P)
RERUN_DONE = SessionFacts(SID, "TERMINATED", "SUCCESS", "task-finished", running_since=R2, preempted_at=P)
TERMINATED_BY_PREEMPTION = SessionFacts(
    SID, "TERMINATING", "UNDEFINED", "preempted-by-scheduler", running_since=R1, preempted_at=P
)


class TestRequeue:
    def test_the_startup_deadline_restarts_at_the_preemption_and_at_the_requeue(self):
        """The job ran longer than startup_timeout before its preemption: the requeue does not time out."""
        w = watch(startup_deadline=NOW + 10, startup_timeout=10.0)
        w.start(now=NOW, stream=None)
        read(w, FIRST_RUN, now=NOW + 5)
        assert isinstance(read(w, PREEMPTED, now=NOW + 60), Pause)  # past the first startup deadline
        assert isinstance(read(w, RESCHEDULING, now=NOW + 62), Pause)
        assert isinstance(read(w, REQUEUED, now=NOW + 69), Pause)  # back in the queue: 10 s from now
        assert read(w, REQUEUED, now=NOW + 78.5) == Pause(pytest.approx(0.5))  # never past the new deadline
        assert read(w, REQUEUED, now=NOW + 79) == Done(End.START_TIMEOUT, REQUEUED)

    def test_a_requeue_the_manager_never_finishes_still_times_out(self):
        w = watch(startup_deadline=NOW + 10, startup_timeout=10.0)
        w.start(now=NOW, stream=None)
        read(w, FIRST_RUN, now=NOW + 5)
        read(w, PREEMPTED, now=NOW + 60)
        assert isinstance(read(w, RESCHEDULING, now=NOW + 69), Pause)
        assert read(w, RESCHEDULING, now=NOW + 70) == Done(End.START_TIMEOUT, RESCHEDULING)

    def test_the_rerun_runs_to_its_end(self):
        w = watch(startup_deadline=NOW + 10, startup_timeout=30.0)
        w.start(now=NOW, stream=None)
        for at, facts in ((5, FIRST_RUN), (60, PREEMPTED), (62, RESCHEDULING), (70, REQUEUED), (85, RERUN)):
            assert isinstance(read(w, facts, now=NOW + at), Pause)
        assert isinstance(read(w, RERUN, now=NOW + 500), Pause)  # started again: no startup deadline
        assert read(w, RERUN_DONE, now=NOW + 501) == Done(End.ENDED, RERUN_DONE)
        assert w.requeues.preemptions == 1

    def test_the_task_log_says_what_happened_with_the_times(self):
        w = watch(
            startup_deadline=NOW + 10, startup_timeout=30.0, end_deadline=NOW + 100, requeue_extends_end=True
        )
        w.start(now=NOW, stream=None)
        for at, facts in ((5, FIRST_RUN), (60, PREEMPTED), (62, RESCHEDULING), (70, REQUEUED), (85, RERUN)):
            read(w, facts, now=NOW + at)
        (warning,) = w._log.warning.call_args_list
        assert warning.args[0] % warning.args[1:] == (
            f"Session {SID} was preempted at {P} after running 50 s: a session of the same user with a "
            "higher job_priority needs its resources"
        )
        lines = [c.args[0] % c.args[1:] for c in w._log.info.call_args_list]
        assert (
            f"The manager requeued session {SID} (preemption mode reschedule): the job will run again from "
            "the beginning once the resources are free; it must start again within 30 s from now "
            "(startup_timeout)"
        ) in lines
        assert (
            f"Session {SID} runs the job again from the beginning since {R2}, after 120 s back in the queue; "
            "its end deadline moves 170 s later"
        ) in lines
        statuses = [c.args[2] for c in w._log.info.call_args_list if c.args[0].startswith("Session %s is")]
        assert statuses == ["RUNNING", "PREEMPTED", "RESCHEDULING", "PENDING", "RUNNING"]

    def test_each_preemption_is_told_once(self):
        w = watch(startup_deadline=NOW + 10, startup_timeout=30.0)
        w.start(now=NOW, stream=None)
        for at, facts in (
            (5, FIRST_RUN),
            (60, PREEMPTED),
            (61, PREEMPTED),
            (62, RESCHEDULING),
            (70, REQUEUED),
        ):
            read(w, facts, now=NOW + at)
        read(w, REQUEUED, now=NOW + 75)
        assert w._log.warning.call_count == 1
        assert sum("requeued session" in c.args[0] for c in w._log.info.call_args_list) == 1

    def test_the_end_deadline_waits_while_requeued_then_moves_by_the_lost_run_and_the_queue(self):
        """The rerun needs its whole run time again: the deadline moves by R2 - R1 (170 s), not only 120 s."""
        w = watch(
            startup_deadline=NOW + 10,
            startup_timeout=1000.0,
            end_deadline=NOW + 100,
            requeue_extends_end=True,
        )
        w.start(now=NOW, stream=None)
        read(w, FIRST_RUN, now=NOW + 5)
        read(w, PREEMPTED, now=NOW + 90)
        assert isinstance(read(w, REQUEUED, now=NOW + 150), Pause)  # past the end deadline, but requeued
        assert isinstance(read(w, RERUN, now=NOW + 200), Pause)
        assert read(w, RERUN, now=NOW + 269.9) == Pause(pytest.approx(0.1))  # capped by the moved deadline
        assert read(w, RERUN, now=NOW + 270) == Done(End.END_TIMEOUT, RERUN)

    def test_while_requeued_only_the_restarted_startup_deadline_applies(self):
        w = watch(
            startup_deadline=NOW + 10, startup_timeout=30.0, end_deadline=NOW + 100, requeue_extends_end=True
        )
        w.start(now=NOW, stream=None)
        read(w, FIRST_RUN, now=NOW + 5)
        read(w, PREEMPTED, now=NOW + 90)
        read(w, REQUEUED, now=NOW + 100)
        assert read(w, REQUEUED, now=NOW + 130) == Done(End.START_TIMEOUT, REQUEUED)

    def test_a_sensors_end_deadline_stays(self):
        """A sensor's timeout is the user's whole wait (Airflow enforces it so in reschedule mode)."""
        w = watch(end_deadline=NOW + 100)
        w.start(now=NOW, stream=None)
        read(w, FIRST_RUN, now=NOW + 5)
        read(w, PREEMPTED, now=NOW + 90)
        assert read(w, REQUEUED, now=NOW + 100) == Done(End.END_TIMEOUT, REQUEUED)

    def test_no_startup_deadline_appears_where_there_was_none(self):
        w = watch()
        w.start(now=NOW, stream=None)
        read(w, FIRST_RUN, now=NOW + 5)
        assert isinstance(read(w, REQUEUED, now=NOW + 10_000), Pause)
        assert "must start again" not in " ".join(c.args[0] for c in w._log.info.call_args_list)

    def test_a_requeue_that_fell_between_two_reads_is_still_told(self):
        w = watch()
        w.start(now=NOW, stream=None)
        for facts in (FIRST_RUN, RESCHEDULING, RERUN):
            read(w, facts)
        lines = [c.args[0] % c.args[1:] for c in w._log.info.call_args_list]
        assert f"The manager requeued session {SID} (preemption mode reschedule)" in lines
        assert any(line.startswith(f"Session {SID} runs the job again from the beginning") for line in lines)

    def test_a_watch_that_starts_during_the_requeue_finds_it_from_the_facts(self):
        """A triggerer restart: the serialized startup deadline passed long ago, the kwargs carry its length."""
        w = watch(
            read_first=False,
            startup_deadline=NOW - 500,
            startup_timeout=30.0,
            end_deadline=NOW - 100,
            requeue_extends_end=True,
        )
        assert w.start(now=NOW, stream=None) == Pause(0.25)
        assert w.step(None, now=NOW, stream=None) == ReadNow()
        assert isinstance(read(w, REQUEUED, now=NOW), Pause)
        assert w._log.warning.call_count == 1  # the preemption is told again, by this watch
        # The requeued facts still date the preempted run (status_history's RUNNING is not overwritten yet):
        # the end deadline moves by R2 - R1 when the rerun starts.
        assert isinstance(read(w, RERUN, now=NOW + 20), Pause)
        assert w.requeues.end_deadline == NOW - 100 + 170

    def test_a_watch_that_starts_after_the_rerun_moves_the_end_by_the_queue_alone(self):
        """The preempted run's start is overwritten by then: only the time in the queue is known."""
        w = watch(end_deadline=NOW + 10, requeue_extends_end=True)
        w.start(now=NOW, stream=None)
        assert isinstance(read(w, RERUN, now=NOW), Pause)
        assert w.requeues.end_deadline == NOW + 10 + 120
        lines = [c.args[0] % c.args[1:] for c in w._log.info.call_args_list]
        assert f"Session {SID} was preempted at {P} and requeued (preemption mode reschedule)" in lines

    def test_a_trigger_serialized_before_the_startup_timeout_kwarg_restarts_with_the_default(self):
        from airflow.providers.backend.ai._watch.requeue import DEFAULT_RESTART_WINDOW

        w = watch(startup_deadline=NOW + 10)
        w.start(now=NOW, stream=None)
        read(w, FIRST_RUN, now=NOW + 5)
        read(w, REQUEUED, now=NOW + 60)
        assert w.requeues.startup_deadline == NOW + 60 + DEFAULT_RESTART_WINDOW

    def test_a_second_preemption_restarts_the_deadline_again_and_adds_up(self):
        p2, r3 = "2026-01-01T00:05:00+00:00", "2026-01-01T00:06:00+00:00"
        w = watch(
            startup_deadline=NOW + 10, startup_timeout=30.0, end_deadline=NOW + 100, requeue_extends_end=True
        )
        w.start(now=NOW, stream=None)
        for at, facts in ((5, FIRST_RUN), (60, REQUEUED), (80, RERUN)):
            read(w, facts, now=NOW + at)
        assert w.requeues.end_deadline == NOW + 100 + 170
        again = SessionFacts(SID, "PENDING", "UNDEFINED", "rescheduled", running_since=R2, preempted_at=p2)
        assert isinstance(read(w, again, now=NOW + 300), Pause)
        assert w.requeues.startup_deadline == NOW + 330
        assert isinstance(read(w, again, now=NOW + 310), Pause)
        assert w.requeues.startup_deadline == NOW + 330  # once per requeue, not at every read
        read(w, SessionFacts(SID, "RUNNING", running_since=r3, preempted_at=p2), now=NOW + 320)
        assert w.requeues.end_deadline == NOW + 100 + 170 + 180  # r3 - R2
        assert w.requeues.preemptions == 2

    def test_terminate_mode_ends_the_watch_at_terminating(self):
        """No success or failure comes for a job preempted in terminate mode; its verdict is FAILED."""
        w = watch(startup_deadline=NOW + 10, startup_timeout=30.0)
        w.start(now=NOW, stream=None)
        read(w, FIRST_RUN, now=NOW + 5)
        read(w, PREEMPTED, now=NOW + 60)
        assert read(w, TERMINATED_BY_PREEMPTION, now=NOW + 62) == Done(End.ENDED, TERMINATED_BY_PREEMPTION)

    def test_no_log_is_read_while_requeued(self):
        """The manager answers 404 (queued) or 500 (being prepared): neither gone nor an error, just not read."""
        w = watch(stream_logs=True)
        w.start(now=NOW, stream=None)
        assert read(w, FIRST_RUN).stream_log
        for facts in (PREEMPTED, RESCHEDULING, REQUEUED):
            assert not read(w, facts).stream_log
        assert read(w, RERUN).stream_log

    def test_the_fast_reads_start_over_when_the_rerun_starts(self):
        w = watch(poll_interval=2.0)
        w.start(now=NOW, stream=None)
        read(w, FIRST_RUN)
        for _ in range(10):
            read(w, REQUEUED)
        assert read(w, REQUEUED) == Pause(2.0)
        assert read(w, RERUN) == Pause(0.25)

    def test_a_preemption_event_asks_for_a_read_without_announcing_an_end(self):
        w = watch()
        w.start(now=NOW, stream=OPEN)
        read(w, FIRST_RUN, stream=OPEN)
        assert w.step(Wake.CHANGE, now=NOW, stream=OPEN) == ReadNow()
        # Not an end: no fast reads (an end event's read would be followed by one in 0.25 s).
        assert read(w, PREEMPTED, stream=OPEN) == Pause(15.0, on_events=True)


# -- why a session waits ---------------------------------------------------------------------------------

WHY = WaitReason(0, "Some kernels could not be placed on any agent.")


class TestWhyItWaits:
    def test_asked_once_it_waited_a_while_then_at_most_once_a_minute(self):
        w = watch(explain_waits=True)
        w.start(now=NOW, stream=OPEN)
        assert read(w, PENDING, now=NOW, stream=OPEN) == Pause(15.0, on_events=True)
        assert read(w, PENDING, now=NOW + WAIT_REASON_FIRST - 1, stream=OPEN) == Pause(15.0, on_events=True)
        assert read(w, PENDING, now=NOW + WAIT_REASON_FIRST, stream=OPEN) == ReadWhy()
        assert w.step(WHY, now=NOW + WAIT_REASON_FIRST, stream=OPEN) == Pause(15.0, on_events=True)
        asked = NOW + WAIT_REASON_FIRST
        assert isinstance(read(w, PENDING, now=asked + WAIT_REASON_EVERY - 1, stream=OPEN), Pause)
        assert read(w, PENDING, now=asked + WAIT_REASON_EVERY, stream=OPEN) == ReadWhy()

    def test_logged_only_when_it_changed(self):
        w = watch(explain_waits=True)
        w.start(now=NOW, stream=None)
        read(w, PENDING, now=NOW)
        at = NOW + WAIT_REASON_FIRST
        for reason in (WHY, WHY, WaitReason(1, WHY.message), WaitReason(1, WHY.message)):
            assert read(w, PENDING, now=at) == ReadWhy()
            w.step(reason, now=at, stream=None)
            at += WAIT_REASON_EVERY
        lines = [c.args[0] % c.args[1:] for c in w._log.info.call_args_list if c.args[0] == "%s"]
        assert lines == [
            f"Session {SID} waits in the queue at position 0: Some kernels could not be placed on any agent.",
            f"Session {SID} waits in the queue at position 1: Some kernels could not be placed on any agent.",
        ]

    def test_a_reservation_is_explained(self):
        w = watch(explain_waits=True)
        w.start(now=NOW, stream=None)
        reserved = SessionFacts(SID, "RESERVED", status_info="preemption-reservation")
        read(w, reserved, now=NOW)
        assert read(w, reserved, now=NOW + WAIT_REASON_FIRST) == ReadWhy()
        w.step(WaitReason(None, None), now=NOW + WAIT_REASON_FIRST, stream=None)
        assert "holds a reservation" in w.waiting_reason

    def test_the_startup_timeout_quotes_the_last_reason(self):
        w = watch(explain_waits=True, startup_deadline=NOW + 30)
        w.start(now=NOW, stream=None)
        read(w, PENDING, now=NOW)
        assert read(w, PENDING, now=NOW + WAIT_REASON_FIRST) == ReadWhy()
        w.step(WHY, now=NOW + WAIT_REASON_FIRST, stream=None)
        assert read(w, PENDING, now=NOW + 30) == ReadWhy()  # a last word for the message
        done = w.step(WHY, now=NOW + 30, stream=None)
        assert done == Done(End.START_TIMEOUT, PENDING, WHY.describe(SID, "PENDING"))
        assert sum(c.args[0] == "%s" for c in w._log.info.call_args_list) == 1  # logged once: unchanged

    def test_asked_once_at_the_startup_timeout_if_not_just_asked(self):
        """A long poll interval may leave no read in which to ask: the timeout's message still has a reason."""
        w = watch(explain_waits=True, startup_deadline=NOW + 5)
        w.start(now=NOW, stream=OPEN)
        assert read(w, PENDING, now=NOW, stream=OPEN) == Pause(5.0, on_events=True)
        assert w.step(None, now=NOW + 5, stream=OPEN) == ReadNow()
        assert read(w, PENDING, now=NOW + 5, stream=OPEN) == ReadWhy()
        done = w.step(WHY, now=NOW + 5.1, stream=OPEN)
        assert done == Done(End.START_TIMEOUT, PENDING, WHY.describe(SID, "PENDING"))

    def test_not_asked_at_the_timeout_when_just_asked_nor_after_the_start_nor_unless_asked(self):
        w = watch(explain_waits=True, startup_deadline=NOW + 15)
        w.start(now=NOW, stream=None)
        read(w, PENDING, now=NOW)
        assert read(w, PENDING, now=NOW + 10) == ReadWhy()
        w.step(WaitReason(), now=NOW + 10, stream=None)
        assert read(w, PENDING, now=NOW + 15) == Done(End.START_TIMEOUT, PENDING)
        w = watch(explain_waits=True)
        w.start(now=NOW, stream=None)
        read(w, PENDING, now=NOW)
        assert isinstance(read(w, RUNNING, now=NOW + 20), Pause)
        assert isinstance(read(w, PENDING, now=NOW + 25), Pause)  # waiting again: the count starts over
        w = watch()
        w.start(now=NOW, stream=None)
        read(w, PENDING, now=NOW)
        assert isinstance(read(w, PENDING, now=NOW + 100), Pause)

    def test_a_manager_that_cannot_say_is_not_asked_again(self):
        w = watch(explain_waits=True)
        w.start(now=NOW, stream=None)
        read(w, PENDING, now=NOW)
        assert read(w, PENDING, now=NOW + WAIT_REASON_FIRST) == ReadWhy()
        w.step(WaitReason(error="HTTP 400 GraphQL error"), now=NOW + WAIT_REASON_FIRST, stream=None)
        assert isinstance(read(w, PENDING, now=NOW + 1000), Pause)
        w._log.debug.assert_called_once()

    def test_a_failure_that_may_pass_is_asked_again_a_minute_later(self):
        w = watch(explain_waits=True)
        w.start(now=NOW, stream=None)
        read(w, PENDING, now=NOW)
        read(w, PENDING, now=NOW + WAIT_REASON_FIRST)
        w.step(WaitReason(error="HTTP 503", transient=True), now=NOW + WAIT_REASON_FIRST, stream=None)
        assert read(w, PENDING, now=NOW + WAIT_REASON_FIRST + WAIT_REASON_EVERY) == ReadWhy()
