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
"""BackendAIHook through the real SDK over HTTP against the emulator."""

from __future__ import annotations

import pytest

from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec
from airflow.providers.backend.ai._session.state import Verdict
from airflow.providers.backend.ai.exceptions import BackendAIAuthError, BackendAISessionExistsError
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"


class TestTestConnection:
    def test_success(self, emulator):
        ok, message = BackendAIHook().test_connection()
        assert ok, message
        assert emulator.endpoint in message
        assert emulator.request_count(route="gql") == 1  # the authenticated probe reached the server

    @pytest.mark.parametrize(
        ("login", "password", "reason"),
        [
            ("AKIAEMULATORTEST0001", "wrong-secret-key-0000000000000000000000", "HMAC signature mismatch"),
            ("AKIAUNKNOWNKEY000000", "whatever-secret-key-00000000000000000000", "Access key not found"),
        ],
    )
    def test_bad_keys(self, emulator, make_connection, login, password, reason):
        conn_id = make_connection("bad", host=emulator.endpoint, login=login, password=password)
        ok, message = BackendAIHook(conn_id).test_connection()
        assert not ok
        assert message.startswith("Authentication failed")
        assert "HTTP 401" in message
        assert password not in message
        assert emulator.request_count(route="gql") == 1  # no retry storm

    def test_unreachable(self, make_connection):
        conn_id = make_connection("dead", host="http://127.0.0.1:9", login="AKIAEXAMPLE", password="s")
        ok, message = BackendAIHook(conn_id, retry_limit=2, retry_delay=0).test_connection()
        assert not ok
        assert "reach the manager" in message


class TestHelpers:
    def spec(self, command: str, name: str = "hook-it-0001", **kwargs) -> BatchSessionSpec:
        return BatchSessionSpec(image=IMAGE, command=command, name=name, **kwargs)

    def test_create_status_logs_destroy(self, emulator):
        hook = BackendAIHook()
        with hook.get_conn():
            created = hook.create_batch_session(self.spec("echo hello; exit 0", environment={"X": "1"}))
            assert created.created
            snapshot = emulator.wait_for_session(created.session_id, result="SUCCESS")
            assert snapshot.environ["X"] == "1"
            facts = hook.get_session_facts(created.session_id)
            assert facts.verdict is Verdict.SUCCEEDED
            assert facts.status_info == "task-finished"
            assert "hello" in hook.get_session_logs(created.session_id)
            hook.destroy_session(created.session_id)
            emulator.wait_for_session(created.session_id, status="TERMINATED")
            # After termination the result is still readable, and destroying again is harmless.
            assert hook.get_session_facts(created.session_id).result == "SUCCESS"
            assert "hello" in hook.get_session_logs(created.session_id)
            assert (
                hook.destroy_session(created.session_id) is True
            )  # answered "nothing to do", as the manager does

    async def test_async_twins(self, emulator):
        hook = BackendAIHook()
        async with hook.get_async_conn():
            created = await hook.a_create_batch_session(self.spec("exit 3", name="hook-async-0001"))
            emulator.wait_for_session(created.session_id, result="FAILURE")
            facts = await hook.a_get_session_facts(created.session_id)
            assert (facts.verdict, facts.status_info) == (Verdict.FAILED, "task-failed")
            assert await hook.a_find_session_id("hook-async-0001") == created.session_id
            await hook.a_destroy_session(created.session_id)

    def test_refuses_to_attach_to_a_live_session_it_did_not_create(self, emulator):
        hook = BackendAIHook()
        created = hook.create_batch_session(self.spec("sleep 30", name="hook-busy-0001"))
        try:
            with pytest.raises(BackendAISessionExistsError, match="hook-busy-0001"):
                hook.create_batch_session(self.spec("sleep 30", name="hook-busy-0001"))
        finally:
            hook.destroy_session(created.session_id)

    def test_another_keypair_cannot_touch_the_session(self, emulator, make_connection):
        mine = BackendAIHook()
        created = mine.create_batch_session(self.spec("sleep 30", name="hook-mine-0001"))
        other_id = make_connection(
            "other",
            host=emulator.endpoint,
            login=emulator.other_access_key,
            password=emulator.other_secret_key,
        )
        other = BackendAIHook(other_id)
        assert other.destroy_session(created.session_id) is False  # 404 for the other owner
        assert emulator.get_session(created.session_id).status != "TERMINATED"
        mine.destroy_session(created.session_id)

    def test_wrong_secret_fails_fast(self, emulator, make_connection):
        conn_id = make_connection("bad", host=emulator.endpoint, login=emulator.access_key, password="x" * 40)
        with pytest.raises(BackendAIAuthError):
            BackendAIHook(conn_id).get_session_logs("3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d")
        assert emulator.request_count(route="logs") == 1
