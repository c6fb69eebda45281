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
"""Error shapes the SDK turns into BackendAPIError, and emulator fault injection through the SDK."""

from __future__ import annotations

import random
import time
import uuid
from typing import TYPE_CHECKING

import aiohttp
import pytest
from ai.backend.client.exceptions import BackendAPIError, BackendClientError

from backend_ai_emulator import signed_headers

from .sdk import (
    assert_not_enough_permission,
    create_batch,
    open_session,
    session_ref,
    unique_name,
    wait_for_result,
)

if TYPE_CHECKING:
    from ai.backend.client.session import Session

    from backend_ai_emulator import EmulatorHandle

    from .sdk import ContractTarget


async def test_unknown_route_is_url_not_found_json(contract_target: ContractTarget) -> None:
    url = f"{contract_target.endpoint}/no/such/route"
    headers = signed_headers(
        "GET", url, contract_target.access_key, contract_target.secret_key, content_type="text/plain"
    )
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        body = await resp.json(content_type=None)
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    assert body["type"] == "https://api.backend.ai/probs/url-not-found"


async def test_every_response_has_rate_limit_headers(contract_target: ContractTarget) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(contract_target.endpoint + "/") as resp:
            assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Window"} <= set(resp.headers)
        missing = uuid.uuid4()
        url = f"{contract_target.endpoint}/session/{missing}"
        headers = signed_headers(
            "GET", url, contract_target.access_key, contract_target.secret_key, content_type="text/plain"
        )
        async with http.get(url, headers=headers) as resp:
            assert_not_enough_permission(resp.status, await resp.json(content_type=None), missing)
            # An error a handler raises after authentication still gets them.
            assert resp.headers["X-RateLimit-Window"] == "900"


def test_error_body_shape(sdk: Session) -> None:
    missing = uuid.uuid4()
    with pytest.raises(BackendAPIError) as excinfo:
        session_ref(missing).get_info()
    err = excinfo.value
    assert err.status == 403
    assert set(err.data) >= {"type", "title", "error_code", "msg"}
    assert_not_enough_permission(err.status, err.data, missing)
    assert err.data["type"].startswith("https://api.backend.ai/probs/")


# -- fault injection (emulator only) ---------------------------------------------------------------


@pytest.mark.emulator_only
def test_injected_5xx_is_a_backend_api_error(sdk: Session, emulator: EmulatorHandle) -> None:
    emulator.faults.add("get_info", "error", times=1, status=503)
    missing = session_ref(uuid.uuid4())
    with pytest.raises(BackendAPIError) as excinfo:
        missing.get_info()
    assert excinfo.value.status == 503
    assert excinfo.value.data["type"] == "https://api.backend.ai/probs/service-unavailable"
    with pytest.raises(BackendAPIError) as excinfo:
        missing.get_info()
    assert excinfo.value.status == 403  # the fault fired once only; then RBAC's answer to an unknown UUID
    assert [r.status for r in emulator.requests if r.route == "get_info"] == [503, 403]


@pytest.mark.emulator_only
def test_injected_html_502(sdk: Session, emulator: EmulatorHandle) -> None:
    emulator.faults.add("get_info", "html", times=1)
    with pytest.raises((BackendAPIError, BackendClientError)) as excinfo:
        session_ref(uuid.uuid4()).get_info()
    err = excinfo.value
    if isinstance(err, BackendAPIError):  # SDK 25.x reads the text body
        assert err.status == 502
        assert err.data["type"].endswith("/generic-error")
    else:  # SDK 26.x insists on JSON
        assert "502" in str(err) or "ContentTypeError" in str(err)


@pytest.mark.emulator_only
def test_injected_reset_is_a_client_error(
    sdk: Session, emulator: EmulatorHandle, contract_target: ContractTarget
) -> None:
    emulator.faults.add("create", "reset", times=1)
    with pytest.raises(BackendClientError):
        create_batch(sdk, contract_target, "echo x")
    assert emulator.sessions() == []
    created = create_batch(sdk, contract_target, "echo x")
    assert wait_for_result(sdk, contract_target, created.id)["result"] == "SUCCESS"


