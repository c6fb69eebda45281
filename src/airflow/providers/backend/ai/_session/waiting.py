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
Why a session waits to start, in the scheduler's words: its place in the queue and its last verdict.

Backend.AI 26.9 writes no ``status_data.scheduler`` (the field its older code documents stays null). What
it has is the session's ``queue_position`` (legacy GraphQL ``compute_session_node``, 0-based, null until
the scheduler's first pass) and the session's scheduling history (newer GraphQL schema), whose entries
say, e.g., "Some kernels could not be placed on any agent. (… no agents passed the 'resource' filter
  - cpu: missing=3.000000)" or "Not attempted: the resource group ran out of resources at the earlier
session …". A session that holds a reservation (RESERVED) waits for lower-priority sessions to be
preempted for it; the manager releases it on its long-cycle pass (60 s).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Statuses in which a session waits for the scheduler (a requeued one is PENDING again).
WAITING_STATUSES = frozenset({"PENDING", "RESERVED", "DEPRIORITIZING"})
#: The longest scheduler message quoted in a log line.
MESSAGE_LIMIT = 500
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class WaitReason:
    """
    What the manager says about a waiting session.

    :param position: its place in the resource group's queue (0 = next), when the scheduler has placed it.
    :param message: the scheduler's last word on it that was not a success, when there is one.
    :param error: why the reason could not be read (the read failed), else None.
    :param transient: the failure may pass (a 5xx or no answer): ask again later.
    """

    position: int | None = None
    message: str | None = None
    error: str | None = None
    transient: bool = False

    def describe(self, session_id: str, status: str) -> str | None:
        """One line for the task log, or None when there is nothing to say."""
        if status == "RESERVED":
            said = (
                "holds a reservation: the scheduler preempts lower-priority sessions of the same user for "
                "it and releases it on a later pass (about a minute each)"
            )
        elif self.position is not None:
            said = f"waits in the queue at position {self.position}"
        elif self.message is not None:
            said = "waits to be scheduled"
        else:
            return None
        if self.message is not None and status != "RESERVED":
            said = f"{said}: {self.message}"
        return f"Session {session_id} {said}"


def queue_position(answer: Any) -> int | None:
    """The ``queue_position`` of a ``compute_session_node`` answer (None if absent or unreadable)."""
    node = (answer or {}).get("compute_session_node") if isinstance(answer, dict) else None
    position = node.get("queue_position") if isinstance(node, dict) else None
    return position if isinstance(position, int) and not isinstance(position, bool) else None


def last_scheduler_message(answer: Any) -> str | None:
    """
    The message of the newest scheduling history entry, if that entry is not a success.

    ``answer`` is the newer schema's ``sessionScopedSchedulingHistories`` answer; entries are coalesced by
    the manager (a repeated verdict raises ``attempts`` and ``updatedAt``), so the newest is the one with the
    latest ``updatedAt``. A success (``enqueue``, ``mark_pending``) says nothing about why the session waits.
    """
    data = (answer or {}).get("data") if isinstance(answer, dict) else None
    history = (data or {}).get("sessionScopedSchedulingHistories") if isinstance(data, dict) else None
    edges = (history or {}).get("edges") if isinstance(history, dict) else None
    nodes = [edge.get("node") for edge in edges or [] if isinstance(edge, dict)]
    entries = [node for node in nodes if isinstance(node, dict)]
    if not entries:
        return None
    newest = max(
        enumerate(entries),
        key=lambda item: (str(item[1].get("updatedAt") or item[1].get("createdAt") or ""), item[0]),
    )[1]
    message = newest.get("message")
    if str(newest.get("result") or "").upper() == "SUCCESS" or not isinstance(message, str):
        return None
    text = _SPACES.sub(" ", message).strip()
    return text[: MESSAGE_LIMIT - 1] + "…" if len(text) > MESSAGE_LIMIT else text or None
