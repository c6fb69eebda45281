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
``GET /config/resource-slots`` (and ``/details``): the slot names a create may use, and what a create with
an unknown slot answers. The provider asks the first before a create to reject a misspelt slot (such as
``cuda.devices``) before any session exists; the manager's own answer names the slot but no alternative.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.request import Request

from .sdk import create_batch, open_async_session, session_ref, wait_for_result

if TYPE_CHECKING:
    from ai.backend.client.session import Session

    from backend_ai_emulator import EmulatorHandle

    from .sdk import ContractTarget

SLOT_TYPES = {"count", "bytes", "unique", "unified"}
COUNT_QUERY = "query { compute_session_list(limit: 1, offset: 0) { total_count } }"
METADATA_KEYS = {
    "slot_name",
    "description",
    "human_readable_name",
    "display_unit",
    "number_format",
    "display_icon",
}


def _session_count(sdk: Session) -> int:
    """How many sessions (any status) the manager lists for this keypair."""
    return int(sdk.Admin.query(COUNT_QUERY)["compute_session_list"]["total_count"])


def test_resource_slots_lists_cpu_and_mem_with_their_types(sdk: Session) -> None:
    slots = sdk.Resource.get_resource_slots()
    assert isinstance(slots, dict)
    assert list(slots)[:2] == ["cpu", "mem"], slots
    assert slots["cpu"] == "count"
    assert slots["mem"] == "bytes"
    assert set(slots.values()) <= SLOT_TYPES, slots


async def test_resource_slots_signed_with_the_sdk_request(contract_target: ContractTarget) -> None:
    """What the provider will send: a plain signed GET, on either SDK line (no admin role needed)."""
    async with (
        open_async_session(contract_target.config()),
        Request("GET", "/config/resource-slots").fetch() as resp,
    ):
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert {"cpu": "count", "mem": "bytes"}.items() <= body.items()


async def test_resource_slots_needs_a_signature(contract_target: ContractTarget) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{contract_target.endpoint}/config/resource-slots") as resp,
    ):
        assert resp.status == 401
        data = await resp.json(content_type=None)
    assert data["type"] == "https://api.backend.ai/probs/auth-failed"
    assert data["msg"] == "Unauthorized access"


async def test_resource_slot_details_describe_the_known_slots(contract_target: ContractTarget) -> None:
    async with open_async_session(contract_target.config()) as api:
        known = await api.Resource.get_resource_slots()
        async with Request("GET", "/config/resource-slots/details").fetch() as resp:
            assert resp.status == 200
            details = await resp.json()
        async with Request(
            "GET", "/config/resource-slots/details", params={"sgroup": "default"}
        ).fetch() as resp:
            assert resp.status == 200
            in_group = await resp.json()
    assert set(details) <= set(known)
    assert {"cpu", "mem"} <= set(details)
    for meta in details.values():
        assert set(meta) == METADATA_KEYS, meta
    assert details["cpu"]["slot_name"] == "cpu"
    assert details["mem"]["slot_name"] == "ram"  # sic: the manager's metadata calls memory "ram"
    assert details["mem"]["number_format"] == {"binary": True, "round_length": 0}
    assert {"cpu", "mem"} <= set(in_group) <= set(details)


def test_unknown_slot_create_is_400_and_creates_nothing(
    sdk: Session, contract_target: ContractTarget
) -> None:
    """Today the user's only feedback for ``cuda.devices``: the manager's 400, naming the slot only."""
    before = _session_count(sdk)
    with pytest.raises(BackendAPIError) as caught:
        create_batch(sdk, contract_target, "echo x", resources={"cpu": 1, "mem": "1g", "cuda.devices": 1})
    err = caught.value
    assert err.status == 400
    assert err.data == {
        "type": "https://api.backend.ai/probs/unknown-resource-slot-type",
        "title": "Unknown resource slot type.",
        "error_code": "backendai_parsing_not-found",
        "msg": "Unknown slot type: 'cuda.devices'",
    }
    assert _session_count(sdk) == before


def test_every_listed_slot_is_accepted_by_create(sdk: Session, contract_target: ContractTarget) -> None:
    """The list is what create checks against: a listed slot passes the slot check (here cpu and mem)."""
    known = sdk.Resource.get_resource_slots()
    resources: dict[str, Any] = {"cpu": 1, "mem": "1g"}
    assert set(resources) <= set(known)
    created = create_batch(sdk, contract_target, "echo slots ok", resources=resources)
    assert wait_for_result(sdk, contract_target, created.id)["result"] == "SUCCESS"


@pytest.mark.emulator_only
def test_emulator_serves_gpu_slots(
    sdk: Session, contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    """The emulator's cluster has GPUs: ``cuda.device`` (whole) and ``cuda.shares`` (fractional) are known."""
    assert sdk.Resource.get_resource_slots() == {
        "cpu": "count",
        "mem": "bytes",
        "cuda.device": "count",
        "cuda.shares": "count",
    }
    created = create_batch(
        sdk, contract_target, "echo gpu", resources={"cpu": 1, "mem": "1g", "cuda.device": 1}
    )
    assert wait_for_result(sdk, contract_target, created.id)["result"] == "SUCCESS"
    snapshot = emulator.get_session(str(created.id))
    assert snapshot is not None
    assert {k: str(v) for k, v in snapshot.requested_slots.items()} == {
        "cpu": "1",
        "mem": "1073741824",
        "cuda.device": "1",
    }


@pytest.mark.emulator_only
def test_emulator_lists_what_its_create_accepts(
    sdk: Session, contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    """``settings.known_slots`` drives both the list and the create check, so they never disagree."""
    emulator.settings.known_slots = {"cpu", "mem", "rocm.device", "warp.drive"}
    assert sdk.Resource.get_resource_slots() == {
        "cpu": "count",
        "mem": "bytes",
        "rocm.device": "count",
        "warp.drive": "count",
    }
    with pytest.raises(BackendAPIError) as caught:
        create_batch(sdk, contract_target, "echo x", resources={"cpu": 1, "cuda.device": 1})
    assert caught.value.data["msg"] == "Unknown slot type: 'cuda.device'"
    created = create_batch(sdk, contract_target, "echo x", resources={"cpu": 1, "rocm.device": 1})
    session_ref(created.id).destroy(forced=True)


@pytest.mark.emulator_only
async def test_emulator_details_leave_out_slots_without_metadata(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    emulator.settings.known_slots = {"cpu", "mem", "cuda.device", "warp.drive"}
    async with (
        open_async_session(contract_target.config()),
        Request("GET", "/config/resource-slots/details").fetch() as resp,
    ):
        details = await resp.json()
    assert list(details) == ["cpu", "mem", "cuda.device"]
    assert details["cuda.device"]["human_readable_name"] == "GPU"
    assert emulator.request_count(route="resource_slots_details") == 1
