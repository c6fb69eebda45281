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
    """

    def __init__(
        self, emit: Callable[[str], object], *, stream_limit: int = DEFAULT_STREAM_LIMIT, start: int = 0
    ) -> None:
        self._emit = emit
        self.stream_limit = stream_limit
        self.written = start  # characters of the current log already emitted (always at a line boundary)
        self._anchor = ""  # the last characters emitted, to find our place after a truncation
        self.streaming = True

    def update(self, text: str) -> None:
        """Emit the complete lines added since the last call."""
        self._resynchronise(text)
        end = text.rfind("\n", self.written) + 1
        if end > self.written:
            self._write(text, end)
        if len(text) > self.stream_limit:
            self.streaming = False

    def finish(self, text: str) -> None:
        """Emit everything not yet written, including a last line without a line break."""
        self._resynchronise(text)
        if len(text) > self.written:
            self._write(text, len(text))

    def _write(self, text: str, end: int) -> None:
        for line in text[self.written : end].splitlines():
            self._emit(line)
        self.written = end
        self._anchor = text[max(0, end - _ANCHOR_CHARS) : end]

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
