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
Session event hub and the SSE wire format (wire notes §5).

Events go only to streams open at the time (no replay). By default the manager's quirks are kept:
a ``sessionId`` filter is ignored (wildcard stream of all the caller's sessions), ``exitCode`` is always
null and kernel events reach wildcard streams only. ``fixed_event_quirks`` turns all three off.

Faults for clients of the stream: :meth:`EventHub.drop_all` cuts every open stream (as a restart or a
proxy's timeout would), an event loss in the fault registry keeps chosen events off the streams, and a
``mute`` subscription holds a stream open without ever writing to it (a buffering proxy).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .store import EventRecord, SessionRecord, SessionStore, utcnow

if TYPE_CHECKING:
    import uuid

    from .faults import FaultRegistry
    from .settings import EmulatorSettings

_CLOSE: tuple[str, dict[str, Any]] = ("", {})  # sentinel that ends a stream


@dataclass(eq=False)
class Subscription:
    """One open event stream and what it wants to see."""

    access_key: str
    session_id: uuid.UUID | None
    session_events: bool
    kernel_events: bool
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = field(default_factory=asyncio.Queue)
    #: Hold the stream open but write nothing, not even pings (what a buffering proxy shows a client).
    mute: bool = False
    #: The connection, so that :meth:`EventHub.drop_all` can cut it mid-stream.
    transport: asyncio.Transport | None = None

    def wants(self, record: SessionRecord, is_kernel_event: bool) -> bool:
        if record.owner_access_key != self.access_key:
            return False
        if self.session_id is not None and record.id != self.session_id:
            return False
        return self.kernel_events if is_kernel_event else self.session_events


class EventHub:
    """Records every event on its session and fans it out to matching open streams."""

    def __init__(
        self, store: SessionStore, settings: EmulatorSettings, faults: FaultRegistry | None = None
    ) -> None:
        self._store = store
        self._settings = settings
        self._faults = faults
        self._subscriptions: set[Subscription] = set()
        #: Streams ever opened (since the last reset), and the most open at once.
        self.opened = 0
        self.peak = 0

    @property
    def open_count(self) -> int:
        """Event streams open right now."""
        return len(self._subscriptions)

    def reset_counts(self) -> None:
        self.opened = 0
        self.peak = len(self._subscriptions)

    def subscribe(self, sub: Subscription) -> None:
        self._subscriptions.add(sub)
        self.opened += 1
        self.peak = max(self.peak, len(self._subscriptions))

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)

    def close_all(self) -> None:
        """End every open stream cleanly (reset and shutdown): the response ends, the client sees EOF."""
        for sub in list(self._subscriptions):
            sub.queue.put_nowait(_CLOSE)
        self._subscriptions.clear()

    def drop_all(self, *, abort: bool = True) -> int:
        """
        Cut every open stream now and return how many there were.

        ``abort=True`` closes the TCP connection mid-stream (no end of the chunked body: aiohttp clients
        raise ``ClientPayloadError``), as a restarting server or a proxy's timeout does; ``abort=False``
        ends each response cleanly, which a client reads as EOF.
        """
        subs = list(self._subscriptions)
        for sub in subs:
            if abort and sub.transport is not None:
                sub.transport.abort()
            sub.queue.put_nowait(_CLOSE)
        self._subscriptions.clear()
        return len(subs)

    def emit(
        self,
        record: SessionRecord,
        name: str,
        reason: str,
        *,
        kernel: bool = False,
        exit_code: int | None = None,
    ) -> None:
        """Emit ``name`` for ``record`` with the manager's payload shape (§5.3)."""
        payload: dict[str, Any] = {
            "reason": reason,
            "sessionName": record.name,
            "ownerAccessKey": record.owner_access_key,
            "sessionId": str(record.id),
            "exitCode": exit_code if self._settings.fixed_event_quirks else None,
        }
        if kernel:
            payload["kernelId"] = str(record.kernel_id)
            payload["clusterRole"] = "main"
            payload["clusterIdx"] = 1
        lost = self._faults is not None and self._faults.take_event_loss(str(record.id), name, kernel)
        self._store.append_event(record, EventRecord(name, payload, utcnow(), kernel, delivered=not lost))
        if lost:
            return
        for sub in list(self._subscriptions):
            if sub.wants(record, kernel):
                sub.queue.put_nowait((name, payload))


def format_event(name: str, data: str) -> bytes:
    """One SSE frame with CRLF separators, ``event:`` before ``data:`` (as aiohttp-sse writes it)."""
    lines = [f"event: {name}"] + [f"data: {chunk}" for chunk in data.splitlines() or [""]]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


PING_FRAME = b": ping\r\n\r\n"


async def stream_events(
    request: web.Request, hub: EventHub, sub: Subscription, settings: EmulatorSettings
) -> web.StreamResponse:
    """
    Serve one ``text/event-stream`` until the client goes away or the hub closes it.

    A ``: ping`` comment goes out every ``sse_ping_interval`` seconds whatever the events in between, as
    aiohttp-sse's ping task does (a mute stream writes nothing at all).
    """
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Connection": "keep-alive",
        },
    )
    sub.transport = request.transport
    hub.subscribe(sub)
    try:
        await response.prepare(request)
        next_ping = time.monotonic() + settings.sse_ping_interval
        while True:
            timeout = None if sub.mute else max(0.0, next_ping - time.monotonic())
            try:
                name, payload = await asyncio.wait_for(sub.queue.get(), timeout)
            except TimeoutError:
                await response.write(PING_FRAME)
                next_ping += settings.sse_ping_interval
                if next_ping <= time.monotonic():  # fell behind (a stalled loop): no burst of pings
                    next_ping = time.monotonic() + settings.sse_ping_interval
                continue
            if not name:
                break
            if not sub.mute:
                await response.write(format_event(name, json.dumps(payload)))
    except (ConnectionResetError, ConnectionError, RuntimeError):
        pass
    finally:
        hub.unsubscribe(sub)
    return response
