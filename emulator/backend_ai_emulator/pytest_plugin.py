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
Pytest fixtures: one emulator per test session, reset for every test that asks for it.

``backend_ai_emulator`` (function scope) yields an :class:`~backend_ai_emulator.EmulatorHandle` whose
state, settings and faults were reset (running jobs killed) before the test and are reset again after.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .server import EmulatorHandle, start_emulator

if TYPE_CHECKING:
    from collections.abc import Iterator


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "emulator_only: needs the Backend.AI emulator's switches or inspection (skipped on a real manager)",
    )


@pytest.fixture(scope="session")
def backend_ai_emulator_server() -> Iterator[EmulatorHandle]:
    """The session-wide emulator on a free 127.0.0.1 port (started lazily, stopped at the end)."""
    handle = start_emulator()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def backend_ai_emulator(backend_ai_emulator_server: EmulatorHandle) -> Iterator[EmulatorHandle]:
    """A freshly reset emulator for one test; leftovers (jobs, streams, hangs) are cleaned up afterwards."""
    handle = backend_ai_emulator_server
    handle.reset()
    try:
        yield handle
    finally:
        handle.reset()
