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
The API operations the hook runs: each written once for the sync and the async SDK session.

The SDK's API functions run synchronously under a ``Session`` and return a coroutine under an
``AsyncSession``, so one :class:`Operation` serves both; only the hook's runner differs. Sessions are read
over GraphQL: unlike ``GET /session/{id}`` it still answers after the session terminated, and it is the only
place the manager reports a batch job's ``result``.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from airflow.providers.backend.ai._sdk.client import session_ref
from airflow.providers.backend.ai._session.slots import parse_slot_list
from airflow.providers.backend.ai._session.state import SessionFacts
from airflow.providers.backend.ai.exceptions import (
    BackendAINotFoundError,
    BackendAISessionExistsError,
    BackendAISessionNotVisibleError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig
    from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec

T = TypeVar("T")

#: GraphQL read of one session's outcome.
STATUS_QUERY = "query($id: UUID!) { compute_session(id: $id) { id name status status_info result } }"
#: GraphQL search of the caller's sessions by name (names are only unique among live sessions).
FIND_QUERY = (
    "query($filter: String) { compute_session_list(limit: 100, offset: 0, filter: $filter) "
    "{ items { id name tag status status_info result created_at } total_count } }"
)
#: A session id that cannot exist, for the connection test's authenticated probe.
NIL_SESSION_ID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Operation(Generic[T]):
    """
    One API operation: what it does (in words, for errors), the SDK call, and how to read its answer.

    :param if_gone: the result when the manager answers that the object does not exist (else it raises).
    """

    action: str
    call: Callable[[], Any]
    parse: Callable[[Any], T]
    if_gone: Callable[[], T] | None = None

    def when_missing(self, error: BackendAINotFoundError) -> T:
        """The result when the manager says the object does not exist, or ``error`` raised again."""
        if self.if_gone is None or isinstance(error, BackendAISessionNotVisibleError):
            raise error  # a session this keypair may not see is not gone: nothing was done to it
        return self.if_gone()


@dataclass(frozen=True)
class CreatedSession:
    """A session as ``get_or_create`` answered: ``created`` is False when a live session was reused."""

    session_id: str
    name: str
    created: bool
    status: str


def create(spec: BatchSessionSpec) -> Operation[CreatedSession]:
    """
    Create the session; a live session of the same name that this call did not make is an error.

    When an attempt gets no answer although the server created the session, the next attempt finds it by
    its name and the spec's tag and adopts it (``created`` is then False). The server would reuse a live
    session of that name by itself, but not one whose job has already ended: creating again would run the
    job twice.
    """
    attempts = 0

    def get_or_create() -> Any:
        from ai.backend.client.func.session import ComputeSession

        return ComputeSession.get_or_create(spec.image, **spec.to_sdk_kwargs())

    def adopt_or_create(answer: Any) -> Any:
        item = newest_session(answer, spec.name, spec.tag)
        return get_or_create() if item is None else facts_of(item)

    def call() -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return get_or_create()
        return _then(admin().query(FIND_QUERY, _name_filter(spec.name)), adopt_or_create)

    def parse(session: Any) -> CreatedSession:
        if isinstance(session, SessionFacts):  # made by an earlier, unanswered attempt
            return CreatedSession(session.session_id, spec.name, created=False, status=session.status)
        created = CreatedSession(
            session_id=str(session.id),
            name=str(session.name),
            created=bool(getattr(session, "created", True)),
            status=str(getattr(session, "status", "PENDING")),
        )
        if not created.created:
            raise BackendAISessionExistsError(created.name, created.session_id)
        return created

    return Operation(f"create batch session {spec.name!r}", call, parse)


def read_facts(session_id: str) -> Operation[SessionFacts]:
    def parse(answer: Any) -> SessionFacts:
        node = (answer or {}).get("compute_session")
        if not node:
            raise BackendAINotFoundError(f"read session {session_id}", status=404, title="No such session.")
        return SessionFacts.from_graphql(session_id, node)

    return Operation(
        f"read the status of session {session_id}",
        lambda: admin().query(STATUS_QUERY, {"id": session_id}),
        parse,
    )


def find(name: str, tag: str | None = None) -> Operation[SessionFacts]:
    def parse(answer: Any) -> SessionFacts:
        item = newest_session(answer, name, tag)
        if item is None:
            raise BackendAINotFoundError(
                f"find session {name!r}", status=404, title="No session has this name."
            )
        return facts_of(item)

    return Operation(f"find session {name!r}", lambda: admin().query(FIND_QUERY, _name_filter(name)), parse)


def read_logs(session_id: str) -> Operation[str]:
    def parse(answer: Any) -> str:
        logs = ((answer or {}).get("result") or {}).get("logs")
        return logs if isinstance(logs, str) else ""

    return Operation(
        f"fetch the log of session {session_id}", lambda: session_ref(session_id).get_logs(), parse
    )


def destroy(session_id: str, forced: bool) -> Operation[bool]:
    """
    Destroy a session: True when the manager ended it, False when there was nothing to end.

    The manager answers ``{"stats": {"status": "terminated"}}`` (or ``cancelled``) for a session it ends, and
    ``{"stats": {}}`` for the caller's own session that had already ended; a name no live session has is
    a 404. A session the keypair may not see (unknown UUID, another keypair's) is a 403, raised as
    :class:`~airflow.providers.backend.ai.exceptions.BackendAISessionNotVisibleError`: never "gone".
    """
    return Operation(
        f"destroy session {session_id}",
        lambda: session_ref(session_id).destroy(forced=forced),
        lambda answer: bool(((answer or {}).get("stats") or {}).get("status")),
        if_gone=lambda: False,
    )


def resource_slots() -> Operation[tuple[str, ...]]:
    """The resource slot names the manager knows (``GET /config/resource-slots``), in its order."""

    def call() -> Any:
        from ai.backend.client.func.resource import Resource

        return Resource.get_resource_slots()

    return Operation("list the resource slots the manager knows", call, parse_slot_list)


def hello() -> Operation[dict[str, Any]]:
    """The manager's unauthenticated greeting: its version and API version."""

    def call() -> Any:
        from ai.backend.client.func.session import ComputeSession

        return ComputeSession.hello()

    return Operation("reach the manager", call, dict)


def connected_message(settings: BackendAIConnectionConfig, info: dict[str, Any]) -> str:
    """What a successful connection test says, from the manager's greeting (:func:`hello`)."""
    return (
        f"Connected to Backend.AI manager {info.get('manager', 'unknown')} at {settings.endpoint} "
        f"(API {info.get('version', 'unknown')}); access key {settings.access_key} accepted."
    )


def authenticated_probe() -> Operation[Any]:
    """A read-only GraphQL query for a session that cannot exist: answered only once the signature checked out."""
    return Operation(
        "authenticate with the keypair",
        lambda: admin().query(STATUS_QUERY, {"id": NIL_SESSION_ID}),
        lambda answer: answer,
    )


def newest_session(answer: Any, name: str, tag: str | None) -> dict[str, Any] | None:
    """The newest item of a :data:`FIND_QUERY` answer named ``name`` (and tagged ``tag``), if any."""
    items = ((answer or {}).get("compute_session_list") or {}).get("items") or []
    matches = [item for item in items if item.get("name") == name and (tag is None or item.get("tag") == tag)]
    return max(matches, key=lambda item: str(item.get("created_at") or ""), default=None)


def facts_of(item: dict[str, Any]) -> SessionFacts:
    """The facts of one ``compute_session_list`` item."""
    return SessionFacts.from_graphql(str(item.get("id")), item)


def admin() -> Any:
    """The SDK's GraphQL entry point."""
    from ai.backend.client.func.admin import Admin

    return Admin


def _name_filter(name: str) -> dict[str, Any]:
    return {"filter": f"name == {json.dumps(name)}"}


def _then(result: Any, next_step: Callable[[Any], Any]) -> Any:
    """
    Chain a second SDK call onto a first one's result, in either SDK mode.

    Under a sync ``Session`` SDK calls return their result, under an ``AsyncSession`` a coroutine; the
    chain keeps that shape, so an :class:`Operation` may make two calls.
    """
    if not inspect.isawaitable(result):
        return next_step(result)

    async def chained() -> Any:
        value = next_step(await result)
        return await value if inspect.isawaitable(value) else value

    return chained()
