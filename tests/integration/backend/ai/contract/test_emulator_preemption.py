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
The emulator's scheduler and preemption beyond what the shared contract tests can reach on a real manager.

A full reschedule cycle (the preemptor runs first, then the victim reruns), a restart during a requeue,
victim choice, the log answers of each phase, and the switches and snapshots tests use.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from backend_ai_emulator import EmulatorSettings, PreemptionConfig, start_emulator
from backend_ai_emulator.scheduler import choose_victims, free_slots, queue_position
from backend_ai_emulator.store import PENDING, RUNNING, SessionRecord

from .busy import create, read_logs, rerun_command, until_status
from .sdk import ContractTarget, open_async_session, session_ref

if TYPE_CHECKING:
    from backend_ai_emulator import EmulatorHandle

pytestmark = pytest.mark.emulator_only


def _busy(emu: EmulatorHandle, mode: str) -> None:
    emu.set_preemption(True, mode, capacity={"cpu": 8, "mem": "64g"})


async def test_full_reschedule_cycle(contract_target: ContractTarget, emulator: EmulatorHandle) -> None:
    """The preemptor runs to its end first; then the victim reruns and ends with its own result."""
    _busy(emulator, "reschedule")
    async with open_async_session(contract_target.config()) as session:
        low = await create(contract_target, rerun_command("emu-rerun-$BACKENDAI_SESSION_ID"), cpu=5)
        await until_status(session, contract_target, low, "RUNNING")
        emulator.wait_for_session(low, predicate=lambda s: "first-run" in s.logs)
        high = await create(contract_target, "echo high-done", cpu=5, job_priority=10, is_preemptible=False)
        done = await until_status(session, contract_target, low, "TERMINATED")
    assert done["result"] == "SUCCESS"
    low_snap, high_snap = emulator.get_session(low), emulator.get_session(high)
    assert low_snap.runs == 2
    assert low_snap.requeued_at is not None
    assert f"rerun-{low}" in low_snap.logs
    assert "first-run" not in low_snap.logs
    assert high_snap.result == "SUCCESS"
    # The victim reruns only after the preemptor has left the agent.
    assert low_snap.status_time("RUNNING") > high_snap.status_time("TERMINATING")
    assert low_snap.statuses[: low_snap.statuses.index("PENDING", 1) + 1] == [
        "PENDING",
        "SCHEDULED",
        "PREPARING",
        "PREPARED",
        "CREATING",
        "RUNNING",
        "PREEMPTED",
        "RESCHEDULING",
        "PENDING",
    ]
    assert high_snap.statuses[:3] == ["PENDING", "RESERVED", "SCHEDULED"]
    assert low_snap.event_names.count("session_started") == 2


