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
A busy cluster (26.8+): ``job_priority``/``is_preemptible``, why a session waits, and preemption.

Measured on a real 26.9.6 manager first; the emulator must answer the same. LOW is a running session of
the user, HIGH a session of the same user with a higher ``job_priority`` that does not fit beside it.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

import pytest
from ai.backend.client.exceptions import BackendAPIError

from .busy import (
    create,
    history,
    legacy,
    node,
    priority_fields,
    read_logs,
    recorded_events,
    rerun_command,
    strawberry,
    until,
    until_status,
)
from .sdk import open_async_session, session_ref

if TYPE_CHECKING:
    import uuid

    from .conftest import BusyCluster
    from .sdk import ContractTarget

LONG = "echo low-start; sleep 600"


async def _destroy(session_id: uuid.UUID) -> None:
    with contextlib.suppress(BackendAPIError):
        await session_ref(session_id).destroy(forced=True)


# -- job_priority and is_preemptible on create ---------------------------------------------------------


async def test_job_priority_and_is_preemptible_are_stored(contract_target: ContractTarget) -> None:
    async with open_async_session(contract_target.config()):
        plain = await create(contract_target, "echo plain")
        ranked = await create(contract_target, "echo ranked", job_priority=7, is_preemptible=False)
        assert await priority_fields(plain) == {"jobPriority": 0, "isPreemptible": True}
        assert await priority_fields(ranked) == {"jobPriority": 7, "isPreemptible": False}
        for sid in (plain, ranked):
            await _destroy(sid)


@pytest.mark.parametrize(
    ("extra", "stored"),
    [
        pytest.param({"job_priority": "7"}, {"jobPriority": 7, "isPreemptible": True}, id="numeric-string"),
        pytest.param({"job_priority": -5}, {"jobPriority": -5, "isPreemptible": True}, id="negative"),
        pytest.param(
            {"is_preemptible": "false"}, {"jobPriority": 0, "isPreemptible": False}, id="bool-string"
        ),
        pytest.param(
            {"jobPriority": 9, "isPreemptible": False},
            {"jobPriority": 0, "isPreemptible": True},
            id="camel-ignored",
        ),
    ],
)
async def test_what_the_manager_makes_of_the_fields(
    contract_target: ContractTarget, extra: dict[str, Any], stored: dict[str, Any]
) -> None:
    """Pydantic's lax parsing; camelCase keys are unknown keys, silently ignored like any extra key."""
    async with open_async_session(contract_target.config()):
        sid = await create(contract_target, "echo fields", extra=extra)
        assert await priority_fields(sid) == stored
        await _destroy(sid)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        pytest.param({"job_priority": "high"}, "job_priority", id="job_priority-word"),
        pytest.param({"job_priority": 5.5}, "job_priority", id="job_priority-fraction"),
        pytest.param({"job_priority": None}, "job_priority", id="job_priority-null"),
        pytest.param({"is_preemptible": "maybe"}, "is_preemptible", id="is_preemptible-word"),
        pytest.param({"is_preemptible": None}, "is_preemptible", id="is_preemptible-null"),
    ],
)
async def test_bad_values_are_400(contract_target: ContractTarget, extra: dict[str, Any], field: str) -> None:
    async with open_async_session(contract_target.config()):
        with pytest.raises(BackendAPIError) as excinfo:
            await create(contract_target, "echo bad", extra=extra)
    assert excinfo.value.status == 400
    assert excinfo.value.data["type"] == "https://api.backend.ai/probs/generic-bad-request"
    assert field in excinfo.value.data["msg"]


async def test_job_priority_beyond_int32_is_a_server_error(contract_target: ContractTarget) -> None:
    """The manager does not range-check ``job_priority``: its INSERT fails (so clients must check)."""
    async with open_async_session(contract_target.config()):
        with pytest.raises(BackendAPIError) as excinfo:
            await create(contract_target, "echo big", extra={"job_priority": 2**31})
        assert excinfo.value.status == 500
        ok = await create(contract_target, "echo max", extra={"job_priority": 2**31 - 1})
        assert (await priority_fields(ok))["jobPriority"] == 2**31 - 1
        await _destroy(ok)


