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
"""Session event stream (SSE) through ``AsyncSession``, including the manager's quirks."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from ai.backend.client.func.session import ComputeSession

from backend_ai_emulator import signed_headers

from .sdk import GQL_SESSION, open_async_session, session_ref, unique_name

if TYPE_CHECKING:
    from backend_ai_emulator import EmulatorHandle

    from .sdk import ContractTarget

TERMINAL_EVENTS = ("session_success", "session_failure")


async def _collect_until(
    stream: Any, session_id: str, stop: tuple[str, ...], timeout: float
) -> list[tuple[str, dict]]:
    """Read events until one of ``stop`` arrives for ``session_id``; returns every event seen."""
    seen: list[tuple[str, dict]] = []

    async def _read() -> None:
        async for msg in stream:
            payload = json.loads(msg.data) if msg.data else {}
            seen.append((msg.event, payload))
            if msg.event in stop and payload.get("sessionId") == session_id:
                return

    await asyncio.wait_for(_read(), timeout)
    return seen


async def _collect_all(
    stream: Any, session_id: str, wanted: set[str], timeout: float
) -> list[tuple[str, dict]]:
    """Read events until every one of ``wanted`` has arrived for ``session_id``, in any order."""
    seen: list[tuple[str, dict]] = []
    missing = set(wanted)

    async def _read() -> None:
        async for msg in stream:
            payload = json.loads(msg.data) if msg.data else {}
            seen.append((msg.event, payload))
            if payload.get("sessionId") == session_id:
                missing.discard(msg.event)
                if not missing:
                    return

    try:
        await asyncio.wait_for(_read(), timeout)
    except TimeoutError:
        raise AssertionError(f"{sorted(missing)} never arrived; saw {[name for name, _ in seen]}") from None
    return seen


async def _create(session: Any, target: ContractTarget, command: str, **kwargs: Any) -> Any:
    created = await session.ComputeSession.get_or_create(
        target.image,
        name=kwargs.pop("name", unique_name()),
        type_="batch",
        startup_command=command,
        enqueue_only=True,
        **kwargs,
    )
    target.created.append(uuid.UUID(str(created.id)))
    return created


async def test_session_success_arrives_on_the_stream(contract_target: ContractTarget) -> None:
    """
    A finished job's ``session_success`` and its ``session_started`` both arrive, in either order.

    The manager publishes ``session_started`` after the RUNNING hook that starts the batch job, so for a
    job that ends within about a second ``session_success`` can come first: only arrival is guaranteed.
    """
    # Subscribe before creating: the stream has no replay.
    async with (
        open_async_session(contract_target.config()) as session,
        ComputeSession("*").listen_events() as stream,
    ):
        created = await _create(session, contract_target, "echo streamed")
        seen = await _collect_all(
            stream, str(created.id), {"session_success", "session_started"}, contract_target.timeout
        )
    mine = [(name, p) for name, p in seen if p.get("sessionId") == str(created.id)]
    names = [name for name, _ in mine]
    assert names.count("session_success") == 1
    assert names.count("session_started") == 1
    assert "session_failure" not in names
    success = next(p for name, p in mine if name == "session_success")
    assert success["reason"] == "task-finished"
    assert success["sessionName"] == created.name
    assert success["ownerAccessKey"] == contract_target.access_key
    assert "exitCode" in success
    started = next(p for name, p in mine if name == "session_started")
    assert started["sessionName"] == created.name


async def test_stream_by_session_id_is_a_wildcard(contract_target: ContractTarget) -> None:
    """Manager quirk: ``sessionId`` is parsed and ignored, so the stream carries all the caller's sessions."""
    async with (
        open_async_session(contract_target.config()) as session,
        session_ref(uuid.uuid4()).listen_events() as stream,
    ):
        created = await _create(session, contract_target, "exit 2")
        seen = await _collect_until(stream, str(created.id), TERMINAL_EVENTS, contract_target.timeout)
    failure = seen[-1]
    assert failure[0] == "session_failure"
    assert failure[1]["reason"] == "task-failed"


