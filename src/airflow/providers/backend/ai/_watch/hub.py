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
One stream of Backend.AI session events per connection and process, shared by every watched session.

The manager announces a batch job's end on its event stream about 10 ms after the job exits, seconds
before the session is TERMINATED. It sends a caller the events of all the caller's sessions whatever the
filter, so one stream serves every waiter of a process (hundreds of triggers in a triggerer); events are
handed to the waiters of their ``sessionId``. An event only wakes a waiter: the waiter then reads the
session's state, which stays the single source of truth (``_session.state``).

The stream has no replay, so every (re)opening wakes all waiters for one read. It is re-signed on every
reconnect (a signature's ``Date`` ages out after 15 minutes), with a bounded backoff. An answer such as
404 or 405 (a proxy, or an endpoint without the stream) makes it unavailable; waiters then poll alone.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import json
import logging
import os
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

from airflow.providers.backend.ai._sdk.events import event_stream_session, open_session_events
from airflow.providers.backend.ai.exceptions import BackendAIAPIError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig

log = logging.getLogger(__name__)

#: Events after which a session's job has ended or will never run: the waiter reads the state then.
WAKE_EVENTS = frozenset(
    {"session_success", "session_failure", "session_terminated", "session_cancelled", "session_error"}
)
#: Events of a preemption (Backend.AI 26.8+): the session changed, but its job has not ended; a read now
#: lets the watch restart its startup deadline at once. ``session_terminating`` with the reason
#: ``preempted-by-scheduler`` is the end of a job preempted in terminate mode (no success or failure event
#: comes for it).
CHANGE_EVENTS = frozenset({"session_preempted", "session_rescheduling"})
PREEMPTED_END = ("session_terminating", "preempted-by-scheduler")
#: Backoff between two attempts to open the stream; it restarts once a stream stayed open this long.
RECONNECT_FIRST_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0
#: HTTP statuses worth another try; any other error answer means the stream is not offered here.
_TRANSIENT_STATUSES = frozenset({408, 429})


class StreamState(enum.StrEnum):
    """Whether events reach the waiters: only while OPEN may they wait a whole poll interval."""

    CONNECTING = "connecting"
    OPEN = "open"
    UNAVAILABLE = "unavailable"


class Wake(enum.StrEnum):
    """Why a waiter was woken before its delay ran out; each calls for one read of the session."""

    EVENT = "event"  # the session's job ended (or the session did)
    CHANGE = "change"  # the session was preempted or requeued: its job goes on, or will run again
    OPENED = "opened"  # the stream (re)opened: events sent before may be lost
    LOST = "lost"  # the stream broke or is unavailable: poll from now on


#: Which of two wake-ups a waiter keeps when a second comes before it took the first (the first, if equal).
_URGENCY = {Wake.LOST: 0, Wake.OPENED: 0, Wake.CHANGE: 1, Wake.EVENT: 2}


class _Subscriber:
    """What a hub hands to one waiter; ``notify`` runs in the hub's loop, the waiter may be in another thread."""

    def __init__(self, wake_up: Callable[[], None]) -> None:
        self._wake_up = wake_up
        self._lock = threading.Lock()
        self._pending: Wake | None = None
        self.event_reason: str | None = None

    def notify(self, wake: Wake, reason: str | None = None) -> None:
        with self._lock:
            if wake is Wake.EVENT:
                self.event_reason = reason or self.event_reason
            if self._pending is None or _URGENCY[wake] > _URGENCY[self._pending]:
                self._pending = wake
        self._wake_up()

    def take(self) -> Wake | None:
        with self._lock:
            wake, self._pending = self._pending, None
            return wake


class SessionEventHub:
    """The one event stream of a connection in one event loop; it runs while some session is watched."""

    def __init__(self, settings: BackendAIConnectionConfig) -> None:
        self._settings = settings
        self._subscribers: dict[str, set[_Subscriber]] = {}
        self._task: asyncio.Task[None] | None = None
        self.state = StreamState.CONNECTING
        self.unavailable_reason: str | None = None

    def add(self, session_id: str, subscriber: _Subscriber) -> None:
        self._subscribers.setdefault(session_id, set()).add(subscriber)
        if self._task is None and self.state is not StreamState.UNAVAILABLE:
            # A fresh context: the stream must not use the API session of whichever waiter started it.
            self._task = asyncio.get_running_loop().create_task(self._run(), context=contextvars.Context())

    def remove(self, session_id: str, subscriber: _Subscriber) -> bool:
        """Forget a waiter; stop the stream and return True when it was the last one."""
        waiters = self._subscribers.get(session_id, set())
        waiters.discard(subscriber)
        if not waiters:
            self._subscribers.pop(session_id, None)
        if self._subscribers:
            return False
        if self._task is not None:
            self._task.cancel()
            self._task = None
        return True

    def _notify_all(self, wake: Wake) -> None:
        for waiters in list(self._subscribers.values()):
            for subscriber in list(waiters):
                subscriber.notify(wake)

    def _dispatch(self, name: str, data: str) -> None:
        if name not in WAKE_EVENTS and name not in CHANGE_EVENTS and name != PREEMPTED_END[0]:
            return
        try:
            payload = json.loads(data)
            session_id = str(payload["sessionId"])
        except (ValueError, KeyError, TypeError):
            log.debug("Ignoring an unreadable %s event", name)
            return
        reason = payload.get("reason")
        reason = reason if isinstance(reason, str) else None
        if name in CHANGE_EVENTS:
            wake = Wake.CHANGE
        elif name in WAKE_EVENTS or (name, reason) == PREEMPTED_END:
            wake = Wake.EVENT
        else:
            return
        for subscriber in list(self._subscribers.get(session_id, ())):
            subscriber.notify(wake, reason)

    async def _run(self) -> None:
        try:
            await self._stream_until_cancelled()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream is an optimisation: never let it break the waiters
            self.unavailable_reason = f"{type(exc).__name__}: {exc}"
            self._set_state(StreamState.UNAVAILABLE, Wake.LOST)

    async def _stream_until_cancelled(self) -> None:
        delay = RECONNECT_FIRST_DELAY
        async with event_stream_session(self._settings):  # routes this task's requests
            while True:
                opened_at = None
                try:
                    async with open_session_events() as messages:
                        opened_at = time.monotonic()
                        self._set_state(StreamState.OPEN, Wake.OPENED)
                        async for name, data in messages:
                            self._dispatch(name, data)
                    failure = "the manager closed it"
                except BackendAIAPIError as exc:
                    if _refused(exc.status):
                        self.unavailable_reason = f"HTTP {exc.status} {exc.title or ''}".strip()
                        self._set_state(StreamState.UNAVAILABLE, Wake.LOST)
                        return
                    failure = f"HTTP {exc.status}" if exc.status else "no response"
                except Exception as exc:  # network errors of every kind: try again after a pause
                    failure = type(exc).__name__
                if opened_at is not None and time.monotonic() - opened_at >= RECONNECT_MAX_DELAY:
                    delay = RECONNECT_FIRST_DELAY  # it had been working: reconnect soon
                log.debug("Backend.AI event stream lost (%s); reopening in %.1f s", failure, delay)
                self._set_state(StreamState.CONNECTING, Wake.LOST)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)

    def _set_state(self, state: StreamState, wake: Wake) -> None:
        self.state = state
        self._notify_all(wake)


