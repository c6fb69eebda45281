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

import pytest

from airflow.providers.backend.ai._session.state import SessionFacts, Verdict, judge_session


@pytest.mark.parametrize(
    ("status", "result", "verdict"),
    [
        ("PENDING", "UNDEFINED", Verdict.RUNNING),
        ("PREPARING", None, Verdict.RUNNING),
        ("RUNNING", "UNDEFINED", Verdict.RUNNING),
        ("RUNNING", "SUCCESS", Verdict.SUCCEEDED),  # the result comes seconds before TERMINATED
        ("RUNNING", "FAILURE", Verdict.FAILED),
        ("TERMINATING", "SUCCESS", Verdict.SUCCEEDED),
        ("TERMINATED", "SUCCESS", Verdict.SUCCEEDED),
        ("TERMINATED", "success", Verdict.SUCCEEDED),
        ("TERMINATED", "FAILURE", Verdict.FAILED),
        ("TERMINATED", "UNDEFINED", Verdict.FAILED),  # destroyed before the job ended
        ("CANCELLED", "UNDEFINED", Verdict.FAILED),
        ("ERROR", "UNDEFINED", Verdict.FAILED),
        ("ERROR", None, Verdict.FAILED),
        ("terminated", None, Verdict.FAILED),
        ("SOME_NEW_STATUS", "UNDEFINED", Verdict.RUNNING),  # unknown statuses: keep waiting
        (None, None, Verdict.RUNNING),
    ],
)
def test_judge_session(status, result, verdict):
    assert judge_session(status, result) is verdict


@pytest.mark.parametrize(
    ("status", "result", "started"),
    [
        ("PENDING", "UNDEFINED", False),
        ("PREPARING", "UNDEFINED", False),
        ("CREATING", "UNDEFINED", False),
        ("RUNNING", "UNDEFINED", True),
        ("TERMINATING", "UNDEFINED", True),
        ("CANCELLED", "UNDEFINED", True),
        ("PREPARING", "FAILURE", True),
    ],
)
def test_has_started(status, result, started):
    assert SessionFacts("s", status, result).has_started is started


def test_facts_from_graphql():
    facts = SessionFacts.from_graphql(
        "abc",
        {"id": "abc", "name": "job", "status": "terminated", "result": "success", "status_info": "None"},
    )
    assert facts == SessionFacts("abc", "TERMINATED", "SUCCESS", None, "job")
    assert facts.verdict is Verdict.SUCCEEDED
