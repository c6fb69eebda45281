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
"""Opening the manager's session event stream through the SDK: signed anew each time, errors translated."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest
from ai.backend.client.exceptions import BackendAPIError

from airflow.providers.backend.ai._sdk import events
from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig
from airflow.providers.backend.ai._sdk.events import STREAM_READ_TIMEOUT
from airflow.providers.backend.ai.exceptions import BackendAINotFoundError

SETTINGS = BackendAIConnectionConfig(
    conn_id="bai", endpoint="https://api.example.com", access_key="AK", secret_key="SK", request_timeout=5
)


async def test_every_opening_is_signed_anew():
    """The SDK's own reconnect reuses the first signature (stale after 15 minutes): each opening is a new request."""

    async def two_messages():
        yield SimpleNamespace(event="session_success", data="{}")
        yield SimpleNamespace(event="session_failure", data="{}")

    with mock.patch("ai.backend.client.request.Request", autospec=True) as request_cls:
        response = request_cls.return_value.connect_events.return_value.__aenter__.return_value
        response.fetch_events = two_messages
        for _ in range(2):
            async with events.open_session_events() as messages:
                assert [pair async for pair in messages] == [
                    ("session_success", "{}"),
                    ("session_failure", "{}"),
                ]
    assert request_cls.call_count == 2
    assert request_cls.return_value.connect_events.call_count == 2
    (args, kwargs) = request_cls.call_args
    assert args == ("GET", "/events/session")
    assert kwargs["params"] == {"sessionName": "*", "scope": "session"}


async def test_an_error_answer_is_the_providers_error_with_its_status():
    with mock.patch("ai.backend.client.request.Request", autospec=True) as request_cls:
        request_cls.return_value.connect_events.side_effect = BackendAPIError(404, "Not Found", {})
        with pytest.raises(BackendAINotFoundError) as error:
            async with events.open_session_events():
                pass
    assert error.value.status == 404


async def test_the_stream_waits_longer_than_the_managers_pings():
    with mock.patch.object(events, "new_async_session", autospec=True) as new_session:
        async with events.event_stream_session(SETTINGS):
            pass
    (settings,), _ = new_session.call_args
    assert settings.request_timeout == STREAM_READ_TIMEOUT
    assert settings.secret_key == "SK"
