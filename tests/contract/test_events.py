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

from .sdk import open_async_session, session_ref, unique_name

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
