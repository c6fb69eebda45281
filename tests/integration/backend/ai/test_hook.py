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

import re

import pytest

from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec
from airflow.providers.backend.ai._session.state import Verdict
from airflow.providers.backend.ai.exceptions import (
    BackendAIAuthError,
    BackendAIJobFailedError,
    BackendAISessionExistsError,
    BackendAISessionNotVisibleError,
)
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
            # After termination the result is still readable, and destroying again is harmless: the
            # manager answers "nothing to do" ({"stats": {}}), which the hook reports as already gone.
            assert hook.get_session_facts(created.session_id).result == "SUCCESS"
            assert "hello" in hook.get_session_logs(created.session_id)
            assert hook.destroy_session(created.session_id) is False

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
        with pytest.raises(BackendAISessionNotVisibleError, match="unknown, or another keypair's"):
            other.destroy_session(created.session_id)  # 403 under RBAC: not "already gone"
        assert emulator.get_session(created.session_id).status != "TERMINATED"
        mine.destroy_session(created.session_id)

    def test_wrong_secret_fails_fast(self, emulator, make_connection):
        conn_id = make_connection("bad", host=emulator.endpoint, login=emulator.access_key, password="x" * 40)
        with pytest.raises(BackendAIAuthError):
            BackendAIHook(conn_id).get_session_logs("3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d")
        assert emulator.request_count(route="logs") == 1


class TestRunBatch:
    """``run_batch``: the operator's guarantees for a hook user's own task."""

    def test_success(self, emulator):
        result = BackendAIHook().run_batch(
            image=IMAGE,
            command='echo "training on $DATA"; echo "accuracy 0.93"',
            session_name="hook-run-0001",
            environment={"DATA": "mnist"},
            session_resources={"cpu": 1, "mem": "1g"},
        )
        assert result == {
            "session_id": result["session_id"],
            "session_name": "hook-run-0001",
            "status": result["status"],
            "result": "SUCCESS",
            "status_info": "task-finished",
            "logs": "training on mnist\naccuracy 0.93\n",
        }
        emulator.wait_for_session(result["session_id"], status="TERMINATED")  # destroyed (the fixture checks)

    def test_failure_raises_and_destroys(self, emulator):
        with pytest.raises(
            BackendAIJobFailedError, match="the command exited with a non-zero code"
        ) as caught:
            BackendAIHook().run_batch(image=IMAGE, command="echo about to fail; exit 3")
        assert caught.value.log_tail == "about to fail"
        assert emulator.get_session(caught.value.session_id).status_info == "task-failed"

    def test_keep_leaves_the_session(self, emulator):
        with pytest.raises(BackendAIJobFailedError) as caught:
            BackendAIHook().run_batch(image=IMAGE, command="exit 4", on_finish_action="destroy_on_success")
        snapshot = emulator.get_session(caught.value.session_id)
        assert snapshot.result == "FAILURE"
        assert snapshot.status_info == "task-failed"  # kept: ended by its job, not destroyed by us

    def test_an_unknown_slot_creates_nothing(self, emulator):
        with pytest.raises(ValueError, match=re.escape("'cuda.devices' (did you mean 'cuda.device'?)")):
            BackendAIHook().run_batch(
                image=IMAGE, command="nvidia-smi", session_resources={"cuda.devices": 1}
            )
        assert emulator.sessions() == []
        assert emulator.request_count(route="create") == 0
