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
Create a session with ``job_priority`` and ``is_preemptible``, which ``get_or_create`` cannot send.

Backend.AI 26.8 added both fields to ``POST /session`` (snake_case only: ``jobPriority`` is silently
ignored), but no SDK's ``ComputeSession.get_or_create`` sends them. :func:`create_session` builds the
body ``get_or_create`` builds, key for key on both SDK lines (25.5: API v8, no ``mount_ids``; 26.x: API
v9), adds the two fields, and sends it with the SDK's own signed ``Request``, so auth, version headers,
timeouts and error mapping stay the SDK's. Like an SDK API function it returns the ``ComputeSession``
at once under a sync ``Session`` and a coroutine under an ``AsyncSession``.

A manager older than 26.8 does not know the fields: 25.x-26.2 reject the whole request (400 "Input
validation error", their create schema allows no extra key) and 26.3-26.7 drop them silently, so the
session would run with the defaults (priority 0, preemptible) without a word. :func:`create_session`
therefore asks the manager its version first (a signed ``GET /``), and only when one of the fields is
given, and refuses with :class:`~airflow.providers.backend.ai.exceptions.BackendAIManagerVersionError`
before any session exists.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from airflow.providers.backend.ai._sdk.client import like_an_api_function
from airflow.providers.backend.ai._session.params import check_is_preemptible, check_job_priority
from airflow.providers.backend.ai.exceptions import BackendAIManagerVersionError

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from ai.backend.client.func.session import ComputeSession

__all__ = [
    "MIN_MANAGER_FOR_PREEMPTION_FIELDS",
    "build_create_body",
    "create_session",
    "manager_supports_preemption_fields",
]

#: The first manager release whose ``POST /session`` reads ``job_priority`` and ``is_preemptible``.
MIN_MANAGER_FOR_PREEMPTION_FIELDS = (26, 8)
_VERSION_RE = re.compile(r"^\s*v?(\d+)\.(\d+)")
#: ``get_or_create`` keyword arguments :func:`build_create_body` understands (the rest are refused).
_KNOWN = frozenset(
    {
        "name",
        "type_",
        "priority",
        "starts_at",
        "enqueue_only",
        "max_wait",
        "no_reuse",
        "dependencies",
        "callback_url",
        "mounts",
        "mount_map",
        "mount_options",
        "mount_ids",
        "mount_id_map",
        "envs",
        "startup_command",
        "batch_timeout",
        "resources",
        "resource_opts",
        "cluster_size",
        "cluster_mode",
        "domain_name",
        "group_name",
        "bootstrap_script",
        "tag",
        "architecture",
        "scaling_group",
        "owner_access_key",
        "preopen_ports",
        "assign_agent",
        "attach_network",
    }
)


def manager_supports_preemption_fields(manager_version: str) -> bool:
    """Whether a manager of this version (``GET /``'s ``manager``, e.g. ``"26.9.6"``) reads the fields."""
    match = _VERSION_RE.match(manager_version or "")
    if match is None:
        return False
    return (int(match.group(1)), int(match.group(2))) >= MIN_MANAGER_FOR_PREEMPTION_FIELDS


def _sdk_sends_mount_ids() -> bool:
    """SDK 26 always sends ``config.mount_ids``/``mount_id_map``; 25.5 has neither."""
    from ai.backend.client.func.session import ComputeSession

    return "mount_ids" in inspect.signature(ComputeSession.get_or_create).parameters


def _mount_option(value: Any) -> Any:
    """SDK 26 sends ``MountOption.model_dump(exclude_none=True)``; SDK 25 sends the mapping as given."""
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else value


def build_create_body(
    api_version: tuple[int, str],
    image: str,
    *,
    config_domain: str | None = None,
    config_group: str | None = None,
    config_vfolder_mounts: Sequence[str] = (),
    job_priority: int | None = None,
    is_preemptible: bool | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """
    The ``POST /session`` body ``ComputeSession.get_or_create(image, **kwargs)`` sends, plus the two fields.

    ``api_version`` is the negotiated version (``api_session.get().api_version``); ``config_*`` are what
    ``get_or_create`` reads from the ``APIConfig`` (domain and group when not given, vfolders to mount).
    ``name`` is required (``get_or_create`` would invent one with Faker). Unlike the SDK, the caller's
    ``mounts`` list is not modified.
    """
    from ai.backend.common.arch import DEFAULT_IMAGE_ARCH
    from ai.backend.common.types import ClusterMode

    unknown = sorted(set(kwargs) - _KNOWN)
    if unknown:
        raise TypeError(f"build_create_body() got unexpected keyword arguments: {', '.join(unknown)}")
    name = kwargs.get("name")
    if not isinstance(name, str) or not 4 <= len(name) <= 64:
        raise ValueError(f"Invalid name {name!r}: expected a session name of 4 to 64 characters")
    get = kwargs.get
    domain_name = get("domain_name") if get("domain_name") is not None else config_domain
    group_name = get("group_name") if get("group_name") is not None else config_group
    mounts = [*(get("mounts") or []), *config_vfolder_mounts]
    config: dict[str, Any] = {"mounts": mounts}
    with_mount_ids = _sdk_sends_mount_ids()
    if with_mount_ids:
        config["mount_ids"] = list(get("mount_ids") or [])
    elif get("mount_ids") or get("mount_id_map"):
        raise ValueError("mount_ids and mount_id_map need backend.ai-client 26 or later")
    config.update(
        {
            "environ": get("envs"),
            "resources": dict(get("resources") or {}),
            "resource_opts": dict(get("resource_opts") or {}),
            "scalingGroup": get("scaling_group"),
        }
    )
    body: dict[str, Any] = {"tag": get("tag"), "name" if api_version[0] > 4 else "clientSessionToken": name}
    body["config"] = config
    if api_version >= (8, "20240915"):
        if get("batch_timeout") is not None:
            body["batch_timeout"] = get("batch_timeout")
        if get("priority") is not None:
            body["priority"] = get("priority")
        config["attach_network"] = get("attach_network")
    if api_version >= (6, "20220315"):
        body["dependencies"] = get("dependencies")
        body["callback_url"] = get("callback_url")
        body["architecture"] = get("architecture", DEFAULT_IMAGE_ARCH)
    if api_version >= (6, "20200815"):
        body["clusterSize"] = get("cluster_size", 1)
        body["clusterMode"] = get("cluster_mode", ClusterMode.SINGLE_NODE)
    else:
        config["clusterSize"] = get("cluster_size", 1)
    if api_version >= (5, "20191215"):
        body["starts_at"] = get("starts_at")
        body["bootstrap_script"] = get("bootstrap_script")
        config["mount_map"] = dict(get("mount_map") or {})
        if with_mount_ids:
            config["mount_id_map"] = dict(get("mount_id_map") or {})
        options = get("mount_options") or {}
        config["mount_options"] = {key: _mount_option(value) for key, value in options.items()}
        config["preopen_ports"] = get("preopen_ports")
        if get("assign_agent") is not None:
            config["agentList"] = get("assign_agent")
    if api_version >= (4, "20190615"):
        body.update(
            {
                "owner_access_key": get("owner_access_key"),
                "domain": domain_name,
                "group": group_name,
                "type": get("type_", "interactive"),
                "enqueueOnly": get("enqueue_only", False),
                "maxWaitSeconds": get("max_wait", 0),
                "reuseIfExists": not get("no_reuse", False),
                "startupCommand": get("startup_command"),
            }
        )
    body["image" if api_version > (4, "20181215") else "lang"] = image
    if job_priority is not None:
        body["job_priority"] = check_job_priority(job_priority)
    if is_preemptible is not None:
        body["is_preemptible"] = check_is_preemptible(is_preemptible)
    return body


async def _manager_version() -> str:
    """The manager's release (signed ``GET /``: counts against the keypair, not the anonymous limit)."""
    from ai.backend.client.request import Request

    async with Request("GET", "/").fetch() as resp:
        answer = await resp.json()
    return str(answer.get("manager", "")) if isinstance(answer, Mapping) else ""


async def _create(
    image: str, job_priority: int | None, is_preemptible: bool | None, kwargs: dict[str, Any]
) -> ComputeSession:
    from ai.backend.client.func.session import ComputeSession
    from ai.backend.client.request import Request
    from ai.backend.client.session import api_session
    from ai.backend.client.versioning import get_naming

    session = api_session.get(None)
    if session is None:  # pragma: no cover - create_session checks first
        raise RuntimeError("create_session must be called inside an SDK Session or AsyncSession")
    config = session.config
    body = build_create_body(
        session.api_version,
        image,
        config_domain=config.domain,
        config_group=config.group,
        config_vfolder_mounts=list(config.vfolder_mounts),
        job_priority=job_priority,
        is_preemptible=is_preemptible,
        **kwargs,
    )
    if job_priority is not None or is_preemptible is not None:
        version = await _manager_version()
        if not manager_supports_preemption_fields(version):
            given = [
                n
                for n, v in (("job_priority", job_priority), ("is_preemptible", is_preemptible))
                if v is not None
            ]
            raise BackendAIManagerVersionError(given, version or "unknown", MIN_MANAGER_FOR_PREEMPTION_FIELDS)
    request = Request("POST", f"/{get_naming(session.api_version, 'path')}")
    request.set_json(body)
    async with request.fetch() as resp:
        data = await resp.json()
    created = ComputeSession(body.get("name") or body["clientSessionToken"], body.get("owner_access_key"))
    if session.api_version[0] >= 5:
        created.id = UUID(data["sessionId"])
    created.created = data.get("created", True)
    created.status = data.get("status", "RUNNING")
    created.service_ports = data.get("servicePorts", [])
    # As get_or_create does: None when neither the call nor the APIConfig named one.
    created.domain = cast("str", body.get("domain"))
    created.group = cast("str", body.get("group"))
    return created


def create_session(
    image: str,
    *,
    job_priority: int | None = None,
    is_preemptible: bool | None = None,
    **kwargs: Any,
) -> ComputeSession | Coroutine[Any, Any, ComputeSession]:
    """
    ``ComputeSession.get_or_create(image, **kwargs)`` that also sends ``job_priority``/``is_preemptible``.

    ``None`` leaves a field out (the manager's default: 0 and True), so a call without them sends what
    ``get_or_create`` sends, to any manager. The values are checked before anything is sent. Under a sync
    ``Session`` the created ``ComputeSession`` is returned; under an ``AsyncSession``, a coroutine.
    """
    if job_priority is not None:
        check_job_priority(job_priority)
    if is_preemptible is not None:
        check_is_preemptible(is_preemptible)
    result: ComputeSession | Coroutine[Any, Any, ComputeSession] = like_an_api_function(
        _create(image, job_priority, is_preemptible, kwargs)
    )
    return result
