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
A watched session's preemptions, and how they move its deadlines: part of the watch step, without I/O.

In reschedule mode the manager preempts a running session for a higher-priority one of the same user and
puts it back in the queue (PREEMPTED → RESCHEDULING → PENDING, same session id); later it runs the job
again from the beginning. That is not a failure, so:

* the startup deadline restarts when the preemption is seen (the session has to start again), and again
  when the session is back in the queue: the manager's requeue itself waits for its 60 s long-cycle
  pass (measured: 2-57 s from RESCHEDULING to PENDING);
* the end deadline (the trigger's) waits while the session is requeued, and then moves by the time from
  the preempted run's start to the rerun's, both the manager's times: the rerun needs its whole run time
  again. Without the preempted run's start (the watch began after the rerun had started: a triggerer
  restart) it moves by the time from the preemption to the rerun's start.

A preemption is known by its time in the session's ``status_history`` (``SessionFacts.preempted_at``), so a
watch that starts over (a triggerer restart) during a requeue finds it again from the manager's facts alone.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from airflow.providers.backend.ai._session.state import PREEMPTING_STATUSES, seconds_between

if TYPE_CHECKING:
    from airflow.providers.backend.ai._session.state import SessionFacts
    from airflow.providers.backend.ai._watch.step import TaskLog

#: How long a requeued session may take to start again when the watch does not know ``startup_timeout``
#: (a trigger serialized by a provider version before this one): the operators' default.
DEFAULT_RESTART_WINDOW = 600.0


class Requeues:
    """
    The preemptions of one watched session, fed every read; owns the deadlines the watch applies.

    :param startup_deadline: Unix time by which the session must have started first, or None.
    :param startup_timeout: how long a requeued session may take to start again (None: the default).
    :param end_deadline: Unix time by which the job must have ended, or None.
    :param extends_end: move the end deadline for requeues (the operators' trigger); a sensor's timeout
        is the user's whole wait and stays.
    """

    def __init__(
        self,
        session_id: str,
        log: TaskLog,
        *,
        startup_deadline: float | None,
        startup_timeout: float | None,
        end_deadline: float | None,
        extends_end: bool,
    ) -> None:
        self.session_id = session_id
        self._log = log
        self.startup_deadline = (
            startup_deadline if startup_deadline is not None and math.isfinite(startup_deadline) else None
        )
        self._window = startup_timeout if startup_timeout is not None else DEFAULT_RESTART_WINDOW
        self._end_deadline = end_deadline
        self._extends_end = extends_end
        self.preemptions = 0
        self._handled: str | None = None  # ``preempted_at`` of the last preemption handled
        self._requeued = False  # between a preemption and its rerun
        self._back_in_queue = False
        self._preempted_run: str | None = None  # when the preempted run had started (the manager's time)

    @property
    def end_deadline(self) -> float | None:
        """The end deadline in force: none while requeued, if requeues move it."""
        return None if self._requeued and self._extends_end else self._end_deadline

    def saw(self, facts: SessionFacts, now: float) -> bool:
        """Note a read; True when it shows a rerun that has just started (the fast reads start over)."""
        if facts.preempted_at is None:
            return False
        if facts.requeued:
            self._note_requeue(facts, now)
            return False
        if facts.rerun and (self._requeued or facts.preempted_at != self._handled):
            self._note_rerun(facts)
            return True
        return False

    def _note_requeue(self, facts: SessionFacts, now: float) -> None:
        if facts.preempted_at != self._handled:
            self._handled, self._requeued, self._back_in_queue = facts.preempted_at, True, False
            self._preempted_run = facts.running_since
            self.preemptions += 1
            ran = facts.ran_for
            self._log.warning(
                "Session %s was preempted at %s%s: a session of the same user with a higher job_priority "
                "needs its resources",
                self.session_id,
                facts.preempted_at,
                f" after running {ran:.0f} s" if ran is not None else "",
            )
            self._restart_startup_deadline(now)  # the manager's requeue itself may take a long-cycle pass
        if facts.status not in PREEMPTING_STATUSES and not self._back_in_queue:
            self._back_in_queue = True
            self._restart_startup_deadline(now)  # the requeue: the wait in the queue starts now
            self._say_requeued()

    def _restart_startup_deadline(self, now: float) -> None:
        if self.startup_deadline is not None:
            self.startup_deadline = now + self._window

    def _say_requeued(self) -> None:
        deadline = (
            f"; it must start again within {self._window:g} s from now (startup_timeout)"
            if self.startup_deadline is not None
            else ""
        )
        self._log.info(
            "The manager requeued session %s (preemption mode reschedule): the job will run again from the "
            "beginning once the resources are free%s",
            self.session_id,
            deadline,
        )

    def _note_rerun(self, facts: SessionFacts) -> None:
        if facts.preempted_at != self._handled:  # the preemption was not seen, only its rerun
            self.preemptions += 1
            self._log.info(
                "Session %s was preempted at %s and requeued (preemption mode reschedule)",
                self.session_id,
                facts.preempted_at,
            )
        elif (
            not self._back_in_queue
        ):  # seen preempted, then running again: its time queued fell between reads
            self._log.info("The manager requeued session %s (preemption mode reschedule)", self.session_id)
        queued = seconds_between(facts.preempted_at, facts.running_since) or 0.0
        moved = seconds_between(self._preempted_run, facts.running_since) or queued
        self._handled, self._requeued, self._preempted_run = facts.preempted_at, False, None
        later = ""
        if self._extends_end and self._end_deadline is not None:
            self._end_deadline += moved
            later = f"; its end deadline moves {moved:.0f} s later"
        self._log.info(
            "Session %s runs the job again from the beginning since %s, after %.0f s back in the queue%s",
            self.session_id,
            facts.running_since,
            queued,
            later,
        )