async def test_another_user_cannot_read_the_fields(contract_target: ContractTarget) -> None:
    if not contract_target.other_access_key or not contract_target.other_secret_key:
        pytest.skip("needs a second keypair")
    async with open_async_session(contract_target.config()):
        sid = await create(contract_target, "echo mine", job_priority=3)
    other = contract_target.config(
        access_key=contract_target.other_access_key, secret_key=contract_target.other_secret_key
    )
    async with open_async_session(other):
        answer = await strawberry(
            "query($id: UUID!) { sessionV2(id: $id) { metadata { jobPriority } } }", {"id": str(sid)}
        )
    assert answer["data"] == {"sessionV2": None}
    assert answer["errors"][0]["extensions"]["code"] == "permission_access_forbidden"
    async with open_async_session(contract_target.config()):
        await _destroy(sid)


# -- why a session waits ------------------------------------------------------------------------------


async def test_a_waiting_session_says_why_and_where_it_is_in_the_queue(busy_cluster: BusyCluster) -> None:
    """
    26.9.6 writes no ``status_data.scheduler``: the reason is in the scheduling history (newer GraphQL
    schema) and the place in ``compute_session_node.queue_position``.
    """
    target, big = busy_cluster.target, busy_cluster.big_cpu
    async with open_async_session(target.config()) as session:
        low = await create(target, LONG, cpu=big)
        await until_status(session, target, low, "RUNNING")
        waiting = await create(target, "echo waiting", cpu=big)
        behind = await create(target, "echo behind", cpu=1)

        async def judged(sid: uuid.UUID) -> list[dict[str, Any]] | None:
            entries = await history(sid)
            return entries if entries[-1]["phase"] == "schedule-sessions" else None

        head = await until(lambda: judged(waiting), target, "the scheduler to try the waiting session")
        assert head[0]["phase"] == "enqueue"
        last = head[-1]
        assert (last["fromStatus"], last["toStatus"], last["result"]) == ("PENDING", "PENDING", "NEED_RETRY")
        assert last["message"].startswith("Some kernels could not be placed on any agent.")
        assert "cpu: missing=" in last["message"]
        failed = [step for step in last["subSteps"] if step["result"] == "FAILURE"]
        assert failed[0]["step"] == "resource"
        assert failed[0]["errorCode"] == "agent_schedule_unavailable"

        tail = await until(lambda: judged(behind), target, "the scheduler to pass the session behind")
        assert tail[-1]["result"] == "SKIPPED"
        assert tail[-1]["message"] == (
            f"Not attempted: the resource group ran out of resources at the earlier session {waiting}"
        )

        async def placed() -> tuple[Any, Any] | None:
            first, second = (await node(session, waiting)), (await node(session, behind))
            return (
                (first, second) if first["queue_position"] is not None and second["queue_position"] else None
            )

        first, second = await until(placed, target, "queue positions")
        assert (first["queue_position"], second["queue_position"]) == (0, 1)
        assert first["status_data"] is None
        assert (await legacy(session, waiting))["status_data"] is None
        for sid in (behind, waiting, low):
            await _destroy(sid)


# -- preemption ---------------------------------------------------------------------------------------


def _switch(busy: BusyCluster) -> Any:
    if busy.switch is None:
        pytest.skip("needs an admin keypair to turn preemption on (BACKEND_AI_TEST_ADMIN_ACCESS_KEY)")
    return busy.switch


