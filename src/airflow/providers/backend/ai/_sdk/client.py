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
Opening and addressing SDK sessions, for both supported SDK lines (25.5 and 26.x).

The SDK is imported lazily: importing it costs about a second and a thousand modules, and Dag files import
the provider's operators at every parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import pkgutil
import sys
import threading
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterator

    from ai.backend.client.config import APIConfig
    from ai.backend.client.func.session import ComputeSession
    from ai.backend.client.session import AsyncSession, BaseSession, Session

    from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig

_config_lock = threading.Lock()
_SDK_FUNCTIONS = "ai.backend.client.func"


def build_api_config(settings: BackendAIConnectionConfig) -> APIConfig:
    """
    Build an ``APIConfig`` from the Airflow connection alone.

    The SDK's ``APIConfig`` reads ``BACKEND_*`` environment variables even when every argument is given
    (it unions ``BACKEND_VFOLDER_MOUNTS`` in and lets ``BACKEND_SKIP_SSLCERT_VALIDATION`` switch TLS checks
    off), and each read loads a ``.env`` file found above the working directory into ``os.environ`` with
    override. On a worker that would let a stray file redirect traffic or disable TLS, so the config is
    built with the SDK's environment lookup replaced by "use the default".
    """
    from ai.backend.client import config as sdk_config

    def defaults_only(key: str, default: Any = None, *, clean: Any = sdk_config.default_clean) -> Any:
        return clean(default)

    with _config_lock:
        original_get_env = sdk_config.get_env
        sdk_config.get_env = defaults_only
        try:
            return sdk_config.APIConfig(
                endpoint=settings.endpoint,
                endpoint_type="api",
                domain=settings.domain,
                group=settings.group,
                access_key=settings.access_key,
                secret_key=settings.secret_key,
                storage_proxy_address_map={},
                vfolder_mounts=[],
                skip_sslcert_validation=settings.skip_sslcert_validation,
                connection_timeout=settings.connect_timeout,
                read_timeout=settings.request_timeout,
            )
        finally:
            sdk_config.get_env = original_get_env


def new_session(settings: BackendAIConnectionConfig) -> Session:
    """A sync SDK ``Session`` for the connection, not yet opened."""
    from ai.backend.client.session import Session

    _silence_api_version_warning()
    return Session(config=build_api_config(settings))


def new_async_session(settings: BackendAIConnectionConfig, **shared: Any) -> AsyncSession:
    """An SDK ``AsyncSession`` for the connection, not yet opened; ``shared`` may lend it an HTTP client."""
    from ai.backend.client.session import AsyncSession

    _silence_api_version_warning()
    return AsyncSession(config=build_api_config(settings), **shared)


def accepts_shared_http_client() -> bool:
    """Whether this SDK's ``AsyncSession`` can borrow an aiohttp client session (SDK 26+, not 25.5)."""
    from ai.backend.client.session import AsyncSession

    return "aiohttp_session" in inspect.signature(AsyncSession.__init__).parameters


async def load_sdk_off_loop() -> None:
    """
    Import the SDK in a thread, once per process, so that an event loop never stalls on it.

    Creating an SDK session imports every module of the SDK's API (about a second of CPU); in a triggerer
    that would stop every other trigger for as long.
    """
    if "ai.backend.client.session" not in sys.modules:
        await asyncio.to_thread(import_sdk)


def import_sdk() -> None:
    """Import the SDK and every module of its API (what creating an SDK session does)."""
    package = importlib.import_module(_SDK_FUNCTIONS)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{_SDK_FUNCTIONS}.{module.name}")
    importlib.import_module("ai.backend.client.session")


def _silence_api_version_warning() -> None:
    """Hide the SDK's ``APIVersionWarning``: SDK 25.5 emits it on every open against a newer manager."""
    from ai.backend.client.exceptions import APIVersionWarning

    warnings.filterwarnings("ignore", category=APIVersionWarning)


@contextmanager
def routed_to(session: BaseSession) -> Iterator[None]:
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


def like_an_api_function(coro: Coroutine[Any, Any, Any]) -> Any:
    """
    Run ``coro`` as the SDK's API functions run: to its result under a sync ``Session`` (in the session's
    worker thread), or returned as the awaitable under an ``AsyncSession``.

    For requests the SDK has no function for, made with its ``Request`` (same signing, headers, timeouts).
    """
    from ai.backend.client.session import AsyncSession, Session, api_session

    session = api_session.get(None)
    if isinstance(session, AsyncSession):
        return coro
    if isinstance(session, Session):
        return session.worker_thread.execute(coro)
    coro.close()
    raise RuntimeError("an SDK request must be made inside an SDK Session or AsyncSession")


def session_ref(session: str) -> ComputeSession:
    """
    Return a ``ComputeSession`` that addresses a session id (a UUID) or a live session's name.

    SDK 25.5 puts ``name`` in URLs (``from_session_id`` would request ``/session/None``), 26.x puts
    ``id``; with both set to the UUID every call reaches the session, even after it terminated. A name
    only reaches a live session of the caller.
    """
    from ai.backend.client.func.session import ComputeSession

    ref = ComputeSession(str(session))
    with contextlib.suppress(ValueError):  # a name: both SDK lines then address it through ``name``
        ref.id = UUID(str(session))
    return ref
