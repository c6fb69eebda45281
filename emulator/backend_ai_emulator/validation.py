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
Parsing and validating a create request body the way the manager does (wire notes §4.2).

Kept free of server state so the parsing rules (aliases, durations, slots) can be unit-tested.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from dateutil import parser as date_parser

from .errors import bad_request_params, invalid_api_params

SESSION_NAME_RE = re.compile(r"^(?=.{4,64}$)\w[\w.-]*\w$", re.ASCII)
SESSION_TYPES = ("interactive", "batch", "inference", "system")
CLUSTER_MODES = {
    "single-node": "single-node",
    "single_node": "single-node",
    "multi-node": "multi-node",
    "multi_node": "multi-node",
}
_DURATION_UNITS = {"w": 7 * 24 * 3600, "d": 24 * 3600, "h": 3600, "m": 60, "s": 1}
_BINARY_UNITS = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50, "e": 2**60}
_TRUE = {"true", "t", "yes", "y", "on", "1"}
_FALSE = {"false", "f", "no", "n", "off", "0"}


def parse_timeout_seconds(value: Any) -> int:
    """
    ``TimeoutSeconds``: int, float (truncated), ``"300"``, or ``"30s"``/``"5m"``/``"1h"``/``"2d"``/``"1w"``.

    Raises ``ValueError`` for anything else, including negative values and booleans.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("value must be a number or string")
    if isinstance(value, (int, float)):
        result = int(value)
    else:
        text = value.strip()
        if not text:
            raise ValueError("value must not be empty")
        unit = text[-1]
        if unit.isdigit() or unit == ".":
            try:
                result = int(float(text))
            except ValueError as exc:
                raise ValueError(f"invalid numeric literal: {text}") from exc
        elif text[-2:].isalpha():
            raise ValueError(f"unknown duration unit: {text[-2:]!r}")
        else:
            if unit not in _DURATION_UNITS:
                raise ValueError(f"unknown duration unit: {unit!r}")
            try:
                amount = float(text[:-1])
            except ValueError as exc:
                raise ValueError(f"invalid numeric literal: {text[:-1]!r}") from exc
            if amount < 0:
                raise ValueError("value must be positive")
            result = int(amount * _DURATION_UNITS[unit])
    if result < 0:
        raise ValueError("value must be positive")
    return result


def parse_binary_size(value: Any) -> Decimal:
    """``"1g"`` → 1073741824; plain numbers are bytes."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size: {value!r}")
    if isinstance(value, (int, float, Decimal)):
        return Decimal(str(value))
    text = str(value).strip().lower()
    if text.endswith("ib"):
        text = text[:-2]
    elif text.endswith("b") and len(text) > 1 and text[-2] in _BINARY_UNITS:
        text = text[:-1]
    multiplier = 1
    if text and text[-1] in _BINARY_UNITS:
        multiplier = _BINARY_UNITS[text[-1]]
        text = text[:-1]
    try:
        return (Decimal(text) * multiplier).to_integral_value()
    except InvalidOperation as exc:
        raise ValueError(f"invalid size: {value!r}") from exc


class UnknownSlotError(ValueError):
    """A slot name the manager does not know (its own ``UnknownSlotType``, a 400 of its own type)."""


def parse_slots(resources: Mapping[str, Any], known_slots: set[str]) -> dict[str, Decimal]:
    """
    Turn user input into slot amounts; bad amounts are ``ValueError``.

    Unknown slot names are :class:`UnknownSlotError` (a ``ValueError``) with the manager's message
    ``Unknown slot type: 'NAME'``.
    """
    slots: dict[str, Decimal] = {}
    for name, raw in resources.items():
        if name not in known_slots:
            raise UnknownSlotError(f"Unknown slot type: {name!r}")
        try:
            amount = parse_binary_size(raw) if name == "mem" else Decimal(str(raw))
        except (InvalidOperation, ValueError) as exc:
            raise ValueError(f"Invalid amount for slot {name!r}: {raw!r}") from exc
        if amount < 0 or not amount.is_finite():
            raise ValueError(f"Invalid amount for slot {name!r}: {raw!r}")
        slots[name] = amount
    return slots


def parse_starts_at(value: str, now: datetime | None = None) -> datetime:
    """An ISO timestamp or a relative duration (``"10s"``, ``"5m"``) from now."""
    now = now or datetime.now(UTC)
    try:
        when = date_parser.isoparse(value)
    except ValueError:
        return now + timedelta(seconds=parse_timeout_seconds(value))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _pick(body: Mapping[str, Any], *aliases: str, default: Any = None) -> Any:
    for alias in aliases:
        if alias in body:
            return body[alias]
    return default


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise bad_request_params(f"{name}: Input should be a valid boolean")


def _as_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise bad_request_params(f"{name}: Input should be a valid integer")
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError) as exc:
        raise bad_request_params(f"{name}: Input should be a valid integer") from exc
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise bad_request_params(f"{name}: Input should be between {minimum} and {maximum}")
    return number


def _as_opt_str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise bad_request_params(f"{name}: Input should be a valid string")


@dataclass
class CreateRequest:
    """A create body after alias resolution and type checks (no server-state checks yet)."""

    name: str
    image: str
    architecture: str
    session_type: str
    group: str
    domain: str
    cluster_size: int
    cluster_mode: str
    tag: str | None
    enqueue_only: bool
    max_wait_seconds: int
    starts_at: str | None
    batch_timeout: int | None
    reuse: bool
    startup_command: str | None
    bootstrap_script: str | None
    priority: int
    owner_access_key: str | None
    callback_url: str | None
    dependencies: list[str]
    environ: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    resource_opts: dict[str, Any] = field(default_factory=dict)
    mounts: list[Any] = field(default_factory=list)
    scaling_group: str | None = None
    #: 26.8+: snake_case only (``jobPriority`` is an unknown key, ignored like every extra key).
    job_priority: int = 0
    is_preemptible: bool = True


