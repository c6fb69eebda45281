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
"""The frame decoder against frames made by the runner's own encoder, whole, mixed with output, and damaged."""

from __future__ import annotations

import json
import random

import pytest

from airflow.providers.backend.ai._python_task import runner
from airflow.providers.backend.ai._python_task.framing import MARKER, is_frame_line, scan_frames

RUN_A = "a" * 32
RUN_B = "b" * 32
#: 40 kB that zlib cannot shrink: its frame has 14 data lines.
NOISE = random.Random(7).randbytes(40_000)


def frame(payload: bytes = b'{"loss": 0.25}', *, run_id: str = RUN_A, kind: str = "ok") -> str:
    return runner.frame_text(run_id, kind, payload)


def test_the_marker_is_the_runners() -> None:
    assert MARKER == runner.MARKER


def test_one_frame_between_output_lines() -> None:
    scan = scan_frames("epoch 1\nepoch 2\n" + frame() + "after\n")
    assert scan.problems == ()
    (found,) = scan.frames
    assert (found.run_id, found.kind, found.payload) == (RUN_A, "ok", b'{"loss": 0.25}')


def test_a_large_payload_spans_many_data_lines() -> None:
    payload = random.Random(1).randbytes(2_000_000)
    text = frame(payload)
    assert text.count(" D ") == 667  # 2 MB, base64: 2.67 million characters in lines of 4,000
    (found,) = scan_frames(text).frames
    assert found.payload == payload


def test_whole_lines_written_between_frame_lines_do_no_harm() -> None:
    lines = frame(NOISE).splitlines(keepends=True)
    mixed = "".join(line + f"thread output {i}\n" for i, line in enumerate(lines))
    scan = scan_frames(mixed)
    assert scan.problems == ()
    assert scan.frames[0].payload == NOISE


def test_crlf_line_ends_are_tolerated() -> None:
    (found,) = scan_frames(frame().replace("\n", "\r\n")).frames
    assert found.payload == b'{"loss": 0.25}'


def test_output_written_inside_a_data_line_is_detected() -> None:
    lines = frame(NOISE).splitlines(keepends=True)
    data = lines[1]
    lines[1] = data[:100] + "INTERLEAVED" + data[100:]
    scan = scan_frames("".join(lines))
    assert scan.frames == ()
    (problem,) = scan.problems
    assert problem.startswith(f"frame {RUN_A}: ")
    assert "output was written into it" in problem


def test_a_data_line_cut_in_two_by_a_newline_is_detected() -> None:
    lines = frame(NOISE).splitlines(keepends=True)
    lines[1] = lines[1][:100] + "\nstray line" + lines[1][100:]
    scan = scan_frames("".join(lines))
    assert scan.frames == ()
    assert "output was written into it" in scan.problems[0]


def test_a_lost_data_line_is_detected_by_the_count() -> None:
    lines = frame(NOISE).splitlines(keepends=True)
    del lines[2]
    (problem,) = scan_frames("".join(lines)).problems
    assert "data lines where the end line says" in problem


@pytest.mark.parametrize(
    ("cut", "reason"),
    [
        pytest.param(lambda lines: lines[1:], "its begin line is missing", id="no-begin"),
        pytest.param(lambda lines: lines[:-1], "its end line is missing", id="no-end"),
        pytest.param(lambda lines: lines + lines[:1], "a second begin line", id="two-begins"),
        pytest.param(lambda lines: lines + lines[-1:], "a second end line", id="two-ends"),
    ],
)
def test_incomplete_frames(cut, reason: str) -> None:
    lines = frame().splitlines(keepends=True)
    (problem,) = scan_frames("".join(cut(lines))).problems
    assert reason in problem


def test_a_header_that_does_not_match_the_data_fails_the_hash() -> None:
    text = frame(b"value one").replace(" ok 9 ", " ok 9 ", 1)
    header, rest = text.split("\n", 1)
    forged = header[:-64] + "0" * 64 + "\n" + rest
    (problem,) = scan_frames(forged).problems
    assert "fails the length and SHA-256 check" in problem


@pytest.mark.parametrize(
    "line",
    [
        f"{MARKER} nothex B 1 ok 1 {'0' * 64}",
        f"{MARKER} {RUN_A} X something",
        f"{MARKER} {RUN_A}",
    ],
)
def test_unreadable_frame_lines_are_reported_not_raised(line: str) -> None:
    scan = scan_frames(line + "\n")
    assert scan.frames == ()
    assert len(scan.problems) == 1


def test_an_unknown_version_or_kind_is_refused() -> None:
    text = frame().replace(" B 1 ok ", " B 2 ok ", 1)
    assert "unreadable begin line" in scan_frames(text).problems[0]
    text = frame().replace(" B 1 ok ", " B 1 maybe ", 1)
    assert "unreadable begin line" in scan_frames(text).problems[0]


def test_several_frames_keep_their_order_and_separate_by_run_id() -> None:
    first = frame(b"1", run_id=RUN_A)
    second = frame(b"2", run_id=RUN_B)
    # Interleave them line by line, as two runs writing at once would.
    mixed = "".join(a + b for a, b in zip(first.splitlines(True), second.splitlines(True), strict=True))
    scan = scan_frames(mixed)
    assert [(f.run_id, f.payload) for f in scan.frames] == [(RUN_A, b"1"), (RUN_B, b"2")]


def test_escaped_marker_lines_and_marker_text_inside_lines_are_not_frame_lines() -> None:
    fake = frame(b"forged")
    escaped = "".join(" " + line for line in fake.splitlines(True))
    inside = "".join("prefix " + line for line in fake.splitlines(True))
    assert scan_frames(escaped + inside) == scan_frames("")
    assert not is_frame_line(" " + MARKER + " x")
    assert is_frame_line(MARKER + " " + RUN_A + " E 0")


def test_an_error_frame_is_a_frame_like_any_other() -> None:
    payload = json.dumps({"stage": "call", "type": "ValueError", "message": "boom"}).encode()
    (found,) = scan_frames(frame(payload, kind="error")).frames
    assert found.kind == "error"
    assert json.loads(found.payload)["type"] == "ValueError"
