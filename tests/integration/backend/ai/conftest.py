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
"""Integration fixtures: the real SDK over HTTP against the emulator, with a server-side leak check."""

from __future__ import annotations

from unittest import mock

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def emulator(backend_ai_emulator, make_connection, request):
    """
    The emulator behind the ``backend_ai_default`` connection.

    After the test, the server itself must report no live session (a test that keeps one on purpose is
    marked ``allow_live_sessions``).
    """
    emu = backend_ai_emulator
    make_connection("backend_ai_default", host=emu.endpoint, login=emu.access_key, password=emu.secret_key)
    yield emu
    if request.node.get_closest_marker("allow_live_sessions") is None:
        try:
            emu.wait_until(lambda: not emu.live_sessions(), timeout=10)
        except TimeoutError:
            leaked = [(str(s.id), s.name, s.status) for s in emu.live_sessions()]
            pytest.fail(f"sessions leaked on the server: {leaked}")


@pytest.fixture
def context():
    """A task context with the task instance fields the operators read."""
    ti = mock.MagicMock(dag_id="it_dag", task_id="job", run_id="manual__1", map_index=-1, try_number=1)
    return {"ti": ti}


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_live_sessions: the test keeps a session alive on purpose")
