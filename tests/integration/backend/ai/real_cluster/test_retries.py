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
A retry after a dead worker against a real Backend.AI 26.9.6 manager: the tag search (the manager's
``compute_session_list`` filter cannot name ``tag``, so the hook filters by name and status and matches the
tags itself) and what the operator does with what it finds, with custom session names.

The dead try is played by a session created as that try would have created it (its name and its per-try
tag); the emulator-based ``tests/integration/backend/ai/reliability/test_kills.py`` kills real worker processes.
"""

from __future__ import annotations

from typing import Any

import pytest
from ai.backend.client.exceptions import BackendAPIError

from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec
from airflow.providers.backend.ai._session.params import session_tag
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator

from .conftest import DEAD, RealCluster

pytestmark = pytest.mark.usefixtures("real_connection")


def earlier_try(cluster: RealCluster, dag_id: str, name: str, command: str, try_number: int = 1) -> str:
    """Create the session try ``try_number`` of task ``job`` would have made, and return its id."""
    spec = BatchSessionSpec(
        image=cluster.image,
        command=command,
        name=name,
        tag=session_tag(dag_id, "job", "manual__1", -1, try_number),
    )
    return BackendAIHook().create_batch_session(spec).session_id


def retry_context(make_context) -> dict[str, Any]:
    context = make_context()
    context["ti"].try_number, context["ti"].max_tries = 2, 1
    context["ti"].stats_tags = {}
    return context


def run_batch(cluster: RealCluster, command: str, **kwargs: Any) -> BackendAIRunBatchOperator:
    return BackendAIRunBatchOperator(
        task_id="job", image=cluster.image, command=command, poll_interval=1, retries=1, **kwargs
    )


def test_the_manager_cannot_filter_on_tags(real_connection: RealCluster) -> None:
    """Why the hook matches tags itself: the filter grammar rejects the field."""
    from ai.backend.client.func.admin import Admin

    with BackendAIHook().get_conn(), pytest.raises(BackendAPIError) as err:
        Admin.query(
            "query($f: String) { compute_session_list(limit: 1, offset: 0, filter: $f) { total_count } }",
            {"f": 'tag == "af-x"'},
        )
    assert err.value.status == 400


def test_find_sessions_by_tag(real_connection: RealCluster, dag_id: str, name_prefix: str) -> None:
    live = earlier_try(real_connection, dag_id, f"{name_prefix}live", "echo live; sleep 60", try_number=1)
    named = earlier_try(real_connection, dag_id, f"{name_prefix}named", "echo named", try_number=2)
    other = earlier_try(real_connection, dag_id, f"{name_prefix}other", "echo other", try_number=3)
    hook = BackendAIHook()
    tags = {session_tag(dag_id, "job", "manual__1", -1, t): t for t in (1, 2, 3)}
    try:
        real_connection.wait_for(
            name_prefix,
            lambda rows: {row["id"] for row in rows if row["result"] == "SUCCESS"} == {named, other},
            timeout=45,
            what="the two short jobs to succeed",
        )
        # A session whose job has ended usually terminates by itself within seconds; the dummy agent
        # sometimes leaves one RUNNING for minutes, so end both now (the tag search cares about the status).
        for session_id in (named, other):
            hook.destroy_session(session_id, forced=True)
        rows = real_connection.wait_for(
            name_prefix,
            lambda rows: all(row["status"] in DEAD for row in rows if row["id"] != live),
            timeout=45,
            what="the two short sessions to end",
        )
        found = hook.find_sessions_by_tag(tags, names={f"{name_prefix}named"})
        by_try = {tags[tag]: [facts.session_id for facts in sessions] for tag, sessions in found.items()}
        # The live one by its tag alone, the ended one by its name; an ended one of another name is not read.
        assert by_try == {1: [live], 2: [named]}, rows
        found = hook.find_sessions_by_tag(tags, names={f"{name_prefix}named", f"{name_prefix}other"})
        assert {tags[tag] for tag in found} == {1, 2, 3}
    finally:
        for session_id in (live, other):
            hook.destroy_session(session_id)


@pytest.mark.parametrize("durable", [False, True])
def test_retry_with_a_custom_name_finds_the_dead_try_s_session(
    real_connection: RealCluster, make_context, dag_id: str, name_prefix: str, durable: bool
) -> None:
    name = f"{name_prefix}nightly"
    orphan = earlier_try(real_connection, dag_id, name, "echo first; sleep 4; echo first-done")
    real_connection.wait_for(
        name_prefix,
        lambda rows: rows and rows[0]["status"] == "RUNNING",
        timeout=60,
        what="the orphan to run",
    )
    result = run_batch(real_connection, "echo second", session_name=name, durable=durable).execute(
        retry_context(make_context)
    )
    rows = real_connection.sessions(name_prefix)
    if durable:  # adopted: waited for, its result returned, nothing created
        assert (result["session_id"], result["session_name"]) == (orphan, name)
        assert result["logs"].splitlines() == ["first", "first-done"]
        assert [row["id"] for row in rows] == [orphan]
    else:  # destroyed first (the name is free again once it is TERMINATED), then run anew
        assert result["session_id"] != orphan
        assert result["logs"].splitlines() == ["second"]
        (old,) = [row for row in rows if row["id"] == orphan]
        assert (old["status_info"], old["result"]) == ("user-requested", "UNDEFINED")
        assert len(rows) == 2