def _refused(status: int | None) -> bool:
    """An error answer that means the stream is not offered here (a proxy, an endpoint without it)."""
    return status is not None and status < 500 and status not in _TRANSIENT_STATUSES


# -- the hubs of this process ------------------------------------------------------------------------

_hubs: dict[tuple[asyncio.AbstractEventLoop, str, str, str], SessionEventHub] = {}


def _hub_key(settings: BackendAIConnectionConfig) -> tuple[asyncio.AbstractEventLoop, str, str, str]:
    return (asyncio.get_running_loop(), settings.conn_id, settings.endpoint, settings.access_key)


def _attach(settings: BackendAIConnectionConfig, session_id: str, subscriber: _Subscriber) -> SessionEventHub:
    """Subscribe in the running loop, opening this connection's stream if no one watches yet."""
    key = _hub_key(settings)
    hub = _hubs.get(key)
    if hub is None:  # a hub lives while someone watches: an unavailable stream is tried again after
        hub = _hubs[key] = SessionEventHub(settings)
    hub.add(session_id, subscriber)
    return hub


def _detach(settings: BackendAIConnectionConfig, session_id: str, subscriber: _Subscriber) -> None:
    key = _hub_key(settings)
    hub = _hubs.get(key)
    if hub is not None and hub.remove(session_id, subscriber):
        del _hubs[key]


