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
Helpers of the busy-cluster contract tests (preemption, priorities, queueing), SDK only, async.

They work against the emulator and a real manager alike: preemption is switched through the admin
GraphQL mutation both serve, sessions with ``job_priority``/``is_preemptible`` are created with the
SDK's own signed ``Request`` (``get_or_create`` cannot send the two fields), and the newer GraphQL schema
(``/admin/gql/strawberry``) is read the same way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.func.session import ComputeSession
from ai.backend.client.request import Request

from .sdk import open_async_session, session_ref, unique_name

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from .sdk import ContractTarget

LEGACY = (
    "query($id: UUID!) { compute_session(id: $id) "
    "{ id status status_info status_data status_history starts_at result } }"
)
NODE = "query($id: GlobalIDField!) { compute_session_node(id: $id) { status queue_position status_data } }"
SESSION_V2 = (
    "query($id: UUID!) { sessionV2(id: $id) { metadata { jobPriority isPreemptible } "
    "lifecycle { status result startsAt } } }"
)
HISTORY = (
    "query($sid: UUID!) { sessionScopedSchedulingHistories(scope: {sessionId: $sid}, "
    "orderBy: [{field: CREATED_AT, direction: ASC}]) { count edges { node { phase fromStatus toStatus "
    "result errorCode message attempts createdAt updatedAt subSteps { step result errorCode message } } } } }"
)
PREEMPTION_FIELDS = "enabled mode order victimScope preemptiblePriority preemptionMinRuntime"
READ_GROUP = (
    f'{{ adminResourceGroupV2(name: "default") {{ scheduler {{ preemption {{ {PREEMPTION_FIELDS} }} }} }} }}'
)
UPDATE_GROUP = (
    "mutation($p: PreemptionConfigInput!) { adminUpdateResourceGroup(input: "
    '{resourceGroupName: "default", preemption: $p}) '
    f"{{ resourceGroup {{ scheduler {{ preemption {{ {PREEMPTION_FIELDS} }} }} }} }} }}"
)


async def strawberry(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST the newer GraphQL schema with the current session's keypair; the whole answer."""
    request = Request("POST", "/admin/gql/strawberry")
    request.set_json({"query": query, "variables": variables or {}})
    async with request.fetch() as resp:
        answer: dict[str, Any] = await resp.json()
    return answer


async def legacy(session: Any, session_id: uuid.UUID) -> dict[str, Any]:
    """The legacy ``compute_session`` row."""
    row: dict[str, Any] = (await session.Admin.query(LEGACY, {"id": str(session_id)}))["compute_session"]
    return row


async def node(session: Any, session_id: uuid.UUID) -> dict[str, Any]:
    """``compute_session_node``: the relay node, the one with ``queue_position``."""
    ref = base64.b64encode(f"compute_session_node:{session_id}".encode()).decode()
    answer: dict[str, Any] = (await session.Admin.query(NODE, {"id": ref}))["compute_session_node"]
    return answer


async def history(session_id: uuid.UUID) -> list[dict[str, Any]]:
    """The session's scheduling history, oldest first."""
    answer = await strawberry(HISTORY, {"sid": str(session_id)})
    assert answer["errors"] is None, answer
    return [edge["node"] for edge in answer["data"]["sessionScopedSchedulingHistories"]["edges"]]


async def priority_fields(session_id: uuid.UUID) -> dict[str, Any]:
    """``{"jobPriority": …, "isPreemptible": …}`` as the manager stored them."""
    answer = await strawberry(SESSION_V2, {"id": str(session_id)})
    assert answer["errors"] is None, answer
    metadata: dict[str, Any] = answer["data"]["sessionV2"]["metadata"]
    return metadata


async def create(
    target: ContractTarget,
    command: str,
    *,
    cpu: int = 1,
    job_priority: Any = None,
    is_preemptible: Any = None,
    extra: dict[str, Any] | None = None,
) -> uuid.UUID:
    """
    ``POST /session`` with the body ``get_or_create`` sends for a batch job, plus the preemption fields.

    A value of None leaves a field out. The session is remembered for the cleanup.
    """
    body: dict[str, Any] = {
        "tag": None,
        "name": unique_name("busy"),
        "config": {"mounts": [], "environ": {}, "resources": {"cpu": cpu, "mem": "1g"}, "resource_opts": {}},
        "clusterSize": 1,
        "clusterMode": "single-node",
        "domain": "default",
        "group": "default",
        "type": "batch",
        "enqueueOnly": True,
        "maxWaitSeconds": 0,
        "reuseIfExists": True,
        "startupCommand": command,
        "image": target.image,
    }
    if job_priority is not None:
        body["job_priority"] = job_priority
    if is_preemptible is not None:
        body["is_preemptible"] = is_preemptible
    body.update(extra or {})
    request = Request("POST", "/session")
    request.set_json(body)
    async with request.fetch() as resp:
        data = await resp.json()
    session_id = uuid.UUID(data["sessionId"])
    target.created.append(session_id)
    return session_id


async def until(
    check: Callable[[], Awaitable[Any]], target: ContractTarget, what: str, timeout: float | None = None
) -> Any:
    """Poll ``check`` until it returns something truthy; AssertionError at the deadline."""
    limit = timeout if timeout is not None else target.timeout
    deadline = time.monotonic() + limit
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what}")
        await asyncio.sleep(target.poll_interval)


