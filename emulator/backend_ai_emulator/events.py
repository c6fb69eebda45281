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
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .store import EventRecord, SessionRecord, SessionStore, utcnow

if TYPE_CHECKING:
    import uuid

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

    def wants(self, record: SessionRecord, is_kernel_event: bool) -> bool:
        if record.owner_access_key != self.access_key:
            return False
        if self.session_id is not None and record.id != self.session_id:
            return False
        return self.kernel_events if is_kernel_event else self.session_events


class EventHub:
    """Records every event on its session and fans it out to matching open streams."""

    def __init__(self, store: SessionStore, settings: EmulatorSettings) -> None:
        self._store = store
        self._settings = settings
        self._subscriptions: set[Subscription] = set()

    def subscribe(self, sub: Subscription) -> None:
        self._subscriptions.add(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)

    def close_all(self) -> None:
        """End every open stream (reset and shutdown)."""
        for sub in list(self._subscriptions):
            sub.queue.put_nowait(_CLOSE)
        self._subscriptions.clear()

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
        self._store.append_event(record, EventRecord(name, payload, utcnow(), kernel))
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
    """Serve one ``text/event-stream`` until the client goes away or the hub closes it."""
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Connection": "keep-alive",
        },
    )
    hub.subscribe(sub)
    try:
        await response.prepare(request)
        while True:
            try:
                name, payload = await asyncio.wait_for(sub.queue.get(), settings.sse_ping_interval)
            except TimeoutError:
                await response.write(PING_FRAME)
                continue
            if not name:
                break
            await response.write(format_event(name, json.dumps(payload)))
    except (ConnectionResetError, ConnectionError, RuntimeError):
        pass
    finally:
        hub.unsubscribe(sub)
    return response
