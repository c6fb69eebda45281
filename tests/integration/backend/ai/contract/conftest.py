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
"""Fixtures of the contract suite: where it runs, SDK sessions, and the no-leftover-session check.

By default the suite runs against the in-process emulator (``backend_ai_emulator`` fixture). Set
``BACKEND_AI_TEST_ENDPOINT``, ``BACKEND_AI_TEST_ACCESS_KEY``, ``BACKEND_AI_TEST_SECRET_KEY`` and
``BACKEND_AI_TEST_IMAGE`` (plus ``BACKEND_AI_TEST_OTHER_ACCESS_KEY``/``..._OTHER_SECRET_KEY`` for the
isolation tests) to run it against a real manager; ``emulator_only`` tests are then skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from backend_ai_emulator import DEFAULT_IMAGE

from .busy import PreemptionSwitch
from .sdk import ContractTarget, destroy_quietly, open_session

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from ai.backend.client.session import Session

    from backend_ai_emulator import EmulatorHandle

_ENV = "BACKEND_AI_TEST_"
#: The emulator's agent in the preemption tests (``busy_cluster``): two big sessions cannot share it.
EMULATOR_AGENT_CPU = 8


def real_target_from_env() -> ContractTarget | None:
    """The real manager named by the environment, or None to use the emulator."""
    endpoint = os.environ.get(f"{_ENV}ENDPOINT")
    if not endpoint:
        return None
    missing = [k for k in ("ACCESS_KEY", "SECRET_KEY") if not os.environ.get(f"{_ENV}{k}")]
    if missing:
        raise pytest.UsageError(f"{_ENV}ENDPOINT is set but {', '.join(_ENV + k for k in missing)} is not")
    return ContractTarget(
        endpoint=endpoint.rstrip("/"),
        access_key=os.environ[f"{_ENV}ACCESS_KEY"],
        secret_key=os.environ[f"{_ENV}SECRET_KEY"],
        image=os.environ.get(f"{_ENV}IMAGE", DEFAULT_IMAGE),
        other_access_key=os.environ.get(f"{_ENV}OTHER_ACCESS_KEY"),
        other_secret_key=os.environ.get(f"{_ENV}OTHER_SECRET_KEY"),
        admin_access_key=os.environ.get(f"{_ENV}ADMIN_ACCESS_KEY"),
        admin_secret_key=os.environ.get(f"{_ENV}ADMIN_SECRET_KEY"),
        agent_cpu=int(os.environ[f"{_ENV}AGENT_CPU"]) if os.environ.get(f"{_ENV}AGENT_CPU") else None,
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("emulator_only") and os.environ.get(f"{_ENV}ENDPOINT"):
        pytest.skip("needs the emulator's switches or server-side state; running against a real manager")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if call.when == "call":
        item.stash[_CALL_PASSED] = report.passed
    return report


_CALL_PASSED = pytest.StashKey[bool]()


@pytest.fixture
def contract_target(request: pytest.FixtureRequest) -> Iterator[ContractTarget]:
    """
    The target of this test, cleaned up afterwards.

    Sessions the test created are destroyed on a real manager; on the emulator, a test that passed must
    have left no live session behind.
    """
    real = real_target_from_env()
    if real is not None:
        yield real
        destroy_quietly(real.config(), real.created)
        return
    emu: EmulatorHandle = request.getfixturevalue("backend_ai_emulator")
    target = ContractTarget(
        endpoint=emu.endpoint,
        access_key=emu.access_key,
        secret_key=emu.secret_key,
        image=DEFAULT_IMAGE,
        other_access_key=emu.other_access_key,
        other_secret_key=emu.other_secret_key,
        emulator=emu,
        admin_access_key=emu.admin_access_key,
        admin_secret_key=emu.admin_secret_key,
        agent_cpu=EMULATOR_AGENT_CPU,
    )
    yield target
    if request.node.stash.get(_CALL_PASSED, False):
        try:
            emu.wait_until(lambda: not emu.live_sessions(), timeout=5.0)
        except TimeoutError:
            leftovers = [(s.name, s.status) for s in emu.live_sessions()]
            pytest.fail(f"the test left live sessions behind: {leftovers}")


@pytest.fixture
def emulator(contract_target: ContractTarget) -> EmulatorHandle:
    """The emulator handle of an ``emulator_only`` test."""
    assert contract_target.emulator is not None, "mark the test emulator_only"
    return contract_target.emulator


@pytest.fixture
def sdk(contract_target: ContractTarget) -> Iterator[Session]:
    """A sync SDK session on the target (main keypair)."""
    with open_session(contract_target.config()) as session:
        yield session


@dataclass
class BusyCluster:
    """What a busy-cluster test needs: a request that two sessions cannot share, and the preemption switch."""

    target: ContractTarget
    #: More than half of the agent's CPU: two such sessions never fit together.
    big_cpu: int
    switch: PreemptionSwitch | None


@pytest.fixture
async def busy_cluster(contract_target: ContractTarget) -> AsyncIterator[BusyCluster]:
    """
    A cluster where sessions can conflict, with preemption off at the start and restored afterwards.

    On the emulator the agent gets a capacity (``EMULATOR_AGENT_CPU``); a real manager's agent has one,
    named by ``BACKEND_AI_TEST_AGENT_CPU`` (``cluster.env`` of the real-cluster harness sets it).
    """
    if contract_target.agent_cpu is None:
        pytest.skip(f"{_ENV}AGENT_CPU is not set: the agent's CPU capacity is unknown")
    if contract_target.emulator is not None:
        contract_target.emulator.settings.capacity = {"cpu": EMULATOR_AGENT_CPU, "mem": "512g"}
    switch = PreemptionSwitch(contract_target) if contract_target.admin_access_key else None
    if switch is not None:
        await switch.set(False)
    try:
        yield BusyCluster(contract_target, contract_target.agent_cpu // 2 + 1, switch)
    finally:
        if switch is not None:
            await switch.restore()
