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
"""Route handlers: one coroutine per manager endpoint the emulator serves."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import graphql
from .errors import (
    PERMISSION_SOFT_DELETE,
    ApiError,
    bad_request_params,
    entity_not_found,
    insufficient_privilege,
    internal_error,
    invalid_api_params,
    kernel_not_found,
    malformed_body,
    not_implemented,
)
from .events import Subscription, stream_events
from .settings import Keypair
from .slots import resource_metadata_body, resource_slots_body
from .state import EmulatorState
from .store import TERMINATING
from .validation import parse_create_body

if TYPE_CHECKING:
    from decimal import Decimal

    from .store import SessionRecord

STATE_KEY = web.AppKey("backend_ai_emulator_state", EmulatorState)
# aiohttp >= 3.12 wants typed request keys (warning otherwise); 3.10 only has plain strings.
_REQUEST_KEY = getattr(web, "RequestKey", None)
KEYPAIR_KEY: Any = _REQUEST_KEY("backend_ai_emulator_keypair", Keypair) if _REQUEST_KEY else "keypair"
_TRUE = ("true", "1", "yes", "y", "t", "on")


def state_of(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]


def caller_of(request: web.Request) -> Keypair:
    keypair: Keypair = request[KEYPAIR_KEY]
    return keypair


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in _TRUE


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.text() or "null")
    except ValueError:
        raise malformed_body() from None


def _slots_repr(slots: dict[str, Decimal]) -> str:
    """``str(ResourceSlot)`` as the manager puts it into the legacy info dict."""
    return "{" + ", ".join(f"{k!r}: Decimal('{v}')" for k, v in slots.items()) + "}"


def session_info(rec: SessionRecord) -> dict[str, Any]:
    """The flat ``LegacySessionInfo`` dict of ``GET /session/{id}`` (no ``result``)."""
    age = datetime.now(UTC) - rec.created_at
    return {
        "age": int(age.total_seconds() * 1000),
        "domainName": rec.domain,
        "groupId": str(rec.group_id),
        "userId": str(rec.user_id),
        "lang": rec.image,
        "image": rec.image,
        "architecture": rec.architecture,
        "registry": rec.image.split("/", 1)[0] if "/" in rec.image else None,
        "tag": rec.tag,
        "containerId": rec.container_id,
        "occupiedSlots": _slots_repr(rec.occupied_slots),
        "occupyingSlots": _slots_repr(rec.occupied_slots),
        "requestedSlots": _slots_repr(rec.requested_slots),
        "occupiedShares": "{}",
        "environ": str(rec.environ),
        "resourceOpts": str(rec.resource_opts),
        "status": rec.status,
        "statusInfo": rec.status_info or "None",
        "statusData": rec.status_data,
        "creationTime": rec.created_at.isoformat(),
        "terminationTime": rec.terminated_at.isoformat() if rec.terminated_at else None,
        "numQueriesExecuted": 0,
        "lastStat": None,
        "idleChecks": {},
    }


async def root(request: web.Request) -> web.Response:
    """``GET /``: the version document, never authenticated."""
    settings = state_of(request).settings
    return web.json_response({"version": settings.api_version, "manager": settings.manager_version})


async def resource_slots(request: web.Request) -> web.Response:
    """``GET /config/resource-slots``: every slot name a create may use, with its unit type (any role)."""
    return web.json_response(resource_slots_body(state_of(request).settings.known_slots))


async def resource_slots_details(request: web.Request) -> web.Response:
    """
    ``GET /config/resource-slots/details[?sgroup=]``: display metadata of the known slots.

    The emulator's one agent serves every known slot in every resource group, so ``sgroup`` narrows
    nothing here (on the manager it keeps ``cpu``, ``mem`` and what the group's agents report).
    """
    known = state_of(request).settings.known_slots
    served = known if "sgroup" in request.query else None
    return web.json_response(resource_metadata_body(known, served))


async def create(request: web.Request) -> web.Response:
    """``POST /session`` and ``POST /session/_/create``."""
    state = state_of(request)
    req = parse_create_body(await _json_body(request))
    owner = state.owner_for(caller_of(request), req.owner_access_key)
    rec, body, created = state.engine.create(req, owner)
    if created and not req.enqueue_only:
        status = await state.engine.wait_until_running(rec, req.max_wait_seconds)
        body["status"] = status
    return web.json_response(body, status=201)


async def get_info(request: web.Request) -> web.Response:
    """``GET /session/{id-or-name}``: 404 once TERMINATED/CANCELLED; ``owner_access_key`` is ignored."""
    state = state_of(request)
    rec = state.resolve(caller_of(request), request.match_info["session_name"], allow_dead=False)
    return web.json_response(session_info(rec))


async def destroy(request: web.Request) -> web.Response:
    """``DELETE /session/{id}``: cancel, terminate, force-terminate or nothing to do."""
    state = state_of(request)
    caller = caller_of(request)
    owner_key = request.query.get("owner_access_key")
    if owner_key and owner_key != caller.access_key and caller.role == "user":
        raise insufficient_privilege("You are not allowed to force-terminate others's sessions")
    owner = state.owner_for(caller, owner_key)
    rec = state.resolve(
        owner,
        request.match_info["session_name"],
        allow_dead=True,
        caller=caller,
        permission=PERMISSION_SOFT_DELETE,
    )
    stats = await state.engine.destroy(rec, forced=_flag(request, "forced"))
    return web.json_response({"stats": stats})


async def restart(request: web.Request) -> web.Response:
    """``PATCH /session/{id}``: the manager stubs this out."""
    raise not_implemented(
        "Session restart is no longer supported. Terminate the session and enqueue a new one instead."
    )


async def logs(request: web.Request) -> web.Response:
    """``GET /session/{id}/logs``: works after termination when addressed by UUID."""
    state = state_of(request)
    caller = caller_of(request)
    owner = state.owner_for(caller, request.query.get("owner_access_key"))
    rec = state.resolve(owner, request.match_info["session_name"], allow_dead=True, caller=caller)
    kernel_id = request.query.get("kernel_id")
    if kernel_id is not None and kernel_id != str(rec.kernel_id):
        raise kernel_not_found(kernel_id)
    if state.settings.logs_gap_while_terminating and rec.kernel_gone and rec.status == TERMINATING:
        raise internal_error()  # the agent no longer knows the kernel; the stored log comes at TERMINATED
    text = state.store.read(rec, lambda r: r.log.decode("utf-8", errors="replace"))
    return web.json_response({"result": {"logs": text}})


async def status_history(request: web.Request) -> web.Response:
    """``GET /session/{id}/status-history``: ``{STATUS: iso}``; 404 once dead like ``get_info``."""
    state = state_of(request)
    caller = caller_of(request)
    owner = state.owner_for(caller, request.query.get("owner_access_key"))
    rec = state.resolve(owner, request.match_info["session_name"], allow_dead=False, caller=caller)
    return web.json_response(rec.status_history())


async def gql(request: web.Request) -> web.Response:
    """``POST /admin/gql``: always 200; problems go into ``errors``."""
    state = state_of(request)
    caller = caller_of(request)
    ctx = graphql.GraphQLContext(
        visible=lambda session_id: state.visible_session(caller, session_id),
        all_visible=lambda: state.visible_sessions(caller),
    )
    return web.json_response(graphql.execute(ctx, await _json_body(request)))


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /events/session``: the session event stream (quirks per ``fixed_event_quirks``)."""
    state = state_of(request)
    caller = caller_of(request)
    query = request.query
    scope_param = query.get("scope", "*")
    scope = {"session", "kernel"} if scope_param == "*" else set(scope_param.split(","))
    if not scope <= {"session", "kernel"}:
        raise invalid_api_params(f"Invalid scope: {scope_param}")
    owner = state.owner_for(caller, query.get("ownerAccessKey") or query.get("owner_access_key"))
    raw_id = query.get("sessionId")
    try:
        session_id = uuid.UUID(raw_id) if raw_id else None
    except ValueError:
        raise bad_request_params(f"sessionId: {raw_id!r} is not a valid UUID") from None
    fixed = state.settings.fixed_event_quirks
    name = query.get("sessionName", "*")
    target: uuid.UUID | None = None
    if name != "*":
        rec = state.store.find_live_by_name(owner.access_key, name)
        if rec is None:
            raise entity_not_found()
        target = rec.id
    elif fixed and session_id is not None:
        target = session_id
    # Quirk: kernel events are keyed by kernel id, so only wildcard streams get them.
    kernel_events = "kernel" in scope and (fixed or target is None)
    sub = Subscription(owner.access_key, target, "session" in scope, kernel_events)
    sub.mute = state.settings.event_stream_block == "silent"
    return await stream_events(request, state.hub, sub, state.settings)


async def not_emulated(request: web.Request) -> web.Response:
    """Real manager routes the emulator does not implement."""
    raise not_implemented(f"{request.method} {request.path} is not emulated by backend-ai-emulator.")


__all__ = [
    "STATE_KEY",
    "ApiError",
    "create",
    "destroy",
    "events",
    "get_info",
    "gql",
    "logs",
    "not_emulated",
    "restart",
    "root",
    "session_info",
    "state_of",
    "status_history",
]
