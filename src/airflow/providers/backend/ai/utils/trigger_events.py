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
"""The contract between :class:`BackendAISessionTrigger` and the tasks it resumes: one payload shape."""

from __future__ import annotations

from typing import Any

from airflow.providers.backend.ai.exceptions import BackendAIException
from airflow.providers.backend.ai.utils.session_state import SessionFacts

#: The XCom key under which a task records the session it created; the trigger's ``on_kill`` reads it back to
#: tell whether the deferred task still watches that session.
SESSION_ID_XCOM_KEY = "session_id"
EVENT_KEYS = ("status", "session_id", "session_name", "session_status", "result", "status_info", "message")
#: ``success``/``failed``: the job ended; ``timeout``: a deadline passed; ``error``: the API kept failing.
EVENT_STATUSES = ("success", "failed", "error", "timeout")


def event_payload(status: str, facts: SessionFacts, session_name: str | None, message: str) -> dict[str, Any]:
    return {
        "status": status,
        "session_id": facts.session_id,
        "session_name": session_name or facts.name,
        "session_status": facts.status,
        "result": facts.result,
        "status_info": facts.status_info,
        "message": message,
    }


def error_payload(session_id: str, session_name: str | None, message: str) -> dict[str, Any]:
    return {
        **dict.fromkeys(EVENT_KEYS),
        "status": "error",
        "session_id": session_id,
        "session_name": session_name,
        "message": message,
    }


def validate_trigger_event(event: Any) -> dict[str, Any]:
    """Check that ``event`` has the trigger's shape before trusting any of it."""
    if not isinstance(event, dict):
        raise BackendAIException(f"Invalid trigger event {event!r}: expected a dict")
    for key in EVENT_KEYS:
        if key not in event:
            raise BackendAIException(f"Could not find `{key}` in the trigger event {event!r}")
    if event["status"] not in EVENT_STATUSES:
        raise BackendAIException(f"Unknown trigger event status {event['status']!r}")
    return event


def facts_from_event(event: dict[str, Any]) -> SessionFacts:
    return SessionFacts(
        session_id=event["session_id"],
        status=event["session_status"],
        result=event["result"],
        status_info=event["status_info"],
        name=event["session_name"],
    )
