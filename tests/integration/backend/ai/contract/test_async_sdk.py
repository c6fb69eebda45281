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
"""The same lifecycle through ``AsyncSession`` (what a deferrable trigger uses)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from ai.backend.client.exceptions import BackendAPIError

from .sdk import GQL_SESSION, open_async_session, session_ref, unique_name

if TYPE_CHECKING:
    from .sdk import ContractTarget


async def _poll_result(
    session: Any, target: ContractTarget, session_id: str, *, terminated: bool = False
) -> dict[str, Any]:
    """
    Poll until the result is known, or with ``terminated`` until the session is TERMINATED.

    Log reads wait for TERMINATED: a loaded real manager can record the result after the agent dropped the
    kernel, and answers log reads with HTTP 500 until TERMINATED (tests/integration/backend/ai/real_cluster/test_job_end.py).
    """
    deadline = time.monotonic() + target.timeout
    while True:
        row = (await session.Admin.query(GQL_SESSION, {"id": session_id}))["compute_session"]
        if row["result"] != "UNDEFINED" and (not terminated or row["status"] == "TERMINATED"):
            return dict(row)
        assert time.monotonic() < deadline, "no result in time"
        await asyncio.sleep(target.poll_interval)


async def test_async_create_poll_logs_destroy(contract_target: ContractTarget) -> None:
    async with open_async_session(contract_target.config()) as session:
        created = await session.ComputeSession.get_or_create(
            contract_target.image,
            name=unique_name(),
            type_="batch",
            startup_command="echo async-ok",
            enqueue_only=True,
            batch_timeout=60,
        )
        contract_target.created.append(uuid.UUID(str(created.id)))
        ref = session_ref(created.id)
        row = await _poll_result(session, contract_target, str(created.id), terminated=True)
        assert row["result"] == "SUCCESS"
        logs = await ref.get_logs()
        assert "async-ok" in logs["result"]["logs"]

        running = await session.ComputeSession.get_or_create(
            contract_target.image,
            name=unique_name(),
            type_="batch",
            startup_command="sleep 30",
            enqueue_only=True,
        )
        contract_target.created.append(uuid.UUID(str(running.id)))
        assert await session_ref(running.id).destroy(forced=True) in (
            {"stats": {"status": "terminated"}},
            {"stats": {"status": "cancelled"}},
        )
        with pytest.raises(BackendAPIError) as excinfo:
            await session_ref(running.id).get_info()
        assert excinfo.value.status == 404


async def test_concurrent_jobs_keep_their_own_logs(contract_target: ContractTarget) -> None:
    async with open_async_session(contract_target.config()) as session:
        created = await asyncio.gather(
            *(
                session.ComputeSession.get_or_create(
                    contract_target.image,
                    name=unique_name(),
                    type_="batch",
                    startup_command=f"echo job-{i}",
                    enqueue_only=True,
                )
                for i in range(4)
            )
        )
        contract_target.created.extend(uuid.UUID(str(c.id)) for c in created)
        rows = await asyncio.gather(
            *(_poll_result(session, contract_target, str(c.id), terminated=True) for c in created)
        )
        assert [r["result"] for r in rows] == ["SUCCESS"] * 4
        for i, c in enumerate(created):
            logs = (await session_ref(c.id).get_logs())["result"]["logs"]
            assert f"job-{i}" in logs
            assert all(f"job-{j}" not in logs for j in range(4) if j != i)
