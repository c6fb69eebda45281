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
"""Hook unit-test fixtures: a hook on a test connection, and the SDK classes it uses, autospecced."""

from __future__ import annotations

from unittest import mock

import pytest

from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

#: The secret is a canary: tests check that it never shows in messages.
CONN = {"host": "http://127.0.0.1:8091", "login": "AKIAEXAMPLE", "password": "canary-secret-key"}


@pytest.fixture
def hook(make_connection) -> BackendAIHook:
    return BackendAIHook(make_connection("bai", **CONN), retry_limit=3, retry_delay=0)


@pytest.fixture
def sync_session():
    with mock.patch("ai.backend.client.session.Session", autospec=True) as cls:
        yield cls


async def _nothing() -> None:
    return None


@pytest.fixture
def async_session():
    """``AsyncSession.open``/``close`` are plain methods returning awaitables, so autospec makes them sync."""
    with mock.patch("ai.backend.client.session.AsyncSession", autospec=True) as cls:
        cls.return_value.open.side_effect = _nothing
        cls.return_value.close.side_effect = _nothing
        yield cls


@pytest.fixture
def admin():
    with mock.patch("ai.backend.client.func.admin.Admin", autospec=True) as cls:
        yield cls
