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
"""Session creation: name reuse, validation errors, and blocking (non enqueue-only) creation."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from ai.backend.client.exceptions import BackendAPIError

from backend_ai_emulator import signed_headers

from .sdk import create_batch, open_async_session, session_ref, unique_name, wait_for_result, wait_for_status

if TYPE_CHECKING:
    from ai.backend.client.session import Session

    from backend_ai_emulator import EmulatorHandle

    from .sdk import ContractTarget


def _create_error(sdk: Session, target: ContractTarget, **kwargs: Any) -> BackendAPIError:
    kwargs.setdefault("name", unique_name())
    kwargs.setdefault("enqueue_only", True)
    image = kwargs.pop("image", target.image)
    try:
        created = sdk.ComputeSession.get_or_create(image, **kwargs)
    except BackendAPIError as exc:
        return exc
    target.created.append(uuid.UUID(str(created.id)))
    raise AssertionError(f"expected the create to fail, got session {created.id}")


def test_same_name_reuses_the_live_session(sdk: Session, contract_target: ContractTarget) -> None:
    name = unique_name()
    first = create_batch(sdk, contract_target, "sleep 30", name=name)
    again = sdk.ComputeSession.get_or_create(
        contract_target.image, name=name, type_="batch", startup_command="sleep 30", enqueue_only=True
    )
    assert again.created is False
    assert str(again.id) == str(first.id)
    err = _create_error(
        sdk, contract_target, name=name, type_="batch", startup_command="sleep 30", no_reuse=True
    )
    assert err.status == 400
    assert err.data["type"] == "https://api.backend.ai/probs/session-already-exists"
    assert err.data["data"] == {"existingSessionId": str(first.id)}
    session_ref(first.id).destroy(forced=True)


@pytest.mark.emulator_only
def test_reuse_with_other_image_is_refused(sdk: Session, contract_target: ContractTarget) -> None:
    name = unique_name()
    first = create_batch(sdk, contract_target, "sleep 30", name=name)
    err = _create_error(
        sdk,
        contract_target,
        name=name,
        image="cr.backend.ai/testing/ubuntu:22.04",
        type_="batch",
        startup_command="sleep 30",
    )
    assert err.data["type"].endswith("/session-already-exists")
    session_ref(first.id).destroy(forced=True)


def test_name_is_free_again_after_termination(sdk: Session, contract_target: ContractTarget) -> None:
    name = unique_name()
    first = create_batch(sdk, contract_target, "echo first", name=name)
    wait_for_status(sdk, contract_target, first.id, "TERMINATED")
    second = create_batch(sdk, contract_target, "echo second", name=name)
    assert second.created is True
    assert str(second.id) != str(first.id)
    wait_for_result(sdk, contract_target, second.id)


def test_unknown_image_is_404(sdk: Session, contract_target: ContractTarget) -> None:
    err = _create_error(
        sdk,
        contract_target,
        image="cr.backend.ai/nowhere/no-such-image:0.0",
        type_="batch",
        startup_command="echo x",
    )
    assert err.status == 404
    assert err.data["type"] == "https://api.backend.ai/probs/object-not-found"


def test_batch_without_startup_command_is_400(sdk: Session, contract_target: ContractTarget) -> None:
    err = _create_error(sdk, contract_target, type_="batch")
    assert err.status == 400
    assert err.data["type"] == "https://api.backend.ai/probs/invalid-api-params"


def test_batch_timeout_on_interactive_is_400(sdk: Session, contract_target: ContractTarget) -> None:
    err = _create_error(sdk, contract_target, batch_timeout=30)
    assert err.status == 400
    assert "batch_timeout" in err.data["msg"]


@pytest.mark.parametrize("value", ["soon", "5x", "-3", -1, "1yr"])
def test_bad_batch_timeout_is_400(sdk: Session, contract_target: ContractTarget, value: object) -> None:
    err = _create_error(sdk, contract_target, type_="batch", startup_command="echo x", batch_timeout=value)
    assert err.status == 400


def test_unknown_resource_slot_is_400(sdk: Session, contract_target: ContractTarget) -> None:
    err = _create_error(
        sdk, contract_target, type_="batch", startup_command="echo x", resources={"cpu": 1, "warp.drive": 1}
    )
    assert err.status == 400
    assert err.data["type"] == "https://api.backend.ai/probs/unknown-resource-slot-type"
    assert err.data["error_code"] == "backendai_parsing_not-found"
    assert err.data["msg"] == "Unknown slot type: 'warp.drive'"


@pytest.mark.emulator_only
def test_quota_exceeded_is_400(
    sdk: Session, contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    emulator.settings.resource_limits = {"*": {"cpu": 2, "mem": "4g"}}
    first = create_batch(sdk, contract_target, "sleep 30", resources={"cpu": 2, "mem": "1g"})
    err = _create_error(sdk, contract_target, type_="batch", startup_command="echo x", resources={"cpu": 1})
    assert err.status == 400
    assert err.data["type"] == "https://api.backend.ai/probs/quota-exceeded"
    session_ref(first.id).destroy(forced=True)


@pytest.mark.parametrize("timeout", [30, 12.7, "300", "30s", "5m", "1h", "2d", "1w", 0])
@pytest.mark.emulator_only
def test_batch_timeout_forms(
    sdk: Session, contract_target: ContractTarget, emulator: EmulatorHandle, timeout: object
) -> None:
    created = create_batch(sdk, contract_target, "echo t", batch_timeout=timeout)
    expected = {
        30: 30,
        12.7: 12,
        "300": 300,
        "30s": 30,
        "5m": 300,
        "1h": 3600,
        "2d": 172800,
        "1w": 604800,
        0: None,
    }
    assert emulator.wait_for_session(created.id).batch_timeout == expected[timeout]
    wait_for_result(sdk, contract_target, created.id)


async def _raw_create(target: ContractTarget, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    url = target.endpoint + path
    headers = signed_headers("POST", url, target.access_key, target.secret_key)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=json.dumps(body), headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


@pytest.mark.emulator_only  # the manager's own name check is not pinned down; the SDK checks only the length
@pytest.mark.parametrize("name", ["abc", "x" * 65, "-starts-with-dash", "has space"])
async def test_invalid_session_name_is_400(contract_target: ContractTarget, name: str) -> None:
    status, body = await _raw_create(
        contract_target,
        "/session",
        {
            "name": name,
            "image": contract_target.image,
            "type": "batch",
            "startupCommand": "echo x",
            "enqueueOnly": True,
        },
    )
    assert status == 400, body


@pytest.mark.emulator_only
async def test_create_alias_route_and_field_aliases(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    body = {
        "clientSessionToken": unique_name(),
        "lang": contract_target.image,
        "sessionType": "BATCH",
        "startupCommand": "echo alias",
        "batchTimeout": "2m",
        "enqueueOnly": True,
        "reuse": False,
        "groupName": "default",
        "domainName": "default",
    }
    status, created = await _raw_create(contract_target, "/session/_/create", body)
    assert status == 201, created
    assert created["created"] is True
    assert created["status"] == "PENDING"
    snap = await asyncio.to_thread(emulator.wait_for_session, created["sessionId"], status="TERMINATED")
    assert snap.batch_timeout == 120
    assert snap.result == "SUCCESS"
    assert emulator.request_count("create") == 1


def test_blocking_create_returns_running(sdk: Session, contract_target: ContractTarget) -> None:
    created = sdk.ComputeSession.get_or_create(contract_target.image, name=unique_name(), enqueue_only=False)
    contract_target.created.append(uuid.UUID(str(created.id)))
    assert created.status == "RUNNING"
    assert session_ref(created.id).destroy(forced=True) == {"stats": {"status": "terminated"}}


@pytest.mark.emulator_only
def test_blocking_create_times_out(
    sdk: Session, contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    emulator.settings.preparing_hold = 30
    created = sdk.ComputeSession.get_or_create(
        contract_target.image, name=unique_name(), enqueue_only=False, max_wait=1
    )
    assert created.status == "TIMEOUT"
    assert emulator.wait_for_session(created.id).status == "PREPARING"
    session_ref(created.id).destroy(forced=True)


@pytest.mark.emulator_only
async def test_blocking_create_404_when_cancelled_meanwhile(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    emulator.settings.pending_hold = float("inf")
    name = unique_name()
    async with open_async_session(contract_target.config()) as session:
        creating = asyncio.ensure_future(
            session.ComputeSession.get_or_create(contract_target.image, name=name)
        )
        pending = await asyncio.to_thread(emulator.wait_for_session, name, status="PENDING")
        assert await session_ref(pending.id).destroy() == {"stats": {"status": "cancelled"}}
        with pytest.raises(BackendAPIError) as excinfo:
            await creating
    assert excinfo.value.status == 404
