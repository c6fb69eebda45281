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
"""Hook for Backend.AI: turns a ``backend_ai`` connection into SDK sessions and small session helpers."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import warnings
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from airflow.providers.common.compat.sdk import BaseHook
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from airflow.providers.backend.ai.exceptions import (
    BackendAIAPIError,
    BackendAIAuthError,
    BackendAIException,
    BackendAINotFoundError,
    BackendAISessionExistsError,
    BackendAITransientError,
)
from airflow.providers.backend.ai.utils.connection_config import BackendAIConnectionConfig
from airflow.providers.backend.ai.utils.http_pool import sdk_accepts_shared_session, shared_client_session
from airflow.providers.backend.ai.utils.sdk_compat import (
    build_api_config,
    session_ref,
    translate_errors,
    unreadable_answers,
)
from airflow.providers.backend.ai.utils.session_state import SessionFacts

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Collection, Iterator

    from ai.backend.client.config import APIConfig
    from ai.backend.client.session import AsyncSession, BaseSession, Session

    from airflow.providers.backend.ai.utils.batch_spec import BatchSessionSpec

T = TypeVar("T")

#: GraphQL read of a session's outcome. Unlike ``GET /session/{id}`` it still answers after the session
#: terminated, and it is the only place the manager reports a batch job's ``result``.
STATUS_QUERY = "query($id: UUID!) { compute_session(id: $id) { id name status status_info result } }"
#: GraphQL search of the caller's sessions by name (names are only unique among live sessions).
FIND_QUERY = (
    "query($filter: String) { compute_session_list(limit: 100, offset: 0, filter: $filter) "
    "{ items { id name tag status status_info result created_at } total_count } }"
)
#: GraphQL page of the caller's sessions for :meth:`BackendAIHook.find_sessions_by_tag`. The manager's
#: filter grammar has no ``tag`` field (it rejects ``tag == ...``: "Unknown/unsupported field name"), so
#: the page is narrowed by name and status and the tags are matched here.
TAG_SEARCH_QUERY = (
    "query($filter: String, $offset: Int!) { compute_session_list(limit: 100, offset: $offset, "
    "filter: $filter) { items { id name tag status status_info result created_at } total_count } }"
)
#: Sessions per :data:`TAG_SEARCH_QUERY` page, and the most pages one search reads.
TAG_SEARCH_PAGE_SIZE = 100
TAG_SEARCH_MAX_PAGES = 10
#: The statuses after which a session holds nothing; every other one counts as live for a tag search.
_ENDED_STATUSES = ("TERMINATED", "CANCELLED")
#: A session id that cannot exist, for :meth:`BackendAIHook.test_connection`'s authenticated probe.
_NIL_SESSION_ID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class CreatedSession:
    """A session as ``get_or_create`` answered: ``created`` is False when a live session was reused."""

    session_id: str
    name: str
    created: bool
    status: str


@dataclass(frozen=True)
class _Operation(Generic[T]):
    """
    One API operation, written once for the sync and the async hook methods.

    The SDK's API functions run synchronously under a ``Session`` and return a coroutine under an
    ``AsyncSession``, so the same ``call`` serves both; only the runner differs.
    """

    action: str
    call: Callable[[], Any]
    parse: Callable[[Any], T]
    if_gone: Callable[[], T] | None = None


class BackendAIHook(BaseHook):
    """
    Interact with a Backend.AI manager through the ``backend.ai-client`` SDK.

    Use :meth:`get_conn` (sync) or :meth:`get_async_conn` (async) to hold one API session open across
    several helper calls; a helper called outside such a block opens a short-lived session of its own.
    Transient failures (5xx, 429, dropped connections, timeouts) are retried with exponential backoff.

    .. seealso::
        :ref:`howto/connection:backend_ai`

    :param backend_ai_conn_id: The Airflow connection id of type ``backend_ai``.
    :param retry_limit: How many attempts a helper makes before a transient error fails it.
    :param retry_delay: Base of the exponential backoff between attempts, in seconds.
    """

    conn_name_attr = "backend_ai_conn_id"
    default_conn_name = "backend_ai_default"
    conn_type = "backend_ai"
    hook_name = "Backend.AI"

    def __init__(
        self,
        backend_ai_conn_id: str = default_conn_name,
        *,
        retry_limit: int = 3,
        retry_delay: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if retry_limit < 1:
            raise ValueError(f"retry_limit must be at least 1, got {retry_limit!r}")
        if retry_delay < 0:
            raise ValueError(f"retry_delay must not be negative, got {retry_delay!r}")
        self.backend_ai_conn_id = backend_ai_conn_id
        self.retry_limit = retry_limit
        self.retry_delay = retry_delay
        self._sync_session: Session | None = None
        self._sync_session_thread: int | None = None
        self._async_session: AsyncSession | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend_ai_conn_id={self.backend_ai_conn_id!r})"

    @cached_property
    def settings(self) -> BackendAIConnectionConfig:
        """The validated connection; reading it raises an error that names the bad field."""
        return BackendAIConnectionConfig.from_connection(self.get_connection(self.backend_ai_conn_id))

    async def a_settings(self) -> BackendAIConnectionConfig:
        """
        Async twin of :attr:`settings`: read the connection without blocking the event loop.

        Airflow 3 has ``aget_connection``; on Airflow 2 the database read runs in a thread.
        """
        if "settings" not in self.__dict__:
            aget_connection = getattr(type(self), "aget_connection", None)
            if aget_connection is not None:
                conn = await aget_connection(self.backend_ai_conn_id)
            else:
                conn = await asyncio.to_thread(self.get_connection, self.backend_ai_conn_id)
            self.__dict__["settings"] = BackendAIConnectionConfig.from_connection(conn)
        return self.settings

    def get_api_config(self) -> APIConfig:
        """Return an SDK ``APIConfig`` built from the connection only (no environment, no ``.env``)."""
        return build_api_config(self.settings)

    # -- sessions -------------------------------------------------------------------------------------

    @contextmanager
    def get_conn(self) -> Iterator[Session]:
        """
        Open a sync SDK ``Session``, and always close it in this thread.

        The ``Session`` runs a non-daemon worker thread; one left open keeps the task process alive.
        """
        from ai.backend.client.session import Session

        session = Session(config=self.get_api_config())
        previous = (self._sync_session, self._sync_session_thread)
        try:
            _silence_api_version_warning()
            session.open()
            self._sync_session, self._sync_session_thread = session, threading.get_ident()
            yield session
        finally:
            self._sync_session, self._sync_session_thread = previous
            session.close()

    @asynccontextmanager
    async def get_async_conn(self) -> AsyncIterator[AsyncSession]:
        """
        Open an SDK ``AsyncSession`` inside the running event loop, and always close it.

        On SDK 26 it borrows the loop's HTTP client session for this endpoint, so that many triggers in
        one triggerer share connections instead of holding one idle socket each.
        """
        from ai.backend.client.session import AsyncSession

        settings = await self.a_settings()
        async with AsyncExitStack() as stack:
            shared: dict[str, Any] = {}
            if sdk_accepts_shared_session():
                shared["aiohttp_session"] = await stack.enter_async_context(
                    shared_client_session(settings.endpoint, skip_ssl=settings.skip_sslcert_validation)
                )
            session = AsyncSession(config=build_api_config(settings), **shared)
            previous = self._async_session
            try:
                _silence_api_version_warning()
                await session.open()
                self._async_session = session
                yield session
            finally:
                self._async_session = previous
                await session.close()

    @contextmanager
    def _current_session(self) -> Iterator[None]:
        """Route SDK calls in the block to this hook's open session, or to a short-lived one."""
        if self._sync_session is not None and self._sync_session_thread == threading.get_ident():
            with _routed_to(self._sync_session):
                yield
        else:
            with self.get_conn() as session, _routed_to(session):
                yield

    @asynccontextmanager
    async def _current_async_session(self) -> AsyncIterator[None]:
        if self._async_session is not None:
            with _routed_to(self._async_session):
                yield
        else:
            async with self.get_async_conn() as session:
                with _routed_to(session):
                    yield

    # -- running operations ---------------------------------------------------------------------------

    def _retry_arguments(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.retry_limit),
            "wait": wait_exponential(multiplier=self.retry_delay, max=30),
            "retry": retry_if_exception_type(BackendAITransientError),
            "before_sleep": self._log_retry,
            "reraise": True,
        }

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.log.warning(
            "Attempt %s of %s failed: %s; retrying", state.attempt_number, self.retry_limit, error
        )

    def _run(self, operation: _Operation[T]) -> T:
        try:
            for attempt in Retrying(**self._retry_arguments()):
                with (
                    attempt,
                    self._current_session(),
                    translate_errors(operation.action),
                    unreadable_answers(operation.action),
                ):
                    return operation.parse(operation.call())
        except BackendAINotFoundError:
            if operation.if_gone is None:
                raise
            return operation.if_gone()
        raise AssertionError("unreachable: tenacity either returns or reraises")

    async def _a_run(self, operation: _Operation[T]) -> T:
        try:
            async for attempt in AsyncRetrying(**self._retry_arguments()):
                with attempt:
                    async with self._current_async_session():
                        with translate_errors(operation.action), unreadable_answers(operation.action):
                            return operation.parse(await operation.call())
        except BackendAINotFoundError:
            if operation.if_gone is None:
                raise
            return operation.if_gone()
        raise AssertionError("unreachable: tenacity either returns or reraises")

    # -- helpers (sync and async twins of one operation each) -----------------------------------------

    def create_batch_session(self, spec: BatchSessionSpec) -> CreatedSession:
        """
        Enqueue a batch session and return at once, without waiting for it to start.

        Retrying is safe: before a repeated request, the session an unanswered one may have made is looked
        up by its name and the spec's tag, and adopted; so the job never runs twice.
        """
        return self._run(_create_operation(spec))

    async def a_create_batch_session(self, spec: BatchSessionSpec) -> CreatedSession:
        """Async twin of :meth:`create_batch_session`."""
        return await self._a_run(_create_operation(spec))

    def get_session_facts(self, session_id: str) -> SessionFacts:
        """Return the session's status, result and status info (also after it terminated)."""
        return self._run(_facts_operation(session_id))

    async def a_get_session_facts(self, session_id: str) -> SessionFacts:
        """Async twin of :meth:`get_session_facts`."""
        return await self._a_run(_facts_operation(session_id))

    def find_session(self, name: str, *, tag: str | None = None) -> SessionFacts:
        """Return the newest session of this keypair named ``name`` (and tagged ``tag``), live or ended."""
        return self._run(_find_operation(name, tag))

    async def a_find_session(self, name: str, *, tag: str | None = None) -> SessionFacts:
        """Async twin of :meth:`find_session`."""
        return await self._a_run(_find_operation(name, tag))

    def find_sessions_by_tag(
        self, tags: Collection[str], *, names: Collection[str] = ()
    ) -> dict[str, list[SessionFacts]]:
        """
        Return this keypair's sessions tagged with one of ``tags``: each tag's sessions, newest first.

        The manager cannot filter on tags, so this reads every *live* session of the keypair, and every
        session named one of ``names`` whatever its state, and matches the tags here. A session that has
        ended is therefore only found when its name is given; a live one is found by its tag alone.
        At most :data:`TAG_SEARCH_MAX_PAGES` pages of :data:`TAG_SEARCH_PAGE_SIZE` are read (newest first).
        """
        search = _TagSearch(tags, names)
        while (operation := search.next_page()) is not None:
            search.add(self._run(operation))
        return search.result(self.log)

    async def a_find_sessions_by_tag(
        self, tags: Collection[str], *, names: Collection[str] = ()
    ) -> dict[str, list[SessionFacts]]:
        """Async twin of :meth:`find_sessions_by_tag`."""
        search = _TagSearch(tags, names)
        while (operation := search.next_page()) is not None:
            search.add(await self._a_run(operation))
        return search.result(self.log)

    def find_session_id(self, name: str) -> str:
        """Return the id of the newest session of this keypair named ``name`` (live or ended)."""
        return self.find_session(name).session_id

    async def a_find_session_id(self, name: str) -> str:
        """Async twin of :meth:`find_session_id`."""
        return (await self.a_find_session(name)).session_id

    def get_session_logs(self, session_id: str) -> str:
        """Return the container log of the session's main kernel (also after it terminated)."""
        return self._run(_logs_operation(session_id))

    async def a_get_session_logs(self, session_id: str) -> str:
        """Async twin of :meth:`get_session_logs`."""
        return await self._a_run(_logs_operation(session_id))

    def destroy_session(self, session_id: str, *, forced: bool = False) -> bool:
        """Destroy the session; return False if it was already gone. Destroying an ending session is fine."""
        return self._run(_destroy_operation(session_id, forced))

    async def a_destroy_session(self, session_id: str, *, forced: bool = False) -> bool:
        """Async twin of :meth:`destroy_session`."""
        return await self._a_run(_destroy_operation(session_id, forced))

    # -- connection test and UI form ------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """
        Check the endpoint and the keypair with one authenticated request; never raises.

        ``GET /`` alone is unauthenticated and would accept any keys, so a read-only GraphQL query for a
        session that cannot exist follows it: the manager answers it (with no data, or a GraphQL error)
        only once the signature checked out.
        """
        try:
            settings = self.settings
            with self.get_conn():
                info = self._run(_Operation("reach the manager", _hello, dict))
                self._run(
                    _Operation(
                        "authenticate with the keypair",
                        lambda: _admin().query(STATUS_QUERY, {"id": _NIL_SESSION_ID}),
                        lambda answer: answer,
                    )
                )
        except BackendAIAuthError as exc:
            return False, f"Authentication failed: {exc}"
        except BackendAIAPIError as exc:
            if exc.status == 400 and (exc.error_code or exc.title or "").lower().startswith("graphql"):
                return True, _connected_message(settings, info)
            return False, str(exc)
        except BackendAIException as exc:
            return False, str(exc)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, _connected_message(settings, info)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Form layout for Airflow < 3.2 (3.2+ reads ``ui-field-behaviour`` from the provider info)."""
        behaviour = _connection_type_info()["ui-field-behaviour"]
        return {key.replace("-", "_"): value for key, value in behaviour.items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra form fields for Airflow < 3.2 (3.2+ reads ``conn-fields`` from the provider info)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, StringField

        widgets: dict[str, Any] = {}
        for name, spec in _connection_type_info()["conn-fields"].items():
            label, schema = lazy_gettext(spec["label"]), spec["schema"]
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            common = {"default": schema.get("default"), "description": spec.get("description", "")}
            if "boolean" in types:
                widgets[name] = BooleanField(label, **common)
            else:  # numbers too: Airflow 2 accepts only these field classes; the hook parses the text
                widgets[name] = StringField(label, widget=BS3TextFieldWidget(), **common)
        return widgets


# -- operations ---------------------------------------------------------------------------------------


def _create_operation(spec: BatchSessionSpec) -> _Operation[CreatedSession]:
    """
    Create the session; a live session of the same name that this call did not make is an error.

    When an attempt gets no answer although the server created the session, the next attempt finds it by
    its name and the spec's tag and adopts it (``created`` is then False). The server would reuse a live
    session of that name by itself, but not one whose job has already ended: creating again would run the
    job twice.
    """
    attempts = 0

    def create() -> Any:
        from ai.backend.client.func.session import ComputeSession

        return ComputeSession.get_or_create(spec.image, **spec.to_sdk_kwargs())

    def adopt_or_create(answer: Any) -> Any:
        item = _newest_session(answer, spec.name, spec.tag)
        return create() if item is None else SessionFacts.from_graphql(str(item.get("id")), item)

    def call() -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return create()
        return _then(_admin().query(FIND_QUERY, _find_variables(spec.name)), adopt_or_create)

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

    return _Operation(f"create batch session {spec.name!r}", call, parse)


def _facts_operation(session_id: str) -> _Operation[SessionFacts]:
    def parse(answer: Any) -> SessionFacts:
        node = (answer or {}).get("compute_session")
        if not node:
            raise BackendAINotFoundError(f"read session {session_id}", status=404, title="No such session.")
        return SessionFacts.from_graphql(session_id, node)

    return _Operation(
        f"read the status of session {session_id}",
        lambda: _admin().query(STATUS_QUERY, {"id": session_id}),
        parse,
    )


def _find_operation(name: str, tag: str | None = None) -> _Operation[SessionFacts]:
    def parse(answer: Any) -> SessionFacts:
        item = _newest_session(answer, name, tag)
        if item is None:
            raise BackendAINotFoundError(
                f"find session {name!r}", status=404, title="No session has this name."
            )
        return SessionFacts.from_graphql(str(item.get("id")), item)

    return _Operation(
        f"find session {name!r}", lambda: _admin().query(FIND_QUERY, _find_variables(name)), parse
    )


def _find_variables(name: str) -> dict[str, Any]:
    return {"filter": f"name == {json.dumps(name)}"}


def _newest_session(answer: Any, name: str, tag: str | None) -> dict[str, Any] | None:
    """The newest item of a :data:`FIND_QUERY` answer named ``name`` (and tagged ``tag``), if any."""
    items = ((answer or {}).get("compute_session_list") or {}).get("items") or []
    matches = [item for item in items if item.get("name") == name and (tag is None or item.get("tag") == tag)]
    return max(matches, key=lambda item: str(item.get("created_at") or ""), default=None)


def tag_search_filter(names: Collection[str]) -> str:
    """
    The ``compute_session_list`` filter of a tag search: every live session, and those named ``names``.

    Written in the manager's filter grammar (``models/minilang/queryfilter.py``: ``in``, ``!=``, ``&``,
    ``|`` and parentheses), with the two ended statuses every manager version knows: an unknown status
    name in the filter would fail the whole query.
    """
    live = " & ".join(f"(status != {json.dumps(status)})" for status in _ENDED_STATUSES)
    if not names:
        return live
    return f"(name in {json.dumps(sorted(names))}) | ({live})"


@dataclass(frozen=True)
class _TagPage:
    """One parsed :data:`TAG_SEARCH_QUERY` answer: the matching sessions and how far the list goes."""

    matches: list[tuple[str, str, SessionFacts]]  # (tag, created_at, facts)
    size: int
    total_count: int


class _TagSearch:
    """The paging of one tag search, shared by the sync and the async hook method."""

    def __init__(self, tags: Collection[str], names: Collection[str]) -> None:
        self.tags = frozenset(tags)
        self.filter = tag_search_filter(names)
        self.offset = 0
        self.pages = 0
        self.total_count: int | None = None
        self.found: dict[str, tuple[str, str, SessionFacts]] = {}  # by session id

    def next_page(self) -> _Operation[_TagPage] | None:
        if not self.tags or (self.total_count is not None and self.offset >= self.total_count):
            return None
        if self.pages >= TAG_SEARCH_MAX_PAGES:
            return None
        offset, tags = self.offset, self.tags

        def parse(answer: Any) -> _TagPage:
            listing = (answer or {}).get("compute_session_list") or {}
            items = listing.get("items") or []
            matches = [
                (str(item["tag"]), str(item.get("created_at") or ""), _facts(item))
                for item in items
                if item.get("tag") in tags
            ]
            return _TagPage(matches, len(items), int(listing.get("total_count") or 0))

        return _Operation(
            "find the sessions of earlier tries by their tags",
            lambda: _admin().query(TAG_SEARCH_QUERY, {"filter": self.filter, "offset": offset}),
            parse,
        )

    def add(self, page: _TagPage) -> None:
        self.pages += 1
        self.total_count = page.total_count
        self.offset += page.size
        if not page.size:  # the list shrank meanwhile: nothing more to read
            self.total_count = self.offset
        for tag, created_at, facts in page.matches:
            self.found[facts.session_id] = (tag, created_at, facts)

    def result(self, log: Any) -> dict[str, list[SessionFacts]]:
        if self.total_count is not None and self.offset < self.total_count:
            log.warning(
                "Searched only the newest %d of %d sessions for the tags of earlier tries",
                self.offset,
                self.total_count,
            )
        by_tag: dict[str, list[SessionFacts]] = {}
        for tag, _, facts in sorted(self.found.values(), key=lambda found: found[1], reverse=True):
            by_tag.setdefault(tag, []).append(facts)
        return by_tag


def _facts(item: dict[str, Any]) -> SessionFacts:
    return SessionFacts.from_graphql(str(item.get("id")), item)


def _logs_operation(session_id: str) -> _Operation[str]:
    def parse(answer: Any) -> str:
        logs = ((answer or {}).get("result") or {}).get("logs")
        return logs if isinstance(logs, str) else ""

    return _Operation(
        f"fetch the log of session {session_id}", lambda: session_ref(session_id).get_logs(), parse
    )


def _destroy_operation(session_id: str, forced: bool) -> _Operation[bool]:
    return _Operation(
        f"destroy session {session_id}",
        lambda: session_ref(session_id).destroy(forced=forced),
        lambda answer: True,
        if_gone=lambda: False,
    )


# -- small helpers ------------------------------------------------------------------------------------


def _admin() -> Any:
    from ai.backend.client.func.admin import Admin

    return Admin


def _then(result: Any, next_step: Callable[[Any], Any]) -> Any:
    """
    Chain a second SDK call onto a first one's result, in either SDK mode.

    Under a sync ``Session`` SDK calls return their result, under an ``AsyncSession`` a coroutine; the
    chain keeps that shape, so an :class:`_Operation` may make two calls.
    """
    if not inspect.isawaitable(result):
        return next_step(result)

    async def chained() -> Any:
        value = next_step(await result)
        return await value if inspect.isawaitable(value) else value

    return chained()


def _hello() -> Any:
    from ai.backend.client.func.session import ComputeSession

    return ComputeSession.hello()


@contextmanager
def _routed_to(session: BaseSession) -> Iterator[None]:
    """
    Make the SDK send the block's calls through ``session``.

    The SDK routes every call through a context variable holding the most recently opened session, not
    through the object the call is made on; setting it here keeps two hooks in one thread apart.
    """
    from ai.backend.client.session import api_session

    token = api_session.set(session)
    try:
        yield
    finally:
        api_session.reset(token)


def _silence_api_version_warning() -> None:
    """Hide the SDK's ``APIVersionWarning``: SDK 25.5 emits it on every open against a newer manager."""
    from ai.backend.client.exceptions import APIVersionWarning

    warnings.filterwarnings("ignore", category=APIVersionWarning)


def _connected_message(settings: BackendAIConnectionConfig, info: dict[str, Any]) -> str:
    return (
        f"Connected to Backend.AI manager {info.get('manager', 'unknown')} at {settings.endpoint} "
        f"(API {info.get('version', 'unknown')}); access key {settings.access_key} accepted."
    )


def _connection_type_info() -> dict[str, Any]:
    from airflow.providers.backend.ai.get_provider_info import get_provider_info

    (info,) = (
        item for item in get_provider_info()["connection-types"] if item["connection-type"] == "backend_ai"
    )
    return info