async def test_terminate_mode(busy_cluster: BusyCluster) -> None:
    """RUNNING → PREEMPTED → TERMINATING → TERMINATED, ``result`` UNDEFINED, no success/failure event."""
    target, big = busy_cluster.target, busy_cluster.big_cpu
    await _switch(busy_cluster).set(True, "TERMINATE")
    async with open_async_session(target.config()) as session, recorded_events() as events:
        low = await create(target, LONG, cpu=big)
        await until_status(session, target, low, "RUNNING")
        await until(lambda: _has_output(low, "low-start"), target, "the first output")
        high = await create(target, "echo high", cpu=big, job_priority=10, is_preemptible=False)

        reserved = await until_status(session, target, high, "RESERVED")
        assert reserved["status_info"] == "preemption-reservation"
        assert await read_logs(high) == 500
        ended = await until_status(session, target, low, "TERMINATED")
        assert ended["status_info"] == "preempted-by-scheduler"
        assert ended["result"] == "UNDEFINED"
        assert "PREEMPTED" in ended["status_history"]
        assert "low-start" in str(await read_logs(low))

        entries = await history(high)
        assert [e["phase"] for e in entries[:2]] == ["enqueue", "mark_reserved"]
        phases = [(e["phase"], e["fromStatus"], e["toStatus"]) for e in await history(low)]
        assert ("mark_preempted", "RUNNING", "PREEMPTED") in phases
        assert ("mark_terminating", "PREEMPTED", "TERMINATING") in phases

        # The preemptor waits for a long-cycle pass (up to minutes on the manager); a destroy ends it.
        await session_ref(high).destroy()
        gone = await until_status(session, target, high, "TERMINATED", "CANCELLED")
        assert gone["status_info"] == "user-requested"
        await until(lambda: _arrived(events, low, "session_terminated"), target, "session_terminated")

    names = events.names(low)
    assert (
        names.index("session_preempted")
        < names.index("session_terminating")
        < names.index("session_terminated")
    )
    assert "session_success" not in names
    assert "session_failure" not in names
    assert events.reason(low, "session_preempted") == "preempted-by-reservation"
    assert events.reason(low, "session_terminating") == "preempted-by-scheduler"
    assert events.reason(high, "session_reserved") == "preemption-reservation"


