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
"""A reference client of the event stream, outside the provider: when each job's end event reached a client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from benchmarks.jobs import LoopThread


class StreamObserver:
    """
    One signed ``GET /events/session`` (all the caller's sessions) in a thread of its own, re-signed on every
    reconnect. It records when each job's ``session_success``/``session_failure`` reached a client, which
    splits the lag into the server's part (job end to event delivered) and the provider's part (event
    delivered to detected).
    """

    def __init__(self, endpoint: str, access_key: str, secret_key: str) -> None:
        self.url = f"{endpoint}/events/session?sessionName=%2A&scope=session"
        self._keys = (access_key, secret_key)
        self.arrived: dict[str, float] = {}
        self.reconnects = 0
        self._loop = LoopThread("floor-observer")
        self._task: asyncio.Task[None] = self._loop.run(self._start(), 10)

    async def _start(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        import aiohttp

        from backend_ai_emulator import signed_headers

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as http:
            while True:
                headers = signed_headers(
                    "GET", self.url, *self._keys, content_type="application/octet-stream"
                )
                del headers["Content-Type"]
                try:
                    async with http.get(self.url, headers=headers) as resp:
                        if resp.status != 200:
                            await asyncio.sleep(1)
                            continue
                        name = None
                        async for raw in resp.content:
                            line = raw.decode().rstrip("\r\n")
                            if line.startswith("event:"):
                                name = line[6:].strip()
                            elif line.startswith("data:") and name in ("session_success", "session_failure"):
                                with contextlib.suppress(ValueError, KeyError):
                                    sid = str(json.loads(line[5:].strip())["sessionId"])
                                    self.arrived.setdefault(sid, time.time())
                            elif not line:
                                name = None
                except (TimeoutError, aiohttp.ClientError, OSError):
                    pass
                self.reconnects += 1
                await asyncio.sleep(0.5)

    def close(self) -> None:
        async def _cancel() -> None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

        with contextlib.suppress(Exception):
            self._loop.run(_cancel(), 10)
        self._loop.close()
