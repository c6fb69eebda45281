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
from dataclasses import dataclass
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
    """

    session_id: str
    status: str
    result: str = "UNDEFINED"
    status_info: str | None = None
    name: str | None = None

    @property
    def verdict(self) -> Verdict:
        return judge_session(self.status, self.result)

    @property
    def has_started(self) -> bool:
        """Whether the job got past scheduling and preparation (or ended, which also counts)."""
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
        return cls(
            session_id=str(node.get("id") or session_id),
            status=str(node["status"]).upper(),
            result=str(node["result"]).upper(),
            status_info=None if status_info in (None, "", "None") else str(status_info),
            name=node.get("name"),
        )
