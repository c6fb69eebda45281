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
The end of a batch job, the same for the operators and the hook's ``run_batch``: its whole log, then the
session destroyed or kept as ``on_finish_action`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from airflow.providers.backend.ai._watch.loop import read_final_log
from airflow.providers.backend.ai.exceptions import BackendAIException

if TYPE_CHECKING:
    from airflow.providers.backend.ai._session.finish import FinishAction
    from airflow.providers.backend.ai._session.state import Verdict
    from airflow.providers.backend.ai._watch.log_follower import LogFollower
    from airflow.providers.backend.ai._watch.loop import SessionReader
    from airflow.providers.backend.ai._watch.step import TaskLog


class SessionDestroyer(Protocol):
    """What teardown needs of a hook."""

    def destroy_session(self, session_id: str) -> bool: ...


@dataclass(frozen=True)
class FinalLog:
    """The whole log of an ended job, or (``fetched`` False) a note saying why it could not be read."""

    text: str
    fetched: bool = True


def final_log(
    hook: SessionReader,
    session_id: str,
    *,
    log: TaskLog,
    follower: LogFollower | None,
    run: str | None = None,
) -> FinalLog:
    """
    The whole log of an ended job, its unwritten lines copied into the task log.

    The job's outcome is known before the log is read: a log that cannot be fetched is noted, never fatal,
    so a finished paid job is not failed (and retried) for it. ``run`` is the run the log belongs to (the
    facts' ``running_since``): after a rerun the manager has only the rerun's log.
    """
    try:
        logs = read_final_log(hook, session_id, log=log)
    except BackendAIException as exc:
        log.warning("Could not fetch the log of Backend.AI session %s: %s", session_id, exc)
        return FinalLog(f"[the session log could not be fetched: {exc}]", fetched=False)
    if follower is not None:
        follower.finish(logs, run)
    return FinalLog(logs)


def tear_down(
    hook: SessionDestroyer, session_id: str, action: FinishAction, verdict: Verdict | None, *, log: TaskLog
) -> None:
    """
    Destroy or keep the session per ``action``; ``verdict`` is None if the job did not end.

    A failed destroy is logged, not raised: it must not hide the job's outcome (or the error that ended the
    wait), and a session whose job has ended terminates by itself.
    """
    if not action.destroys(verdict):
        log.info("Keeping Backend.AI session %s (on_finish_action=%s)", session_id, action.value)
        return
    try:
        if hook.destroy_session(session_id):
            log.info(
                "Destroyed Backend.AI session %s (%s)",
                session_id,
                "the job ended" if verdict is not None else "the job did not end",
            )
        else:
            log.info("Backend.AI session %s was already gone", session_id)
    except BackendAIException as exc:
        log.error(
            "Could not destroy Backend.AI session %s: %s; %s",
            session_id,
            exc,
            "its job has ended, so it terminates by itself"
            if verdict is not None
            else "it may run until its job ends; destroy it by hand",
        )
