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
The aiohttp application: routes, and the front-door middleware in the manager's order.

Order per request: request log → fault injection → unknown route (no auth) → signature check →
``X-BackendAI-Version`` check → handler; any :class:`ApiError` becomes problem+json.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from . import handlers
from .auth import claimed_access_key, verify
from .errors import (
    ApiError,
    auth_failed,
    internal_error,
    method_not_allowed,
    service_unavailable,
    unsupported_version,
    url_not_found,
)
from .handlers import KEYPAIR_KEY, STATE_KEY, state_of
from .settings import VALID_API_VERSIONS
from .store import RequestRecord

if TYPE_CHECKING:
    from .faults import Fault
    from .state import EmulatorState

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTML_502 = (
    "<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>{status} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_RATE_WINDOW = "900"


def _route_name(request: web.Request) -> str | None:
    """The route's public name (``create__alias`` counts as ``create``); None for unknown routes."""
    route = request.match_info.route
    name = route.name if route is not None else None
    return name.split("__")[0] if name else None


def _drop_connection(request: web.Request) -> web.Response:
    """Close the socket without answering; the client sees a disconnect."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499)


async def _apply_fault(request: web.Request, fault: Fault, state: EmulatorState) -> web.StreamResponse | None:
    """Act out a fault; ``None`` means "go on and serve normally" (latency)."""
    if fault.kind == "latency":
        await asyncio.sleep(fault.delay)
        return None
    if fault.kind == "error":
        return service_unavailable(fault.status, "Injected fault (backend-ai-emulator)").response()
    if fault.kind == "html":
        return web.Response(
            status=fault.status, text=_HTML_502.format(status=fault.status), content_type="text/html"
        )
    if fault.kind == "hang":
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(state.hang_release.wait(), state.settings.hang_seconds)
    return _drop_connection(request)


_HTML_ERROR = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


async def _blocked_stream(request: web.Request, how: int | str, state: EmulatorState) -> web.StreamResponse:
    """
    ``GET /events/session`` while ``event_stream_block`` is set: what a client meets instead of a stream.

    404 and 405 come in the manager's own problem+json (a manager without the route, or a gateway that
    exposes known routes only, answers like an unknown URL); other statuses in an nginx-style HTML page,
    as a proxy in front of the manager answers them; ``"hang"`` stalls and then drops the connection.
    """
    if how == "hang":
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(state.hang_release.wait(), state.settings.hang_seconds)
        return _drop_connection(request)
    assert isinstance(how, int)
    if how == 404:
        return url_not_found(request.path).response()
    if how == 405:
        return method_not_allowed(request.method).response()
    try:
        phrase = http.HTTPStatus(how).phrase
    except ValueError:
        phrase = "Error"
    return web.Response(
        status=how, text=_HTML_ERROR.format(status=how, phrase=phrase), content_type="text/html"
    )


async def _authenticate(request: web.Request, state: EmulatorState) -> None:
    if "Authorization" not in request.headers:
        raise auth_failed("Unauthorized access")
    secrets_by_key = {ak: kp.secret_key for ak, kp in state.settings.keypairs.items()}
    access_key = verify(
        method=request.method,
        raw_path_qs=request.raw_path,
        host=request.host,
        content_type=request.content_type,
        headers=request.headers,
        secrets_by_access_key=secrets_by_key,
    )
    request[KEYPAIR_KEY] = state.settings.keypairs[access_key]
    state.query_counts[access_key] += 1


async def _dispatch(request: web.Request, handler: Handler, state: EmulatorState) -> web.StreamResponse:
    try:
        http_exc = request.match_info.http_exception
        if http_exc is not None:
            if http_exc.status == 405:
                raise method_not_allowed(request.method)
            raise url_not_found(request.path)
        block = state.settings.event_stream_block
        if block is not None and block != "silent" and _route_name(request) == "events":
            return await _blocked_stream(request, block, state)
        if _route_name(request) != "root":
            await _authenticate(request, state)
        version = request.headers.get("X-BackendAI-Version")
        if version is not None and version not in VALID_API_VERSIONS:
            raise unsupported_version()
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException:
        raise
    except Exception:
        log.exception("emulator error while serving %s %s", request.method, request.path)
        return internal_error().response()


@web.middleware
async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log, inject faults, authenticate and render errors for every request."""
    state = state_of(request)
    started = time.monotonic()
    route = _route_name(request)
    access_key = claimed_access_key(request.headers)
    token = state.store.log_request(
        RequestRecord(
            at=time.time(),
            method=request.method,
            path=request.path,
            query=request.query_string,
            route=route,
            access_key=access_key,
            status=None,
            fault=None,
            duration=0.0,
            api_version=request.headers.get("X-BackendAI-Version"),
        )
    )
    status: int | None = None
    fault_kind: str | None = None
    try:
        fault = state.faults.take(route, request.method, access_key)
        if fault is not None:
            fault_kind = fault.kind + (":after" if fault.after else "")
        if fault is not None and not fault.after:
            faulty = await _apply_fault(request, fault, state)
            if faulty is not None:
                status = None if faulty.status == 499 else faulty.status
                return faulty
        response = await _dispatch(request, handler, state)
        if fault is not None and fault.after and not response.prepared:
            faulty = await _apply_fault(request, fault, state)
            if faulty is not None:
                response = faulty
        status = None if response.status == 499 else response.status
        return response
    finally:
        state.store.finish_request(
            token, status=status, fault=fault_kind, duration=time.monotonic() - started
        )


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """``Server`` and ``X-RateLimit-*`` on every response (the manager omits the latter on errors)."""
    response.headers["Server"] = "BackendAI"
    keypair = request.get(KEYPAIR_KEY)
    if keypair is None:
        limit, remaining = 1000, 1000
    else:
        limit = keypair.rate_limit
        remaining = max(limit - state_of(request).query_counts[keypair.access_key], 0)
    response.headers["X-RateLimit-Limit"] = str(limit)
    response.headers["X-RateLimit-Remaining"] = str(remaining)
    response.headers["X-RateLimit-Window"] = _RATE_WINDOW


