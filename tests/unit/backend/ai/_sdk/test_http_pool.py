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
from __future__ import annotations

import asyncio

from airflow.providers.backend.ai._sdk.http_pool import shared_client_session


async def test_one_client_session_per_endpoint_closed_by_the_last_user():
    async with shared_client_session("http://a", skip_ssl=False) as first:
        async with shared_client_session("http://a", skip_ssl=False) as second:
            async with shared_client_session("http://b", skip_ssl=False) as other:
                assert first is second
                assert other is not first
                assert not first.closed
                assert not other.closed
            assert other.closed
        assert not first.closed
    assert first.closed
    async with shared_client_session("http://a", skip_ssl=False) as later:
        assert later is not first  # the pool forgot the closed one


async def test_released_on_error_and_reopened():
    try:
        async with shared_client_session("http://a", skip_ssl=True) as session:
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert session.closed
    async with shared_client_session("http://a", skip_ssl=True) as again:
        assert again is not session
        assert not again.closed


async def test_concurrent_users_share():
    sessions = []

    async def use():
        async with shared_client_session("http://a", skip_ssl=False) as session:
            sessions.append(session)
            await asyncio.sleep(0)

    await asyncio.gather(*(use() for _ in range(50)))
    assert len({id(s) for s in sessions}) == 1
    assert sessions[0].closed  # by the last of the 50
