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
from __future__ import annotations

import asyncio
import json
import threading
from contextlib import asynccontextmanager
from types import SimpleNamespace
from unittest import mock

import pytest

from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig
from airflow.providers.backend.ai._watch import hub as session_events
from airflow.providers.backend.ai._watch.hub import SessionEventHub, StreamState, Wake, _Subscriber
from airflow.providers.backend.ai.exceptions import BackendAIAPIError, BackendAITransientError

pytestmark = pytest.mark.event_stream
REAL_SLEEP = asyncio.sleep

SETTINGS = BackendAIConnectionConfig(
    conn_id="bai", endpoint="https://api.example.com", access_key="AK", secret_key="SK", request_timeout=5
)
A, B = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d", "7d2e1f0a-9b8c-4d6e-8f1a-2b3c4d5e6f70"


def message(name: str, session_id: str, reason: str = "task-finished") -> SimpleNamespace:
    return SimpleNamespace(event=name, data=json.dumps({"sessionId": session_id, "reason": reason}))


def subscriber() -> tuple[_Subscriber, mock.Mock]:
    wake_up = mock.Mock()
    return _Subscriber(wake_up), wake_up


class TestDispatch:
    def test_an_end_event_wakes_only_its_sessions_waiters_with_the_reason(self):
        hub = SessionEventHub(SETTINGS)
        mine, mine_woken = subscriber()
        other, other_woken = subscriber()
        hub._subscribers = {A: {mine}, B: {other}}
        hub._dispatch("session_failure", message("session_failure", A, "task-timeout").data)
        assert (mine.take(), mine.event_reason) == (Wake.EVENT, "task-timeout")
        mine_woken.assert_called_once()
        other_woken.assert_not_called()
        assert other.take() is None

    @pytest.mark.parametrize("name", ["session_started", "session_terminating", "kernel_terminated"])
    def test_other_events_wake_nobody(self, name):
        hub = SessionEventHub(SETTINGS)
        mine, woken = subscriber()
        hub._subscribers = {A: {mine}}
        hub._dispatch(name, message(name, A).data)
        woken.assert_not_called()

    @pytest.mark.parametrize("data", ["not json", "{}", "[]"])
    def test_unreadable_events_are_ignored(self, data):
        hub = SessionEventHub(SETTINGS)
        mine, woken = subscriber()
        hub._subscribers = {A: {mine}}
        hub._dispatch("session_success", data)
        woken.assert_not_called()

    def test_an_event_is_not_hidden_by_a_later_stream_loss(self):
        mine, _ = subscriber()
        mine.notify(Wake.EVENT, "task-finished")
        mine.notify(Wake.LOST)
        assert mine.take() is Wake.EVENT


class FakeStream:
    """Stands in for ``open_session_events``: each opening takes the next outcome (messages, or an error)."""

    def __init__(self, outcomes: list) -> None:
        self.outcomes = outcomes
        self.opened = 0
        self.served = 0  # openings that did not fail

    def __call__(self):
        self.opened += 1
        outcome = self.outcomes.pop(0) if self.outcomes else asyncio.Event()

        @asynccontextmanager
        async def stream():
            if isinstance(outcome, Exception):
                raise outcome
            self.served += 1

            async def events():
                if isinstance(outcome, asyncio.Event):
                    await outcome.wait()  # stays open until cancelled
                for item in outcome if isinstance(outcome, list) else ():
                    yield item.event, item.data

            yield events()

        return stream()


@asynccontextmanager
async def no_api_session(settings):
    yield


@pytest.fixture
def fake_sdk():
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def no_sleep(delay):
        sleeps.append(delay)
        await real_sleep(0)

    with (
        mock.patch.object(session_events, "event_stream_session", no_api_session),
        mock.patch.object(session_events.asyncio, "sleep", side_effect=no_sleep),
    ):
        yield sleeps


async def settle(hub: SessionEventHub) -> None:
    """Let the hub's task run until it waits on something that only the test can end."""
    for _ in range(50):
        await REAL_SLEEP(0)


