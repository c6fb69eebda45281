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
The contract between :class:`BackendAISessionTrigger` and the tasks it resumes: one event, facts not verdicts.

The trigger reports what it saw (the session's facts) and why it stopped watching; the task that resumes
judges the facts itself (``SessionFacts.verdict``), exactly as the worker path judges a read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from airflow.providers.backend.ai._session.state import SessionFacts
from airflow.providers.backend.ai.exceptions import BackendAIException

#: The XCom key under which a task records the session it created; the trigger's ``on_kill`` reads it back to
#: tell whether the deferred task still watches that session.
SESSION_ID_XCOM_KEY = "session_id"
EVENT_KEYS = ("status", "session_id", "session_name", "session_status", "result", "status_info", "message")


class EventKind(enum.StrEnum):
    """Why the trigger stopped watching (the event's ``status``)."""

    ENDED = "ended"  # the job ended: judge the facts
    TIMEOUT = "timeout"  # a deadline passed first
    ERROR = "error"  # the API kept failing


#: What triggers deferred by provider versions before the ``ended`` kind (commit 11b7351 and earlier) send
#: for an ended job; such events still resume tasks after an upgrade.
_EARLIER_ENDED_STATUSES = ("success", "failed")


@dataclass(frozen=True)
class TriggerOutcome:
    """
    The one event of a trigger: why it stopped, and what it last saw of the session.

    :param kind: why the trigger stopped watching.
    :param session_id: the watched session.
    :param session_name: its name, when known.
    :param message: what happened, in words (the reason of a timeout or an error).
    :param facts: the session's last read state; None when no read succeeded.
    :param log_offset: characters of the log the trigger already wrote into the task log.
    :param log_run: the run of the job those characters belong to (``SessionFacts.running_since``): after
        a preemption and rerun the manager has only the rerun's log.
    """

    kind: EventKind
    session_id: str
    session_name: str | None
    message: str
    facts: SessionFacts | None = None
    log_offset: int = 0
    log_run: str | None = None

    def to_payload(self) -> dict[str, Any]:
        facts = self.facts
        return {
            "status": self.kind.value,
            "session_id": self.session_id,
            "session_name": self.session_name or (facts.name if facts else None),
            "session_status": facts.status if facts else None,
            "result": facts.result if facts else None,
            "status_info": facts.status_info if facts else None,
            "message": self.message,
            "log_offset": self.log_offset,
            # Added with preemption handling; events of earlier triggers lack them (read with .get).
            "running_since": facts.running_since if facts else None,
            "preempted_at": facts.preempted_at if facts else None,
            "log_run": self.log_run,
        }

    @classmethod
    def from_payload(cls, event: Any) -> TriggerOutcome:
        """Read a trigger event after checking its shape; raise naming what is missing or unknown."""
        if not isinstance(event, dict):
            raise BackendAIException(f"Invalid trigger event {event!r}: expected a dict")
        for key in EVENT_KEYS:
            if key not in event:
                raise BackendAIException(f"Could not find `{key}` in the trigger event {event!r}")
        status = event["status"]
        kind = EventKind.ENDED if status in _EARLIER_ENDED_STATUSES else _kind(status)
        facts = None
        if event["session_status"] is not None:
            facts = SessionFacts(
                session_id=event["session_id"],
                status=event["session_status"],
                result=event["result"] or "UNDEFINED",
                status_info=event["status_info"],
                name=event["session_name"],
                running_since=event.get("running_since"),
                preempted_at=event.get("preempted_at"),
            )
        if kind is EventKind.ENDED and facts is None:
            raise BackendAIException(
                f"Invalid trigger event {event!r}: an ended job needs its session_status"
            )
        return cls(
            kind=kind,
            session_id=event["session_id"],
            session_name=event["session_name"],
            message=event["message"],
            facts=facts,
            log_offset=event.get("log_offset") or 0,
            log_run=event.get("log_run"),
        )


def _kind(status: Any) -> EventKind:
    try:
        return EventKind(status)
    except ValueError:
        raise BackendAIException(f"Unknown trigger event status {status!r}") from None
