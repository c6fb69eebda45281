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
The one place that knows the backend.ai-client SDK's quirks, for both supported SDK lines (25.5 and 26.x).

Everything here imports the SDK lazily: importing it costs about a second and a thousand modules, and Dag
files import the provider's operators at every parse.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

from airflow.providers.backend.ai.exceptions import (
    BackendAIAPIError,
    BackendAIAuthError,
    BackendAIException,
    BackendAINotFoundError,
    BackendAITransientError,
    BackendAIUnexpectedAnswerError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ai.backend.client.config import APIConfig
    from ai.backend.client.func.session import ComputeSession

    from airflow.providers.backend.ai.utils.connection_config import BackendAIConnectionConfig

_config_lock = threading.Lock()


def build_api_config(settings: BackendAIConnectionConfig) -> APIConfig:
    """
    Build an ``APIConfig`` from the Airflow connection alone.

    The SDK's ``APIConfig`` reads ``BACKEND_*`` environment variables even when every argument is given
    (it unions ``BACKEND_VFOLDER_MOUNTS`` in and lets ``BACKEND_SKIP_SSLCERT_VALIDATION`` switch TLS checks
    off), and each read loads a ``.env`` file found above the working directory into ``os.environ`` with
    override. On a worker that would let a stray file redirect traffic or disable TLS, so the config is
    built with the SDK's environment lookup replaced by "use the default".
    """
    from ai.backend.client import config as sdk_config

    def defaults_only(key: str, default: Any = None, *, clean: Any = sdk_config.default_clean) -> Any:
        return clean(default)

    with _config_lock:
        original_get_env = sdk_config.get_env
        sdk_config.get_env = defaults_only
        try:
            return sdk_config.APIConfig(
                endpoint=settings.endpoint,
                endpoint_type="api",
                domain=settings.domain,
                group=settings.group,
                access_key=settings.access_key,
                secret_key=settings.secret_key,
                storage_proxy_address_map={},
                vfolder_mounts=[],
                skip_sslcert_validation=settings.skip_sslcert_validation,
                connection_timeout=settings.connect_timeout,
                read_timeout=settings.request_timeout,
            )
        finally:
            sdk_config.get_env = original_get_env


def session_ref(session: str) -> ComputeSession:
    """
    Return a ``ComputeSession`` that addresses a session id (a UUID) or a live session's name.

    SDK 25.5 puts ``name`` in URLs (``from_session_id`` would request ``/session/None``), 26.x puts
    ``id``; with both set to the UUID every call reaches the session, even after it terminated. A name
    only reaches a live session of the caller.
    """
    from ai.backend.client.func.session import ComputeSession

    ref = ComputeSession(str(session))
    with contextlib.suppress(ValueError):  # a name: both SDK lines then address it through ``name``
        ref.id = UUID(str(session))
    return ref


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
        return BackendAINotFoundError(action, **kwargs)
    if status in (401, 403) or "invalid-auth-params" in str(data.get("type", "")):
        return BackendAIAuthError(action, **kwargs)
    if status == 404:
        return BackendAINotFoundError(action, **kwargs)
    if status == 429 or status >= 500:
        return BackendAITransientError(action, **kwargs)
    if status == 400 and data.get("type", "").endswith("/graphql-error"):
        kwargs["detail"] = "; ".join(str(err.get("message", err)) for err in data.get("data") or [])
    return BackendAIAPIError(action, **kwargs)
