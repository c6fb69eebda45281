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
The operator unit tests' fixtures: the hook methods the operators call, autospecced, and a task context.

``hook_calls`` is a bundle of mocks of ``BackendAIHook`` methods (the SDK is never reached); the
``hook`` fixture of the hook's own tests is a real hook instead.
"""

from __future__ import annotations

from unittest import mock

import pytest

from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig
from airflow.providers.backend.ai.exceptions import BackendAINotFoundError
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook, CreatedSession

#: The session every create makes, unless a test says otherwise.
SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
WEBUI = "https://webui.example.com"
RUN = ("dag", "train", "manual__2026-01-01", -1)


@pytest.fixture
def hook_calls():
    """Every hook method the operators call, autospecced; ``get_conn`` yields a mock session."""
    with (
        mock.patch.object(BackendAIHook, "get_conn", autospec=True) as get_conn,
        mock.patch.object(BackendAIHook, "create_batch_session", autospec=True) as create,
        mock.patch.object(BackendAIHook, "get_session_facts", autospec=True) as facts,
        mock.patch.object(BackendAIHook, "get_session_logs", autospec=True) as logs,
        mock.patch.object(BackendAIHook, "destroy_session", autospec=True) as destroy,
        mock.patch.object(BackendAIHook, "find_session", autospec=True) as find,
        mock.patch.object(BackendAIHook, "find_sessions_by_tag", autospec=True) as find_tags,
        mock.patch.object(BackendAIHook, "known_resource_slots", autospec=True) as slots,
        mock.patch.object(BackendAIHook, "settings", new_callable=mock.PropertyMock) as settings,
    ):
        settings.return_value = BackendAIConnectionConfig(
            conn_id="c", endpoint="https://api.example.com", access_key="AK", secret_key="SK", webui_url=WEBUI
        )
        create.side_effect = lambda self, spec: CreatedSession(SID, spec.name, True, "PENDING")
        logs.return_value = "epoch 1\nepoch 2\ndone\n"
        destroy.return_value = True
        find.side_effect = BackendAINotFoundError("find session", status=404)
        find_tags.return_value = {}
        slots.return_value = ("cpu", "mem", "cuda.device", "cuda.shares")
        yield mock.Mock(
            get_conn=get_conn,
            create=create,
            facts=facts,
            logs=logs,
            destroy=destroy,
            find=find,
            find_tags=find_tags,
            slots=slots,
        )


@pytest.fixture
def make_context():
    """A task context for a try of ``RUN``'s task (retries=3: max_tries 3 until the task is cleared)."""

    def make(try_number: int = 1, *, max_tries: int = 3, store: object | None = None) -> dict:
        ti = mock.MagicMock(
            dag_id=RUN[0],
            task_id=RUN[1],
            run_id=RUN[2],
            map_index=RUN[3],
            try_number=try_number,
            max_tries=max_tries,
        )
        ti.stats_tags = {}
        context = {"ti": ti}
        if store is not None:
            context["task_state_store"] = store
        return context

    return make


@pytest.fixture
def context(make_context) -> dict:
    return make_context()
