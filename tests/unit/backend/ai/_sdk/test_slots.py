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
"""The resource slots each manager knows: read once per connection and process, trusted for a while."""

from __future__ import annotations

from unittest import mock

import pytest

from airflow.providers.backend.ai._sdk import slots
from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig
from airflow.providers.backend.ai.exceptions import BackendAIAuthError

SETTINGS = BackendAIConnectionConfig(
    conn_id="c", endpoint="https://a.example", access_key="AK", secret_key="SK"
)
OTHER = BackendAIConnectionConfig(conn_id="d", endpoint="https://b.example", access_key="AK", secret_key="SK")


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    monkeypatch.setattr(slots, "_known", {})


def test_read_once_per_manager_then_again_after_the_ttl():
    read = mock.Mock(return_value=("cpu", "mem"))
    with mock.patch.object(slots.time, "monotonic", return_value=1000.0) as clock:
        assert slots.known_slots(SETTINGS, read, mock.Mock()) == ("cpu", "mem")
        assert slots.known_slots(SETTINGS, read, mock.Mock()) == ("cpu", "mem")
        assert read.call_count == 1
        slots.known_slots(OTHER, read, mock.Mock())  # another manager: asked on its own
        assert read.call_count == 2
        clock.return_value += slots.SLOT_LIST_TTL + 1
        slots.known_slots(SETTINGS, read, mock.Mock())
        assert read.call_count == 3


def test_a_manager_that_cannot_be_asked_is_said_once_and_left_to_decide():
    read = mock.Mock(side_effect=BackendAIAuthError("list the resource slots", status=403))
    warn = mock.Mock()
    assert slots.known_slots(SETTINGS, read, warn) is None
    assert slots.known_slots(SETTINGS, read, warn) is None
    assert read.call_count == 1
    warn.assert_called_once()
    assert "only the slot names' spelling is checked" in warn.call_args.args[0]