async def test_reschedule_mode_requeues_and_reruns_from_the_start(busy_cluster: BusyCluster) -> None:
    """
    RUNNING → PREEMPTED → RESCHEDULING → PENDING (``rescheduled``), same session id, then a rerun with a
    log of its own. The preemptor is destroyed while RESERVED, so that the rerun need not wait for it.
    """
    target, big = busy_cluster.target, busy_cluster.big_cpu
    await _switch(busy_cluster).set(True, "RESCHEDULE")
    low: uuid.UUID | None = None
    async with open_async_session(target.config()) as session, recorded_events() as events:
        try:
            low = await create(target, rerun_command("ct-rerun-$BACKENDAI_SESSION_ID"), cpu=big)
            first = await until_status(session, target, low, "RUNNING")
            assert first["starts_at"] is not None
            await until(lambda: _has_output(low, "first-run"), target, "the first run's output")
            high = await create(target, "echo high", cpu=big, job_priority=10, is_preemptible=False)

            requeued = await until_status(session, target, low, "PENDING", timeout=target.timeout + 120)
            assert requeued["status_info"] == "rescheduled"
            assert requeued["starts_at"] is None
            assert requeued["result"] == "UNDEFINED"
            for status in ("PREEMPTED", "RESCHEDULING", "RUNNING", "PENDING"):
                assert status in requeued["status_history"]
            requeued_logs = await read_logs(low)
            assert requeued_logs == 404
            phases = [e["phase"] for e in await history(low)]
            marks = [p for p in phases if p.startswith("mark_")]
            assert marks == ["mark_preempted", "mark_rescheduling", "mark_pending"]
            assert phases.index("promote-to-running") < phases.index("mark_preempted")

            # The manager releases the preemptor a long-cycle pass or more after the requeue (60 s each):
            # destroy it if it still waits, so that the rerun need not wait for it.
            if (await legacy(session, high))["status"] == "RESERVED":
                await session_ref(high).destroy()
            answers: dict[str, set[Any]] = {}

            async def rerun_done() -> dict[str, Any] | None:
                row = await legacy(session, low)
                answer = await read_logs(low)
                after = await legacy(session, low)
                if after["status"] == row["status"]:  # the answer belongs to that status
                    answers.setdefault(row["status"], set()).add(
                        answer if isinstance(answer, int) else "text"
                    )
                return after if after["result"] != "UNDEFINED" else None

            done = await until(rerun_done, target, "the rerun's result", timeout=target.timeout + 60)
            assert done["result"] == "SUCCESS"
            assert done["starts_at"] is not None
            assert done["starts_at"] != first["starts_at"]
            final = await until_status(session, target, low, "TERMINATED")
            logs = await read_logs(low)
            assert isinstance(logs, str)
            assert f"rerun-{low}" in logs
            assert "first-run" not in logs  # the rerun's container log replaces the first run's
            assert final["status_info"] == "task-finished"
            # Requeued: 404 "No such agent."; prepared again: 500 (the agent has no such kernel yet), until the
            # kernel exists, which the manager reports a moment before CREATING: from then on the new log.
            expected = {"PENDING": {404}, "SCHEDULED": {500}, "PREPARING": {500}, "PREPARED": {500, "text"}}
            for status, allowed in expected.items():
                assert answers.get(status, set()) <= allowed, answers
            await until(lambda: _arrived(events, low, "session_terminated"), target, "session_terminated")
        finally:
            if low is not None:
                with contextlib.suppress(OSError):
                    os.remove(f"/tmp/ct-rerun-{low}")

    names = [n for n in events.names(low) if n.startswith("session_")]
    preempted = names.index("session_preempted")
    assert names[preempted : preempted + 3] == [
        "session_preempted",
        "session_rescheduling",
        "session_pending",
    ]
    assert names.count("session_pending") == 2  # the enqueue and the requeue share the event name
    assert events.reason(low, "session_pending", 0) == "Session enqueued"
    assert events.reason(low, "session_pending", 1) == "rescheduled"
    assert events.reason(low, "session_rescheduling") == "preempted-by-scheduler"
    assert names.count("session_started") == 2
    assert names.count("session_success") == 1
    kernel = [(n, d.get("reason")) for n, d in events.of(low) if n == "kernel_terminated"]
    assert kernel[0] == ("kernel_terminated", "preempted-by-scheduler")


@pytest.mark.parametrize("case", ["preemption-off", "not-preemptible", "equal-priority"])
async def test_no_preemption_without_all_conditions(busy_cluster: BusyCluster, case: str) -> None:
    """The preemptor just waits when preemption is off, the victim is not preemptible, or ranks the same."""
    target, big = busy_cluster.target, busy_cluster.big_cpu
    if case != "preemption-off":
        await _switch(busy_cluster).set(True, "TERMINATE")
    async with open_async_session(target.config()) as session:
        low = await create(target, LONG, cpu=big, is_preemptible=case != "not-preemptible")
        await until_status(session, target, low, "RUNNING")
        high = await create(target, "echo high", cpu=big, job_priority=0 if case == "equal-priority" else 10)

        async def judged() -> bool:
            return any(e["result"] == "NEED_RETRY" for e in await history(high))

        await until(judged, target, "the scheduler to try the high-priority session")
        assert (await legacy(session, high))["status"] == "PENDING"
        assert (await legacy(session, low))["status"] == "RUNNING"
        for sid in (high, low):
            await _destroy(sid)


async def _has_output(session_id: uuid.UUID, text: str) -> bool:
    logs = await read_logs(session_id)
    return isinstance(logs, str) and text in logs


async def _arrived(events: Any, session_id: uuid.UUID, name: str) -> bool:
    return name in events.names(session_id)