@pytest.mark.parametrize(
    ("command", "end_event", "result", "reason"),
    [
        ("sleep 1; echo finished", "session_success", "SUCCESS", "task-finished"),
        ("sleep 1; echo failing; exit 3", "session_failure", "FAILURE", "task-failed"),
    ],
    ids=["success", "failure"],
)
async def test_job_end_order_result_before_terminated(
    contract_target: ContractTarget, command: str, end_event: str, result: str, reason: str
) -> None:
    """
    How a batch job's end shows, on the emulator and on the real manager (wire notes §5.4, §5.5).

    ``session_success``/``session_failure`` comes before ``session_terminating``, which comes before
    ``session_terminated``; when the end event arrives, GraphQL ``result`` is already known (or soon: the
    manager writes it in another handler of the agent's event than the one the stream relays, ~10-30 ms
    after the job's end when idle, seconds later when loaded) while the status is still RUNNING or
    TERMINATING, seconds before TERMINATED
    (the manager's 2 s scheduler tick); and the event's ``reason`` is what ``status_info`` says later
    (``session_terminating`` has it too; ``session_terminated`` says ``triggered-by-scheduler``).
    """
    async with (
        open_async_session(contract_target.config()) as session,
        ComputeSession("*").listen_events() as stream,  # subscribe first: the stream has no replay
    ):
        created = await _create(session, contract_target, command)
        session_id = str(created.id)
        loop = asyncio.get_running_loop()
        mine: list[tuple[str, dict, float]] = []
        result_allowance = 1.0 if contract_target.is_emulator else 15.0
        row_at_end: dict[str, Any] | None = None
        result_seen_after: float | None = None

        async def _read() -> None:
            nonlocal row_at_end, result_seen_after
            async for msg in stream:
                payload = json.loads(msg.data) if msg.data else {}
                if payload.get("sessionId") != session_id:
                    continue  # the stream is a wildcard: other sessions of the caller come too
                mine.append((msg.event, payload, loop.time()))
                if msg.event in TERMINAL_EVENTS and row_at_end is None:
                    seen_at = loop.time()
                    # The result is written by the manager's own handler of the agent's event, separate from
                    # the stream's: ~30 ms apart when idle, seconds on a loaded manager. Read until it shows.
                    while True:
                        row = (await session.Admin.query(GQL_SESSION, {"id": session_id}))["compute_session"]
                        if row["result"] != "UNDEFINED" or loop.time() - seen_at > result_allowance:
                            break
                        await asyncio.sleep(0.01)
                    row_at_end, result_seen_after = row, loop.time() - seen_at
                if msg.event == "session_terminated":
                    return

        try:
            await asyncio.wait_for(_read(), contract_target.timeout)
        except TimeoutError:
            raise AssertionError(f"session_terminated never came; saw {[n for n, _, _ in mine]}") from None
        final = (await session.Admin.query(GQL_SESSION, {"id": session_id}))["compute_session"]

    names = [name for name, _, _ in mine]
    # The real manager 26.9.6 sometimes triggers a batch job again while it runs, and the agent then reports
    # each trigger's outcome: the end event may come more than once, but always the same one.
    assert names.count(end_event) >= 1, names
    if contract_target.is_emulator:
        assert names.count(end_event) == 1, names
    assert set(TERMINAL_EVENTS) - {end_event} & set(names) == set(), names
    assert names.index(end_event) < names.index("session_terminating") < names.index("session_terminated")
    assert row_at_end is not None
    assert result_seen_after is not None
    assert row_at_end["result"] == result, (row_at_end, result_seen_after)
    assert row_at_end["status"] in ("RUNNING", "TERMINATING"), row_at_end
    end_payload = next(p for name, p, _ in mine if name == end_event)
    assert end_payload["reason"] == reason
    assert end_payload["sessionName"] == created.name
    assert final["status"] == "TERMINATED"
    assert final["result"] == result
    assert final["status_info"] == end_payload["reason"]
    terminating_payload = next(p for name, p, _ in mine if name == "session_terminating")
    assert terminating_payload["reason"] == reason
    # session_terminated is the scheduler's step, whatever the termination's reason (26.9.6).
    terminated_payload = next(p for name, p, _ in mine if name == "session_terminated")
    assert terminated_payload["reason"] == "triggered-by-scheduler"
    if not contract_target.is_emulator:
        # The real manager's order takes time: TERMINATED follows the end by about two 2 s ticks.
        end_at = next(at for name, _, at in mine if name == end_event)
        terminated_at = next(at for name, _, at in mine if name == "session_terminated")
        assert terminated_at - end_at > 1.0, names


