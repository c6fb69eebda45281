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
"""Turn an Airflow ``backend_ai`` connection into validated settings, naming the field that is wrong."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from airflow.providers.backend.ai.exceptions import BackendAIConnectionConfigError


class ConnectionLike(Protocol):
    """The fields read from an Airflow connection (Airflow 2's model and Airflow 3's SDK class both fit)."""

    conn_id: str
    host: str | None
    port: int | None
    login: str | None
    password: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


DEFAULT_REQUEST_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
CONN_TYPE = "backend_ai"
EXTRA_FIELDS = ("endpoint_type", "domain", "group", "skip_sslcert_validation", "request_timeout", "webui_url")
_TRUE = ("true", "yes", "y", "1", "on")
_FALSE = ("false", "no", "n", "0", "off", "")


@dataclass(frozen=True)
class BackendAIConnectionConfig:
    """Everything needed to talk to a Backend.AI manager; the secret key never appears in its repr."""

    conn_id: str
    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    endpoint_type: str = "api"
    domain: str = "default"
    group: str = "default"
    skip_sslcert_validation: bool = False
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    webui_url: str | None = None

    @property
    def connect_timeout(self) -> float:
        """Time allowed to open a TCP connection: the request timeout, capped at 10 s."""
        return min(DEFAULT_CONNECT_TIMEOUT, self.request_timeout)

    @classmethod
    def from_connection(cls, conn: ConnectionLike) -> BackendAIConnectionConfig:
        """Validate ``conn``; raise :class:`BackendAIConnectionConfigError` naming the first bad field."""
        conn_id = conn.conn_id or "<unnamed>"
        extra = _read_extra(conn_id, conn.extra_dejson)
        return cls(
            conn_id=conn_id,
            endpoint=_endpoint(conn_id, conn.host, conn.port),
            access_key=_required(conn_id, "login (Access Key)", conn.login),
            secret_key=_required(conn_id, "password (Secret Key)", conn.password),
            endpoint_type=_endpoint_type(conn_id, extra.get("endpoint_type")),
            domain=_name(conn_id, "domain", extra.get("domain")),
            group=_name(conn_id, "group", extra.get("group")),
            skip_sslcert_validation=_boolean(
                conn_id, "skip_sslcert_validation", extra.get("skip_sslcert_validation")
            ),
            request_timeout=_timeout(conn_id, "request_timeout", extra.get("request_timeout")),
            webui_url=_webui_url(conn_id, extra.get("webui_url")),
        )


def _read_extra(conn_id: str, raw: Any) -> dict[str, Any]:
    """Accept plain keys and the ``extra__backend_ai__<key>`` form older Airflow UIs store; reject typos."""
    if not isinstance(raw, dict):
        raise BackendAIConnectionConfigError(conn_id, "extra", "must be a JSON object")
    extra: dict[str, Any] = {}
    prefix = f"extra__{CONN_TYPE}__"
    for key, value in raw.items():
        name = key.removeprefix(prefix)
        if name not in EXTRA_FIELDS:
            raise BackendAIConnectionConfigError(
                conn_id, f"extra.{key}", f"unknown key; accepted keys: {', '.join(EXTRA_FIELDS)}"
            )
        if value is not None and value != "":
            extra[name] = value
    return extra


def _required(conn_id: str, label: str, value: str | None) -> str:
    if value is None or not value.strip():
        raise BackendAIConnectionConfigError(conn_id, label, "is required")
    if value != value.strip():
        raise BackendAIConnectionConfigError(conn_id, label, "must not start or end with white space")
    return value


def _endpoint(conn_id: str, host: str | None, port: int | None) -> str:
    """
    Build the endpoint URL from ``host`` (a full URL, or a bare host name meaning https) and ``port``.

    A default port written out (``https://host:443``) is dropped: the SDK signs ``host:443`` while the
    HTTP client sends ``Host: host``, and the manager would reject every request.
    """
    label = "host (Endpoint URL)"
    raw = _required(conn_id, label, host)
    if "://" not in raw:
        raw = f"https://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise BackendAIConnectionConfigError(conn_id, label, f"scheme must be http or https, got {raw!r}")
    try:
        url_port = parts.port
    except ValueError:
        raise BackendAIConnectionConfigError(conn_id, label, f"invalid port in {raw!r}") from None
    if not parts.hostname or parts.username or parts.query or parts.fragment or any(c.isspace() for c in raw):
        raise BackendAIConnectionConfigError(
            conn_id, label, f"must be a URL like https://api.backend.ai, got {raw!r}"
        )
    if url_port is not None and port and url_port != port:
        raise BackendAIConnectionConfigError(
            conn_id, "port", f"{port} contradicts the port in the endpoint URL {raw!r}"
        )
    effective_port = url_port or port
    default_port = 443 if parts.scheme == "https" else 80
    hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = hostname if effective_port in (None, default_port) else f"{hostname}:{effective_port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def _webui_url(conn_id: str, value: Any) -> str | None:
    """The Backend.AI web UI address for session links; without it the link is hidden."""
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise BackendAIConnectionConfigError(
            conn_id, "extra.webui_url", f"must be a URL like https://webui.example.com, got {value!r}"
        )
    return value.rstrip("/")


def _endpoint_type(conn_id: str, value: Any) -> str:
    if value is None or value == "api":
        return "api"
    if value == "session":
        raise BackendAIConnectionConfigError(
            conn_id,
            "extra.endpoint_type",
            "'session' (a web-server endpoint with cookie login) cannot authenticate with an access "
            "key and secret key; point the connection at the manager API and use 'api'",
        )
    raise BackendAIConnectionConfigError(conn_id, "extra.endpoint_type", f"must be 'api', got {value!r}")


def _name(conn_id: str, key: str, value: Any) -> str:
    if value is None:
        return "default"
    if not isinstance(value, str) or not value.strip():
        raise BackendAIConnectionConfigError(
            conn_id, f"extra.{key}", f"must be a non-empty string, got {value!r}"
        )
    return value.strip()


def _boolean(conn_id: str, key: str, value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise BackendAIConnectionConfigError(conn_id, f"extra.{key}", f"must be true or false, got {value!r}")


def _timeout(conn_id: str, key: str, value: Any) -> float:
    if value is None:
        return DEFAULT_REQUEST_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise BackendAIConnectionConfigError(
            conn_id, f"extra.{key}", f"must be a positive number of seconds, got {value!r}"
        )
    return seconds
