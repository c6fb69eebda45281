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
"""The final log read of an ended job: the manager's HTTP 500 gap before TERMINATED is waited out."""

from __future__ import annotations

from unittest import mock

import pytest

from airflow.providers.backend.ai._session.state import SessionFacts
from airflow.providers.backend.ai._watch.loop import (
    FINAL_LOG_CHECK,
    FINAL_LOG_WAIT,
    read_final_log,
    wait_until_terminal,
)
from airflow.providers.backend.ai.exceptions import (
    BackendAIAuthError,
    BackendAINotFoundError,
    BackendAITransientError,
)
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
TERMINATING = SessionFacts(SID, "TERMINATING", "SUCCESS", "task-finished")
TERMINATED = SessionFacts(SID, "TERMINATED", "SUCCESS", "task-finished")
GAP = BackendAITransientError("fetch the log of session", status=500)


@pytest.fixture
def reader():
    """A hook whose reads the test answers (autospecced: the calls must match the hook's signatures)."""
    return mock.create_autospec(BackendAIHook, instance=True)


def test_a_readable_log_is_read_once(reader, clock):
    reader.get_session_logs.return_value = "done\n"
    assert read_final_log(reader, SID, log=mock.Mock()) == "done\n"
    assert reader.get_session_logs.call_count == 1
    reader.get_session_facts.assert_not_called()


def test_the_gap_is_waited_out_until_terminated(reader, clock):
    reader.get_session_logs.side_effect = [GAP, "done\n"]
    reader.get_session_facts.side_effect = [TERMINATING, TERMINATING, TERMINATED]
    log = mock.Mock()
    assert read_final_log(reader, SID, log=log) == "done\n"
    assert clock.call_args_list == [mock.call(FINAL_LOG_CHECK)] * 2
    assert "cannot be read until the session has terminated" in log.info.call_args.args[0]


def test_after_the_longest_wait_the_log_is_read_once_more_and_its_error_raised(reader, clock):
    reader.get_session_logs.side_effect = [GAP, GAP]
    reader.get_session_facts.return_value = TERMINATING
    with pytest.raises(BackendAITransientError):
        read_final_log(reader, SID, log=mock.Mock())
    assert reader.get_session_logs.call_count == 2
    assert clock.call_count == pytest.approx(FINAL_LOG_WAIT / FINAL_LOG_CHECK, abs=1)


def test_a_permanent_error_is_raised_at_once(reader, clock):
    reader.get_session_logs.side_effect = BackendAIAuthError("fetch the log of session", status=401)
    with pytest.raises(BackendAIAuthError):
        read_final_log(reader, SID, log=mock.Mock())
    reader.get_session_facts.assert_not_called()
    clock.assert_not_called()


def test_a_session_the_manager_no_longer_knows_counts_as_terminated(reader, clock):
    reader.get_session_facts.side_effect = BackendAINotFoundError("read the status of session", status=404)
    assert wait_until_terminal(reader, SID, timeout=60, check_every=1) == "TERMINATED"
    clock.assert_not_called()


def test_the_last_status_is_returned_when_the_wait_runs_out(reader, clock):
    reader.get_session_facts.return_value = TERMINATING
    assert wait_until_terminal(reader, SID, timeout=3, check_every=1) == "TERMINATING"
    assert clock.call_count == 3
