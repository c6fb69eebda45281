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
A small GraphQL reader for the few queries the SDK sends to ``POST /admin/gql``.

Not a GraphQL implementation: it parses one operation into fields with arguments and selections,
resolves ``compute_session``, ``compute_session_node`` and ``compute_session_list`` from the session
store, and reports anything else the way the manager does (HTTP 200 with ``errors``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal

    from .store import SessionRecord

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[\s,\ufeff]+|\#[^\n]*)
  | (?P<block>\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\")
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$()\:=@\[\]{|}&])
    """,
    re.VERBOSE,
)


class GraphQLError(Exception):
    """A query the emulator cannot answer; becomes an entry of ``errors``."""


@dataclass
class Field:
    """One selected field: alias, arguments (variables substituted) and sub-selections."""

    name: str
    alias: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    selections: list[Field] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.alias or self.name


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise GraphQLError(f"Syntax Error: Unexpected character {text[pos]!r}.")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, match.group()))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, variables: Mapping[str, Any]) -> None:
        self._tokens = _tokenize(text)
        self._pos = 0
        self._variables = variables

    def _peek(self) -> tuple[str, str]:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else ("eof", "")

    def _next(self) -> tuple[str, str]:
        token = self._peek()
        self._pos += 1
        return token

    def _expect(self, value: str) -> None:
        kind, text = self._next()
        if text != value or kind in ("string", "block"):
            raise GraphQLError(f"Syntax Error: Expected {value!r}, found {text or '<EOF>'!r}.")

    def _skip_balanced(self, open_: str, close: str) -> None:
        depth = 0
        while True:
            kind, text = self._next()
            if kind == "eof":
                raise GraphQLError(f"Syntax Error: Expected {close!r}, found <EOF>.")
            if kind == "punct" and text == open_:
                depth += 1
            elif kind == "punct" and text == close:
                depth -= 1
                if depth == 0:
                    return

    def operation(self) -> tuple[str, list[Field]]:
        """Parse the first operation; returns its type and top-level fields."""
        op_type = "query"
        kind, text = self._peek()
        if kind == "name":
            if text not in ("query", "mutation", "subscription"):
                raise GraphQLError(f"Syntax Error: Unexpected Name {text!r}.")
            op_type = text
            self._next()
            if self._peek()[0] == "name":
                self._next()
            if self._peek()[1] == "(":
                self._skip_balanced("(", ")")
            self._skip_directives()
        return op_type, self._selection_set()

    def _skip_directives(self) -> None:
        while self._peek()[1] == "@":
            self._next()
            self._next()
            if self._peek()[1] == "(":
                self._skip_balanced("(", ")")

    def _selection_set(self) -> list[Field]:
        self._expect("{")
        fields: list[Field] = []
        while self._peek()[1] != "}":
            kind, _text = self._peek()
            if kind == "eof":
                raise GraphQLError("Syntax Error: Expected Name, found <EOF>.")
            if kind == "spread":
                raise GraphQLError("Fragments are not supported by the Backend.AI emulator.")
            fields.append(self._field())
        self._next()
        return fields

    def _field(self) -> Field:
        kind, name = self._next()
        if kind != "name":
            raise GraphQLError(f"Syntax Error: Expected Name, found {name!r}.")
        alias = None
        if self._peek()[1] == ":":
            self._next()
            alias, (kind, name) = name, self._next()
            if kind != "name":
                raise GraphQLError(f"Syntax Error: Expected Name, found {name!r}.")
        result = Field(name=name, alias=alias)
        if self._peek()[1] == "(":
            self._next()
            while self._peek()[1] != ")":
                arg_kind, arg_name = self._next()
                if arg_kind != "name":
                    raise GraphQLError(f"Syntax Error: Expected Name, found {arg_name!r}.")
                self._expect(":")
                result.args[arg_name] = self._value()
            self._next()
        self._skip_directives()
        if self._peek()[1] == "{":
            result.selections = self._selection_set()
        return result

    def _value(self) -> Any:
        kind, text = self._next()
        if kind == "punct" and text == "$":
            _, var = self._next()
            if var not in self._variables:
                raise GraphQLError(f"Variable '${var}' was not provided.")
            return self._variables[var]
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "string":
            return json.loads(text)
        if kind == "block":
            return text[3:-3]
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, text)
        if kind == "punct" and text == "[":
            items = []
            while self._peek()[1] != "]":
                items.append(self._value())
            self._next()
            return items
        if kind == "punct" and text == "{":
            obj = {}
            while self._peek()[1] != "}":
                _, key = self._next()
                self._expect(":")
                obj[key] = self._value()
            self._next()
            return obj
        raise GraphQLError(f"Syntax Error: Unexpected {text or '<EOF>'!r}.")


def parse_query(text: str, variables: Mapping[str, Any] | None = None) -> tuple[str, list[Field]]:
    """Parse ``text`` into (operation type, top-level fields)."""
    return _Parser(text, variables or {}).operation()


# -- values ----------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _slots_json(slots: Mapping[str, Decimal]) -> str:
    return json.dumps({k: str(v) for k, v in slots.items()})


def _jsonstring(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def session_node_global_id(session_id: uuid.UUID) -> str:
    """Relay global id of a session node."""
    return base64.b64encode(f"ComputeSessionNode:{session_id}".encode()).decode()


def parse_session_ref(raw: Any) -> uuid.UUID:
    """A UUID, or a relay global id ``base64("<type>:<uuid>")`` as ``detail()`` sends."""
    text = str(raw)
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    try:
        decoded = base64.b64decode(text, validate=True).decode()
        return uuid.UUID(decoded.rsplit(":", 1)[-1])
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise GraphQLError(f"Invalid session id: {text!r}") from exc


def _common(rec: SessionRecord) -> dict[str, Callable[[], Any]]:
    scheduled = next((at for status, at in rec.history if status == "SCHEDULED"), None)
    return {
        "tag": lambda: rec.tag,
        "name": lambda: rec.name,
        "type": lambda: rec.session_type.upper(),
        "priority": lambda: rec.priority,
        "cluster_template": lambda: None,
        "cluster_mode": lambda: rec.cluster_mode,
        "cluster_size": lambda: rec.cluster_size,
        "domain_name": lambda: rec.domain,
        "user_id": lambda: str(rec.user_id),
        "access_key": lambda: rec.owner_access_key,
        "status": lambda: rec.status,
        "status_changed": lambda: _iso(rec.history[-1][1] if rec.history else None),
        "status_info": lambda: rec.status_info,
        "status_data": lambda: _jsonstring(rec.status_data),
        "status_history": lambda: _jsonstring(rec.status_history()),
        "created_at": lambda: _iso(rec.created_at),
        "terminated_at": lambda: _iso(rec.terminated_at),
        # 26.9.6: when the current run reached RUNNING; null before, and again after a requeue.
        "starts_at": lambda: _iso(rec.started_at),
        "scheduled_at": lambda: _iso(scheduled),
        "startup_command": lambda: rec.startup_command,
        "result": lambda: rec.result,
        "commit_status": lambda: None,
        "abusing_reports": lambda: [],
        "idle_checks": lambda: _jsonstring({}),
        "agent_ids": lambda: ["emulator-agent"] if rec.occupied_slots else [],
        "resource_opts": lambda: _jsonstring({"main1": rec.resource_opts}),
        "scaling_group": lambda: rec.scaling_group or "default",
        "service_ports": lambda: _jsonstring([]),
        "vfolder_mounts": lambda: [],
        "occupied_slots": lambda: _slots_json(rec.occupied_slots),
        "occupying_slots": lambda: _slots_json(rec.occupied_slots),
        "requested_slots": lambda: _slots_json(rec.requested_slots),
        "num_queries": lambda: 0,
        "inference_metrics": lambda: None,
    }


def _legacy_fields(rec: SessionRecord) -> dict[str, Callable[[], Any]]:
    fields = _common(rec)
    fields.update(
        {
            "id": lambda: str(rec.id),
            "session_id": lambda: str(rec.id),
            "main_kernel_id": lambda: str(rec.kernel_id),
            "main_kernel_role": lambda: rec.session_type.upper(),
            "image": lambda: rec.image,
            "architecture": lambda: rec.architecture,
            "registry": lambda: rec.image.split("/", 1)[0] if "/" in rec.image else None,
            "group_name": lambda: rec.group,
            "group_id": lambda: str(rec.group_id),
            "user_email": lambda: f"{rec.owner_access_key.lower()}@emulator.invalid",
            "full_name": lambda: "Emulator User",
            "created_user_email": lambda: None,
            "created_user_id": lambda: None,
            "agents": lambda: ["emulator-agent"] if rec.occupied_slots else [],
            "mounts": lambda: [],
            "dependencies": lambda: [],
        }
    )
    return fields


def _kernel_fields(rec: SessionRecord) -> dict[str, Callable[[], Any]]:
    return {
        "id": lambda: base64.b64encode(f"KernelNode:{rec.kernel_id}".encode()).decode(),
        "row_id": lambda: str(rec.kernel_id),
        "session_id": lambda: str(rec.id),
        "image_reference": lambda: rec.image,
        "architecture": lambda: rec.architecture,
        "status": lambda: rec.status,
        "status_info": lambda: rec.status_info,
        "status_data": lambda: _jsonstring(rec.status_data),
        "created_at": lambda: _iso(rec.created_at),
        "terminated_at": lambda: _iso(rec.terminated_at),
        "agent_id": lambda: "emulator-agent" if rec.occupied_slots else None,
        "cluster_role": lambda: "main",
        "cluster_idx": lambda: 1,
        "cluster_hostname": lambda: "main1",
        "container_id": lambda: rec.container_id,
        "startup_command": lambda: rec.startup_command,
        "occupied_slots": lambda: _slots_json(rec.occupied_slots),
        "requested_slots": lambda: _slots_json(rec.requested_slots),
    }


def _select(
    type_name: str, available: Mapping[str, Callable[[], Any]], selections: Iterable[Field]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sel in selections:
        if sel.name == "__typename":
            out[sel.key] = type_name
            continue
        getter = available.get(sel.name)
        if getter is None:
            raise GraphQLError(f"Cannot query field '{sel.name}' on type '{type_name}'.")
        if sel.selections:
            raise GraphQLError(f"Field '{sel.name}' must not have a selection since type is a leaf.")
        out[sel.key] = getter()
    return out


def _kernel_connection(rec: SessionRecord, selections: list[Field]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sel in selections:
        if sel.name == "edges":
            edge: dict[str, Any] = {}
            for part in sel.selections:
                if part.name == "node":
                    edge[part.key] = _select("KernelNode", _kernel_fields(rec), part.selections)
                elif part.name == "cursor":
                    edge[part.key] = base64.b64encode(b"cursor:0").decode()
                else:
                    raise GraphQLError(f"Cannot query field '{part.name}' on type 'KernelEdge'.")
            out[sel.key] = [edge]
        elif sel.name == "count":
            out[sel.key] = 1
        elif sel.name == "pageInfo":
            out[sel.key] = {
                p.key: {"hasNextPage": False, "hasPreviousPage": False}.get(p.name) for p in sel.selections
            }
        else:
            raise GraphQLError(f"Cannot query field '{sel.name}' on type 'KernelConnection'.")
    return out


def _node(rec: SessionRecord, selections: list[Field], ctx: GraphQLContext) -> dict[str, Any]:
    fields = _common(rec)
    fields.update(
        {
            "id": lambda: session_node_global_id(rec.id),
            "row_id": lambda: str(rec.id),
            # The relay node carries the enum's value ("batch"); the legacy row its name ("BATCH").
            "type": lambda: rec.session_type.lower(),
            "project_id": lambda: str(rec.group_id),
            "image_references": lambda: [rec.image],
            "queue_position": lambda: ctx.queue_position(rec),
        }
    )
    leaf = [s for s in selections if s.name != "kernel_nodes"]
    out = _select("ComputeSessionNode", fields, leaf)
    for sel in selections:
        if sel.name == "kernel_nodes":
            out[sel.key] = _kernel_connection(rec, sel.selections)
    return {s.key: out[s.key] for s in selections}


@dataclass
class GraphQLContext:
    """What resolvers may see: a lookup of sessions visible to the caller."""

    visible: Callable[[uuid.UUID], SessionRecord | None]
    all_visible: Callable[[], list[SessionRecord]]
    #: The place of a PENDING session in its resource group's queue (all users' sessions count).
    queue_position: Callable[[SessionRecord], int | None] = lambda rec: None


def _resolve_root(ctx: GraphQLContext, sel: Field) -> Any:
    if sel.name == "compute_session":
        if "id" not in sel.args:
            raise GraphQLError("Field 'compute_session' argument 'id' of type 'UUID!' is required.")
        rec = ctx.visible(parse_session_ref(sel.args["id"]))
        return None if rec is None else _select("ComputeSession", _legacy_fields(rec), sel.selections)
    if sel.name == "compute_session_node":
        if "id" not in sel.args:
            raise GraphQLError(
                "Field 'compute_session_node' argument 'id' of type 'GlobalIDField!' is required."
            )
        rec = ctx.visible(parse_session_ref(sel.args["id"]))
        return None if rec is None else _node(rec, sel.selections, ctx)
    if sel.name == "compute_session_list":
        return _session_list(ctx, sel)
    if sel.name == "__typename":
        return "Queries"
    raise GraphQLError(f"Cannot query field '{sel.name}' on type 'Queries'.")


def _session_list(ctx: GraphQLContext, sel: Field) -> dict[str, Any]:
    records = sorted(ctx.all_visible(), key=lambda r: r.created_at, reverse=True)
    status = sel.args.get("status")
    if status:
        wanted = {s.strip().upper() for s in str(status).split(",")}
        records = [r for r in records if r.status in wanted]
    access_key = sel.args.get("access_key")
    if access_key:
        records = [r for r in records if r.owner_access_key == access_key]
    offset = int(sel.args.get("offset") or 0)
    limit = int(sel.args.get("limit") or 20)
    page = records[offset : offset + limit]
    out: dict[str, Any] = {}
    for part in sel.selections:
        if part.name == "items":
            out[part.key] = [_select("ComputeSession", _legacy_fields(r), part.selections) for r in page]
        elif part.name == "total_count":
            out[part.key] = len(records)
        else:
            raise GraphQLError(f"Cannot query field '{part.name}' on type 'ComputeSessionList'.")
    return out


def parse_body(body: Any) -> tuple[str, list[Field]]:
    """The operation type and root fields of a GraphQL request body (``{"query": ..., "variables": ...}``)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("query"), str):
        raise GraphQLError("Must provide query string.")
    variables = body.get("variables") or {}
    if not isinstance(variables, Mapping):
        raise GraphQLError("Variables must be provided as an object.")
    return parse_query(body["query"], variables)


def execute(ctx: GraphQLContext, body: Any) -> dict[str, Any]:
    """Answer one ``/admin/gql`` body with ``{"data": ..., "errors": ...}``."""
    try:
        op_type, fields = parse_body(body)
        if op_type != "query":
            raise GraphQLError(f"The Backend.AI emulator does not support {op_type} operations.")
        data = {sel.key: _resolve_root(ctx, sel) for sel in fields}
    except GraphQLError as exc:
        return {"data": None, "errors": [{"message": str(exc), "locations": [], "path": None}]}
    return {"data": data, "errors": None}


__all__ = ["GraphQLContext", "GraphQLError", "execute", "parse_body", "parse_query", "parse_session_ref"]