@pytest.mark.emulator_only
@pytest.mark.parametrize("kind", ["reset", "hang", "error"])
def test_fault_after_create_leaves_the_session_behind(
    emulator: EmulatorHandle, contract_target: ContractTarget, kind: str
) -> None:
    emulator.faults.add("create", kind, times=1, after=True)
    name = unique_name()
    with open_session(contract_target.config(read_timeout=1.0)) as session:
        started = time.monotonic()
        with pytest.raises((BackendClientError, BackendAPIError)):
            session.ComputeSession.get_or_create(
                contract_target.image, name=name, type_="batch", startup_command="sleep 30", enqueue_only=True
            )
        if kind == "hang":
            assert 0.9 <= time.monotonic() - started < 5
        orphan = emulator.get_session(name)
        assert orphan is not None
        assert orphan.live
        # A retry with the same name finds the orphan instead of starting a second job.
        retry = session.ComputeSession.get_or_create(
            contract_target.image, name=name, type_="batch", startup_command="sleep 30", enqueue_only=True
        )
        assert retry.created is False
        assert str(retry.id) == str(orphan.id)
        session_ref(orphan.id).destroy(forced=True)
    assert emulator.request_count("create") == 2


@pytest.mark.emulator_only
def test_latency_fault_delays_then_serves(sdk: Session, emulator: EmulatorHandle) -> None:
    emulator.faults.add("gql", "latency", delay=0.3, times=1)
    started = time.monotonic()
    assert sdk.Admin.query("query { __typename }") == {"__typename": "Queries"}
    assert time.monotonic() - started >= 0.3


@pytest.mark.emulator_only
def test_ratio_fault_is_seeded_and_deterministic(sdk: Session, emulator: EmulatorHandle) -> None:
    emulator.faults.add("get_info", "error", ratio=0.5, seed=7)
    rng = random.Random(7)
    expected = [503 if rng.random() < 0.5 else 403 for _ in range(12)]
    seen = []
    for _ in range(12):
        with pytest.raises(BackendAPIError) as excinfo:
            session_ref(uuid.uuid4()).get_info()
        seen.append(excinfo.value.status)
    assert seen == expected
    assert 0 < seen.count(503) < 12


@pytest.mark.emulator_only
def test_fault_scoped_to_a_keypair(
    sdk: Session, emulator: EmulatorHandle, contract_target: ContractTarget
) -> None:
    emulator.faults.add("*", "error", status=500, access_key=emulator.other_access_key)
    assert sdk.ComputeSession.hello()["version"]
    with (
        open_session(
            contract_target.config(access_key=emulator.other_access_key, secret_key=emulator.other_secret_key)
        ),
        pytest.raises(BackendAPIError) as excinfo,
    ):
        session_ref(uuid.uuid4()).get_info()
    assert excinfo.value.status == 500
    assert excinfo.value.data["type"].endswith("/internal-server-error")
    assert emulator.request_count(access_key=emulator.other_access_key) == 1


def test_fault_registry_rejects_nonsense() -> None:
    from backend_ai_emulator import FaultRegistry

    registry = FaultRegistry()
    with pytest.raises(ValueError, match="kind"):
        registry.add("create", "explode")
    with pytest.raises(ValueError, match="route"):
        registry.add("nowhere", "error")
    with pytest.raises(ValueError, match="ratio"):
        registry.add("create", "error", ratio=2.0)
    fault = registry.add("create", "error", times=2)
    assert registry.take("create", "POST", None) is fault
    assert registry.take("get_info", "GET", None) is None
    assert registry.take("create", "POST", None) is fault
    assert registry.take("create", "POST", None) is None
    assert fault.fired == 2
    assert registry.active == []
