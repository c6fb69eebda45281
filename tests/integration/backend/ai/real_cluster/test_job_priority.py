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
``create_session`` on a real manager, with the installed SDK line: the fields are stored and take effect.

A session created the way the provider creates sessions today (``get_or_create``, so ``job_priority`` 0 and
preemptible) is preempted by one that ``create_session`` gave ``job_priority=10``. Preemption is turned on
through the admin API for the test and restored afterwards. About 25 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
import warnings
from typing import TYPE_CHECKING, Any

import pytest

from integration.backend.ai.contract.busy import PreemptionSwitch
from integration.backend.ai.contract.sdk import ContractTarget

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ai.backend.client.session import Session

_ENV = "BACKEND_AI_TEST_"
GQL = "query($id: UUID!) { compute_session(id: $id) { status status_info result } }"
V2 = "query($id: UUID!) { sessionV2(id: $id) { metadata { jobPriority isPreemptible } } }"


@pytest.fixture
def target() -> ContractTarget:
    needed = ("ADMIN_ACCESS_KEY", "ADMIN_SECRET_KEY", "AGENT_CPU")
    if not all(os.environ.get(_ENV + key) for key in needed):
        pytest.skip(f"needs {', '.join(_ENV + k for k in needed)} (cluster.env of dev/real-cluster)")
    return ContractTarget(
        endpoint=os.environ[_ENV + "ENDPOINT"].rstrip("/"),
        access_key=os.environ[_ENV + "ACCESS_KEY"],
        secret_key=os.environ[_ENV + "SECRET_KEY"],
        image=os.environ.get(_ENV + "IMAGE", "cr.backend.ai/stable/python:3.9-ubuntu20.04"),
        admin_access_key=os.environ[_ENV + "ADMIN_ACCESS_KEY"],
        admin_secret_key=os.environ[_ENV + "ADMIN_SECRET_KEY"],
        agent_cpu=int(os.environ[_ENV + "AGENT_CPU"]),
    )


@pytest.fixture
def terminate_mode(target: ContractTarget) -> Iterator[None]:
    switch = PreemptionSwitch(target)
    asyncio.run(switch.set(True, "TERMINATE"))
    try:
        yield
    finally:
        asyncio.run(switch.restore())


@contextlib.contextmanager
def _session(target: ContractTarget) -> Iterator[Session]:
    from ai.backend.client.session import Session

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = Session(config=target.config())
        session.open()
    try:
        yield session
    finally:
        session.close()


def _row(session: Session, session_id: uuid.UUID) -> dict[str, Any]:
    row: dict[str, Any] = session.Admin.query(GQL, {"id": str(session_id)})["compute_session"]
    return row


def _wait(session: Session, session_id: uuid.UUID, status: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        row = _row(session, session_id)
        if row["status"] == status:
            return row
        assert time.monotonic() < deadline, f"{session_id} stayed {row['status']}, never {status}"
        time.sleep(0.5)


def _destroy(session_id: uuid.UUID) -> None:
    from ai.backend.client.exceptions import BackendAPIError
    from ai.backend.client.func.session import ComputeSession

    ref = ComputeSession(str(session_id))
    ref.id = session_id
    with contextlib.suppress(BackendAPIError):
        ref.destroy(forced=True)


@pytest.mark.usefixtures("terminate_mode")
def test_a_job_priority_sent_by_create_session_preempts_a_plain_session(target: ContractTarget) -> None:
    from ai.backend.client.func.session import ComputeSession
    from ai.backend.client.request import Request

    from airflow.providers.backend.ai._sdk.create import create_session

    assert target.agent_cpu is not None
    cpu = target.agent_cpu // 2 + 1
    common: dict[str, Any] = {"type_": "batch", "enqueue_only": True, "resources": {"cpu": cpu, "mem": "1g"}}
    created: list[uuid.UUID] = []
    with _session(target) as session:
        try:
            low = ComputeSession.get_or_create(
                target.image, name=f"jp-low-{uuid.uuid4().hex[:8]}", startup_command="sleep 600", **common
            )
            created.append(low.id)
            _wait(session, low.id, "RUNNING")
            high = create_session(
                target.image,
                name=f"jp-high-{uuid.uuid4().hex[:8]}",
                startup_command="echo high",
                job_priority=10,
                is_preemptible=False,
                **common,
            )
            created.append(high.id)
            assert high.created is True
            ended = _wait(session, low.id, "TERMINATED")
            assert ended["status_info"] == "preempted-by-scheduler"
            assert ended["result"] == "UNDEFINED"
            assert _row(session, high.id)["status"] == "RESERVED"

            async def fields() -> dict[str, Any]:
                request = Request("POST", "/admin/gql/strawberry")
                request.set_json({"query": V2, "variables": {"id": str(high.id)}})
                async with request.fetch() as resp:
                    answer: dict[str, Any] = await resp.json()
                return answer

            answer = session.worker_thread.execute(fields())
            assert answer["data"]["sessionV2"]["metadata"] == {"jobPriority": 10, "isPreemptible": False}
        finally:
            for session_id in created:
                _destroy(session_id)
