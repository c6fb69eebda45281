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
Stream a Backend.AI session log into the task log while the job runs, each line exactly once.

Backend.AI returns the whole container log on every read, so the follower remembers how much it has
written and emits only complete new lines (a partial last line waits for the next read or the end). A log
that shrank or changed under it (the server truncated or rotated it) is resynchronised on the last lines it
wrote; if they are gone, it says so and continues from the start of what the server now has.

A session that was preempted and rescheduled runs its job again in a new container, and the manager then
serves only the rerun's log. Each copy is therefore given the run it belongs to (the time that run
started): at a new run the follower says so and starts over at the top of the new log, without looking
for its place in it (a rerun that prints the same lines would look like the log it already wrote).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.backend.ai._watch.step import TaskLog

#: Above this size the log is no longer fetched while the job runs: each read downloads the whole log.
DEFAULT_STREAM_LIMIT = 2 * 1024 * 1024
#: How much of what was already written is used to find our place again in a truncated log.
_ANCHOR_CHARS = 256


class LogFollower:
    """
    Feed it successive full copies of a log; it emits each complete new line once.

    :param emit: called with every new line (without its line break).
    :param stream_limit: characters after which :attr:`streaming` turns off (the caller stops fetching).
    :param start: characters already written elsewhere (by the trigger, before the task resumed).
    :param run: the run those characters belong to (None: whichever the first copy belongs to).
    """

    def __init__(
        self,
        emit: Callable[[str], object],
        *,
        stream_limit: int = DEFAULT_STREAM_LIMIT,
        start: int = 0,
        run: str | None = None,
    ) -> None:
        self._emit = emit
        self.stream_limit = stream_limit
        self.written = start  # characters of the current log already emitted (always at a line boundary)
        self._anchor = ""  # the last characters emitted, to find our place after a truncation
        self.streaming = True
        self.run = run

    def update(self, text: str, run: str | None = None) -> None:
        """Emit the complete lines added since the last call; ``run`` is the run ``text`` is the log of."""
        self._follow(run)
        self._resynchronise(text)
        end = text.rfind("\n", self.written) + 1
        if end > self.written:
            self._write(text, end)
        if len(text) > self.stream_limit:
            self.streaming = False

    def finish(self, text: str, run: str | None = None) -> None:
        """Emit everything not yet written, including a last line without a line break."""
        self._follow(run)
        self._resynchronise(text)
        if len(text) > self.written:
            self._write(text, len(text))

    def _write(self, text: str, end: int) -> None:
        for line in text[self.written : end].splitlines():
            self._emit(line)
        self.written = end
        self._anchor = text[max(0, end - _ANCHOR_CHARS) : end]

    def _follow(self, run: str | None) -> None:
        """Start over at the top of a new run's log, saying so, if ``run`` is not the one followed so far."""
        if run is None or run == self.run:
            return
        if self.run is not None:
            self._emit(
                "[the job was preempted and runs again from the beginning: the log of its run since "
                f"{run} follows]"
            )
            self.written, self._anchor = 0, ""
        self.run = run

    def _resynchronise(self, text: str) -> None:
        """Find where the already written part ends in ``text``, whose head the server may have cut."""
        if self.written == 0 or text[: self.written].endswith(self._anchor):
            return
        found = text.rfind(self._anchor)
        if found >= 0:
            self.written = found + len(self._anchor)
            return
        # The head was cut inside what we wrote: the new text starts with a tail of our last lines.
        for start in range(1, len(self._anchor)):
            if self._anchor[start - 1] == "\n" and text.startswith(self._anchor[start:]):
                self.written = len(self._anchor) - start
                return
        self._emit("[the Backend.AI log was truncated or rotated; continuing from what it holds now]")
        self.written = 0


def task_log_writer(log: TaskLog, session_id: str, *, hide: str | None = None) -> Callable[[str], None]:
    """
    An ``emit`` for :class:`LogFollower` that writes into the task log, under a header line.

    Lines that start with ``hide`` (when given) are left out.
    """
    started = False

    def emit(line: str) -> None:
        nonlocal started
        if hide is not None and line.startswith(hide):
            return
        if not started:
            log.info("Log of Backend.AI session %s:", session_id)
            started = True
        log.info("%s", line)

    return emit