async def until_status(
    session: Any, target: ContractTarget, session_id: uuid.UUID, *statuses: str, timeout: float | None = None
) -> dict[str, Any]:
    """Poll the legacy row until the status is one of ``statuses``."""

    async def check() -> dict[str, Any] | None:
        row = await legacy(session, session_id)
        return row if row["status"] in statuses else None

    row: dict[str, Any] = await until(check, target, f"session {session_id} to reach {statuses}", timeout)
    return row


async def read_logs(session_id: uuid.UUID) -> str | int:
    """The log text, or the HTTP status of the error answer."""
    try:
        answer = await session_ref(session_id).get_logs()
    except BackendAPIError as exc:
        return int(exc.status)
    text: str = answer["result"]["logs"]
    return text


@dataclass
class EventLog:
    """Every session event the caller's wildcard stream delivered, in order, with the arrival time."""

    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    def of(self, session_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
        """(name, payload) of one session's events, kernel events included."""
        return [(name, data) for _, name, data in self.events if data.get("sessionId") == str(session_id)]

    def names(self, session_id: uuid.UUID) -> list[str]:
        return [name for name, _ in self.of(session_id)]

    def reason(self, session_id: uuid.UUID, name: str, nth: int = 0) -> str | None:
        reasons = [data.get("reason") for event, data in self.of(session_id) if event == name]
        return reasons[nth] if len(reasons) > nth else None


@contextlib.asynccontextmanager
async def recorded_events() -> AsyncIterator[EventLog]:
    """Record the wildcard event stream (it has no replay: open it before creating anything)."""
    log = EventLog()
    opened = asyncio.Event()

    async def _read() -> None:
        async with ComputeSession("*").listen_events() as stream:
            opened.set()
            async for msg in stream:
                log.events.append((time.monotonic(), msg.event, json.loads(msg.data) if msg.data else {}))

    reader = asyncio.ensure_future(_read())
    try:
        await asyncio.wait_for(opened.wait(), 10)
        yield log
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


class PreemptionSwitch:
    """Turn preemption of the ``default`` resource group on and off through the admin API."""

    def __init__(self, target: ContractTarget) -> None:
        assert target.admin_access_key is not None
        assert target.admin_secret_key is not None
        self._config = target.config(access_key=target.admin_access_key, secret_key=target.admin_secret_key)
        self.original: dict[str, Any] | None = None

    async def _admin(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        async with open_async_session(self._config):
            answer = await strawberry(query, variables)
        assert answer["errors"] is None, answer
        return answer["data"]

    async def read(self) -> dict[str, Any]:
        """The current preemption settings (``enabled``, ``mode``, ``order``, ...)."""
        data = await self._admin(READ_GROUP)
        config: dict[str, Any] = data["adminResourceGroupV2"]["scheduler"]["preemption"]
        return config

    async def set(self, enabled: bool, mode: str = "TERMINATE", **options: Any) -> dict[str, Any]:
        """Replace the settings (the mutation replaces all of them; unnamed options get defaults)."""
        if self.original is None:
            self.original = await self.read()
        config = {
            "enabled": enabled,
            "mode": mode,
            "order": options.get("order", "OLDEST"),
            "victimScope": options.get("victimScope", "USER"),
            "preemptiblePriority": options.get("preemptiblePriority", 5),
            "preemptionMinRuntime": options.get("preemptionMinRuntime", 0),
        }
        data = await self._admin(UPDATE_GROUP, {"p": config})
        stored: dict[str, Any] = data["adminUpdateResourceGroup"]["resourceGroup"]["scheduler"]["preemption"]
        return stored

    async def restore(self) -> None:
        """Put back what :meth:`set` found the first time."""
        if self.original is None:
            return
        original, self.original = self.original, None
        await self.set(
            original["enabled"],
            original["mode"],
            order=original["order"],
            victimScope=original["victimScope"],
            preemptiblePriority=original["preemptiblePriority"],
            preemptionMinRuntime=original["preemptionMinRuntime"],
        )


def rerun_command(marker: str) -> str:
    """
    A job that behaves differently when it runs again: long the first time, short on a rerun.

    The first run leaves a marker file and sleeps (so it is RUNNING when it is preempted); a rerun finds
    the marker, removes it and ends at once. Both print which run they are.
    """
    path = f"/tmp/{marker}"
    return (
        f"if [ -e {path} ]; then rm -f {path}; echo rerun-$BACKENDAI_SESSION_ID; "
        f"else touch {path}; echo first-run; sleep 600; fi"
    )
