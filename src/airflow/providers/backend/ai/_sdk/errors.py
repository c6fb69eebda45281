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
"""Turn the SDK's and the network's exceptions into the provider's own, classified for retrying."""

from __future__ import annotations

import ssl
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow.providers.backend.ai.exceptions import (
    BackendAIAPIError,
    BackendAIAuthError,
    BackendAIException,
    BackendAINotFoundError,
    BackendAISessionNotVisibleError,
    BackendAITransientError,
    BackendAIUnexpectedAnswerError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Turn SDK and network exceptions raised inside the block into the provider's own exceptions."""
    from ai.backend.client.exceptions import BackendAPIError, BackendClientError

    try:
        yield
    except BackendAPIError as exc:
        raise api_error(action, exc.status, exc.reason, exc.data) from exc
    except BackendClientError as exc:
        raise client_error(action, exc) from exc
    except (TimeoutError, ConnectionError) as exc:
        raise BackendAITransientError(action, detail=f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc


@contextmanager
def unreadable_answers(action: str) -> Iterator[None]:
    """
    Report an answer that is not what the API promises as :class:`BackendAIUnexpectedAnswerError`.

    Use it around one SDK call and the reading of its answer only: the SDK indexes answers without checking
    them, so a ``KeyError``, ``TypeError`` or ``ValueError`` there (or aiohttp's ``ContentTypeError`` for a
    body that is not JSON) means the manager, or a proxy in front of it, answered something else.
    """
    from aiohttp import ContentTypeError

    try:
        yield
    except BackendAIException:
        raise
    except ContentTypeError as exc:
        raise BackendAIUnexpectedAnswerError(action, status=exc.status, detail=exc.message) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendAIUnexpectedAnswerError(action, detail=f"{type(exc).__name__}: {exc}") from exc


def client_error(action: str, exc: BaseException) -> BackendAIAPIError:
    """
    Classify a client-side failure: no answer at all, or an answer the SDK could not parse.

    The SDK wraps the underlying aiohttp error; its text is clearer than the SDK's, and an unparsable
    error answer (an HTML 502 from a proxy, say) keeps its HTTP status there.
    """
    cause = exc.__cause__ or exc
    status = getattr(cause, "status", None)
    try:
        detail = str(cause) or type(cause).__name__
    except Exception:  # an aiohttp error built without request info cannot format itself
        detail = f"{type(cause).__name__}: {getattr(cause, 'message', '')}"
    if isinstance(status, int) and status < 500 and status != 429:
        return api_error(action, status, getattr(cause, "message", ""), {"msg": detail})
    if isinstance(getattr(cause, "certificate_error", cause), ssl.SSLCertVerificationError):
        # aiohttp's ClientConnectorCertificateError carries it; retrying cannot fix a certificate.
        return BackendAIAPIError(
            action,
            detail=f"{detail}; the endpoint's TLS certificate is not trusted (the connection's extra "
            "skip_sslcert_validation turns the check off, if you trust this endpoint)",
        )
    return BackendAITransientError(action, status=status if isinstance(status, int) else None, detail=detail)


def api_error(action: str, status: int, reason: str, data: Any) -> BackendAIAPIError:
    """
    Classify an error answer: auth (401, 403, clock skew), not found (404), transient (429, 5xx).

    With RBAC (on by default since 26.x) the manager answers a plain user's request for a session id it
    cannot see, unknown or another user's, with 403 ``not-enough-permission`` before looking it up; that
    is "no such session for this keypair", not bad credentials.
    """
    data = data if isinstance(data, dict) else {}
    title = data.get("title") or reason
    detail = data.get("msg") or data.get("content")
    error_code = data.get("error_code")
    kwargs: dict[str, Any] = {"status": status, "title": title, "detail": detail, "error_code": error_code}
    if status == 403 and str(data.get("type", "")).endswith("/not-enough-permission"):
        kwargs["title"] = "No such session for this keypair (unknown, or another keypair's)"
        return BackendAISessionNotVisibleError(action, **kwargs)
    if status in (401, 403) or "invalid-auth-params" in str(data.get("type", "")):
        return BackendAIAuthError(action, **kwargs)
    if status == 404:
        return BackendAINotFoundError(action, **kwargs)
    if status == 429 or status >= 500:
        return BackendAITransientError(action, **kwargs)
    if status == 400 and data.get("type", "").endswith("/graphql-error"):
        kwargs["detail"] = "; ".join(str(err.get("message", err)) for err in data.get("data") or [])
    return BackendAIAPIError(action, **kwargs)
