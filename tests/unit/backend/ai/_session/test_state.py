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


# -- preemption ------------------------------------------------------------------------------------------

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
R1, P, R2 = "2026-12-06T10:00:10.5+00:00", "2026-12-06T10:01:00.5+00:00", "2026-12-06T10:03:00.5+00:00"


def facts(status, result="UNDEFINED", info=None, *, running=R1, preempted=P):
    return SessionFacts(SID, status, result, info, running_since=running, preempted_at=preempted)


@pytest.mark.parametrize(
    ("state", "requeued", "rerun", "for_good", "verdict"),
    [
        pytest.param(
            facts("RUNNING", preempted=None), False, False, False, Verdict.RUNNING, id="never-preempted"
        ),
        pytest.param(
            facts("PREEMPTED", info="preempted-by-reservation"),
            True,
            False,
            False,
            Verdict.RUNNING,
            id="preempted",
        ),
        pytest.param(
            facts("RESCHEDULING", info="preempted-by-scheduler"),
            True,
            False,
            False,
            Verdict.RUNNING,
            id="rescheduling",
        ),
        pytest.param(
            facts("PENDING", info="rescheduled"), True, False, False, Verdict.RUNNING, id="requeued"
        ),
        pytest.param(
            facts("PREPARING", info="rescheduled"), True, False, False, Verdict.RUNNING, id="prepared-again"
        ),
        # Without status_info, status_history still tells: its RUNNING is older than its PREEMPTED.
        pytest.param(facts("SCHEDULED"), True, False, False, Verdict.RUNNING, id="history-only"),
        pytest.param(facts("RUNNING", running=R2), False, True, False, Verdict.RUNNING, id="rerun"),
        pytest.param(
            facts("TERMINATED", "SUCCESS", "task-finished", running=R2),
            False,
            True,
            False,
            Verdict.SUCCEEDED,
            id="rerun-done",
        ),
        pytest.param(
            facts("TERMINATING", info="preempted-by-scheduler"),
            False,
            False,
            True,
            Verdict.FAILED,
            id="terminate-mode",
        ),
        pytest.param(
            facts("TERMINATED", info="preempted-by-scheduler"),
            False,
            False,
            True,
            Verdict.FAILED,
            id="terminated",
        ),
        # Destroyed while requeued: an ordinary end without a result, not a preemption.
        pytest.param(
            facts("TERMINATED", info="user-requested"), False, False, False, Verdict.FAILED, id="destroyed"
        ),
    ],
)
def test_what_a_preemption_means(state, requeued, rerun, for_good, verdict):
    assert (state.requeued, state.rerun, state.preempted_for_good, state.verdict) == (
        requeued,
        rerun,
        for_good,
        verdict,
    )
    assert state.has_started is (not requeued)


def test_ran_for_is_measured_on_the_managers_clock():
    assert facts("PENDING", info="rescheduled").ran_for == pytest.approx(50.0)
    assert facts("RUNNING", running=R2).ran_for is None  # the preempted run's start is overwritten
    assert facts("RUNNING", preempted=None).ran_for is None


@pytest.mark.parametrize(
    "history",
    [
        json.dumps({"PENDING": "2026-12-06T10:00:00+00:00", "RUNNING": R1, "PREEMPTED": P}),
        {"PENDING": "2026-12-06T10:00:00+00:00", "running": R1, "PREEMPTED": P},
    ],
    ids=["json-string", "mapping"],
)
def test_status_history_dates_the_run_and_the_preemption(history):
    node = {
        "id": SID,
        "status": "PENDING",
        "result": "UNDEFINED",
        "status_info": "rescheduled",
        "status_history": history,
    }
    read = SessionFacts.from_graphql(SID, node)
    assert (read.running_since, read.preempted_at, read.requeued) == (R1, P, True)


@pytest.mark.parametrize("history", [None, "", "not json", "[1, 2]", '{"RUNNING": 5}'])
def test_an_unreadable_status_history_counts_as_none(history):
    node = {"id": SID, "status": "RUNNING", "result": "UNDEFINED", "status_history": history}
    read = SessionFacts.from_graphql(SID, node)
    assert (read.running_since, read.preempted_at, read.requeued, read.rerun) == (None, None, False, False)