class _EventWatch:
    """One waiter's view of the shared stream: its state, and the session's end reason if an event gave it."""

    def __init__(
        self, hub: SessionEventHub, subscriber: _Subscriber, signal: asyncio.Event | threading.Event
    ) -> None:
        self._hub, self._subscriber, self._signal = hub, subscriber, signal

    @property
    def state(self) -> StreamState:
        return self._hub.state

    @property
    def unavailable_reason(self) -> str | None:
        return self._hub.unavailable_reason

    @property
    def event_reason(self) -> str | None:
        """The ``reason`` of the session's end event (``task-finished``, ``task-timeout``, ...), if one came."""
        return self._subscriber.event_reason

    def drain(self) -> None:
        """Forget the wake-ups so far: call it right before a read, which answers all of them."""
        self._subscriber.take()
        self._signal.clear()


class AsyncEventWatch(_EventWatch):
    """A trigger's view of its loop's stream."""

    _signal: asyncio.Event

    async def wait(self, timeout: float) -> Wake | None:
        """Return why the waiter was woken, or None when ``timeout`` seconds passed first."""
        wake = self._subscriber.take()
        if wake is None:
            try:
                await asyncio.wait_for(self._signal.wait(), timeout)
            except TimeoutError:
                return None
            wake = self._subscriber.take()
        self._signal.clear()
        return wake


@asynccontextmanager
async def watch_session_events(
    settings: BackendAIConnectionConfig, session_id: str
) -> AsyncIterator[AsyncEventWatch]:
    """Watch one session's events over the loop's shared stream for the connection."""
    signal = asyncio.Event()
    subscriber = _Subscriber(signal.set)
    hub = _attach(settings, session_id, subscriber)
    try:
        yield AsyncEventWatch(hub, subscriber, signal)
    finally:
        _detach(settings, session_id, subscriber)


class SyncEventWatch(_EventWatch):
    """A worker's view of the stream, which runs in the process's event thread."""

    _signal: threading.Event

    def wait(self, timeout: float) -> Wake | None:
        """Return why the waiter was woken, or None when ``timeout`` seconds passed first."""
        wake = self._subscriber.take()
        if wake is None:
            if not self._signal.wait(timeout):
                return None
            wake = self._subscriber.take()
        self._signal.clear()
        return wake


_thread_lock = threading.Lock()
_thread_loop: tuple[int, asyncio.AbstractEventLoop] | None = None
#: Longest wait for the event thread to (un)subscribe a waiter; it only touches in-memory state.
_THREAD_CALL_TIMEOUT = 30.0


def _event_thread_loop() -> asyncio.AbstractEventLoop:
    """The loop of this process's event thread (a daemon: it never holds the process open)."""
    global _thread_loop
    with _thread_lock:
        if _thread_loop is None or _thread_loop[0] != os.getpid():  # none yet, or inherited through fork
            loop = asyncio.new_event_loop()
            started = threading.Event()
            loop.call_soon(started.set)
            threading.Thread(target=loop.run_forever, name="backend-ai-events", daemon=True).start()
            started.wait()
            _thread_loop = (os.getpid(), loop)
        return _thread_loop[1]


@contextmanager
def watch_session_events_sync(
    settings: BackendAIConnectionConfig, session_id: str
) -> Iterator[SyncEventWatch]:
    """Watch one session's events from a worker thread; the shared stream runs in the event thread."""
    loop = _event_thread_loop()
    signal = threading.Event()
    subscriber = _Subscriber(signal.set)

    async def attach() -> SessionEventHub:
        return _attach(settings, session_id, subscriber)

    async def detach() -> None:
        _detach(settings, session_id, subscriber)

    hub = asyncio.run_coroutine_threadsafe(attach(), loop).result(_THREAD_CALL_TIMEOUT)
    try:
        yield SyncEventWatch(hub, subscriber, signal)
    finally:
        asyncio.run_coroutine_threadsafe(detach(), loop).result(_THREAD_CALL_TIMEOUT)
