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
"""Request signing as the manager verifies it: what passes, and the exact errors for what does not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import aiohttp
import pytest
from ai.backend.client.exceptions import BackendAPIError

from backend_ai_emulator import signed_headers

from .sdk import assert_not_enough_permission, open_session, session_ref

if TYPE_CHECKING:
    from backend_ai_emulator import EmulatorHandle

    from .sdk import ContractTarget


def _get_info_error(target: ContractTarget, access_key: str, secret_key: str) -> BackendAPIError:
    with (
        open_session(target.config(access_key=access_key, secret_key=secret_key)),
        pytest.raises(BackendAPIError) as excinfo,
    ):
        session_ref(uuid.uuid4()).get_info()
    return excinfo.value


def test_wrong_secret_is_401_signature_mismatch(contract_target: ContractTarget) -> None:
    err = _get_info_error(contract_target, contract_target.access_key, "x" * 40)
    assert err.status == 401
    assert err.data["type"] == "https://api.backend.ai/probs/auth-failed"
    assert err.data["title"] == "Credential/signature mismatch."
    assert err.data["msg"] == "HMAC signature mismatch"


def test_unknown_access_key_is_401(contract_target: ContractTarget) -> None:
    err = _get_info_error(contract_target, "AKIANOSUCHKEY0000000", contract_target.secret_key)
    assert err.status == 401
    assert err.data["type"] == "https://api.backend.ai/probs/auth-failed"
    assert err.data["msg"] == "Access key not found in HMAC"


async def _raw_get(url: str, headers: dict[str, str]) -> tuple[int, str, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.json(content_type=None)


@pytest.mark.parametrize("skew", [timedelta(minutes=-20), timedelta(minutes=20)])
async def test_skewed_clock_is_400_date_sync_error(contract_target: ContractTarget, skew: timedelta) -> None:
    url = f"{contract_target.endpoint}/session/{uuid.uuid4()}"
    headers = signed_headers(
        "GET",
        url,
        contract_target.access_key,
        contract_target.secret_key,
        date=datetime.now(UTC) + skew,
        content_type="text/plain",
    )
    status, ctype, body = await _raw_get(url, headers)
    assert status == 400
    assert ctype == "application/problem+json"
    assert body["type"] == "https://api.backend.ai/probs/invalid-auth-params"
    assert body["msg"] == "Date/time sync error"


async def test_small_skew_is_accepted(contract_target: ContractTarget) -> None:
    missing = uuid.uuid4()
    url = f"{contract_target.endpoint}/session/{missing}"
    headers = signed_headers(
        "GET",
        url,
        contract_target.access_key,
        contract_target.secret_key,
        date=datetime.now(UTC) - timedelta(minutes=10),
        content_type="text/plain",
    )
    status, _, body = await _raw_get(url, headers)
    # Authenticated: the request got as far as RBAC, which refuses a random session to a plain user.
    assert_not_enough_permission(status, body, missing)


async def test_missing_credentials_is_401(contract_target: ContractTarget) -> None:
    status, ctype, body = await _raw_get(f"{contract_target.endpoint}/session/{uuid.uuid4()}", {})
    assert status == 401
    assert ctype == "application/problem+json"
    assert body["type"] == "https://api.backend.ai/probs/auth-failed"
    assert body["msg"] == "Unauthorized access"


async def test_tampered_query_string_breaks_the_signature(contract_target: ContractTarget) -> None:
    url = f"{contract_target.endpoint}/session/{uuid.uuid4()}/logs"
    headers = signed_headers(
        "GET", url, contract_target.access_key, contract_target.secret_key, content_type="text/plain"
    )
    status, _, body = await _raw_get(url + "?kernel_id=x", headers)
    assert status == 401
    assert body["msg"] == "HMAC signature mismatch"


async def test_signature_covers_the_content_type(contract_target: ContractTarget) -> None:
    url = f"{contract_target.endpoint}/session/{uuid.uuid4()}"
    headers = signed_headers(
        "GET", url, contract_target.access_key, contract_target.secret_key, content_type="text/plain"
    )
    headers["Content-Type"] = "application/json"
    status, _, body = await _raw_get(url, headers)
    assert status == 401
    assert body["msg"] == "HMAC signature mismatch"


@pytest.mark.emulator_only
def test_request_log_never_holds_secrets(emulator: EmulatorHandle, contract_target: ContractTarget) -> None:
    _get_info_error(contract_target, contract_target.access_key, contract_target.secret_key)
    _get_info_error(contract_target, contract_target.access_key, "y" * 40)
    text = repr(emulator.requests)
    assert emulator.request_count("get_info") == 2
    assert contract_target.secret_key not in text
    assert "y" * 40 not in text
    assert "Authorization" not in text
    assert "signMethod" not in text
