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
Request signing exactly as the manager checks it (wire notes §2.3).

Pure functions, so the worked example in the notes can pin them, plus a client-side helper that
tests use to send hand-built requests (for example with a skewed ``Date``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dateutil import parser as date_parser
from dateutil.tz import tzutc
from yarl import URL

from .errors import ApiError, auth_failed, invalid_auth_params

if TYPE_CHECKING:
    from collections.abc import Mapping

DATE_WINDOW = timedelta(minutes=15)
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


def signing_string(
    method: str,
    raw_path_qs: str,
    raw_date: str,
    host: str,
    content_type: str,
    api_version: str,
    hash_type: str = "sha256",
) -> str:
    """The text that gets signed; the body is never hashed for API >= v4.20181215."""
    body_hash = hashlib.new(hash_type, b"").hexdigest()
    return (
        f"{method}\n{raw_path_qs}\n{raw_date}\nhost:{host}\ncontent-type:{content_type.lower()}\n"
        f"x-backendai-version:{api_version}\n{body_hash}"
    )


def derive_key(secret_key: str, date: datetime, host: str, hash_type: str = "sha256") -> bytes:
    """Two-step key: HMAC(secret, yyyymmdd) then HMAC(that, host)."""
    k_date = hmac.new(secret_key.encode(), date.strftime("%Y%m%d").encode(), hash_type).digest()
    return hmac.new(k_date, host.encode(), hash_type).digest()


def compute_signature(
    secret_key: str,
    *,
    method: str,
    raw_path_qs: str,
    raw_date: str,
    date: datetime,
    host: str,
    content_type: str,
    api_version: str,
    hash_type: str = "sha256",
) -> str:
    """Hex signature for one request."""
    text = signing_string(method, raw_path_qs, raw_date, host, content_type, api_version, hash_type)
    return hmac.new(derive_key(secret_key, date, host, hash_type), text.encode(), hash_type).hexdigest()


def parse_date(raw_date: str) -> datetime | None:
    """Parse a Date header like the manager (dateutil, naive means UTC); None if unparsable."""
    try:
        date = date_parser.parse(raw_date)
    except (ValueError, OverflowError):
        return None
    if date.tzinfo is None:
        date = date.replace(tzinfo=tzutc())
    return date


def date_in_window(date: datetime, now: datetime | None = None) -> bool:
    """Strictly within ±15 minutes of now."""
    now = now or datetime.now(UTC)
    return now - DATE_WINDOW < date < now + DATE_WINDOW


def parse_authorization(header: str) -> tuple[str, str, str]:
    """Split ``BackendAI signMethod=HMAC-SHA256, credential=AK:SIG`` into its three parts."""
    pieces = header.split(" ", 1)
    if len(pieces) != 2:
        raise invalid_auth_params("Malformed authorization header")
    auth_type, auth_str = pieces
    if auth_type not in ("BackendAI", "Sorna"):
        raise invalid_auth_params("Invalid authorization type name")
    params: dict[str, str] = {}
    for raw in auth_str.split(","):
        key, sep, value = raw.strip().partition("=")
        if not sep:
            raise invalid_auth_params("Missing or malformed authorization parameters")
        params[key.strip()] = value.strip()
    try:
        access_key, signature = params["credential"].split(":", 1)
        return params["signMethod"], access_key, signature
    except (KeyError, ValueError) as exc:
        raise invalid_auth_params("Missing or malformed authorization parameters") from exc


def claimed_access_key(headers: Mapping[str, str]) -> str | None:
    """The access key a request claims, unverified (for fault targeting and the request log)."""
    header = headers.get("Authorization")
    if not header:
        return None
    try:
        return parse_authorization(header)[1]
    except ApiError:
        return None


def hash_type_of(sign_method: str) -> str:
    """``HMAC-SHA256`` → ``sha256``, rejecting what the manager rejects."""
    try:
        mac_type, hash_type = (part.lower() for part in sign_method.split("-"))
    except ValueError as exc:
        raise auth_failed("Invalid signature") from exc
    if mac_type != "hmac":
        raise invalid_auth_params("Unsupported request signing method (MAC type)")
    if hash_type not in hashlib.algorithms_guaranteed:
        raise invalid_auth_params("Unsupported request signing method (hash type)")
    return hash_type


def verify(
    *,
    method: str,
    raw_path_qs: str,
    host: str,
    content_type: str,
    headers: Mapping[str, str],
    secrets_by_access_key: Mapping[str, str],
    now: datetime | None = None,
) -> str:
    """
    Authenticate a request and return its access key, raising the manager's errors in its order.

    Order as in the manager: Date window, Authorization syntax, access key, then signature.
    A request without ``Authorization`` is the caller's job (it answers 401 "Unauthorized access").
    """
    raw_date = headers.get("Date") or headers.get("X-BackendAI-Date") or headers.get("X-Sorna-Date")
    date = parse_date(raw_date) if raw_date else None
    if raw_date is None or date is None or not date_in_window(date, now):
        raise invalid_auth_params("Date/time sync error")
    sign_method, access_key, signature = parse_authorization(headers.get("Authorization", ""))
    secret_key = secrets_by_access_key.get(access_key)
    if secret_key is None:
        raise auth_failed("Access key not found in HMAC")
    hash_type = hash_type_of(sign_method)
    api_version = headers.get("X-BackendAI-Version")
    if api_version is None:
        raise invalid_auth_params("API version missing in request headers")
    expected = compute_signature(
        secret_key,
        method=method,
        raw_path_qs=raw_path_qs,
        raw_date=raw_date,
        date=date,
        host=host,
        content_type=content_type,
        api_version=api_version,
        hash_type=hash_type,
    )
    if not secrets.compare_digest(expected, signature):
        raise auth_failed("HMAC signature mismatch")
    return access_key


def signed_headers(
    method: str,
    url: str,
    access_key: str,
    secret_key: str,
    *,
    date: datetime | None = None,
    api_version: str = "v9.20250722",
    content_type: str = "application/json",
) -> dict[str, str]:
    """Headers that sign ``method url`` like the SDK; tests use it to craft requests by hand."""
    date = date or datetime.now(UTC)
    parsed = URL(url)
    raw_date = date.isoformat()
    host = parsed.raw_authority
    signature = compute_signature(
        secret_key,
        method=method,
        raw_path_qs=str(parsed.relative()),
        raw_date=raw_date,
        date=date,
        host=host,
        content_type=content_type,
        api_version=api_version,
    )
    return {
        "Date": raw_date,
        "Content-Type": content_type,
        "X-BackendAI-Version": api_version,
        "Authorization": f"BackendAI signMethod=HMAC-SHA256, credential={access_key}:{signature}",
    }
