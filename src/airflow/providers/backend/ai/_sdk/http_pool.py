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
One aiohttp client session per event loop and endpoint, shared by every async SDK session of the process.

Hundreds of triggers of one triggerer run in one event loop; with a client session each they would hold
hundreds of idle keep-alive sockets to the same manager. SDK 26 lets an ``AsyncSession`` borrow a client
session (``aiohttp_session=``); SDK 25.5 cannot, and each trigger then keeps its own.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import aiohttp

_pool: dict[tuple[asyncio.AbstractEventLoop, str, bool], tuple[aiohttp.ClientSession, int]] = {}


@asynccontextmanager
async def shared_client_session(endpoint: str, *, skip_ssl: bool) -> AsyncIterator[aiohttp.ClientSession]:
    """Borrow the loop's client session for ``endpoint``; the last borrower to leave closes it."""
    import aiohttp

    key = (asyncio.get_running_loop(), endpoint, skip_ssl)
    session, users = _pool.get(key, (None, 0))
    if session is None or session.closed:
        session, users = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=not skip_ssl)), 0
    _pool[key] = (session, users + 1)
    try:
        yield session
    finally:
        session, users = _pool[key]
        if users <= 1:
            del _pool[key]
            await session.close()
        else:
            _pool[key] = (session, users - 1)
