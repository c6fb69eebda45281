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
"""
What a Backend.AI batch session's state means, judged in one place for every waiting path.

A batch job is over as soon as the manager knows its ``result``: the real manager sets ``result`` about
10 ms after the job exits but reaches TERMINATED 2-4 s later, so waiting for TERMINATED would make every
job seconds late. A session that ends without a result (destroyed, cancelled, errored) is over too.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: Statuses after which a session never changes again.
TERMINAL_STATUSES = frozenset({"TERMINATED", "CANCELLED", "ERROR"})
#: Statuses of a session whose job has not started yet (it is queued, scheduled or being prepared).
NOT_STARTED_STATUSES = frozenset(
    {
        "PENDING",
        "SCHEDULED",
        "PREPARING",
        "PULLING",
        "PREPARED",
        "CREATING",
        "DEPRIORITIZING",
        "RESERVED",
        "PREEMPTED",
        "RESCHEDULING",
    }
)
#: Statuses of a session the scheduler preempted, before it is either requeued or terminated.
PREEMPTING_STATUSES = frozenset({"PREEMPTED", "RESCHEDULING"})
#: ``status_info`` of a session preempted in terminate mode (TERMINATING and TERMINATED; RESCHEDULING in
#: reschedule mode has it too) and of a requeued one (PENDING to CREATING of its rerun), on 26.9.6.
PREEMPTED_BY_SCHEDULER = "preempted-by-scheduler"
RESCHEDULED = "rescheduled"


class Verdict(enum.StrEnum):
    """The provider's reading of a session: still going, succeeded, or failed."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def judge_session(status: str | None, result: str | None) -> Verdict:
    """Judge a session from its status and result (case-insensitive; unknown statuses mean "keep waiting")."""
    result = (result or "UNDEFINED").upper()
    if result == "SUCCESS":
        return Verdict.SUCCEEDED
    if result == "FAILURE":
        return Verdict.FAILED
    if (status or "").upper() in TERMINAL_STATUSES:
        return Verdict.FAILED
    return Verdict.RUNNING


@dataclass(frozen=True)
class SessionFacts:
    """
    What the manager reports about one session; JSON-serialisable so triggers can send it in an event.

    :param session_id: the session's UUID as a string.
    :param status: the status name, upper case (``RUNNING``, ``TERMINATED``, ...).
    :param result: ``UNDEFINED``, ``SUCCESS`` or ``FAILURE``.
    :param status_info: the reason of the last transition (``task-finished``, ``task-timeout``, ...).
    :param name: the session name, when known.
    :param running_since: when the current (or last) run reached RUNNING, as the manager wrote it in the
        session's ``status_history``: each run of a preempted and rescheduled session has its own.
    :param preempted_at: when the scheduler last preempted the session (``status_history``), if ever.
    """

    session_id: str
    status: str
    result: str = "UNDEFINED"
    status_info: str | None = None
    name: str | None = None
    running_since: str | None = None
    preempted_at: str | None = None

    @property
    def verdict(self) -> Verdict:
        """The job's outcome; a terminate-mode preemption fails it at TERMINATING already (it cannot rerun)."""
        if self.preempted_for_good:
            return Verdict.FAILED
        return judge_session(self.status, self.result)

    @property
    def requeued(self) -> bool:
        """
        Preempted, and not running again yet: PREEMPTED or RESCHEDULING (the mode is not known until the next
        status), then back in the queue (reschedule mode) until its rerun reaches RUNNING.
        """
        if self.status in PREEMPTING_STATUSES:
            return True
        if self.status not in NOT_STARTED_STATUSES or self.preempted_at is None:
            return False
        return (
            self.status_info == RESCHEDULED
            or seconds_between(self.running_since, self.preempted_at) is not None
        )

    @property
    def rerun(self) -> bool:
        """Running again (or ended) after a preemption: its current run started after it was preempted."""
        return (
            self.has_started
            and self.status not in PREEMPTING_STATUSES
            and seconds_between(self.preempted_at, self.running_since) is not None
        )

    @property
    def preempted_for_good(self) -> bool:
        """Preempted in terminate mode: TERMINATING or TERMINATED without a result, and no rerun to come."""
        return (
            self.status in ("TERMINATING", "TERMINATED")
            and self.result.upper() not in ("SUCCESS", "FAILURE")
            and self.status_info == PREEMPTED_BY_SCHEDULER
        )

    @property
    def ran_for(self) -> float | None:
        """Seconds the run that was preempted had run (both times the manager's: no clock skew), if known."""
        return seconds_between(self.running_since, self.preempted_at)

    @property
    def has_started(self) -> bool:
        """Whether the job is past scheduling and preparation (or ended); not while requeued for a rerun."""
        return self.status not in NOT_STARTED_STATUSES or self.verdict is not Verdict.RUNNING

    @classmethod
    def from_graphql(cls, session_id: str, node: dict[str, Any]) -> SessionFacts:
        """
        Read a ``compute_session`` GraphQL node; "None" status info (a manager quirk) becomes ``None``.

        :raises ValueError: the node lacks ``status`` or ``result``: without them every state would read as
            "still running", and the wait would never end.
        """
        missing = [key for key in ("status", "result") if not node.get(key)]
        if missing:
            raise ValueError(f"the manager's answer has no {' or '.join(missing)} for session {session_id}")
        status_info = node.get("status_info")
        history = _status_history(node.get("status_history"))
        return cls(
            session_id=str(node.get("id") or session_id),
            status=str(node["status"]).upper(),
            result=str(node["result"]).upper(),
            status_info=None if status_info in (None, "", "None") else str(status_info),
            name=node.get("name"),
            running_since=history.get("RUNNING"),
            preempted_at=history.get("PREEMPTED"),
        )


def _status_history(value: Any) -> dict[str, str]:
    """
    ``status_history`` as the legacy GraphQL type gives it: a JSON string of ``{STATUS: iso time}`` (the
    latest time of each status). Anything unreadable counts as no history: it only refines the verdict.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, dict):
        return {}
    return {str(k).upper(): v for k, v in value.items() if isinstance(v, str)}


def parse_time(value: str | None) -> datetime | None:
    """An ISO time from the manager, or None when there is none or it cannot be read."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def seconds_between(earlier: str | None, later: str | None) -> float | None:
    """Seconds from ``earlier`` to ``later`` (two times of the manager's); None unless both exist in that order."""
    start, end = parse_time(earlier), parse_time(later)
    if start is None or end is None or (start.tzinfo is None) != (end.tzinfo is None):
        return None
    seconds = (end - start).total_seconds()
    return seconds if seconds > 0 else None
