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
Destroying a session this keypair cannot see, on a real manager: 403 is not "already gone".

With RBAC (26.9, on by default) a USER keypair that names a session UUID it may not see gets 403
``not-enough-permission`` *before* the manager looks the session up: another keypair's live session and a
UUID that names no session answer alike. Only the caller's own ended session answers ``{"stats": {}}``,
and a name resolves among the caller's live sessions only (404 ``entity-not-found`` otherwise). The first
tests pin those answers through the plain SDK (setup included); the operator tests check that
``BackendAIDestroySessionOperator`` fails on the 403, naming the session and the cause, and calls an own ended
session already gone.
"""

from __future__ import annotations

import os
import uuid
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest

from airflow.providers.backend.ai.exceptions import BackendAISessionNotVisibleError
from airflow.providers.backend.ai.operators.backend_ai import BackendAIDestroySessionOperator

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .conftest import RealCluster

pytestmark = pytest.mark.usefixtures("real_connection")

GQL = "query($id: UUID!) { compute_session(id: $id) { id status result } }"
NOT_ENOUGH_PERMISSION = "https://api.backend.ai/probs/not-enough-permission"


def _config(cluster: RealCluster, access_key: str, secret_key: str) -> Any:
    from ai.backend.client.config import APIConfig

    with mock.patch("ai.backend.client.config.load_dotenv", return_value=False):
        return APIConfig(
            endpoint=cluster.endpoint,
            endpoint_type="api",
            access_key=access_key,
            secret_key=secret_key,
            domain="default",
            group="default",
            read_timeout=30.0,
        )


@contextmanager
def sdk(cluster: RealCluster, *, other: bool = False) -> Iterator[Any]:
    """A sync SDK session as the main keypair, or as the second one (``BACKEND_AI_TEST_OTHER_*``)."""
    from ai.backend.client.session import Session

    if other:
        keys = (
            os.environ.get("BACKEND_AI_TEST_OTHER_ACCESS_KEY"),
            os.environ.get("BACKEND_AI_TEST_OTHER_SECRET_KEY"),
        )
        if not all(keys):
            pytest.skip("needs BACKEND_AI_TEST_OTHER_ACCESS_KEY and _SECRET_KEY (a second keypair)")
        config = _config(cluster, *keys)  # type: ignore[arg-type]
    else:
        config = _config(cluster, cluster.access_key, cluster.secret_key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Session(config=config) as session:
            yield session


def ref(session: Any, identifier: str) -> Any:
    """The portable reference (SDK 25.5 puts ``name`` in the URL, 26.x ``id``): the UUID in both."""
    compute = session.ComputeSession(identifier)
    compute.id = uuid.UUID(identifier)
    return compute


def wait_status(session: Any, session_id: str, *statuses: str, timeout: float = 90.0) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while True:
        row = session.Admin.query(GQL, {"id": session_id})["compute_session"]
        if row is not None and row["status"] in statuses:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"session {session_id} did not reach {statuses}: {row}")
        time.sleep(0.5)


@pytest.fixture
def others_session(real_connection: RealCluster) -> Iterator[str]:
    """A running session of the second keypair; force-destroyed by its owner afterwards."""
    with sdk(real_connection, other=True) as other:
        created = other.ComputeSession.get_or_create(
            real_connection.image,
            name=f"other-{uuid.uuid4().hex[:10]}",
            type_="batch",
            startup_command="sleep 300",
            enqueue_only=True,
        )
        session_id = str(created.id)
        try:
            wait_status(other, session_id, "RUNNING")
            yield session_id
        finally:
            ref(other, session_id).destroy(forced=True)


@pytest.fixture
def own_terminated_session(real_connection: RealCluster, name_prefix: str) -> str:
    with sdk(real_connection) as mine:
        created = mine.ComputeSession.get_or_create(
            real_connection.image,
            name=f"{name_prefix}done",
            type_="batch",
            startup_command="echo done",
            enqueue_only=True,
        )
        session_id = str(created.id)
        wait_status(mine, session_id, "TERMINATED")
    return session_id


def _destroy_error(cluster: RealCluster, identifier: str, *, by_name: bool = False) -> Any:
    from ai.backend.client.exceptions import BackendAPIError

    with sdk(cluster) as mine:
        target = mine.ComputeSession(identifier) if by_name else ref(mine, identifier)
        with pytest.raises(BackendAPIError) as caught:
            target.destroy()
    return caught.value


# -- what the manager answers (plain SDK) -----------------------------------------------------------------


def test_destroying_another_keypairs_session_is_403(
    real_connection: RealCluster, others_session: str
) -> None:
    err = _destroy_error(real_connection, others_session)
    assert err.status == 403
    assert err.data["type"] == NOT_ENOUGH_PERMISSION
    assert err.data["error_code"] == "permission_access_forbidden"
    assert err.data["msg"].endswith(
        f"lacks permission <Permission.SOFT_DELETE: 8> on session {others_session}"
    )
    with sdk(real_connection, other=True) as other:
        assert wait_status(other, others_session, "RUNNING")["result"] == "UNDEFINED"  # untouched


def test_destroying_an_unknown_uuid_is_the_same_403(real_connection: RealCluster) -> None:
    unknown = str(uuid.uuid4())
    err = _destroy_error(real_connection, unknown)
    assert err.status == 403
    assert err.data["type"] == NOT_ENOUGH_PERMISSION
    assert err.data["msg"].endswith(f"lacks permission <Permission.SOFT_DELETE: 8> on session {unknown}")


def test_destroying_an_own_ended_session_is_an_empty_answer(
    real_connection: RealCluster, own_terminated_session: str
) -> None:
    with sdk(real_connection) as mine:
        assert ref(mine, own_terminated_session).destroy() == {"stats": {}}


@pytest.mark.parametrize("whose", ["other", "unknown", "own-ended"])
def test_a_name_reaches_only_own_live_sessions(
    real_connection: RealCluster, others_session: str, own_terminated_session: str, whose: str
) -> None:
    with sdk(real_connection, other=True) as other:
        others_name = other.Admin.query(
            "query($id: UUID!) { compute_session(id: $id) { name } }", {"id": others_session}
        )["compute_session"]["name"]
    with sdk(real_connection) as mine:
        own_name = mine.Admin.query(
            "query($id: UUID!) { compute_session(id: $id) { name } }", {"id": own_terminated_session}
        )["compute_session"]["name"]
    name = {"other": others_name, "unknown": f"nosuch-{uuid.uuid4().hex[:8]}", "own-ended": own_name}[whose]
    err = _destroy_error(real_connection, name, by_name=True)
    assert err.status == 404
    assert err.data["type"] == "https://api.backend.ai/probs/entity-not-found"
    assert err.data["msg"] == "No SessionRow matches the given key"


# -- what the destroy operator makes of it ----------------------------------------------------------------


def test_operator_fails_for_another_keypairs_session(
    real_connection: RealCluster, others_session: str, make_context: Any
) -> None:
    op = BackendAIDestroySessionOperator(task_id="cleanup", session_id=others_session)
    with pytest.raises(BackendAISessionNotVisibleError) as caught:
        op.execute(make_context("cleanup"))
    message = str(caught.value)
    assert others_session in message
    assert "HTTP 403" in message
    assert "unknown, or another keypair's" in message
    with sdk(real_connection, other=True) as other:
        assert wait_status(other, others_session, "RUNNING")["result"] == "UNDEFINED"  # untouched


def test_operator_fails_for_an_unknown_uuid(real_connection: RealCluster, make_context: Any) -> None:
    unknown = str(uuid.uuid4())
    op = BackendAIDestroySessionOperator(task_id="cleanup", session_id=unknown)
    with pytest.raises(BackendAISessionNotVisibleError) as caught:
        op.execute(make_context("cleanup"))
    assert unknown in str(caught.value)


def test_operator_reports_an_own_ended_session_as_gone(
    real_connection: RealCluster, own_terminated_session: str, make_context: Any
) -> None:
    op = BackendAIDestroySessionOperator(task_id="cleanup", session_id=own_terminated_session)
    assert op.execute(make_context("cleanup")) is False