def build_app(state: EmulatorState) -> web.Application:
    """The emulator's aiohttp application bound to ``state``."""
    app = web.Application(middlewares=[front_door], client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = state
    # The signal's declared type differs between aiohttp 3.10 and 3.14; the callback fits both.
    app.on_response_prepare.append(cast("Any", _on_prepare))
    r = app.router
    r.add_route("GET", "/", handlers.root, name="root")
    r.add_route("POST", "/session", handlers.create, name="create")
    r.add_route("POST", "/session/_/create", handlers.create, name="create__alias")
    for i, path in enumerate(
        ("/session/_/create-from-template", "/session/_/create-cluster", "/session/_/logs")
    ):
        r.add_route("*", path, handlers.not_emulated, name=f"not_emulated__{i}")
    r.add_route("GET", "/session/{session_name}", handlers.get_info, name="get_info")
    r.add_route("DELETE", "/session/{session_name}", handlers.destroy, name="destroy")
    r.add_route("PATCH", "/session/{session_name}", handlers.restart, name="restart")
    r.add_route("POST", "/session/{session_name}", handlers.not_emulated, name="not_emulated")
    r.add_route("GET", "/session/{session_name}/logs", handlers.logs, name="logs")
    r.add_route(
        "GET", "/session/{session_name}/status-history", handlers.status_history, name="status_history"
    )
    r.add_route("*", "/session/{session_name}/{action}", handlers.not_emulated, name="not_emulated__action")
    r.add_route("POST", "/admin/gql", handlers.gql, name="gql")
    r.add_route("GET", "/config/resource-slots", handlers.resource_slots, name="resource_slots")
    r.add_route(
        "GET",
        "/config/resource-slots/details",
        handlers.resource_slots_details,
        name="resource_slots_details",
    )
    r.add_route("GET", "/events/session", handlers.events, name="events")
    return app