class TestRun:
    @pytest.mark.asyncio
    async def test_reconnects_with_backoff_and_wakes_everyone_on_each_opening(self, fake_sdk):
        stream = FakeStream(
            [
                BackendAITransientError("open the session event stream", status=503),
                [message("session_success", A)],
                ConnectionResetError(),
            ]
        )
        hub = SessionEventHub(SETTINGS)
        mine, _ = subscriber()
        with mock.patch.object(session_events, "open_session_events", stream):
            hub.add(A, mine)
            await settle(hub)
            assert hub.state is StreamState.OPEN
            assert stream.served == 2
            assert stream.opened == 4  # 503, then events and EOF, then a reset, then open for good
            assert fake_sdk[:3] == [0.5, 1.0, 2.0]
            assert mine.take() is Wake.EVENT
            assert mine.event_reason == "task-finished"
            hub.remove(A, mine)

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 405])
    @pytest.mark.asyncio
    async def test_an_error_answer_makes_it_unavailable_and_tells_the_waiters(self, fake_sdk, status):
        stream = FakeStream([BackendAIAPIError("open the session event stream", status=status, title="Nope")])
        hub = SessionEventHub(SETTINGS)
        mine, _ = subscriber()
        with mock.patch.object(session_events, "open_session_events", stream):
            hub.add(A, mine)
            await settle(hub)
        assert (hub.state, hub.unavailable_reason) == (StreamState.UNAVAILABLE, f"HTTP {status} Nope")
        assert mine.take() is Wake.LOST
        assert stream.opened == 1

    @pytest.mark.asyncio
    async def test_the_last_waiter_leaving_closes_the_stream(self, fake_sdk):
        hub = SessionEventHub(SETTINGS)
        first, _ = subscriber()
        second, _ = subscriber()
        with mock.patch.object(session_events, "open_session_events", FakeStream([])):
            hub.add(A, first)
            hub.add(B, second)
            await settle(hub)
            task = hub._task
            assert hub.remove(A, first) is False
            assert not task.done()
            assert hub.remove(B, second) is True
            await settle(hub)
        assert task.cancelled()


def test_a_read_answers_the_wake_ups_before_it():
    """Draining before a read keeps a stream that opened meanwhile from asking for a second, needless read."""
    signal = threading.Event()
    mine = _Subscriber(signal.set)
    watch = session_events.SyncEventWatch(SessionEventHub(SETTINGS), mine, signal)
    mine.notify(Wake.OPENED)
    watch.drain()
    assert watch.wait(0) is None
    mine.notify(Wake.EVENT, "task-finished")
    assert watch.wait(0) is Wake.EVENT


# -- preemption events -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason", "wake"),
    [
        ("session_preempted", "preempted-by-reservation", Wake.CHANGE),
        ("session_rescheduling", "preempted-by-scheduler", Wake.CHANGE),
        ("session_terminating", "preempted-by-scheduler", Wake.EVENT),  # terminate mode: no success event
        ("session_terminating", "user-requested", None),
        ("session_pending", "rescheduled", None),
        ("session_reserved", "preemption-reservation", None),
    ],
)
def test_preemption_events_wake_for_a_read(name, reason, wake):
    hub = SessionEventHub(SETTINGS)
    mine, _ = subscriber()
    hub._subscribers = {A: {mine}}
    hub._dispatch(name, json.dumps({"sessionId": A, "reason": reason}))
    assert mine.take() is wake


def test_a_change_does_not_hide_an_end_and_an_end_is_not_hidden_by_a_change():
    mine, _ = subscriber()
    mine.notify(Wake.CHANGE, "preempted-by-reservation")
    mine.notify(Wake.EVENT, "task-finished")
    mine.notify(Wake.CHANGE, "preempted-by-scheduler")
    assert mine.take() is Wake.EVENT
    mine.notify(Wake.LOST)
    mine.notify(Wake.CHANGE)
    assert mine.take() is Wake.CHANGE
