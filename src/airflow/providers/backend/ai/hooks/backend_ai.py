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
import threading
import uuid
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.providers.common.compat.sdk import BaseHook
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from airflow.providers.backend.ai._connection_form import form_widgets, ui_field_behaviour
from airflow.providers.backend.ai._sdk import operations
from airflow.providers.backend.ai._sdk.client import (
    accepts_shared_http_client,
    load_sdk_off_loop,
    new_async_session,
    new_session,
    routed_to,
)
from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig
from airflow.providers.backend.ai._sdk.errors import translate_errors, unreadable_answers
from airflow.providers.backend.ai._sdk.http_pool import shared_client_session
from airflow.providers.backend.ai._sdk.operations import CreatedSession
from airflow.providers.backend.ai._sdk.slots import known_slots
from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec
from airflow.providers.backend.ai._sdk.tag_search import TagSearch
from airflow.providers.backend.ai._session.finish import DEFAULT_XCOM_LOG_LIMIT
from airflow.providers.backend.ai._session.slots import check_slots_known
from airflow.providers.backend.ai.exceptions import (
    BackendAIAPIError,
    BackendAIAuthError,
    BackendAIException,
    BackendAINotFoundError,
    BackendAITransientError,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection, Iterator, Mapping

    from ai.backend.client.config import APIConfig
    from ai.backend.client.session import AsyncSession, Session

    from airflow.providers.backend.ai._sdk.operations import Operation
    from airflow.providers.backend.ai._session.state import SessionFacts
    from airflow.providers.backend.ai._session.waiting import WaitReason

T = TypeVar("T")

__all__ = ["BackendAIHook", "BatchSessionSpec", "CreatedSession"]


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
        from airflow.providers.backend.ai._sdk.client import build_api_config

        return build_api_config(self.settings)

    # -- sessions -------------------------------------------------------------------------------------

    @contextmanager
    def get_conn(self) -> Iterator[Session]:
        """
        The configured SDK ``Session``, as a context manager: ``with hook.get_conn() as session: ...``.

        The SDK's ``Session`` runs a non-daemon thread that must be closed in the thread that opened it (one
        left open keeps the task process alive), so it is handed out only inside a ``with`` block. The hook's
        helpers called in the block share it: one version negotiation instead of one per call.
        """
        session = new_session(self.settings)
        previous = (self._sync_session, self._sync_session_thread)
        try:
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
        settings = await self.a_settings()
        await load_sdk_off_loop()
        async with AsyncExitStack() as stack:
            shared: dict[str, Any] = {}
            if accepts_shared_http_client():
                shared["aiohttp_session"] = await stack.enter_async_context(
                    shared_client_session(settings.endpoint, skip_ssl=settings.skip_sslcert_validation)
                )
            session = new_async_session(settings, **shared)
            previous = self._async_session
            try:
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
            with routed_to(self._sync_session):
                yield
        else:
            with self.get_conn() as session, routed_to(session):
                yield

    @asynccontextmanager
    async def _current_async_session(self) -> AsyncIterator[None]:
        if self._async_session is not None:
            with routed_to(self._async_session):
                yield
        else:
            async with self.get_async_conn() as session:
                with routed_to(session):
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

    def _run(self, operation: Operation[T]) -> T:
        try:
            for attempt in Retrying(**self._retry_arguments()):
                with (
                    attempt,
                    self._current_session(),
                    translate_errors(operation.action),
                    unreadable_answers(operation.action),
                ):
                    return operation.parse(operation.call())
        except BackendAINotFoundError as missing:
            return operation.when_missing(missing)
        raise AssertionError("unreachable: tenacity either returns or reraises")

    async def _a_run(self, operation: Operation[T]) -> T:
        try:
            async for attempt in AsyncRetrying(**self._retry_arguments()):
                with attempt:
                    async with self._current_async_session():
                        with translate_errors(operation.action), unreadable_answers(operation.action):
                            return operation.parse(await operation.call())
        except BackendAINotFoundError as missing:
            return operation.when_missing(missing)
        raise AssertionError("unreachable: tenacity either returns or reraises")

    # -- helpers (sync and async twins of one operation each) -----------------------------------------

    def create_batch_session(self, spec: BatchSessionSpec) -> CreatedSession:
        """
        Enqueue a batch session and return at once, without waiting for it to start.

        Retrying is safe: before a repeated request, the session an unanswered one may have made is looked
        up by its name and the spec's tag, and adopted; so the job never runs twice.
        """
        return self._run(operations.create(spec))

    async def a_create_batch_session(self, spec: BatchSessionSpec) -> CreatedSession:
        """Async twin of :meth:`create_batch_session`."""
        return await self._a_run(operations.create(spec))

    def get_session_facts(self, session_id: str) -> SessionFacts:
        """Return the session's status, result and status info (also after it terminated)."""
        return self._run(operations.read_facts(session_id))

    async def a_get_session_facts(self, session_id: str) -> SessionFacts:
        """Async twin of :meth:`get_session_facts`."""
        return await self._a_run(operations.read_facts(session_id))

    def get_wait_reason(self, session_id: str) -> WaitReason:
        """Return why a session waits to start: its queue position and the scheduler's last message."""
        return self._run(operations.read_wait_reason(session_id))

    async def a_get_wait_reason(self, session_id: str) -> WaitReason:
        """Async twin of :meth:`get_wait_reason`."""
        return await self._a_run(operations.read_wait_reason(session_id))

    def find_session(self, name: str, *, tag: str | None = None) -> SessionFacts:
        """Return the newest session of this keypair named ``name`` (and tagged ``tag``), live or ended."""
        return self._run(operations.find(name, tag))

    async def a_find_session(self, name: str, *, tag: str | None = None) -> SessionFacts:
        """Async twin of :meth:`find_session`."""
        return await self._a_run(operations.find(name, tag))

    def find_sessions_by_tag(
        self, tags: Collection[str], *, names: Collection[str] = ()
    ) -> dict[str, list[SessionFacts]]:
        """
        Return this keypair's sessions tagged with one of ``tags``: each tag's sessions, newest first.

        The manager cannot filter on tags, so this reads every *live* session of the keypair, and every
        session named one of ``names`` whatever its state, and matches the tags here. A session that has
        ended is therefore only found when its name is given; a live one is found by its tag alone.
        At most ``TAG_SEARCH_MAX_PAGES`` pages of ``TAG_SEARCH_PAGE_SIZE`` are read (newest first).
        """
        search = TagSearch(tags, names)
        while (operation := search.next_page()) is not None:
            search.add(self._run(operation))
        return search.result(self.log)

    async def a_find_sessions_by_tag(
        self, tags: Collection[str], *, names: Collection[str] = ()
    ) -> dict[str, list[SessionFacts]]:
        """Async twin of :meth:`find_sessions_by_tag`."""
        search = TagSearch(tags, names)
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
        return self._run(operations.read_logs(session_id))

    async def a_get_session_logs(self, session_id: str) -> str:
        """Async twin of :meth:`get_session_logs`."""
        return await self._a_run(operations.read_logs(session_id))

    def destroy_session(self, session_id: str, *, forced: bool = False) -> bool:
        """Destroy the session; return False if it was already gone. Destroying an ending session is fine."""
        return self._run(operations.destroy(session_id, forced))

    async def a_destroy_session(self, session_id: str, *, forced: bool = False) -> bool:
        """Async twin of :meth:`destroy_session`."""
        return await self._a_run(operations.destroy(session_id, forced))

    # -- resource slots and whole batch jobs ----------------------------------------------------------

    def known_resource_slots(self) -> tuple[str, ...] | None:
        """
        The resource slot names the manager knows (``GET /config/resource-slots``); None if it cannot say.

        Read once per connection and process, and again after ``SLOT_LIST_TTL`` (10 minutes).
        """
        return known_slots(self.settings, lambda: self._run(operations.resource_slots()), self.log.warning)

    def check_resource_slots(self, resources: Mapping[str, Any], *, parameter: str = "resources") -> None:
        """
        Refuse slot names the manager does not know, before a session is created.

        :raises ValueError: naming ``parameter``, the unknown slots with the closest known name, and the
            slots the manager knows.
        """
        known = self.known_resource_slots() if resources else None
        if known is not None:
            where = f"the Backend.AI manager at {self.settings.endpoint}"
            check_slots_known(resources, known, where=where, parameter=parameter)

    def run_batch(
        self,
        *,
        image: str,
        command: str,
        session_name: str | None = None,
        startup_timeout: float = 600,
        poll_interval: float = 15,
        use_event_stream: bool = True,
        on_finish_action: str = "destroy",
        xcom_log_limit: int = DEFAULT_XCOM_LOG_LIMIT,
        **session: Any,
    ) -> dict[str, Any]:
        """
        Run ``command`` in a batch session and return what ``BackendAIRunBatchOperator`` pushes to XCom.

        For your own ``@task`` or ``PythonOperator``: create, wait, log, teardown in one call, with the
        operator's checks, errors and ``on_finish_action``; the log goes into the task log at the end.
        ``session`` takes the operator's other session parameters under their names (``session_resources``,
        ``environment``, ``vfolder_mounts``, ``bootstrap_script``, ``batch_timeout``, ...).

        :param image: Container image of the session.
        :param command: Shell command the batch session runs: the job.
        :param session_name: Session name (4-64 of letters, digits, ``_.-``); default airflow-run-batch-<random>.
        :param startup_timeout: Seconds the session may take to start running.
        :param poll_interval: Longest pause between two status reads, in seconds.
        :param use_event_stream: Learn of the job's end from the manager's event stream.
        :param on_finish_action: ``destroy``, ``keep`` or ``destroy_on_success``, as the operator's.
        :param xcom_log_limit: Characters of the log kept in the returned value (its end).
        :raises ValueError: a parameter is invalid (before any session exists).
        :raises BackendAIJobFailedError: the job did not succeed, or did not start within ``startup_timeout``.
        """
        from airflow.providers.backend.ai._watch import batch  # the watch machinery: not at Dag parse

        spec = BatchSessionSpec.checked(
            name=session_name or f"airflow-run-batch-{uuid.uuid4().hex[:12]}",
            image=image,
            command=command,
            **session,
        )
        with self.get_conn():
            self.check_resource_slots(spec.resources, parameter="session_resources")
            return batch.run_batch(
                self,
                spec,
                startup_timeout=startup_timeout,
                poll_interval=poll_interval,
                use_event_stream=use_event_stream,
                on_finish_action=on_finish_action,
                xcom_log_limit=xcom_log_limit,
                log=self.log,
            )

    # -- connection test and form -----------------------------------------------------------------------

    # Airflow < 3.2 builds its form from these, found in the class's own __dict__ (3.2+ reads provider.yaml).
    get_ui_field_behaviour = staticmethod(ui_field_behaviour)
    get_connection_form_widgets = staticmethod(form_widgets)

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
                info = self._run(operations.hello())
                self._run(operations.authenticated_probe())
        except BackendAIAuthError as exc:
            return False, f"Authentication failed: {exc}"
        except BackendAIAPIError as exc:
            if exc.status == 400 and (exc.error_code or exc.title or "").lower().startswith("graphql"):
                return True, operations.connected_message(settings, info)
            return False, str(exc)
        except BackendAIException as exc:
            return False, str(exc)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, operations.connected_message(settings, info)
