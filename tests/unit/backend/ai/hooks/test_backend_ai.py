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

import json
import subprocess
import sys
import threading
from unittest import mock

import pytest
from ai.backend.client.exceptions import BackendAPIError, BackendClientError
from ai.backend.client.func.session import ComputeSession
from ai.backend.client.session import api_session

from airflow.providers.backend.ai._sdk.operations import STATUS_QUERY
from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec
from airflow.providers.backend.ai._session.state import SessionFacts
from airflow.providers.backend.ai.exceptions import (
    BackendAIAuthError,
    BackendAINotFoundError,
    BackendAISessionNotVisibleError,
    BackendAITransientError,
)
from airflow.providers.backend.ai.hooks.backend_ai import CreatedSession

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
AUTH_FAILED = {"type": "https://api.backend.ai/probs/auth-failed", "title": "Credential/signature mismatch."}
SERVER_ERROR = {
    "type": "https://api.backend.ai/probs/internal-server-error",
    "title": "Internal server error",
}
NOT_FOUND = {"type": "https://api.backend.ai/probs/object-not-found", "title": "No such session."}
NOT_VISIBLE = {
    "type": "https://api.backend.ai/probs/not-enough-permission",
    "title": "Insufficient permission",
    "error_code": "permission_access_forbidden",
}


@pytest.fixture
def compute_session():
    with mock.patch("ai.backend.client.func.session.ComputeSession", autospec=True) as cls:
        yield cls


class TestSessions:
    def test_get_conn_opens_and_closes_in_this_thread(self, hook, sync_session):
        with hook.get_conn() as session:
            assert session is sync_session.return_value
            session.open.assert_called_once_with()
            session.close.assert_not_called()
        session.close.assert_called_once_with()
        (config,) = [c.kwargs["config"] for c in sync_session.call_args_list]
        assert str(config.endpoint) == "http://127.0.0.1:8091"
        assert config.secret_key == "canary-secret-key"

    def test_get_conn_closes_on_error_and_when_open_fails(self, hook, sync_session):
        with pytest.raises(RuntimeError, match="boom"), hook.get_conn():
            raise RuntimeError("boom")
        assert sync_session.return_value.close.call_count == 1
        sync_session.return_value.open.side_effect = KeyError("version")
        with pytest.raises(KeyError), hook.get_conn():
            pytest.fail("must not be reached")
        assert sync_session.return_value.close.call_count == 2

    def test_helpers_reuse_an_open_session_and_route_calls_to_it(self, hook, sync_session, admin):
        seen = []
        admin.query.side_effect = lambda *a, **k: (
            seen.append(api_session.get())
            or {"compute_session": {"id": SID, "status": "RUNNING", "result": "UNDEFINED"}}
        )
        with hook.get_conn() as session:
            hook.get_session_facts(SID)
            hook.get_session_facts(SID)
        assert sync_session.call_count == 1
        assert seen == [session, session]

    def test_helper_outside_a_block_opens_a_short_lived_session(self, hook, sync_session, admin):
        admin.query.return_value = {
            "compute_session": {"id": SID, "status": "RUNNING", "result": "UNDEFINED"}
        }
        hook.get_session_facts(SID)
        sync_session.return_value.open.assert_called_once_with()
        sync_session.return_value.close.assert_called_once_with()

    def test_a_session_open_in_another_thread_is_not_used(self, hook, sync_session, admin):
        admin.query.return_value = {
            "compute_session": {"id": SID, "status": "RUNNING", "result": "UNDEFINED"}
        }
        with hook.get_conn():
            worker = threading.Thread(target=hook.get_session_facts, args=(SID,))
            worker.start()
            worker.join()
        assert sync_session.call_count == 2  # the other thread opened (and closed) its own session
        assert sync_session.return_value.close.call_count == 2

    async def test_get_async_conn_opens_and_closes(self, hook, async_session):
        async with hook.get_async_conn() as session:
            assert session is async_session.return_value
            session.open.assert_called_once_with()
        session.close.assert_called_once_with()

    async def test_get_async_conn_closes_when_open_fails(self, hook, async_session):
        async_session.return_value.open.side_effect = KeyError("version")
        with pytest.raises(KeyError):
            async with hook.get_async_conn():
                pytest.fail("must not be reached")
        async_session.return_value.close.assert_called_once_with()


