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
"""Watch a session from a worker until it has started, or until its job has ended."""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING

from airflow.providers.backend.ai.exceptions import BackendAIStartupTimeoutError
from airflow.providers.backend.ai.utils.session_state import SessionFacts, Verdict

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
    from airflow.providers.backend.ai.utils.outcome import TaskLog

#: First delay between two status reads. Reads then slow down by BACKOFF up to the poll interval, so a
#: short job is seen to end within about a second while a long one costs one request per poll interval.
#: The backoff starts again when the job is first seen running: on a real manager a session takes ~10 s
#: to start, and a job that ends soon after would otherwise fall between two far-apart reads.
FIRST_POLL_DELAY = 0.25
BACKOFF = 1.5


def poll_delays(poll_interval: float) -> list[float]:
    """The delays before the first reads: growing from FIRST_POLL_DELAY, then poll_interval forever."""
    delays, delay = [], min(FIRST_POLL_DELAY, poll_interval)
    while delay < poll_interval:
        delays.append(delay)
        delay *= BACKOFF
    return [*delays, poll_interval]


def wait_for_session(
    hook: BackendAIHook,
    session_id: str,
    *,
    startup_timeout: float,
    poll_interval: float,
    log: TaskLog,
    until_started: bool = False,
    on_read: Callable[[SessionFacts], object] | None = None,
) -> SessionFacts:
    """
    Read the session's state until its job ended (or, with ``until_started``, until it started).

    ``on_read`` is called with every state read while the job goes on (the operator streams logs there).

    :raises BackendAIStartupTimeoutError: the session did not start within ``startup_timeout`` seconds.
    """
    startup_deadline = time.time() + startup_timeout
    delays = poll_delays(poll_interval)
    last_status = None
    backoff = itertools.count()
    started = False
    while True:
        facts = hook.get_session_facts(session_id)
        if facts.status != last_status:
            log.info("Session %s is %s %s", session_id, facts.status, facts.status_info or "")
            last_status = facts.status
        if facts.verdict is not Verdict.RUNNING and facts.status_info is None:
            # The manager records the reason (task-finished, task-timeout, ...) some 30 ms after the result.
            time.sleep(FIRST_POLL_DELAY)
            facts = hook.get_session_facts(session_id)
        if facts.verdict is not Verdict.RUNNING or (until_started and facts.has_started):
            return facts
        if on_read is not None:
            on_read(facts)
        if facts.has_started and not started:  # fast reads again: short jobs end soon after they start
            started, backoff = True, itertools.count()
        delay = delays[min(next(backoff), len(delays) - 1)]
        if not facts.has_started:
            remaining = startup_deadline - time.time()
            if remaining <= 0:
                raise BackendAIStartupTimeoutError(
                    f"Session {session_id} did not start within startup_timeout={startup_timeout:g}s; "
                    f"last status {facts.status}" + (f" ({facts.status_info})" if facts.status_info else ""),
                    session_id=session_id,
                    status=facts.status,
                    result=facts.result,
                    status_info=facts.status_info,
                )
            delay = min(delay, remaining)
        time.sleep(delay)
