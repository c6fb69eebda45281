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
from airflow.providers.backend.ai._watch.hub import StreamState, Wake
from airflow.providers.backend.ai._watch.step import (
    FIRST_POLL_DELAY,
    OUTAGE_POLL_INTERVALS,
    STREAM_OPEN_WAIT,
    Done,
    End,
    Pause,
    Reading,
    ReadNow,
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