class TestHelpers:
    def test_create_batch_session_enqueues_only(self, hook, sync_session, compute_session):
        created = mock.create_autospec(ComputeSession, instance=True)
        created.id, created.name, created.created, created.status = SID, "job-0001", True, "PENDING"
        compute_session.get_or_create.return_value = created
        mounts = ("data",)
        spec = BatchSessionSpec(image="python:3.9", command="echo hi", name="job-0001", vfolder_mounts=mounts)

        assert hook.create_batch_session(spec) == CreatedSession(SID, "job-0001", True, "PENDING")

        (call,) = compute_session.get_or_create.call_args_list
        assert call.args == ("python:3.9",)
        assert call.kwargs["type_"] == "batch"
        assert call.kwargs["enqueue_only"] is True
        assert call.kwargs["startup_command"] == "echo hi"
        assert call.kwargs["mounts"] == ["data"]
        assert "architecture" not in call.kwargs

    def test_get_session_facts(self, hook, sync_session, admin):
        admin.query.return_value = {
            "compute_session": {
                "id": SID,
                "name": "j",
                "status": "TERMINATED",
                "result": "FAILURE",
                "status_info": "task-failed",
            }
        }
        assert hook.get_session_facts(SID) == SessionFacts(SID, "TERMINATED", "FAILURE", "task-failed", "j")
        admin.query.assert_called_once_with(STATUS_QUERY, {"id": SID})

    def test_get_session_facts_of_unknown_session(self, hook, sync_session, admin):
        admin.query.return_value = {"compute_session": None}
        with pytest.raises(BackendAINotFoundError):
            hook.get_session_facts(SID)

    def test_get_session_logs(self, hook, sync_session):
        with mock.patch.object(ComputeSession, "get_logs", autospec=True) as get_logs:
            get_logs.return_value = {"result": {"logs": "line 1\nline 2\n"}}
            assert hook.get_session_logs(SID) == "line 1\nline 2\n"
        (ref,) = get_logs.call_args.args
        assert str(ref.id) == SID

    def test_destroy_session_reports_whether_it_ended_the_session(self, hook, sync_session):
        with mock.patch.object(ComputeSession, "destroy", autospec=True) as destroy:
            destroy.return_value = {"stats": {"status": "terminated"}}
            assert hook.destroy_session(SID, forced=True) is True
            assert destroy.call_args.kwargs == {"forced": True}
            destroy.return_value = {"stats": {"status": "cancelled"}}  # it had not started yet
            assert hook.destroy_session(SID) is True
            destroy.return_value = {"stats": {}}  # the manager's "nothing to do": it had already ended
            assert hook.destroy_session(SID) is False
            destroy.side_effect = BackendAPIError(404, "Not Found", NOT_FOUND)
            assert hook.destroy_session(SID) is False

    def test_a_session_the_keypair_may_not_see_is_not_gone(self, hook, sync_session):
        """RBAC's 403 (an unknown id, or another keypair's session) raises: nothing was destroyed."""
        with mock.patch.object(ComputeSession, "destroy", autospec=True) as destroy:
            destroy.side_effect = BackendAPIError(403, "Forbidden", NOT_VISIBLE)
            with pytest.raises(BackendAISessionNotVisibleError, match="unknown, or another keypair's"):
                hook.destroy_session(SID)

    def test_transient_errors_are_retried(self, hook, sync_session):
        with mock.patch.object(ComputeSession, "destroy", autospec=True) as destroy:
            destroy.side_effect = [
                BackendAPIError(503, "Service Unavailable", SERVER_ERROR),
                BackendClientError("Request to the API endpoint has failed."),
                {"stats": {"status": "terminated"}},
            ]
            assert hook.destroy_session(SID) is True
            assert destroy.call_count == 3

    def test_persistent_transient_errors_fail_after_the_retry_limit(self, hook, sync_session):
        with mock.patch.object(ComputeSession, "get_logs", autospec=True) as get_logs:
            get_logs.side_effect = BackendAPIError(502, "Bad Gateway", SERVER_ERROR)
            with pytest.raises(
                BackendAITransientError, match=f"fetch the log of session {SID} \\(HTTP 502\\)"
            ):
                hook.get_session_logs(SID)
            assert get_logs.call_count == 3

    def test_auth_errors_are_not_retried(self, hook, sync_session):
        with mock.patch.object(ComputeSession, "get_logs", autospec=True) as get_logs:
            get_logs.side_effect = BackendAPIError(401, "Unauthorized", AUTH_FAILED)
            with pytest.raises(BackendAIAuthError):
                hook.get_session_logs(SID)
            assert get_logs.call_count == 1

    async def test_async_twins_share_the_operations(self, hook, async_session, admin):
        async def answer(*args, **kwargs):
            return {"compute_session": {"id": SID, "status": "RUNNING", "result": "SUCCESS"}}

        admin.query.side_effect = answer
        facts = await hook.a_get_session_facts(SID)
        assert facts == SessionFacts(SID, "RUNNING", "SUCCESS")
        admin.query.assert_called_once_with(STATUS_QUERY, {"id": SID})
        async_session.return_value.close.assert_called_once_with()

    async def test_async_retries_and_not_found(self, hook, async_session):
        outcomes = iter(
            [BackendAPIError(500, "Internal", SERVER_ERROR), BackendAPIError(404, "Not Found", NOT_FOUND)]
        )

        async def destroy(self, **kwargs):
            raise next(outcomes)

        with mock.patch.object(ComputeSession, "destroy", autospec=True, side_effect=destroy):
            assert await hook.a_destroy_session(SID) is False