@pytest.mark.emulator_only
async def test_quirks_exit_code_null_and_kernel_events_on_wildcard(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    async with (
        open_async_session(contract_target.config()) as session,
        ComputeSession("*").listen_events() as stream,
    ):
        created = await _create(session, contract_target, "exit 5")
        seen = await _collect_until(stream, str(created.id), TERMINAL_EVENTS, contract_target.timeout)
    assert seen[-1][1]["exitCode"] is None
    kernel = [p for name, p in seen if name.startswith("kernel_")]
    assert kernel
    assert kernel[0]["kernelId"]
    assert kernel[0]["clusterRole"] == "main"
    snap = await asyncio.to_thread(emulator.wait_for_session, created.id, status="TERMINATED")
    assert snap.exit_code == 5


@pytest.mark.emulator_only
async def test_named_stream_gets_no_kernel_events(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    async with open_async_session(contract_target.config()) as session:
        created = await _create(session, contract_target, "sleep 0.3; echo named")
        async with ComputeSession(created.name).listen_events() as stream:
            seen = await _collect_until(stream, str(created.id), TERMINAL_EVENTS, contract_target.timeout)
    assert seen[-1][0] == "session_success"
    assert not [name for name, _ in seen if name.startswith("kernel_")]


@pytest.mark.emulator_only
async def test_fixed_quirks_filter_by_session_id_and_fill_exit_code(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    emulator.settings.fixed_event_quirks = True
    async with open_async_session(contract_target.config()) as session:
        target = await _create(session, contract_target, "sleep 0.5; exit 4")
        async with session_ref(target.id).listen_events() as stream:
            other = await _create(session, contract_target, "echo noise")
            seen = await _collect_until(stream, str(target.id), TERMINAL_EVENTS, contract_target.timeout)
    assert {p["sessionId"] for _, p in seen} == {str(target.id)}
    assert seen[-1][0] == "session_failure"
    assert seen[-1][1]["exitCode"] == 4
    assert any(name.startswith("kernel_") for name, _ in seen)
    await asyncio.to_thread(emulator.wait_for_session, other.id, status="TERMINATED")


@pytest.mark.emulator_only
async def test_sse_wire_format(contract_target: ContractTarget, emulator: EmulatorHandle) -> None:
    emulator.settings.sse_ping_interval = 0.05
    url = f"{contract_target.endpoint}/events/session?sessionName=%2A&scope=%2A"
    headers = signed_headers(
        "GET",
        url,
        contract_target.access_key,
        contract_target.secret_key,
        content_type="application/octet-stream",
    )
    del headers["Content-Type"]
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        chunk = await asyncio.wait_for(resp.content.readuntil(b"\r\n\r\n"), 5)
    assert chunk == b": ping\r\n\r\n"


@pytest.mark.emulator_only
async def test_bad_scope_and_unknown_name(contract_target: ContractTarget) -> None:
    async with aiohttp.ClientSession() as http:
        for query, status, slug in (
            ("sessionName=%2A&scope=everything", 400, "invalid-api-params"),
            (f"sessionName={unique_name()}&scope=%2A", 404, "entity-not-found"),
        ):
            url = f"{contract_target.endpoint}/events/session?{query}"
            headers = signed_headers(
                "GET", url, contract_target.access_key, contract_target.secret_key, content_type="text/plain"
            )
            async with http.get(url, headers=headers) as resp:
                body = await resp.json(content_type=None)
            assert resp.status == status
            assert body["type"].endswith(slug)
