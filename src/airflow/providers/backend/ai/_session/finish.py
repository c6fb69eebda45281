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
How a batch run ends, shared by the worker and the deferred path: what ``on_finish_action`` does with the
session, and the task's XCom value or its failure.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from airflow.providers.backend.ai._session.state import Verdict
from airflow.providers.backend.ai.exceptions import BackendAIJobFailedError

if TYPE_CHECKING:
    from airflow.providers.backend.ai._session.state import SessionFacts

#: How many trailing log lines a failure message quotes.
LOG_TAIL_LINES = 20
#: Characters of the log kept in the XCom value by default (its end: where errors are).
DEFAULT_XCOM_LOG_LIMIT = 10_000


class FinishAction(enum.StrEnum):
    """
    What happens to a session when its task is done with it (the operators' ``on_finish_action``).

    A job that has not ended (startup timeout, lost monitoring, a killed task) is destroyed unless the
    action is ``keep``: nobody would be watching it any more.
    """

    DESTROY = "destroy"
    KEEP = "keep"
    DESTROY_ON_SUCCESS = "destroy_on_success"

    @classmethod
    def parse(cls, value: Any) -> FinishAction:
        """Read an ``on_finish_action`` argument; raise ``ValueError`` naming the accepted values."""
        try:
            return cls(value)
        except ValueError:
            accepted = ", ".join(repr(action.value) for action in cls)
            raise ValueError(f"Invalid on_finish_action {value!r}: accepted values are {accepted}") from None

    def destroys(self, verdict: Verdict | None) -> bool:
        """Whether a session whose job ended with ``verdict`` (``None``: it has not ended) is destroyed."""
        if self is FinishAction.KEEP:
            return False
        if self is FinishAction.DESTROY_ON_SUCCESS:
            return verdict is not Verdict.FAILED
        return True


def truncate_for_xcom(text: str, limit: int) -> str:
    """Keep the end of a long log (where errors are), saying how much was cut; the task log has it all."""
    if len(text) <= limit:
        return text
    kept = text[len(text) - limit :]
    return f"[... {len(text) - limit} characters truncated; the full log is in the task log ...]\n{kept}"


def log_tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def describe_failure(facts: SessionFacts) -> str:
    """Say why a job did not succeed, in the manager's own words where it has them."""
    reason = facts.status_info or "no reason given"
    if facts.result == "FAILURE":
        what = {
            "task-failed": "the command exited with a non-zero code",
            "task-timeout": "batch_timeout expired",
        }
        return f"the job failed: {what.get(reason, reason)} ({reason})"
    return f"the session ended as {facts.status} without a result ({reason})"


def finish_batch(
    facts: SessionFacts, logs: str, *, session_name: str | None, xcom_log_limit: int
) -> dict[str, Any]:
    """
    Return the XCom value of a successful job, or raise :class:`BackendAIJobFailedError`.

    :param facts: the session's final state (its verdict must not be RUNNING).
    :param logs: the container log.
    """
    if facts.verdict is Verdict.RUNNING:
        raise ValueError(f"session {facts.session_id} has not ended yet (status {facts.status})")
    if facts.verdict is Verdict.FAILED:
        raise BackendAIJobFailedError(
            f"Backend.AI session {facts.session_id} ({session_name or facts.name}): {describe_failure(facts)}",
            session_id=facts.session_id,
            facts=facts,
            log_tail=log_tail(logs),
        )
    return {
        "session_id": facts.session_id,
        "session_name": session_name or facts.name,
        "status": facts.status,
        "result": facts.result,
        "status_info": facts.status_info,
        "logs": truncate_for_xcom(logs, xcom_log_limit),
    }