class TestResourceSlotsAndRunBatch:
    @pytest.fixture(autouse=True)
    def slots(self, monkeypatch):
        """The manager's slot list (the process-wide cache emptied for each test)."""
        from airflow.providers.backend.ai._sdk import slots as slot_cache

        monkeypatch.setattr(slot_cache, "_known", {})
        with mock.patch("ai.backend.client.func.resource.Resource", autospec=True) as resource:
            resource.get_resource_slots.return_value = {
                "cpu": "count",
                "mem": "bytes",
                "cuda.device": "count",
            }
            yield resource

    def test_the_slot_list_is_read_once_per_connection(self, hook, sync_session, slots):
        assert hook.known_resource_slots() == ("cpu", "mem", "cuda.device")
        assert hook.known_resource_slots() == ("cpu", "mem", "cuda.device")
        slots.get_resource_slots.assert_called_once_with()

    def test_an_unknown_slot_is_refused_naming_the_parameter_and_the_closest_known_one(
        self, hook, sync_session, slots
    ):
        with pytest.raises(ValueError, match=r"^Invalid session_resources slot name") as caught:
            hook.check_resource_slots({"cpu": 1, "cuda.devices": 1}, parameter="session_resources")
        assert str(caught.value) == (
            "Invalid session_resources slot name 'cuda.devices' (did you mean 'cuda.device'?): the Backend.AI "
            "manager at http://127.0.0.1:8091 knows no such slot. Known slots: 'cpu', 'mem', 'cuda.device'"
        )
        hook.check_resource_slots({"cpu": 1, "cuda.device": 1})  # known slots pass

    def test_a_manager_that_refuses_the_list_leaves_the_create_to_decide(self, hook, sync_session, slots):
        slots.get_resource_slots.side_effect = BackendAPIError(401, "Unauthorized", AUTH_FAILED)
        hook.check_resource_slots({"warp.drive": 1})  # no error: the manager's 400 will say it

    def test_run_batch_checks_everything_before_creating(self, hook, sync_session, slots):
        with (
            mock.patch.object(ComputeSession, "get_or_create", autospec=True) as create,
            mock.patch("airflow.providers.backend.ai._watch.batch.run_batch", autospec=True) as run,
        ):
            with pytest.raises(ValueError, match="Invalid session_resources slot name 'cuda.devices'"):
                hook.run_batch(
                    image="python:3.12", command="nvidia-smi", session_resources={"cuda.devices": 1}
                )
            with pytest.raises(ValueError, match="Invalid environment 'A=1': expected a mapping"):
                hook.run_batch(image="python:3.12", command="env", environment="A=1")
            with pytest.raises(TypeError, match="unexpected keyword argument 'resources'"):
                hook.run_batch(image="python:3.12", command="env", resources={"cpu": 1})
            run.assert_not_called()
            create.assert_not_called()

    def test_run_batch_runs_the_checked_session(self, hook, sync_session, slots):
        with mock.patch("airflow.providers.backend.ai._watch.batch.run_batch", autospec=True) as run:
            run.return_value = {"result": "SUCCESS"}
            assert hook.run_batch(
                image="python:3.12",
                command="python train.py",
                session_name="train-0001",
                session_resources={"cpu": 2},
            ) == {"result": "SUCCESS"}
        (_, spec), kwargs = run.call_args
        assert (spec.name, spec.image, spec.command, dict(spec.resources)) == (
            "train-0001",
            "python:3.12",
            "python train.py",
            {"cpu": 2},
        )
        assert kwargs["on_finish_action"] == "destroy"


