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
"""The trigger's event: the facts it carries, and events of triggers deferred by earlier releases."""

from __future__ import annotations

from airflow.providers.backend.ai._session.events import EventKind, TriggerOutcome
from airflow.providers.backend.ai._session.state import SessionFacts

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
R2, P = "2026-12-06T10:03:00+00:00", "2026-12-06T10:01:00+00:00"


def test_the_preemption_dates_and_the_streamed_run_travel_with_the_event():
    facts = SessionFacts(
        SID, "TERMINATED", "SUCCESS", "task-finished", "job", running_since=R2, preempted_at=P
    )
    outcome = TriggerOutcome(EventKind.ENDED, SID, "job", "The job ended", facts, log_offset=12, log_run=R2)
    assert TriggerOutcome.from_payload(outcome.to_payload()) == outcome
    assert TriggerOutcome.from_payload(outcome.to_payload()).facts.rerun


def test_an_event_without_them_still_resumes_the_task():
    """What triggers of the release before preemption handling send."""
    old = {
        "status": "ended",
        "session_id": SID,
        "session_name": "job",
        "session_status": "TERMINATED",
        "result": "SUCCESS",
        "status_info": "task-finished",
        "message": "The job ended: SUCCESS",
        "log_offset": 5,
    }
    outcome = TriggerOutcome.from_payload(old)
    assert outcome.facts == SessionFacts(SID, "TERMINATED", "SUCCESS", "task-finished", "job")
    assert (outcome.log_offset, outcome.log_run) == (5, None)


def test_a_terminate_mode_preemption_is_judged_failed_by_the_resumed_task():
    event = TriggerOutcome(
        EventKind.ENDED,
        SID,
        "job",
        "The job ended: UNDEFINED",
        SessionFacts(SID, "TERMINATING", "UNDEFINED", "preempted-by-scheduler", preempted_at=P),
    ).to_payload()
    facts = TriggerOutcome.from_payload(event).facts
    assert facts is not None
    assert facts.preempted_for_good
