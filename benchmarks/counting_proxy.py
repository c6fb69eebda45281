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
A counting reverse proxy in front of a Backend.AI manager (or the emulator), in a process of its own.

What reaches the manager is counted here, on the server side of the provider: every request with its
arrival time, route and status, and every event stream (``GET /events/session``) while it is open. The
proxy listens on several 127.0.0.1 ports, one per label (a group of watchers with a connection of its
own), so one run can compare groups side by side. Requests are forwarded unchanged, ``Host`` header
included, so the manager still verifies every signature; answers are streamed back chunk by chunk, so the
event stream works through it. When a client goes away its upstream request is closed too.

Started and read by :class:`ProxyProcess` through a JSON-lines channel on stdin/stdout; it exits when its
stdin closes, so it never outlives the benchmark.

    python -m benchmarks.counting_proxy UPSTREAM
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.child_process import JsonLineChild, serve_json_lines
from benchmarks.common import raise_fd_limit

_HOP_BY_HOP = {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"}

#: Route names as the emulator's request log has them, from the manager's paths.
_ROUTES = (
    (re.compile(r"^/$"), "root"),
    (re.compile(r"^/events/session$"), "events"),
    (re.compile(r"^/admin/gql$"), "gql"),
    (re.compile(r"^/session(/_/create)?$"), "create"),
    (re.compile(r"^/session/[^/]+/logs$"), "logs"),
    (re.compile(r"^/session/[^/]+/status-history$"), "status_history"),
)


def route_of(method: str, path: str) -> str:
    for pattern, name in _ROUTES:
        if pattern.match(path):
            return name
    if re.match(r"^/session/[^/_][^/]*$", path):
        return {"GET": "get_info", "DELETE": "destroy", "PATCH": "restart"}.get(method, "other")
    return "other"


@dataclass
class Listener:
    """One labelled port and what came through it."""

    label: str
    port: int = 0
    requests: list[tuple[float, str, str, int | None]] = field(
        default_factory=list
    )  # at, method, route, status
    open_streams: int = 0
    peak_streams: int = 0
    streams_opened: int = 0
    stream_samples: list[tuple[float, int]] = field(default_factory=list)  # (at, open streams) on each change


class CountingProxy:
    """The proxy itself; runs in this process's event loop."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.listeners: dict[str, Listener] = {}
        self._client: Any = None
        self._runners: list[Any] = []

    async def start(self) -> None:
        import aiohttp

        self._client = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None),
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
        )

    async def listen(self, label: str) -> int:
        from aiohttp import web

        if label in self.listeners:
            return self.listeners[label].port
        listener = Listener(label)
        app = web.Application(client_max_size=256 * 1024 * 1024)

        async def forward(request: web.Request) -> web.StreamResponse:
            return await self._forward(request, listener)

        app.router.add_route("*", "/{tail:.*}", forward)
        # handler_cancellation: a client that hangs up ends its forwarded request (and stream) at once.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        listener.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._runners.append(runner)
        self.listeners[label] = listener
        return listener.port

    async def _forward(self, request: Any, listener: Listener) -> Any:
        from aiohttp import web

        route = route_of(request.method, request.path)
        entry = [time.time(), request.method, route, None]
        listener.requests.append(entry)  # type: ignore[arg-type]
        index = len(listener.requests) - 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        is_stream = route == "events"
        try:
            async with self._client.request(
                request.method,
                self.upstream + request.path_qs,
                headers=headers,
                data=body if body else None,
                allow_redirects=False,
            ) as upstream:
                listener.requests[index] = (entry[0], entry[1], entry[2], upstream.status)
                out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
                response = web.StreamResponse(status=upstream.status, headers=out_headers)
                streaming = is_stream and upstream.status == 200
                if streaming:
                    self._stream_change(listener, +1)
                try:
                    await response.prepare(request)
                    async for chunk in upstream.content.iter_any():
                        await response.write(chunk)
                    await response.write_eof()
                finally:
                    if streaming:
                        self._stream_change(listener, -1)
                return response
        except (TimeoutError, ConnectionError, OSError) as exc:
            if listener.requests[index][3] is None:
                listener.requests[index] = (entry[0], entry[1], entry[2], 502)
            return web.Response(status=502, text=f"counting proxy: upstream failed: {exc!r}")

    def _stream_change(self, listener: Listener, delta: int) -> None:
        listener.open_streams += delta
        if delta > 0:
            listener.streams_opened += 1
            listener.peak_streams = max(listener.peak_streams, listener.open_streams)
        listener.stream_samples.append((time.time(), listener.open_streams))

    def stats(self, since: float, until: float | None) -> dict[str, Any]:
        out = {}
        for label, listener in self.listeners.items():
            rows = [r for r in listener.requests if r[0] >= since and (until is None or r[0] < until)]
            routes: dict[str, int] = {}
            for r in rows:
                routes[r[2]] = routes.get(r[2], 0) + 1
            # The most streams open at any moment of [since, until].
            before = [n for at, n in listener.stream_samples if at < since]
            inside = [n for at, n in listener.stream_samples if at >= since and (until is None or at < until)]
            peak_in = max([before[-1] if before else 0, *inside])
            out[label] = {
                "port": listener.port,
                "requests": len(rows),
                "routes": routes,
                "errors": sum(1 for r in rows if r[3] is not None and r[3] >= 400),
                "open_streams": listener.open_streams,
                "peak_streams": listener.peak_streams,
                "peak_streams_in_window": peak_in,
                "streams_opened": listener.streams_opened,
                "streams_opened_in_window": sum(1 for r in rows if r[2] == "events"),
            }
        return out

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        if self._client is not None:
            await self._client.close()


def main(argv: list[str]) -> int:
    raise_fd_limit()
    proxy = CountingProxy(argv[0])
    loop = asyncio.new_event_loop()
    loop.run_until_complete(proxy.start())
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def call(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    async def _stats(since: float, until: float | None) -> dict[str, Any]:
        return proxy.stats(since, until)

    def answer(cmd: str, msg: dict[str, Any]) -> Any:
        if cmd == "listen":
            return call(proxy.listen(msg["label"]))
        if cmd == "stats":
            return call(_stats(float(msg.get("since") or 0.0), msg.get("until")))
        raise SystemExit(f"unknown command {cmd!r}")

    try:
        serve_json_lines({"pid": os.getpid()}, answer)
    finally:
        call(proxy.stop())
        loop.call_soon_threadsafe(loop.stop)
    return 0


class ProxyProcess(JsonLineChild):
    """Parent side: ``with ProxyProcess(upstream) as proxy: port = proxy.listen("label")``."""

    def __init__(self, upstream: str) -> None:
        super().__init__("benchmarks.counting_proxy", upstream, what="counting proxy", stop_timeout=15)
        self.upstream = upstream

    def listen(self, label: str) -> str:
        """The endpoint (``http://127.0.0.1:PORT``) that forwards to the upstream and counts as ``label``."""
        return f"http://127.0.0.1:{self.call('listen', label=label)}"

    def stats(self, since: float = 0.0, until: float | None = None) -> dict[str, dict[str, Any]]:
        """Per label: requests in ``[since, until)`` per route, errors, and event streams (open, peak, opened)."""
        return self.call("stats", since=since, until=until)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
