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
The manager's session event stream (``GET /events/session``), opened through the SDK.

Each opening is a freshly signed request: the SDK's own stream reconnects forever with its first signature,
whose ``Date`` ages out after 15 minutes, so reconnecting is left to the caller (``_watch.hub``).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow.providers.backend.ai._sdk.client import new_async_session
from airflow.providers.backend.ai._sdk.errors import translate_errors

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig

#: A stream silent for longer is dead: the manager sends a ping comment every 15 s.
STREAM_READ_TIMEOUT = 45.0


@asynccontextmanager
async def event_stream_session(settings: BackendAIConnectionConfig) -> AsyncIterator[None]:
    """
    Route the calling task's SDK requests through an API session of its own, for as long as it streams.

    Its read timeout outlasts the manager's pings, so only a dead stream times out.
    """
    timeout = max(settings.request_timeout, STREAM_READ_TIMEOUT)
    async with new_async_session(replace(settings, request_timeout=timeout)):
        yield


@asynccontextmanager
async def open_session_events() -> AsyncIterator[AsyncIterator[tuple[str, str]]]:
    """
    Open the caller's session events (all the caller's sessions: ``sessionName=*``, ``scope=session``).

    Yields the ``(event name, data)`` pairs as they come. An error answer raises the provider's
    :class:`~airflow.providers.backend.ai.exceptions.BackendAIAPIError` with its HTTP status.
    """
    from ai.backend.client.request import Request, SSEResponse

    class OneShotResponse(SSEResponse):
        """The SDK's stream, without its reconnect-forever loop."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, auto_reconnect=False, **kwargs)

    request = Request("GET", "/events/session", params={"sessionName": "*", "scope": "session"})
    with translate_errors("open the session event stream"):
        async with request.connect_events(response_cls=OneShotResponse) as response:
            yield ((message.event, message.data) async for message in response.fetch_events())
