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
"""Why a session waits: the queue position and the scheduler's last word, read from the manager's answers."""

from __future__ import annotations

import pytest

from airflow.providers.backend.ai._session.waiting import (
    MESSAGE_LIMIT,
    WaitReason,
    last_scheduler_message,
    queue_position,
)

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
#: As 26.9.6 words a session that does not fit (measured; abridged).
NEED_RETRY = (
    "Some kernels could not be placed on any agent. (1 requirement(s) could not be placed:\n"
    "- requirement #0 (containers=1, arch=x86_64, slots=cpu=129.000000 mem=1 GiB): no agents passed the "
    "'resource' filter\n  - cpu: missing=3.000000)"
)


def history(*entries: dict) -> dict:
    return {
        "data": {"sessionScopedSchedulingHistories": {"edges": [{"node": e} for e in entries]}},
        "errors": None,
    }


def entry(phase: str, result: str, message: str, updated: str) -> dict:
    return {"phase": phase, "result": result, "message": message, "createdAt": updated, "updatedAt": updated}


def test_the_newest_verdict_that_is_not_a_success_is_the_reason():
    answer = history(
        entry("enqueue", "SUCCESS", "enqueued", "2026-12-06T10:00:00+00:00"),
        entry("schedule-sessions", "NEED_RETRY", NEED_RETRY, "2026-12-06T10:01:00+00:00"),
    )
    assert last_scheduler_message(answer) == " ".join(NEED_RETRY.split())


def test_a_coalesced_entry_counts_by_its_last_update():
    """The manager raises ``attempts`` and ``updatedAt`` of a repeated verdict instead of adding an entry."""
    answer = history(
        {
            **entry("schedule-sessions", "NEED_RETRY", "retry", "2026-12-06T10:05:00+00:00"),
            "createdAt": "2026-12-06T10:00:00+00:00",
        },
        entry(
            "schedule-sessions",
            "SKIPPED",
            "Not attempted: the resource group ran out",
            "2026-12-06T10:02:00+00:00",
        ),
    )
    assert last_scheduler_message(answer) == "retry"


@pytest.mark.parametrize(
    "answer",
    [
        history(entry("mark_pending", "SUCCESS", "mark_pending success", "2026-12-06T10:00:00+00:00")),
        history(),
        {"data": None, "errors": [{"message": "Cannot query field 'sessionScopedSchedulingHistories'"}]},
        None,
        "not a mapping",
    ],
    ids=["success", "empty", "old-manager", "none", "odd"],
)
def test_nothing_to_say(answer):
    assert last_scheduler_message(answer) is None


def test_a_long_message_is_cut():
    answer = history(entry("schedule-sessions", "NEED_RETRY", "x" * 2000, "2026-12-06T10:00:00+00:00"))
    text = last_scheduler_message(answer)
    assert text is not None
    assert len(text) == MESSAGE_LIMIT
    assert text.endswith("…")


@pytest.mark.parametrize(
    ("answer", "position"),
    [
        ({"compute_session_node": {"queue_position": 2}}, 2),
        ({"compute_session_node": {"queue_position": None}}, None),
        ({"compute_session_node": None}, None),
        ({"compute_session_node": {"queue_position": True}}, None),
        (None, None),
    ],
)
def test_queue_position(answer, position):
    assert queue_position(answer) == position


@pytest.mark.parametrize(
    ("reason", "status", "line"),
    [
        (
            WaitReason(0, "cpu: missing=3"),
            "PENDING",
            f"Session {SID} waits in the queue at position 0: cpu: missing=3",
        ),
        (WaitReason(3, None), "PENDING", f"Session {SID} waits in the queue at position 3"),
        (WaitReason(None, "Not attempted"), "PENDING", f"Session {SID} waits to be scheduled: Not attempted"),
        (WaitReason(None, None), "PENDING", None),
    ],
)
def test_describe(reason, status, line):
    assert reason.describe(SID, status) == line


def test_a_reservation_is_described_whatever_the_history_says():
    said = WaitReason(None, "mark_reserved success").describe(SID, "RESERVED")
    assert said is not None
    assert said.startswith(f"Session {SID} holds a reservation: the scheduler preempts")
    assert "mark_reserved" not in said
