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
Run the emulator on its own event loop in a background thread, and the handle tests hold.

The handle is the only thing tests touch: it exposes the endpoint and keypairs, the live settings
and fault registry, thread-safe session/request inspection, waits with deadlines, reset and stop, and
the event-stream switches (drop every open stream, block streams, a restart of the whole server).
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from .app import build_app
from .faults import FaultRegistry
from .settings import (
    ADMIN_ACCESS_KEY,
    ADMIN_SECRET_KEY,
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    OTHER_ACCESS_KEY,
    OTHER_SECRET_KEY,
    EmulatorSettings,
    PreemptionConfig,
    default_keypairs,
)
from .state import EmulatorState
from .store import RequestRecord, SessionSnapshot, SessionStore

if TYPE_CHECKING:
    import uuid
    from collections.abc import Callable, Coroutine
    from types import TracebackType

T = TypeVar("T")

log = logging.getLogger(__name__)

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 15.0
_REBIND_ATTEMPTS = 50  # x 0.1 s: the port is ours, but a just-closed socket may still hold it briefly


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmulatorHandle:
    """A running emulator: connection details, switches, inspection and control (thread-safe)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: EmulatorSettings | None = None,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        other_access_key: str = OTHER_ACCESS_KEY,
        other_secret_key: str = OTHER_SECRET_KEY,
        allow_non_loopback: bool = False,
    ) -> None:
        if not allow_non_loopback and not is_loopback(host):
            raise ValueError(
                f"refusing to bind non-loopback host {host!r} (pass allow_non_loopback=True to force)"
            )
        self.host = host
        self.access_key = access_key
        self.secret_key = secret_key
        self.other_access_key = other_access_key
        self.other_secret_key = other_secret_key
        #: A superadmin keypair, for the admin GraphQL API (``adminUpdateResourceGroup``).
        self.admin_access_key = ADMIN_ACCESS_KEY
        self.admin_secret_key = ADMIN_SECRET_KEY
        self.settings = settings or EmulatorSettings()
        stock = (DEFAULT_ACCESS_KEY, OTHER_ACCESS_KEY, ADMIN_ACCESS_KEY)
        keypairs = {ak: kp for ak, kp in self.settings.keypairs.items() if ak not in stock}
        keypairs.update(default_keypairs(access_key, secret_key, other_access_key, other_secret_key))
        self.settings.keypairs = keypairs
        self.faults = FaultRegistry()
        self._store = SessionStore()
        self._requested_port = port
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._state: EmulatorState | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._comeback: asyncio.TimerHandle | None = None
        self._up = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.startup_seconds = 0.0
        #: How many times :meth:`restart` took the server down since it started.
        self.restarts = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``http://HOST:PORT`` without a trailing slash (and no default-port surprises)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> EmulatorHandle:
        """Start the server thread and wait until it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        began = time.perf_counter()
        self._thread = threading.Thread(target=self._serve, name="backend-ai-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError("emulator did not start in time")
        if self._error is not None:
            raise RuntimeError(f"emulator failed to start: {self._error!r}") from self._error
        self.startup_seconds = time.perf_counter() - began
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _startup(self) -> None:
        self._state = EmulatorState(self.settings, self.faults, self._store)
        runner = web.AppRunner(
            build_app(self._state), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        self._runner = runner
        await self._listen(self._requested_port)

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        return sock

    async def _listen(self, port: int) -> None:
        """Accept connections on ``port`` (0: any free port, remembered in ``self.port``)."""
        assert self._runner is not None
        sock = self._bind(port)
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        self._site = site
        self._up.set()

    async def _shutdown(self) -> None:
        if self._comeback is not None:
            self._comeback.cancel()
            self._comeback = None
        if self._state is not None:
            self._state.manager_up.set()
            await self._state.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        """Kill running jobs, close every connection and stop the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_STOP_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_STOP_TIMEOUT)
            self._thread = None

    def __enter__(self) -> EmulatorHandle:
        return self if self._thread is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def run_on_loop(self, coro_fn: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
        """Run a coroutine on the server loop from another thread and return its result."""
        if self._loop is None:
            raise RuntimeError("emulator not started")
        return asyncio.run_coroutine_threadsafe(coro_fn(), self._loop).result(timeout)

    def reset(self) -> None:
        """
        Fresh state: kill jobs, end streams and hangs, clear sessions/requests/faults, restore settings, and
        count restarts from zero.

        A server that is down after :meth:`restart` comes back at once.
        """
        state = self._state
        if state is None:
            raise RuntimeError("emulator not started")
        self.restarts = 0

        async def _reset() -> None:
            if not self._up.is_set():
                await self._come_up()
            await state.reset()

        self.run_on_loop(_reset)

    # -- event-stream switches and restarts --------------------------------------------------

    @property
    def open_event_streams(self) -> int:
        """Event streams open right now (mute ones included)."""
        return self._state.hub.open_count if self._state is not None else 0

    @property
    def event_streams_opened(self) -> int:
        """Event streams opened since the last reset (every reconnect counts)."""
        return self._state.hub.opened if self._state is not None else 0

    @property
    def event_streams_peak(self) -> int:
        """The most event streams open at once since the last reset."""
        return self._state.hub.peak if self._state is not None else 0

    def drop_event_streams(self, *, abort: bool = True) -> int:
        """
        Close every open event stream now, mid-stream; returns how many were open.

        ``abort=True`` (default) cuts the TCP connection without ending the chunked body, as a restarting
        server or a proxy's timeout does (aiohttp raises ``ClientPayloadError``, the SDK's reader ends);
        ``abort=False`` ends each response cleanly (the client reads EOF). Clients must reconnect; new
        streams are served as before.
        """
        state = self._state
        if state is None:
            raise RuntimeError("emulator not started")

        async def _drop() -> int:
            return state.hub.drop_all(abort=abort)

        return self.run_on_loop(_drop)

    def block_event_streams(self, how: int | str = 404, *, drop_open: bool = True) -> None:
        """
        Answer ``GET /events/session`` with ``how`` from now on (see ``EmulatorSettings.event_stream_block``).

        With ``drop_open`` the streams open now are cut too, so every client meets the block when it
        reconnects. :meth:`unblock_event_streams` (or ``reset()``) ends it.
        """
        self.settings.event_stream_block = how
        if drop_open:
            self.drop_event_streams()

    def unblock_event_streams(self) -> None:
        """Serve event streams again."""
        self.settings.event_stream_block = None

    @property
    def is_up(self) -> bool:
        """False while the server is down after :meth:`restart`."""
        return self._up.is_set()

    def restart(self, down_for: float = 5.0, *, hold_lifecycle: bool = True, wait: bool = False) -> None:
        """
        Take the whole server down for ``down_for`` seconds and bring it back on the same port.

        Like a manager restart (its state lives in PostgreSQL): every connection is closed at once (open
        streams cut mid-stream, requests in flight dropped), new connections are refused while it is down,
        and sessions, logs, results, the request log, settings and faults survive. Running jobs go on (they
        run on the agent). With ``hold_lifecycle`` (default) the "manager" does nothing while down:
        scheduler steps and the handling of a job's end wait until it is back, so a job that ends
        meanwhile gets its ``result`` and ``session_success``/``failure`` right after the restart, as the
        manager reads the agent's event from Redis when it comes back (``job_exited_at`` keeps the real
        end). Returns once the server is down, or with ``wait=True`` once it is back (see
        :meth:`wait_until_up`). ``reset()`` and ``stop()`` end the downtime early.
        """
        if down_for < 0:
            raise ValueError("down_for must be >= 0")
        loop = self._loop
        if loop is None:
            raise RuntimeError("emulator not started")

        async def _go_down() -> None:
            if not self._up.is_set():
                raise RuntimeError("the emulator is already down (restart in progress)")
            await self._go_down(hold_lifecycle)
            self._comeback = loop.call_later(down_for, lambda: asyncio.ensure_future(self._come_up()))

        self.run_on_loop(_go_down)
        if wait:
            self.wait_until_up(down_for + 10.0)

    def wait_until_up(self, timeout: float = 30.0) -> None:
        """Block until the server accepts connections again after :meth:`restart`; TimeoutError otherwise."""
        if not self._up.wait(timeout):
            raise TimeoutError(f"the emulator did not come back within {timeout} s")

    async def _go_down(self, hold_lifecycle: bool) -> None:
        state, runner = self._state, self._runner
        assert state is not None
        assert runner is not None
        self._up.clear()
        self.restarts += 1
        if hold_lifecycle:
            state.manager_up.clear()
        if self._site is not None:
            await self._site.stop()  # closes the listening socket: new connections are refused
            self._site = None
        state.release_hangs()
        state.hub.drop_all(abort=True)
        server = runner.server
        for conn in list(server.connections if server is not None else ()):
            transport = conn.transport
            if transport is not None:
                transport.abort()

    async def _come_up(self) -> None:
        if self._comeback is not None:
            self._comeback.cancel()
            self._comeback = None
        if self._up.is_set():
            return
        for attempt in range(_REBIND_ATTEMPTS):
            try:
                await self._listen(self.port)
                break
            except OSError:
                if attempt == _REBIND_ATTEMPTS - 1:
                    log.exception("emulator: cannot listen on port %s again after the restart", self.port)
                    raise
                await asyncio.sleep(0.1)
        if self._state is not None:
            self._state.manager_up.set()

    def set_preemption(
        self,
        enabled: bool = True,
        mode: str = "terminate",
        *,
        resource_group: str = "default",
        capacity: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        """
        Turn preemption on or off for a resource group (what ``adminUpdateResourceGroup`` does).

        Preemption needs sessions that do not fit, so a ``capacity`` can be set at the same time; the
        other ``options`` are :class:`PreemptionConfig` fields (``order``, ``victim_scope``, ...).
        ``reset()`` restores both.
        """
        config = PreemptionConfig(enabled=enabled, mode=mode, **options)
        self.settings.preemption = {**self.settings.preemption, resource_group: config}
        if capacity is not None:
            self.settings.capacity = capacity

    def set_baseline(self) -> None:
        """Make the current settings what :meth:`reset` restores (for customised long-lived servers)."""
        if self._state is not None:
            self._state.baseline = self.settings.copy()

    # -- inspection --------------------------------------------------------------------------

    def sessions(self) -> list[SessionSnapshot]:
        """Snapshots of every session since the last reset, oldest first."""
        return self._store.snapshots()

    def live_sessions(self) -> list[SessionSnapshot]:
        """Sessions not TERMINATED, CANCELLED or ERROR."""
        return [s for s in self._store.snapshots() if s.live]

    def get_session(self, id_or_name: str | uuid.UUID) -> SessionSnapshot | None:
        """By UUID (any status), else the newest session with that name."""
        return self._store.snapshot(id_or_name)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request since the last reset (no header values, so no secrets)."""
        return self._store.requests()

    def request_counts(self, since: float | None = None) -> dict[str, int]:
        """Requests per route name (``"unknown"`` for unmatched paths), at or after ``since`` if given."""
        counts: collections.Counter[str] = collections.Counter(
            r.route or "unknown" for r in self._store.requests() if since is None or r.at >= since
        )
        return dict(counts)

    def request_count(
        self, route: str | None = None, method: str | None = None, access_key: str | None = None
    ) -> int:
        """How many requests matched the given route name, method and claimed access key."""
        return sum(
            1
            for r in self._store.requests()
            if (route is None or r.route == route)
            and (method is None or r.method == method.upper())
            and (access_key is None or r.access_key == access_key)
        )

    def wait_for_session(
        self,
        id_or_name: str | uuid.UUID,
        *,
        status: str | None = None,
        result: str | None = None,
        predicate: Callable[[SessionSnapshot], bool] | None = None,
        timeout: float = 10.0,
    ) -> SessionSnapshot:
        """
        Block until the session exists and matches every given condition; TimeoutError otherwise.

        ``status`` and ``result`` compare with the upper-case names ("TERMINATED", "SUCCESS").
        """

        def _check() -> SessionSnapshot | None:
            snap = self._store.snapshot(id_or_name)
            if snap is None:
                return None
            if status is not None and snap.status != status.upper():
                return None
            if result is not None and snap.result != result.upper():
                return None
            if predicate is not None and not predicate(snap):
                return None
            return snap

        try:
            found = self._store.wait_until(_check, timeout)
            assert found is not None
            return found
        except TimeoutError:
            snap = self._store.snapshot(id_or_name)
            seen = "no such session" if snap is None else f"status={snap.status} result={snap.result}"
            wanted = f"status={status} result={result}"
            raise TimeoutError(
                f"session {id_or_name} did not reach {wanted} within {timeout} s ({seen})"
            ) from None

    def wait_until(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Block until ``predicate()`` is truthy, re-checking whenever server state changes."""
        return self._store.wait_until(predicate, timeout)

    def running_job_pids(self) -> list[int]:
        """Process-group ids of batch jobs currently executing."""
        return [s.pid for s in self._store.snapshots() if s.pid is not None]


def start_emulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    settings: EmulatorSettings | None = None,
    realistic_timing: bool = False,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    other_access_key: str = OTHER_ACCESS_KEY,
    other_secret_key: str = OTHER_SECRET_KEY,
    allow_non_loopback: bool = False,
) -> EmulatorHandle:
    """Start an emulator in a background thread: ``with start_emulator() as emu:`` or call ``.stop()``."""
    settings = settings or EmulatorSettings()
    if realistic_timing:
        settings.use_realistic_timing()
    handle = EmulatorHandle(
        host=host,
        port=port,
        settings=settings,
        access_key=access_key,
        secret_key=secret_key,
        other_access_key=other_access_key,
        other_secret_key=other_secret_key,
        allow_non_loopback=allow_non_loopback,
    )
    return handle.start()
