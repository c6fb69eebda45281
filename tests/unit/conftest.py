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
"""Unit tests run without a network: waiting paths poll unless a test hands them a fake event stream."""

from __future__ import annotations

import contextlib
from unittest import mock

import pytest
import time_machine


@pytest.fixture(autouse=True)
def _no_event_stream(request: pytest.FixtureRequest):
    """Open no real event stream: the waiters poll, as with ``use_event_stream=False``."""
    if request.node.get_closest_marker("event_stream"):
        yield
        return
    with (
        mock.patch(
            "airflow.providers.backend.ai._watch.loop.watch_session_events_sync",
            side_effect=lambda *args: contextlib.nullcontext(),
        ),
        mock.patch(
            "airflow.providers.backend.ai._watch.loop.watch_session_events",
            side_effect=lambda *args: contextlib.nullcontext(),
        ),
    ):
        yield


@pytest.fixture
def clock():
    """Freeze time; every sleep of the worker's wait loops moves it forward instead of waiting."""
    with (
        time_machine.travel("2026-01-01 00:00:00", tick=False) as traveller,
        mock.patch(
            "airflow.providers.backend.ai._watch.loop.time.sleep", side_effect=traveller.shift
        ) as sleep,
    ):
        yield sleep
