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
Find the result frames that ``runner.py`` wrote into a session log, and check that each arrived whole.

A frame is a run of lines, each starting with ``MARKER``, a space, the run id (32 hex digits) and a verb::

    @@backend.ai-python-task@@ <run id> B 1 <kind> <payload length> <payload sha256>
    @@backend.ai-python-task@@ <run id> D <base64 of the zlib-compressed payload, 4,000 characters at most>
    ...
    @@backend.ai-python-task@@ <run id> E <number of D lines>

Only lines that start with the marker count, so the function's own lines between frame lines do no harm;
the runner escapes any line of the function's output that starts with the marker, so they cannot pass for
frame lines either. Output that lands inside a frame line (a process writing into the same stream at the
same moment) breaks the line's base64, the length or the hash, and the frame is reported as damaged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import zlib
from dataclasses import dataclass, field

#: Must equal ``runner.MARKER`` (a unit test checks it): the runner is sent as text, never imported here.
MARKER = "@@backend.ai-python-task@@"
FORMAT_VERSION = "1"
KINDS = frozenset({"ok", "error"})

#: What every frame line starts with; the task log leaves such lines out.
FRAME_LINE_PREFIX = MARKER + " "
_PREFIX = FRAME_LINE_PREFIX
_RUN_ID = re.compile(r"[0-9a-f]{32}\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class Frame:
    """One intact frame: what the runner sent, checked against its length and SHA-256."""

    run_id: str
    kind: str
    payload: bytes


@dataclass
class _Parts:
    """The lines of one run id as they were found, before they are checked."""

    header: list[str] | None = None
    data: list[str] = field(default_factory=list)
    end: list[str] | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FrameScan:
    """
    Every frame in a log, in the order their first lines appear.

    :param frames: the intact ones.
    :param problems: one sentence per frame that is incomplete or damaged, naming its run id.
    """

    frames: tuple[Frame, ...]
    problems: tuple[str, ...]


def is_frame_line(line: str) -> bool:
    """True for a line the runner wrote as part of a frame (the task log can leave these out)."""
    return line.startswith(_PREFIX)


def scan_frames(log: str) -> FrameScan:
    """Collect the frame lines of ``log`` by run id and check each frame; never raises on bad input."""
    runs: dict[str, _Parts] = {}
    for raw in log.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not is_frame_line(line):
            continue
        fields = line[len(_PREFIX) :].split(" ")
        run_id = fields[0]
        if not _RUN_ID.match(run_id):
            runs.setdefault("(unreadable)", _Parts()).problems.append(
                f"a frame line without a run id: {line[:80]!r}"
            )
            continue
        parts = runs.setdefault(run_id, _Parts())
        verb = fields[1] if len(fields) > 1 else ""
        if verb == "B":
            if parts.header is not None:
                parts.problems.append("a second begin line")
            parts.header = fields[2:]
        elif verb == "D" and len(fields) == 3:
            parts.data.append(fields[2])
        elif verb == "E":
            if parts.end is not None:
                parts.problems.append("a second end line")
            parts.end = fields[2:]
        else:
            parts.problems.append(f"an unreadable frame line {line[:80]!r}")
    frames = []
    problems = []
    for run_id, parts in runs.items():
        frame, problem = _check(run_id, parts)
        if frame is not None:
            frames.append(frame)
        else:
            problems.append(f"frame {run_id}: {problem}")
    return FrameScan(frames=tuple(frames), problems=tuple(problems))


def _check(run_id: str, parts: _Parts) -> tuple[Frame | None, str]:
    """The frame these lines make up, or None and why not."""
    if parts.problems:
        return None, "; ".join(parts.problems)
    if parts.header is None:
        return None, "its begin line is missing (the log was cut at the front?)"
    if parts.end is None:
        return None, "its end line is missing (the job was stopped while writing it, or the log was cut?)"
    header = parts.header
    if len(header) != 4 or header[0] != FORMAT_VERSION or header[1] not in KINDS:
        return None, f"an unreadable begin line {' '.join(header)[:80]!r}"
    _version, kind, length_text, digest = header
    if not length_text.isdigit() or not _SHA256.match(digest):
        return None, f"an unreadable begin line {' '.join(header)[:80]!r}"
    if parts.end != [str(len(parts.data))]:
        return None, f"{len(parts.data)} data lines where the end line says {' '.join(parts.end)[:20]!r}"
    try:
        payload = zlib.decompress(base64.b64decode("".join(parts.data), validate=True))
    except (binascii.Error, zlib.error, ValueError) as exc:
        return None, f"its data does not decode ({exc}): output was written into it"
    if len(payload) != int(length_text) or hashlib.sha256(payload).hexdigest() != digest:
        return (
            None,
            f"its data fails the length and SHA-256 check ({len(payload)} bytes): output was written into it",
        )
    return Frame(run_id=run_id, kind=kind, payload=payload), ""
