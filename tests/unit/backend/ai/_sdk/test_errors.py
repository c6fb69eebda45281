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
"""Which SDK and network failures the provider retries, and how it reports them."""

from __future__ import annotations

import pytest
from ai.backend.client.exceptions import BackendAPIError, BackendClientError

from airflow.providers.backend.ai._sdk.errors import translate_errors
from airflow.providers.backend.ai.exceptions import (
    BackendAIAPIError,
    BackendAIAuthError,
    BackendAINotFoundError,
    BackendAISessionNotVisibleError,
    BackendAITransientError,
)


def raise_in_block(exc: BaseException, action: str = "do a thing") -> BaseException:
    with pytest.raises(BackendAIAPIError) as err, translate_errors(action):
        raise exc
    return err.value


def problem(slug: str, title: str, msg: str | None = None) -> dict:
    return {"type": f"https://api.backend.ai/probs/{slug}", "title": title, "msg": msg, "error_code": "x_y_z"}


@pytest.mark.parametrize(
    ("status", "data", "expected"),
    [
        pytest.param(
            401, problem("auth-failed", "Credential/signature mismatch."), BackendAIAuthError, id="401"
        ),
        pytest.param(403, problem("generic-forbidden", "Forbidden"), BackendAIAuthError, id="403"),
        pytest.param(
            400,
            problem("invalid-auth-params", "Missing...", "Date/time sync error"),
            BackendAIAuthError,
            id="skew",
        ),
        pytest.param(404, problem("object-not-found", "No such session."), BackendAINotFoundError, id="404"),
        pytest.param(
            403,
            problem("not-enough-permission", "Insufficient permission"),
            BackendAISessionNotVisibleError,  # a BackendAINotFoundError: unknown, or another keypair's
            id="403-rbac",
        ),
        pytest.param(429, problem("rate-limit-exceeded", "Slow down"), BackendAITransientError, id="429"),
        pytest.param(500, problem("internal-server-error", "Boom"), BackendAITransientError, id="500"),
        pytest.param(503, "not json at all", BackendAITransientError, id="503-text"),
        pytest.param(
            400,
            problem("invalid-api-params", "Missing or invalid API parameters."),
            BackendAIAPIError,
            id="400",
        ),
    ],
)
def test_api_errors_are_classified(status, data, expected):
    error = raise_in_block(BackendAPIError(status, "Reason", data), "destroy session 1")
    assert type(error) is expected
    assert error.status == status
    assert error.action == "destroy session 1"
    assert f"HTTP {status}" in str(error)
    assert "destroy session 1" in str(error)


def test_server_message_is_kept():
    error = raise_in_block(
        BackendAPIError(404, "Not Found", problem("object-not-found", "No such session.", "gone"))
    )
    assert error.title == "No such session."
    assert error.detail == "gone"
    assert error.error_code == "x_y_z"
    assert "No such session: gone" in str(error)


def test_graphql_errors_are_spelled_out():
    data = {
        "type": "https://api.backend.ai/probs/graphql-error",
        "title": "GraphQL-generated error",
        "data": [{"message": "Cannot query field 'foo'"}],
    }
    error = raise_in_block(BackendAPIError(400, "Bad request", data))
    assert "Cannot query field 'foo'" in str(error)


def test_connection_failures_are_transient():
    try:
        try:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")
        except ConnectionRefusedError as cause:
            raise BackendClientError("Request to the API endpoint has failed.\n➜ ...") from cause
    except BackendClientError as exc:
        error = raise_in_block(exc)
    assert type(error) is BackendAITransientError
    assert error.status is None
    assert "Connect call failed" in str(error)
    assert "no response" in str(error)


def test_unparsable_client_error_answer_keeps_its_status():
    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    url = URL("https://api.example.com/session")
    request = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)
    cause = aiohttp.ClientResponseError(request, (), status=502, message="Bad Gateway")
    wrapped = BackendClientError("API endpoint response error.")
    wrapped.__cause__ = cause
    error = raise_in_block(wrapped)
    assert type(error) is BackendAITransientError
    assert error.status == 502

    cause = aiohttp.ClientResponseError(request, (), status=400, message="Bad Request")
    wrapped.__cause__ = cause
    assert type(raise_in_block(wrapped)) is BackendAIAPIError


@pytest.mark.parametrize("exc", [TimeoutError("read timed out"), ConnectionResetError("reset by peer")])
def test_timeouts_and_resets_are_transient(exc):
    assert type(raise_in_block(exc)) is BackendAITransientError


def test_other_exceptions_pass_through():
    with pytest.raises(KeyError), translate_errors("x"):
        raise KeyError("version")
