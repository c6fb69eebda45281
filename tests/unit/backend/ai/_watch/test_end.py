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
"""The end of a job: the final log (or a note why it is missing) and the teardown ``on_finish_action`` asks for."""

from __future__ import annotations

from unittest import mock

import pytest

from airflow.providers.backend.ai._session.finish import FinishAction
from airflow.providers.backend.ai._session.state import Verdict
from airflow.providers.backend.ai._watch.end import FinalLog, final_log, tear_down
from airflow.providers.backend.ai.exceptions import BackendAIAuthError, BackendAITransientError
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"


@pytest.fixture
def hook():
    """A hook whose calls the test answers (autospecced against the real hook)."""
    return mock.create_autospec(BackendAIHook, instance=True)


def test_the_log_is_returned_and_its_unwritten_lines_go_to_the_task_log(hook):
    hook.get_session_logs.return_value = "one\ntwo\n"
    follower = mock.Mock()
    assert final_log(hook, SID, log=mock.Mock(), follower=follower, run="t1") == FinalLog("one\ntwo\n")
    follower.finish.assert_called_once_with("one\ntwo\n", "t1")


def test_a_log_that_cannot_be_read_becomes_a_note(hook):
    hook.get_session_logs.side_effect = BackendAIAuthError("fetch the log", status=401)
    log, follower = mock.Mock(), mock.Mock()
    ended = final_log(hook, SID, log=log, follower=follower)
    assert not ended.fetched
    assert ended.text.startswith("[the session log could not be fetched: Backend.AI API call failed")
    follower.finish.assert_not_called()
    log.warning.assert_called_once()


@pytest.mark.parametrize(
    ("action", "verdict", "destroyed"),
    [
        (FinishAction.DESTROY, Verdict.SUCCEEDED, True),
        (FinishAction.DESTROY, None, True),
        (FinishAction.KEEP, Verdict.FAILED, False),
        (FinishAction.KEEP, None, False),
        (FinishAction.DESTROY_ON_SUCCESS, Verdict.FAILED, False),
        (FinishAction.DESTROY_ON_SUCCESS, Verdict.SUCCEEDED, True),
        (FinishAction.DESTROY_ON_SUCCESS, None, True),  # a job that did not end is never left running
    ],
)
def test_teardown_follows_the_action(hook, action, verdict, destroyed):
    log = mock.Mock()
    tear_down(hook, SID, action, verdict, log=log)
    assert hook.destroy_session.called is destroyed
    if not destroyed:
        log.info.assert_called_once_with(
            "Keeping Backend.AI session %s (on_finish_action=%s)", SID, action.value
        )


def test_a_failed_destroy_is_logged_not_raised(hook):
    hook.destroy_session.side_effect = BackendAITransientError("destroy", status=503)
    log = mock.Mock()
    tear_down(hook, SID, FinishAction.DESTROY, None, log=log)  # raises nothing
    assert log.error.call_args.args[3] == "it may run until its job ends; destroy it by hand"


def test_a_session_already_gone_is_said_so(hook):
    hook.destroy_session.return_value = False
    log = mock.Mock()
    tear_down(hook, SID, FinishAction.DESTROY, Verdict.SUCCEEDED, log=log)
    log.info.assert_called_once_with("Backend.AI session %s was already gone", SID)
