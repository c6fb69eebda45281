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
"""Version document, version negotiation with the installed SDK, and the version header check."""

from __future__ import annotations

import re
import uuid
import warnings
from typing import TYPE_CHECKING

import aiohttp
import pytest
from ai.backend.client.config import API_VERSION

from backend_ai_emulator import signed_headers

from .sdk import assert_not_enough_permission, open_session

if TYPE_CHECKING:
    from ai.backend.client.session import Session

    from backend_ai_emulator import EmulatorHandle

    from .sdk import ContractTarget

SERVER_VERSION = (9, "20250722")


async def test_root_is_unauthenticated_version_document(contract_target: ContractTarget) -> None:
    async with aiohttp.ClientSession() as http, http.get(contract_target.endpoint + "/") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert re.fullmatch(r"v\d+\.\d{8}", body["version"])
    assert "manager" in body
    if contract_target.is_emulator:
        assert body == {"version": "v9.20250722", "manager": "26.9.6-emulator"}


def test_sdk_negotiates_min_of_server_and_client(contract_target: ContractTarget) -> None:
    expected = min(SERVER_VERSION, API_VERSION)
    with open_session(contract_target.config()) as session:
        assert session.api_version == expected
        hello = session.ComputeSession.hello()
    assert hello["version"] == "v9.20250722"


@pytest.mark.emulator_only
def test_negotiated_version_is_sent_on_signed_requests(emulator: EmulatorHandle, sdk: Session) -> None:
    sdk.ComputeSession.hello()
    major, date = min(SERVER_VERSION, API_VERSION)
    signed = [r for r in emulator.requests if r.access_key is not None]
    assert signed
    assert {r.api_version for r in signed} == {f"v{major}.{date}"}


def test_sdk_warns_only_when_server_is_newer(contract_target: ContractTarget) -> None:
    from ai.backend.client.exceptions import APIVersionWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from ai.backend.client.session import Session

        with Session(config=contract_target.config()):
            pass
    version_warnings = [w for w in caught if issubclass(w.category, APIVersionWarning)]
    assert bool(version_warnings) == (API_VERSION < SERVER_VERSION)


@pytest.mark.parametrize("version", ["v4.20181215", "v8.20240315", "v8.20240915", "v9.20250722"])
async def test_accepted_api_versions(contract_target: ContractTarget, version: str) -> None:
    missing = uuid.uuid4()
    url = f"{contract_target.endpoint}/session/{missing}"
    headers = signed_headers(
        "GET",
        url,
        contract_target.access_key,
        contract_target.secret_key,
        api_version=version,
        content_type="text/plain",
    )
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        body = await resp.json(content_type=None)
    # Past the version check: RBAC refuses the random UUID to a plain user (an unsupported one is 400).
    assert_not_enough_permission(resp.status, body, missing)


@pytest.mark.parametrize("version", ["v3.20170615", "v9.20990101", "latest"])
async def test_unsupported_api_version_is_400(contract_target: ContractTarget, version: str) -> None:
    url = f"{contract_target.endpoint}/session/{uuid.uuid4()}"
    headers = signed_headers(
        "GET",
        url,
        contract_target.access_key,
        contract_target.secret_key,
        api_version=version,
        content_type="text/plain",
    )
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        body = await resp.json(content_type=None)
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    assert body["type"] == "https://api.backend.ai/probs/generic-bad-request"
    assert body["msg"] == "Unsupported API version."