class TestTestConnection:
    def hello(self):
        return {"version": "v9.20250722", "manager": "26.9.6"}

    def test_success_needs_an_authenticated_request(self, hook, sync_session, admin, compute_session):
        compute_session.hello.return_value = self.hello()
        admin.query.return_value = {"compute_session": None}
        ok, message = hook.test_connection()
        assert ok, message
        assert "26.9.6" in message
        assert "v9.20250722" in message
        assert "http://127.0.0.1:8091" in message
        admin.query.assert_called_once()

    def test_graphql_error_still_proves_the_keys(self, hook, sync_session, admin, compute_session):
        compute_session.hello.return_value = self.hello()
        admin.query.side_effect = BackendAPIError(
            400,
            "Bad request",
            {
                "type": "https://api.backend.ai/probs/graphql-error",
                "title": "GraphQL-generated error",
                "data": [],
            },
        )
        assert hook.test_connection()[0] is True

    def test_wrong_keys(self, hook, sync_session, admin, compute_session):
        compute_session.hello.return_value = self.hello()
        admin.query.side_effect = BackendAPIError(401, "Unauthorized", AUTH_FAILED)
        ok, message = hook.test_connection()
        assert not ok
        assert message.startswith("Authentication failed")
        assert "Credential/signature mismatch." in message
        assert admin.query.call_count == 1
        assert "canary-secret-key" not in message

    def test_unreachable(self, hook, sync_session, compute_session):
        compute_session.hello.side_effect = BackendClientError("Request to the API endpoint has failed.")
        ok, message = hook.test_connection()
        assert not ok
        assert "reach the manager" in message
        assert compute_session.hello.call_count == 3


def run_fresh_interpreter(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_the_provider_loads_neither_the_sdk_nor_the_watch_loop():
    """Dag parsing imports these modules: the SDK (~1 s) and the watch machinery load only when a job runs."""
    out = run_fresh_interpreter(
        "import importlib, json, sys\n"
        "from airflow.providers.backend.ai.get_provider_info import get_provider_info\n"
        "info = get_provider_info()\n"
        "modules = [m for k in ('hooks', 'operators', 'sensors', 'triggers') for e in info[k] for m in e['python-modules']]\n"
        "modules += [d['class-name'].rpartition('.')[0] for d in info['task-decorators']]\n"
        "for m in modules: importlib.import_module(m)\n"
        "from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook\n"
        "BackendAIHook.get_ui_field_behaviour()\n"
        "print(json.dumps([m for m in sys.modules if m == 'ai' or m.startswith('ai.')]))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('airflow.providers.backend.ai._watch.'))))\n"
    )
    *_, sdk_modules, watch_modules = out.strip().splitlines()
    assert json.loads(sdk_modules) == []
    assert json.loads(watch_modules) == ["airflow.providers.backend.ai._watch.log_follower"]


def test_a_process_that_used_the_hook_exits_promptly():
    """The sync SDK session runs a non-daemon thread; the hook must always stop it."""
    out = run_fresh_interpreter(
        "import os, threading\n"
        'os.environ[\'AIRFLOW_CONN_DEAD\'] = \'{"conn_type": "backend_ai", "host": "http://127.0.0.1:9", '
        '"login": "AKIAEXAMPLE", "password": "secret"}\'\n'
        "from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook\n"
        "hook = BackendAIHook('dead', retry_limit=1)\n"
        "print(hook.test_connection()[0])\n"
        "try:\n"
        "    hook.get_session_logs('3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
        "print(sorted(t.name for t in threading.enumerate() if not t.daemon))\n"
    )
    assert out.strip().splitlines()[-3:] == ["False", "BackendAITransientError", "['MainThread']"]
