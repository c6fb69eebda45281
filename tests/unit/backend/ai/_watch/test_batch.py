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
"""One batch job from create to teardown, as the hook's run_batch runs it (the hook autospecced)."""

from __future__ import annotations

from unittest import mock

import pytest

from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec
from airflow.providers.backend.ai._session.state import SessionFacts
from airflow.providers.backend.ai._watch.batch import run_batch
from airflow.providers.backend.ai.exceptions import BackendAIJobFailedError, BackendAIStartupTimeoutError
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook, CreatedSession

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
SPEC = BatchSessionSpec(image="python:3.12", command="python train.py", name="hook-job-0001")
SUCCEEDED = SessionFacts(SID, "TERMINATING", "SUCCESS", "task-finished", "hook-job-0001")
FAILED = SessionFacts(SID, "TERMINATED", "FAILURE", "task-failed", "hook-job-0001")


@pytest.fixture
def hook(make_connection):
    """A hook whose calls the test answers: the SDK is never reached."""
    hook = mock.create_autospec(BackendAIHook, instance=True)
    hook.create_batch_session.return_value = CreatedSession(SID, "hook-job-0001", True, "PENDING")
    hook.get_session_logs.return_value = "epoch 1\nloss 0.1\n"
    hook.destroy_session.return_value = True
    return hook


def run(hook, **kwargs):
    defaults = {
        "startup_timeout": 60,
        "poll_interval": 1,
        "use_event_stream": False,
        "on_finish_action": "destroy",
        "xcom_log_limit": 10_000,
        "log": mock.Mock(),
    }
    return run_batch(hook, SPEC, **{**defaults, **kwargs})


def test_success_returns_the_operators_xcom_value_and_destroys(hook, clock):
    hook.get_session_facts.side_effect = [SessionFacts(SID, "RUNNING"), SUCCEEDED]
    assert run(hook) == {
        "session_id": SID,
        "session_name": "hook-job-0001",
        "status": "TERMINATING",
        "result": "SUCCESS",
        "status_info": "task-finished",
        "logs": "epoch 1\nloss 0.1\n",
    }
    hook.create_batch_session.assert_called_once_with(SPEC)
    hook.destroy_session.assert_called_once_with(SID)


def test_a_failed_job_raises_with_the_log_tail_and_is_destroyed(hook, clock):
    hook.get_session_facts.return_value = FAILED
    with pytest.raises(BackendAIJobFailedError, match="the command exited with a non-zero code") as caught:
        run(hook)
    assert caught.value.log_tail == "epoch 1\nloss 0.1"
    hook.destroy_session.assert_called_once_with(SID)


def test_destroy_on_success_keeps_a_failed_session(hook, clock):
    hook.get_session_facts.return_value = FAILED
    with pytest.raises(BackendAIJobFailedError):
        run(hook, on_finish_action="destroy_on_success")
    hook.destroy_session.assert_not_called()


def test_a_session_that_never_starts_is_destroyed_after_the_startup_timeout(hook, clock):
    hook.get_session_facts.return_value = SessionFacts(SID, "PENDING")
    with pytest.raises(BackendAIStartupTimeoutError, match="did not start within startup_timeout=5s"):
        run(hook, startup_timeout=5)
    hook.destroy_session.assert_called_once_with(SID)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"on_finish_action": "delete"}, "Invalid on_finish_action 'delete': accepted values are"),
        ({"startup_timeout": 0}, "Invalid startup_timeout 0"),
        ({"poll_interval": "fast"}, "Invalid poll_interval 'fast'"),
    ],
)
def test_invalid_parameters_fail_before_the_create(hook, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(hook, **kwargs)
    hook.create_batch_session.assert_not_called()
