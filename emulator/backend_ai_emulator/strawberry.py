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
The few fields of the manager's newer GraphQL schema (``POST /admin/gql/strawberry``) that matter here.

26.x serves a second, camelCase GraphQL schema beside the legacy one. Only it has a session's
``jobPriority``/``isPreemptible`` (``sessionV2``), the scheduler's reasons for a waiting session
(``sessionScopedSchedulingHistories``: 26.9.6 writes no ``status_data.scheduler``), and a resource
group's preemption settings (``adminResourceGroupV2``, mutation ``adminUpdateResourceGroup``). Errors
come back as HTTP 200 with ``errors`` (``extensions.code`` as the manager sets it), per root field.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .graphql import Field, GraphQLError, parse_body
from .scheduler import resource_group
from .settings import PREEMPTION_MODES, PREEMPTION_ORDERS, VICTIM_SCOPES, PreemptionConfig

if TYPE_CHECKING:
    from .settings import Keypair
    from .state import EmulatorState
    from .store import SessionRecord

_ADMIN_ROLES = ("admin", "superadmin")


class _RootError(Exception):
    """An error of one root field: its data is null and ``errors`` gets an entry with this code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _project(value: Any, selections: list[Field], type_name: str) -> Any:
    """Keep what the query selected from a prepared value (lists element-wise); unknown fields fail."""
    if isinstance(value, list):
        return [_project(item, selections, type_name) for item in value]
    if value is None or not selections:
        return value
    out: dict[str, Any] = {}
    for sel in selections:
        if sel.name == "__typename":
            out[sel.key] = type_name
            continue
        if sel.name not in value:
            raise GraphQLError(f"Cannot query field '{sel.name}' on type '{type_name}'.")
        out[sel.key] = _project(value[sel.name], sel.selections, sel.name)
    return out


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _session_v2(rec: SessionRecord) -> dict[str, Any]:
    return {
        "id": f"U2Vzc2lvblYyOn{rec.id}",  # an opaque relay id, as the manager's is
        "entityId": str(rec.id),
        "domainName": rec.domain,
        "userId": str(rec.user_id),
        "projectId": str(rec.group_id),
        "metadata": {
            "name": rec.name,
            "sessionType": rec.session_type.upper(),
            "accessKey": rec.owner_access_key,
            "clusterMode": rec.cluster_mode.upper().replace("-", "_"),
            "clusterSize": rec.cluster_size,
            "tier": rec.priority,
            "priority": rec.priority,
            "jobPriority": rec.job_priority,
            "isPreemptible": rec.is_preemptible,
            "tag": rec.tag,
        },
        "lifecycle": {
            "status": rec.status,
            "result": rec.result,
            "createdAt": _iso(rec.created_at),
            "terminatedAt": _iso(rec.terminated_at),
            "startsAt": _iso(rec.started_at),
            "batchTimeout": rec.batch_timeout,
        },
        "resource": {"resourceGroupName": resource_group(rec)},
    }


def _preemption_value(config: PreemptionConfig) -> dict[str, Any]:
    return {
        "enabled": config.enabled,
        "mode": config.mode.upper(),
        "order": config.order.upper(),
        "victimScope": config.victim_scope.upper(),
        "preemptiblePriority": config.preemptible_priority,
        "preemptionMinRuntime": float(config.preemption_min_runtime),
    }


def _resource_group(state: EmulatorState, name: str) -> dict[str, Any]:
    return {
        "id": f"UmVzb3VyY2VHcm91cDp{name}",
        "name": name,
        "scheduler": {"type": "FIFO", "preemption": _preemption_value(state.settings.preemption_for(name))},
    }


def _require_admin(caller: Keypair) -> None:
    if caller.role not in _ADMIN_ROLES:
        raise _RootError("Insufficient privilege. (Admin exclusive access)", "user_auth_forbidden")


def _own_session(state: EmulatorState, caller: Keypair, raw: Any) -> SessionRecord:
    try:
        session_id = uuid.UUID(str(raw))
    except ValueError as exc:
        raise GraphQLError(f"Value cannot represent a UUID: {raw!r}.") from exc
    rec = state.visible_session(caller, session_id)
    if rec is None:
        raise _RootError(
            "Insufficient permission to perform this operation. "
            f"(User {caller.user_id} lacks permission <Permission.READ: 1> on session {session_id})",
            "permission_access_forbidden",
        )
    return rec


def _enum(value: Any, allowed: tuple[str, ...], name: str) -> str:
    text = str(value).lower()
    if text not in allowed:
        raise GraphQLError(f"Value '{value}' does not exist in '{name}' enum.")
    return text


def _preemption_input(raw: Any) -> PreemptionConfig:
    """``PreemptionConfigInput``: it replaces the whole config, so an omitted field gets its default."""
    if not isinstance(raw, Mapping):
        raise GraphQLError("Expected type 'PreemptionConfigInput' to be an object.")
    defaults = PreemptionConfig()
    return PreemptionConfig(
        enabled=bool(raw.get("enabled", defaults.enabled)),
        mode=_enum(raw.get("mode", defaults.mode), PREEMPTION_MODES, "PreemptionMode"),
        order=_enum(raw.get("order", defaults.order), PREEMPTION_ORDERS, "PreemptionOrder"),
        victim_scope=_enum(
            raw.get("victimScope", defaults.victim_scope), VICTIM_SCOPES, "PreemptionVictimScope"
        ),
        preemptible_priority=int(raw.get("preemptiblePriority", defaults.preemptible_priority)),
        preemption_min_runtime=float(raw.get("preemptionMinRuntime", defaults.preemption_min_runtime)),
    )


def _histories(rec: SessionRecord, sel: Field) -> dict[str, Any]:
    entries = [
        dict(
            entry,
            sessionId=str(rec.id),
            id=f"{rec.id}:{i}",
            subSteps=[{"startedAt": None, "endedAt": None, **step} for step in entry["subSteps"]],
        )
        for i, entry in enumerate(rec.scheduling_history)
    ]
    order = sel.args.get("orderBy") or []
    if order and isinstance(order, list) and isinstance(order[0], Mapping):
        key = "updatedAt" if str(order[0].get("field", "")).upper() == "UPDATED_AT" else "createdAt"
        entries.sort(key=lambda e: e[key], reverse=str(order[0].get("direction", "ASC")).upper() == "DESC")
    offset = int(sel.args.get("offset") or 0)
    limit = sel.args.get("limit") or sel.args.get("first")
    page = entries[offset : offset + int(limit)] if limit else entries[offset:]
    return {
        "count": len(entries),
        "edges": [{"cursor": e["id"], "node": e} for e in page],
        "pageInfo": {"hasNextPage": offset + len(page) < len(entries), "hasPreviousPage": offset > 0},
    }


def _resolve(state: EmulatorState, caller: Keypair, op_type: str, sel: Field) -> tuple[Any, str]:
    """A root field's prepared value and its type name."""
    if op_type == "mutation":
        if sel.name != "adminUpdateResourceGroup":
            raise GraphQLError(f"Cannot query field '{sel.name}' on type 'Mutation'.")
        _require_admin(caller)
        payload = sel.args.get("input")
        if not isinstance(payload, Mapping) or not isinstance(payload.get("resourceGroupName"), str):
            raise GraphQLError(
                "Field 'UpdateResourceGroupInput.resourceGroupName' of required type 'String!' was not provided."
            )
        name = payload["resourceGroupName"]
        if name not in state.settings.preemption:
            raise _RootError(
                "Entity not found. (No ResourceGroupRow matches the given key)",
                "resource-group_read_not-found",
            )
        if "preemption" in payload:
            state.settings.preemption = {
                **state.settings.preemption,
                name: _preemption_input(payload["preemption"]),
            }
        return {"resourceGroup": _resource_group(state, name)}, "UpdateResourceGroupPayload"
    if sel.name == "sessionV2":
        return _session_v2(_own_session(state, caller, sel.args.get("id"))), "SessionV2"
    if sel.name == "sessionScopedSchedulingHistories":
        scope = sel.args.get("scope")
        if not isinstance(scope, Mapping) or "sessionId" not in scope:
            raise GraphQLError("Field 'SessionScope.sessionId' of required type 'UUID!' was not provided.")
        return _histories(
            _own_session(state, caller, scope["sessionId"]), sel
        ), "SessionSchedulingHistoryConnection"
    if sel.name == "adminResourceGroupV2":
        _require_admin(caller)
        name = str(sel.args.get("name"))
        if name not in state.settings.preemption:
            raise _RootError(
                "Entity not found. (No ResourceGroupRow matches the given key)",
                "resource-group_read_not-found",
            )
        return _resource_group(state, name), "ResourceGroup"
    if sel.name == "__typename":
        return "Query", "Query"
    raise GraphQLError(f"Cannot query field '{sel.name}' on type 'Query'.")


def execute(state: EmulatorState, caller: Keypair, body: Any) -> dict[str, Any]:
    """Answer one ``/admin/gql/strawberry`` body with ``{"data": ..., "errors": ...}``."""
    try:
        op_type, fields = parse_body(body)
        if op_type == "subscription":
            raise GraphQLError("The Backend.AI emulator does not support subscription operations.")
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for sel in fields:
            try:
                value, type_name = _resolve(state, caller, op_type, sel)
                data[sel.key] = (
                    value if sel.name == "__typename" else _project(value, sel.selections, type_name)
                )
            except _RootError as exc:
                data[sel.key] = None
                errors.append(
                    {
                        "message": str(exc),
                        "locations": [],
                        "path": [sel.key],
                        "extensions": {"code": exc.code},
                    }
                )
    except GraphQLError as exc:
        return {"data": None, "errors": [{"message": str(exc), "locations": [], "path": None}]}
    return {"data": data, "errors": errors or None}