#: ``job_priority`` is a PostgreSQL ``integer`` on the manager: a value outside it fails the INSERT (500).
JOB_PRIORITY_MIN, JOB_PRIORITY_MAX = -(2**31), 2**31 - 1


def _as_lax_int(value: Any, name: str) -> int:
    """Pydantic's lax ``int``: ints, bools, integral floats and integer strings; anything else is a 400."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise bad_request_params(f"{name}: Input should be a valid integer")


def parse_create_body(body: Any) -> CreateRequest:
    """Resolve aliases and types like ``CreateFromParamsRequest``; raises 400 problem errors."""
    if not isinstance(body, Mapping):
        raise bad_request_params("The request body must be a JSON object")
    name = _pick(body, "session_name", "name", "clientSessionToken")
    if not isinstance(name, str):
        raise bad_request_params("session_name: Field required")
    if not SESSION_NAME_RE.match(name):
        raise bad_request_params(f"session_name: {name!r} must be 4-64 characters matching ^\\w[\\w.-]*\\w$")
    if name == "from-template":
        raise invalid_api_params(f"Requested session ID {name} is reserved word")
    image = _pick(body, "image", "lang")
    if not isinstance(image, str) or not image:
        raise bad_request_params("image: Field required")
    session_type = _pick(body, "session_type", "type", "sessionType", default="interactive")
    if not isinstance(session_type, str) or session_type.lower() not in SESSION_TYPES:
        raise bad_request_params(f"session_type: Input should be one of {', '.join(SESSION_TYPES)}")
    cluster_mode = _pick(body, "cluster_mode", "clusterMode", default="single-node")
    if not isinstance(cluster_mode, str) or cluster_mode.lower() not in CLUSTER_MODES:
        raise bad_request_params("cluster_mode: Input should be 'single-node' or 'multi-node'")
    raw_timeout = _pick(body, "batch_timeout", "batchTimeout")
    try:
        batch_timeout = None if raw_timeout is None else parse_timeout_seconds(raw_timeout)
    except ValueError as exc:
        raise bad_request_params(f"batch_timeout: {exc}") from exc
    config = body.get("config") or {}
    if not isinstance(config, Mapping):
        raise bad_request_params("config: Input should be a valid dictionary")
    environ = config.get("environ") or {}
    resources = config.get("resources") or {}
    resource_opts = config.get("resource_opts") or config.get("resourceOpts") or {}
    if not isinstance(environ, Mapping) or not all(isinstance(v, str) for v in environ.values()):
        raise bad_request_params("config.environ: Input should be a mapping of strings")
    if not isinstance(resources, Mapping) or not isinstance(resource_opts, Mapping):
        raise bad_request_params("config.resources: Input should be a valid dictionary")
    dependencies = body.get("dependencies") or []
    if not isinstance(dependencies, list):
        raise bad_request_params("dependencies: Input should be a valid list")
    architecture = _pick(body, "architecture", "arch")
    return CreateRequest(
        name=name,
        image=image,
        architecture=_as_opt_str(architecture, "architecture") or "x86_64",
        session_type=session_type.lower(),
        group=_as_opt_str(_pick(body, "group", "groupName", "group_name"), "group") or "default",
        domain=_as_opt_str(_pick(body, "domain", "domainName", "domain_name"), "domain") or "default",
        cluster_size=_as_int(
            _pick(body, "cluster_size", "clusterSize", default=1), "cluster_size", minimum=1
        ),
        cluster_mode=CLUSTER_MODES[cluster_mode.lower()],
        tag=_as_opt_str(body.get("tag"), "tag"),
        enqueue_only=_as_bool(_pick(body, "enqueue_only", "enqueueOnly", default=False), "enqueue_only"),
        max_wait_seconds=_as_int(
            _pick(body, "max_wait_seconds", "maxWaitSeconds", default=0), "max_wait_seconds", minimum=0
        ),
        starts_at=_as_opt_str(_pick(body, "starts_at", "startsAt"), "starts_at"),
        batch_timeout=batch_timeout,
        reuse=_as_bool(_pick(body, "reuse", "reuseIfExists", default=True), "reuse"),
        startup_command=_as_opt_str(_pick(body, "startup_command", "startupCommand"), "startup_command"),
        bootstrap_script=_as_opt_str(_pick(body, "bootstrap_script", "bootstrapScript"), "bootstrap_script"),
        priority=_as_int(body.get("priority", 10), "priority", minimum=0, maximum=100),
        owner_access_key=_as_opt_str(body.get("owner_access_key"), "owner_access_key"),
        callback_url=_as_opt_str(_pick(body, "callback_url", "callbackUrl", "callbackURL"), "callback_url"),
        dependencies=[str(d) for d in dependencies],
        environ=dict(environ),
        resources=dict(resources),
        resource_opts=dict(resource_opts),
        mounts=list(config.get("mounts") or []),
        scaling_group=_as_opt_str(_pick(config, "scaling_group", "scalingGroup"), "scaling_group"),
        job_priority=_as_lax_int(body.get("job_priority", 0), "job_priority"),
        is_preemptible=_as_bool(body.get("is_preemptible", True), "is_preemptible"),
    )
