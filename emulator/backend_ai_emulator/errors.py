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
Manager-shaped errors: every failure leaves as ``application/problem+json``.

The SDK only raises ``BackendAPIError`` (with status and data) for JSON error bodies, so the
emulator must never answer an error with anything else unless a fault asks it to.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

PROBLEM_JSON = "application/problem+json"
_PROBS = "https://api.backend.ai/probs/"


class ApiError(Exception):
    """One error the manager can answer with; rendered by :meth:`response`."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        error_code: str,
        msg: str | None = None,
        data: Any | None = None,
    ) -> None:
        super().__init__(f"{status} {slug}: {msg or title}")
        self.status = status
        self.slug = slug
        self.title = title
        self.error_code = error_code
        self.msg = msg
        self.data = data

    def body(self) -> dict[str, Any]:
        """The problem+json document, with ``msg``/``data`` only when set (as the manager does)."""
        doc: dict[str, Any] = {"type": _PROBS + self.slug, "title": self.title, "error_code": self.error_code}
        if self.msg is not None:
            doc["msg"] = self.msg
        if self.data is not None:
            doc["data"] = self.data
        return doc

    def response(self) -> web.Response:
        """Render as an aiohttp response."""
        return web.Response(
            status=self.status,
            body=json.dumps(self.body()).encode(),
            content_type=PROBLEM_JSON,
        )


def session_not_found(ref: str, msg: str | None = None) -> ApiError:
    """A UUID that names no visible session (or a dead one where only live ones count)."""
    return ApiError(
        404,
        "object-not-found",
        "No such session.",
        "session_read_not-found",
        msg or f"Session (id={ref}) does not exist.",
    )


def entity_not_found() -> ApiError:
    """A session name that resolves to no live session of the caller."""
    return ApiError(
        404,
        "entity-not-found",
        "Entity not found.",
        "session_read_not-found",
        "No SessionRow matches the given key",
    )


def not_enough_permission(user_id: str, permission: str, session_id: str) -> ApiError:
    """
    RBAC: a USER keypair names a session UUID it may not see (nonexistent or another user's).

    The manager checks the permission on the entity before it looks the entity up, so "does not exist"
    and "belongs to someone else" answer alike. ``permission`` is the enum repr the manager prints, such
    as ``<Permission.READ: 1>`` or ``<Permission.SOFT_DELETE: 8>``.
    """
    return ApiError(
        403,
        "not-enough-permission",
        "Insufficient permission to perform this operation.",
        "permission_access_forbidden",
        f"User {user_id} lacks permission {permission} on session {session_id}",
    )


PERMISSION_READ = "<Permission.READ: 1>"
PERMISSION_SOFT_DELETE = "<Permission.SOFT_DELETE: 8>"


def unknown_resource_slot(msg: str) -> ApiError:
    """A create asks for a slot type the manager does not know."""
    return ApiError(
        400, "unknown-resource-slot-type", "Unknown resource slot type.", "backendai_parsing_not-found", msg
    )


def image_not_found(image: str) -> ApiError:
    """The image is not in the emulator's registry."""
    return ApiError(
        404,
        "object-not-found",
        "No such environment image.",
        "image_read_not-found",
        f"Unknown image references: {image}",
    )


def invalid_api_params(msg: str) -> ApiError:
    """Semantic parameter error raised by the manager's own checks."""
    return ApiError(
        400, "invalid-api-params", "Missing or invalid API parameters.", "api_generic_invalid-parameters", msg
    )


def bad_request_params(msg: str, data: Any | None = None) -> ApiError:
    """Body/query validation error (the manager's pydantic layer)."""
    return ApiError(
        400,
        "generic-bad-request",
        "Invalid or Missing API Parameters.",
        "api_parsing_invalid-parameters",
        msg,
        data,
    )


def session_already_exists(existing_id: str) -> ApiError:
    """Same-name live session exists and may not be reused."""
    return ApiError(
        400,
        "session-already-exists",
        "The session already exists but you requested not to reuse existing one.",
        "session_create_already-exists",
        None,
        {"existingSessionId": existing_id},
    )


def quota_exceeded(msg: str) -> ApiError:
    """The request would exceed the keypair's resource limit."""
    return ApiError(
        400, "quota-exceeded", "You have reached your resource limit.", "session_create_unavailable", msg
    )


def invalid_auth_params(msg: str) -> ApiError:
    """Clock skew, missing Date, malformed Authorization."""
    return ApiError(
        400,
        "invalid-auth-params",
        "Missing or invalid authorization parameters.",
        "user_auth_invalid-parameters",
        msg,
    )


def auth_failed(msg: str) -> ApiError:
    """Unknown access key, bad signature, missing credentials."""
    return ApiError(401, "auth-failed", "Credential/signature mismatch.", "user_auth_unauthorized", msg)


def forbidden(msg: str | None = None) -> ApiError:
    """Acting on behalf of another keypair without privileges."""
    return ApiError(403, "generic-forbidden", "Forbidden operation.", "backendai_generic_forbidden", msg)


def unsupported_version() -> ApiError:
    """An ``X-BackendAI-Version`` outside the manager's list."""
    return ApiError(
        400,
        "generic-bad-request",
        "Bad request.",
        "backendai_generic_bad-request",
        "Unsupported API version.",
    )


def not_implemented(msg: str) -> ApiError:
    """Routes the manager stubs out (PATCH) or that the emulator does not emulate."""
    return ApiError(
        501, "not-implemented", "This API is not implemented.", "api_generic_not-implemented", msg
    )


def url_not_found(path: str) -> ApiError:
    """No route matches."""
    return ApiError(404, "url-not-found", "Unknown URL path.", "api_read_not-found", None, path)


def method_not_allowed(method: str) -> ApiError:
    """A known path with a method it does not serve."""
    return ApiError(
        405,
        "method-not-allowed",
        "HTTP Method Not Allowed.",
        "api_access_forbidden",
        f"{method} is not allowed",
    )


def agent_not_found() -> ApiError:
    """Logs of a session whose kernel has no agent (PENDING, also when requeued after a preemption)."""
    return ApiError(
        404,
        "object-not-found",
        "No such agent.",
        "agent_read_not-found",
        "Kernel has not been assigned to an agent.",
        {"kernel_id": None},
    )


def internal_error(msg: str | None = None) -> ApiError:
    """An emulator bug or an injected server error."""
    return ApiError(
        500, "internal-server-error", "Internal server error.", "backendai_generic_internal-error", msg
    )


def service_unavailable(status: int = 503, msg: str | None = None) -> ApiError:
    """An injected 5xx fault, still in the manager's error shape."""
    if status == 500:
        return internal_error(msg)
    return ApiError(
        status, "service-unavailable", "Serivce unavailable.", "backendai_generic_unavailable", msg
    )


def insufficient_privilege(msg: str) -> ApiError:
    """A plain user acting on another keypair's session."""
    return ApiError(403, "insufficient-privilege", "Insufficient privilege.", "user_auth_forbidden", msg)


def malformed_body() -> ApiError:
    """The body is not JSON."""
    return ApiError(400, "generic-bad-request", "Malformed request body.", "api_parsing_bad-request")


def kernel_not_found(kernel_id: str) -> ApiError:
    """``kernel_id`` does not belong to the session."""
    return ApiError(
        404, "object-not-found", "No such kernel.", "kernel_read_not-found", f"Kernel {kernel_id} not found"
    )