async def test_log_answers_of_each_phase(contract_target: ContractTarget, emulator: EmulatorHandle) -> None:
    """RUNNING/PREEMPTED: the first output; requeued PENDING: 404; prepared again: 500; rerun: its own."""
    _busy(emulator, "reschedule")
    emulator.settings.step_delay = 0.3
    emulator.settings.tick = 0.3
    emulator.settings.long_cycle = 0.5
    seen: dict[str, set[Any]] = {}
    async with open_async_session(contract_target.config()) as session:
        low = await create(contract_target, rerun_command("emu-logs-$BACKENDAI_SESSION_ID"), cpu=5)
        await until_status(session, contract_target, low, "RUNNING")
        emulator.wait_for_session(low, predicate=lambda s: "first-run" in s.logs)
        await create(contract_target, "sleep 1; echo high", cpu=5, job_priority=1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            before = emulator.get_session(low)
            answer = await read_logs(low)
            after = emulator.get_session(low)
            if (before.status, before.runs, before.kernel_gone) == (
                after.status,
                after.runs,
                after.kernel_gone,
            ):
                phase = f"{after.status}/run{after.runs}" + ("/gone" if after.kernel_gone else "")
                seen.setdefault(phase, set()).add(
                    answer if isinstance(answer, int) else answer.strip() or "empty"
                )
            if after.status == "TERMINATED":
                break
            time.sleep(0.05)
        final = await _final_logs(low)
    assert seen["RUNNING/run1"] == {"first-run"}
    assert seen.get("PREEMPTED/run1", {"first-run"}) == {"first-run"}
    assert seen.get("RESCHEDULING/run1", {"first-run"}) == {"first-run"}
    assert seen["RESCHEDULING/run1/gone"] == {500}
    assert seen["PENDING/run1/gone"] == {404}
    prepared_again = [seen.get(f"{status}/run1", set()) for status in ("SCHEDULED", "PREPARING", "PREPARED")]
    assert set().union(*prepared_again) == {500}
    assert seen.get("CREATING/run1", {"empty"}) == {"empty"}
    assert seen.get("RUNNING/run2", set()) <= {"empty", f"rerun-{low}"}
    assert final.strip() == f"rerun-{low}"


async def _final_logs(session_id: uuid.UUID) -> str:
    answer = await read_logs(session_id)
    assert isinstance(answer, str)
    return answer


async def test_terminate_mode_keeps_the_first_output(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    _busy(emulator, "terminate")
    async with open_async_session(contract_target.config()) as session:
        low = await create(contract_target, "echo only-run; sleep 600", cpu=5)
        await until_status(session, contract_target, low, "RUNNING")
        emulator.wait_for_session(low, predicate=lambda s: "only-run" in s.logs)
        high = await create(contract_target, "echo high", cpu=5, job_priority=1)
        await until_status(session, contract_target, high, "TERMINATED")
    snap = emulator.get_session(low)
    assert (snap.status, snap.result, snap.status_info, snap.runs) == (
        "TERMINATED",
        "UNDEFINED",
        "preempted-by-scheduler",
        1,
    )
    assert snap.logs.strip() == "only-run"
    assert snap.pid is None
    assert not emulator.running_job_pids()


async def test_a_restart_during_the_requeue(contract_target: ContractTarget) -> None:
    """The manager's restart holds the requeued session; it goes on once the manager is back."""
    # An emulator of its own: restarts count for the life of a server, and other tests count them.
    with start_emulator() as emu:
        target = ContractTarget(
            emu.endpoint, emu.access_key, emu.secret_key, contract_target.image, emulator=emu
        )
        _busy(emu, "reschedule")
        async with open_async_session(target.config()) as session:
            low = await create(target, rerun_command("emu-restart-$BACKENDAI_SESSION_ID"), cpu=5)
            await until_status(session, target, low, "RUNNING")
            emu.wait_for_session(low, predicate=lambda s: "first-run" in s.logs)
            await create(target, "echo high", cpu=5, job_priority=1)
            emu.wait_for_session(low, status="PENDING", predicate=lambda s: s.requeued_at is not None)
            emu.restart(down_for=0.5, wait=True)
        async with open_async_session(target.config()) as session:
            done = await until_status(session, target, low, "TERMINATED")
        assert done["result"] == "SUCCESS"
        assert emu.get_session(low).runs == 2
        assert emu.restarts == 1


async def test_destroying_a_requeued_session_cancels_it(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    _busy(emulator, "reschedule")
    async with open_async_session(contract_target.config()) as session:
        low = await create(contract_target, "sleep 600", cpu=5)
        await until_status(session, contract_target, low, "RUNNING")
        high = await create(contract_target, "sleep 600", cpu=5, job_priority=1)
        emulator.wait_for_session(low, status="PENDING", predicate=lambda s: s.requeued_at is not None)
        assert await session_ref(low).destroy() == {"stats": {"status": "cancelled"}}
        await session_ref(high).destroy(forced=True)
        await until_status(session, contract_target, high, "TERMINATED")
    assert emulator.get_session(low).status == "CANCELLED"
    assert not emulator.running_job_pids()


def test_set_preemption_and_reset(emulator: EmulatorHandle) -> None:
    emulator.set_preemption(True, "reschedule", capacity={"cpu": 2}, order="newest", preemption_min_runtime=3)
    assert emulator.settings.preemption["default"] == PreemptionConfig(
        enabled=True, mode="reschedule", order="newest", preemption_min_runtime=3
    )
    assert emulator.settings.capacity == {"cpu": 2}
    emulator.reset()
    assert emulator.settings.preemption["default"] == PreemptionConfig()
    assert emulator.settings.capacity is None
    with pytest.raises(ValueError, match="mode must be one of"):
        PreemptionConfig(mode="evict")


def test_realistic_timing_has_the_long_cycle() -> None:
    settings = EmulatorSettings()
    settings.use_realistic_timing()
    assert settings.long_cycle == 60.0


# -- the scheduler's choices, on records --------------------------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _rec(
    cpu: int, *, owner: str = "AK1", priority: int = 0, status: str = RUNNING, age: float = 100, **kw: Any
) -> SessionRecord:
    rec = SessionRecord(
        id=uuid.uuid4(),
        name=f"s-{uuid.uuid4().hex[:6]}",
        owner_access_key=owner,
        user_id=uuid.uuid4(),
        image="img",
        architecture="x86_64",
        session_type="batch",
        domain="default",
        group="default",
        requested_slots={"cpu": Decimal(cpu)},
        environ={},
        job_priority=priority,
        status=status,
        created_at=NOW - timedelta(seconds=age + 10),
        **kw,
    )
    if status == RUNNING:
        rec.started_at = NOW - timedelta(seconds=age)
    return rec


def test_victims_lowest_priority_first_then_oldest() -> None:
    old, young, ranked = _rec(2, age=300), _rec(2, age=10), _rec(2, priority=3, age=500)
    preemptor = _rec(4, priority=5, status=PENDING)
    records = [old, young, ranked, preemptor]
    free = free_slots(records, {"cpu": Decimal(6)})
    assert free == {"cpu": Decimal(0)}
    config = PreemptionConfig(enabled=True)
    assert choose_victims(records, preemptor, free, config, now=NOW) == [old, young]
    assert choose_victims(
        records, preemptor, free, PreemptionConfig(enabled=True, order="newest"), now=NOW
    ) == [
        young,
        old,
    ]


def test_no_victims_when_they_would_not_make_room() -> None:
    small = _rec(1)
    preemptor = _rec(4, priority=5, status=PENDING)
    records = [small, preemptor]
    free = free_slots(records, {"cpu": Decimal(2)})
    assert choose_victims(records, preemptor, free, PreemptionConfig(enabled=True), now=NOW) == []


@pytest.mark.parametrize(
    ("victim", "config"),
    [
        pytest.param({"owner": "AK2"}, PreemptionConfig(enabled=True), id="another-user"),
        pytest.param({"is_preemptible": False}, PreemptionConfig(enabled=True), id="not-preemptible"),
        pytest.param({"priority": 5}, PreemptionConfig(enabled=True), id="same-priority"),
        pytest.param({"age": 5}, PreemptionConfig(enabled=True, preemption_min_runtime=60), id="too-young"),
    ],
)
def test_who_is_never_a_victim(victim: dict[str, Any], config: PreemptionConfig) -> None:
    candidate = _rec(2, **victim)
    preemptor = _rec(2, priority=5, status=PENDING)
    records = [candidate, preemptor]
    free = free_slots(records, {"cpu": Decimal(2)})
    assert choose_victims(records, preemptor, free, config, now=NOW) == []


def test_another_users_session_is_a_victim_when_the_scope_is_wider() -> None:
    other = _rec(2, owner="AK2")
    preemptor = _rec(2, priority=5, status=PENDING)
    free = free_slots([other, preemptor], {"cpu": Decimal(2)})
    config = PreemptionConfig(enabled=True, victim_scope="resource_group")
    assert choose_victims([other, preemptor], preemptor, free, config, now=NOW) == [other]


def test_queue_position_is_fifo_within_priority() -> None:
    first, second = _rec(1, status=PENDING, age=50), _rec(1, status=PENDING, age=20)
    urgent = _rec(1, status=PENDING, age=1, priority=0)
    urgent.priority = 50
    records = [second, first, urgent]
    assert [queue_position(records, r) for r in (urgent, first, second)] == [0, 1, 2]
    assert queue_position(records, _rec(1)) is None
