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
A reverse proxy in front of the emulator that can rewrite answers, to play a manager (or a proxy in front
of one) that answers something unexpected; optionally over TLS with a self-signed certificate.

Requests are forwarded unchanged, ``Host`` header included, so the emulator still checks every signature.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

_HOP_BY_HOP = {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"}


@dataclass
class Rewrite:
    """Replace the answer to requests matching ``method`` and ``path`` (a regex on the path)."""

    method: str
    path: str
    status: int | None = None
    body: bytes | None = None
    content_type: str | None = None
    transform: Callable[[Any], Any] | None = None  # applied to the decoded JSON body
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return method.upper() == self.method.upper() and re.fullmatch(self.path, path) is not None


class RewritingProxy:
    """``with RewritingProxy(upstream) as proxy:`` serves ``proxy.endpoint`` until the block ends."""

    def __init__(self, upstream: str, *, tls: tuple[Path, Path] | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.rewrites: list[Rewrite] = []
        self.requests: list[tuple[str, str]] = []
        self._tls = tls
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def rewrite(self, method: str, path: str, **changes: Any) -> Rewrite:
        rule = Rewrite(method, path, **changes)
        self.rewrites.append(rule)
        return rule

    def __enter__(self) -> RewritingProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._startup())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _startup(self) -> None:
        self._client = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        # A client that leaves ends its handler (an event stream would otherwise be piped forever).
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        context = None
        if self._tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self._tls)
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _shutdown(self) -> None:
        await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _pipe(self, request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        """Pass an event stream through as it comes (never rewritten), until either side closes."""
        response = web.StreamResponse(status=upstream.status, headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        return response

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._client.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            content_type = upstream.headers.get("Content-Type", "application/octet-stream")
            if content_type.startswith("text/event-stream"):
                return await self._pipe(request, upstream)
            status, body = upstream.status, await upstream.read()
        rule = next((r for r in self.rewrites if r.matches(request.method, request.path)), None)
        if rule is not None:
            rule.fired += 1
            if rule.transform is not None:
                body = json.dumps(rule.transform(json.loads(body))).encode()
            if rule.body is not None:
                body = rule.body
            status = rule.status or status
            content_type = rule.content_type or content_type
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})
