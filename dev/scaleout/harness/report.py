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
"""The results table: printed, and written as Markdown with the notes and problems of every scenario."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from harness.checks import Result

HEADER = (
    "scenario",
    "result",
    "tasks",
    "kills",
    "retries",
    "sessions/task",
    "leaked",
    "wall s",
    "peak RSS MB",
)


def table_rows(results: list[Result]) -> list[tuple[str, ...]]:
    return [
        (
            r.name,
            "PASS" if r.ok else "FAIL",
            str(r.tasks),
            r.kills,
            str(r.retries),
            r.sessions_per_task,
            str(r.leaked),
            f"{r.seconds:.0f}",
            f"{r.peak_rss_mb:.0f}",
        )
        for r in results
    ]


def render_table(results: list[Result]) -> str:
    table = [HEADER, *table_rows(results)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = []
    for i, row in enumerate(table):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def render_details(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        number = r.name.split()[0]
        lines += [f"- scenario {number}: {note}" for note in r.notes]
        lines += [f"- scenario {number}: **problem:** {p}" for p in r.problems]
    return lines


def write_report(path: Path, results: list[Result], overall_peak_mb: float, seconds: float) -> None:
    backend = os.environ.get("BACKEND_AI_ENDPOINT", "?")
    kind = "emulator" if os.environ.get("SCALEOUT_BACKEND", "emulator") == "emulator" else "manager"
    lines = [
        "# Scale-out scenarios",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, Backend.AI {kind} at {backend}; "
        f"scenarios {seconds:.0f} s; peak RSS of the whole deployment {overall_peak_mb:.0f} MB.",
        "",
        render_table(results),
        "",
        *render_details(results),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")
