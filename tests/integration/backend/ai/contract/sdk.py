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
"""SDK-level helpers shared by the contract tests (no Airflow imports).

Everything here works with backend.ai-client 25.5.2 and 26.9.6 and against the emulator or a real
manager: sessions are addressed with the portable reference, results read from GraphQL, and every
wait polls with a deadline.
"""

from __future__ import annotations

import contextlib
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from unittest import mock

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.func.session import ComputeSession
from ai.backend.client.session import AsyncSession, Session

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from backend_ai_emulator import EmulatorHandle

T = TypeVar("T")

GQL_SESSION = (
    "query($id: UUID!) { compute_session(id: $id) "
    "{ id name status status_info status_data result type created_at terminated_at } }"
)
DEAD = ("TERMINATED", "CANCELLED", "ERROR")


@dataclass
class ContractTarget:
    """Where the contract suite runs: the in-process emulator or a real manager from the environment."""

    endpoint: str
    access_key: str
    secret_key: str
    image: str
    other_access_key: str | None = None
    other_secret_key: str | None = None
    emulator: EmulatorHandle | None = None
    #: A superadmin keypair (preemption settings); None when the environment names none.
    admin_access_key: str | None = None
    admin_secret_key: str | None = None
    #: CPU slots of the resource group's agent, so a test can ask for more than half of it.
    agent_cpu: int | None = None
    created: list[uuid.UUID] = field(default_factory=list)

    @property
    def is_emulator(self) -> bool:
        return self.emulator is not None

    @property
    def timeout(self) -> float:
        """Deadline for one session to go from create to a result (a real manager takes ~15 s)."""
        return 15.0 if self.is_emulator else 90.0

    @property
    def poll_interval(self) -> float:
        return 0.02 if self.is_emulator else 0.5

    def config(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        read_timeout: float = 60.0,
        endpoint: str | None = None,
    ) -> APIConfig:
        return make_config(
            endpoint or self.endpoint,
            access_key or self.access_key,
            secret_key or self.secret_key,
            read_timeout=read_timeout,
        )


def make_config(endpoint: str, access_key: str, secret_key: str, *, read_timeout: float = 60.0) -> APIConfig:
    """An explicit APIConfig that does not read a ``.env`` file (the SDK loads one with override=True)."""
    with mock.patch("ai.backend.client.config.load_dotenv", return_value=False):
        return APIConfig(
            endpoint=endpoint,
            endpoint_type="api",
            access_key=access_key,
            secret_key=secret_key,
            domain="default",
            group="default",
            read_timeout=read_timeout,
            connection_timeout=5.0,
        )


@contextlib.contextmanager
def open_session(config: APIConfig) -> Iterator[Session]:
    """A sync SDK session, opened and closed in the calling thread; version warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = Session(config=config)
        session.open()
    try:
        yield session
    finally:
        session.close()


@contextlib.asynccontextmanager
async def open_async_session(config: APIConfig) -> Any:
    """An AsyncSession built inside the running loop (the SDK requires that)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = AsyncSession(config=config)
        await session.open()
    try:
        yield session
    finally:
        await session.close()


def session_ref(session_id: uuid.UUID | str) -> ComputeSession:
    """The portable reference: 25.5.2 puts ``name`` in the URL, 26.9.6 puts ``id``; both get the UUID."""
    ref = ComputeSession(str(session_id))
    ref.id = uuid.UUID(str(session_id))
    return ref


PERMISSION_READ = "<Permission.READ: 1>"
PERMISSION_SOFT_DELETE = "<Permission.SOFT_DELETE: 8>"


def assert_not_enough_permission(
    status: int, data: Any, session_id: uuid.UUID | str, permission: str = PERMISSION_READ
) -> None:
    """
    The manager's RBAC answer to a USER keypair naming a session UUID it cannot see.

    Unknown and other users' sessions answer alike (the permission check comes before the lookup):
    403 not-enough-permission, not 404. A superadmin gets 404 object-not-found instead.
    """
    assert status == 403, data
    assert data["type"] == "https://api.backend.ai/probs/not-enough-permission", data
    assert data["title"] == "Insufficient permission to perform this operation."
    assert data["error_code"] == "permission_access_forbidden"
    assert data["msg"].startswith("User "), data
    assert data["msg"].endswith(f" lacks permission {permission} on session {session_id}"), data


def unique_name(prefix: str = "ct") -> str:
    """A session name valid for the manager (4-64 chars) and unique per call."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def poll(fn: Callable[[], T | None], timeout: float, interval: float, what: str) -> T:
    """Call ``fn`` until it returns something other than None; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def query_session(session: Session, session_id: uuid.UUID | str) -> dict[str, Any] | None:
    """GraphQL ``compute_session``: works in every status, including after termination."""
    data = session.Admin.query(GQL_SESSION, {"id": str(session_id)})
    result: dict[str, Any] | None = data["compute_session"]
    return result


def wait_for_result(session: Session, target: ContractTarget, session_id: uuid.UUID | str) -> dict[str, Any]:
    """Poll GraphQL until the batch result is known (or the session ended without one)."""

    def _check() -> dict[str, Any] | None:
        row = query_session(session, session_id)
        if row is not None and (row["result"] != "UNDEFINED" or row["status"] in DEAD):
            return row
        return None

    return poll(_check, target.timeout, target.poll_interval, f"the result of session {session_id}")


def wait_for_status(
    session: Session, target: ContractTarget, session_id: uuid.UUID | str, *statuses: str
) -> dict[str, Any]:
    """Poll GraphQL until the session's status is one of ``statuses``."""

    last: dict[str, Any] | None = None

    def _check() -> dict[str, Any] | None:
        nonlocal last
        last = query_session(session, session_id)
        return last if last is not None and last["status"] in statuses else None

    try:
        return poll(_check, target.timeout, target.poll_interval, f"session {session_id} to reach {statuses}")
    except AssertionError as exc:
        # Say where the manager left the session: a stall in TERMINATING is the manager's, not the test's.
        raise AssertionError(f"{exc}; the last read said {last}") from None


def wait_gone(session: Session, target: ContractTarget, ref: ComputeSession) -> BackendAPIError:
    """Poll ``get_info`` until it answers 404 (the session is TERMINATED or CANCELLED)."""

    def _check() -> BackendAPIError | None:
        try:
            ref.get_info()
        except BackendAPIError as exc:
            if exc.status == 404:
                return exc
            raise
        return None

    return poll(_check, target.timeout, target.poll_interval, "get_info to answer 404")


def create_batch(session: Session, target: ContractTarget, command: str, **kwargs: Any) -> ComputeSession:
    """``get_or_create`` a batch job (enqueue-only) on the target's image and remember it for cleanup."""
    kwargs.setdefault("name", unique_name())
    kwargs.setdefault("enqueue_only", True)
    kwargs.setdefault("type_", "batch")
    created = session.ComputeSession.get_or_create(target.image, startup_command=command, **kwargs)
    target.created.append(uuid.UUID(str(created.id)))
    return created


def destroy_quietly(config: APIConfig, session_ids: list[uuid.UUID]) -> None:
    """Force-destroy sessions, ignoring the ones already gone (test cleanup)."""
    if not session_ids:
        return
    with open_session(config):
        for session_id in session_ids:
            with contextlib.suppress(BackendAPIError):
                session_ref(session_id).destroy(forced=True)


def live_processes_in_group(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies (Linux ``/proc``).

    Killed grandchildren of a job are re-parented to PID 1, which in some sandboxes never reaps them:
    they stay as harmless zombies, so "no process left" means "no live process left".
    """
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive
