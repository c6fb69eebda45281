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
Fixtures for the provider tests against a real Backend.AI manager (``dev/real-cluster``).

They run only when ``BACKEND_AI_TEST_ENDPOINT``, ``BACKEND_AI_TEST_ACCESS_KEY`` and
``BACKEND_AI_TEST_SECRET_KEY`` are set (``set -a; . DIR/cluster.env; set +a``). Each test gets a Dag id of
its own, so the default session names of its operators (``af-<dag id>-<task id>-t1-<hash>``) share a
prefix; after the test the real API is asked, through GraphQL, whether any session with that prefix is
still alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

_ENV = "BACKEND_AI_TEST_"
REQUIRED = ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY")
DEAD = frozenset({"TERMINATED", "CANCELLED", "ERROR"})
# A job's end to TERMINATED takes 2-4 s (the manager's 2 s scheduler tick); a destroy a little longer.
CLEANUP_DEADLINE = 45.0

SESSION_LIST_QUERY = """
query($filter: String) {
  compute_session_list(limit: 100, offset: 0, filter: $filter) {
    items { id name status status_info result }
    total_count
  }
}
"""


def real_cluster_configured() -> bool:
    return all(os.environ.get(_ENV + key) for key in REQUIRED)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    skip = pytest.mark.skip(reason="no real Backend.AI manager configured (BACKEND_AI_TEST_ENDPOINT etc.)")
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.real_cluster)
            if not real_cluster_configured():
                item.add_marker(skip)


class RealCluster:
    """The manager named by the environment, read through the plain SDK (no provider code)."""

    def __init__(self) -> None:
        self.endpoint = os.environ[_ENV + "ENDPOINT"].rstrip("/")
        self.access_key = os.environ[_ENV + "ACCESS_KEY"]
        self.secret_key = os.environ[_ENV + "SECRET_KEY"]
        self.image = os.environ.get(_ENV + "IMAGE", "cr.backend.ai/stable/python:3.9-ubuntu20.04")

    def connection_json(self, *, secret_key: str | None = None) -> str:
        return json.dumps(
            {
                "conn_type": "backend_ai",
                "host": self.endpoint,
                "login": self.access_key,
                "password": secret_key or self.secret_key,
            }
        )

    def _config(self) -> Any:
        from ai.backend.client.config import APIConfig

        # The SDK loads a .env file with override=True unless told not to.
        with mock.patch("ai.backend.client.config.load_dotenv", return_value=False):
            return APIConfig(
                endpoint=self.endpoint,
                endpoint_type="api",
                access_key=self.access_key,
                secret_key=self.secret_key,
                domain="default",
                group="default",
                read_timeout=30.0,
                connection_timeout=5.0,
            )

    def _session_list(self, name_prefix: str) -> dict[str, Any]:
        import warnings

        from ai.backend.client.func.admin import Admin
        from ai.backend.client.session import Session

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Session(config=self._config()):
                data = Admin.query(SESSION_LIST_QUERY, {"filter": f'name ilike "{name_prefix}%"'})
        listing: dict[str, Any] = data["compute_session_list"]
        return listing

    def sessions(self, name_prefix: str) -> list[dict[str, Any]]:
        """Every session of this keypair whose name starts with ``name_prefix``, in any status."""
        return [
            row for row in self._session_list(name_prefix)["items"] if row["name"].startswith(name_prefix)
        ]

    def session_count(self) -> int:
        """How many sessions of this keypair the manager has, in any status."""
        return int(self._session_list("")["total_count"])

    def live_sessions(self, name_prefix: str) -> list[dict[str, Any]]:
        return [row for row in self.sessions(name_prefix) if row["status"] not in DEAD]

    def wait_for(
        self, name_prefix: str, predicate: Any, *, timeout: float, what: str
    ) -> list[dict[str, Any]]:
        """Poll ``sessions(name_prefix)`` until ``predicate(rows)``; AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.sessions(name_prefix)
            if predicate(rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; sessions: {rows}")
            time.sleep(0.5)

    def destroy(self, session_id: str) -> None:
        import warnings

        from ai.backend.client.func.session import ComputeSession
        from ai.backend.client.session import Session

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Session(config=self._config()):
                ref = ComputeSession(session_id)
                ref.id = uuid.UUID(session_id)
                ref.destroy(forced=True)


@pytest.fixture(scope="session")
def real_cluster() -> RealCluster:
    return RealCluster()


@pytest.fixture
def dag_id() -> str:
    """A Dag id unique to the test: the default session names of its operators start with ``af-<dag id>``."""
    return f"rc{uuid.uuid4().hex[:10]}"


@pytest.fixture
def name_prefix(dag_id: str) -> str:
    return f"af-{dag_id}-"


@pytest.fixture
def make_context(dag_id: str):
    """Task contexts with the task-instance fields the operators read (a mock ``ti``, as a worker would pass)."""

    def make(task_id: str = "job") -> dict[str, Any]:
        ti = mock.MagicMock(dag_id=dag_id, task_id=task_id, run_id="manual__1", map_index=-1, try_number=1)
        return {"ti": ti}

    return make


@pytest.fixture
def real_connection(
    real_cluster: RealCluster, name_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RealCluster]:
    """
    ``backend_ai_default`` points at the real manager; afterwards no session of the test may be alive.

    A test that leaves a session running fails here (once the manager had ``CLEANUP_DEADLINE`` seconds to
    finish what was asked of it), and the leftover is force-destroyed so it cannot hurt the next test.
    """
    monkeypatch.setenv("AIRFLOW_CONN_BACKEND_AI_DEFAULT", real_cluster.connection_json())
    yield real_cluster
    try:
        real_cluster.wait_for(
            name_prefix,
            lambda rows: all(row["status"] in DEAD for row in rows),
            timeout=CLEANUP_DEADLINE,
            what=f"every session named {name_prefix}* to end",
        )
    except AssertionError as exc:
        for row in real_cluster.live_sessions(name_prefix):
            with contextlib.suppress(Exception):  # best effort; the failure below is what matters
                real_cluster.destroy(row["id"])
        pytest.fail(f"the test left live sessions behind on the real manager: {exc}")
