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
The end of ``dev/demo.sh``: a table of the example Dag's run (task, state, session, first line of output).

Reads the run from the demo's metadata database (``$AIRFLOW_HOME/airflow.db``, SQLite) and each job's log
from Backend.AI through the provider's hook (``backend_ai_default``), so it shows what the jobs printed, not
a parse of the console. Exit 0 when the run succeeded with the two tasks meant to fail (``fails_on_purpose``,
a failed command; ``check_labels``, a ``@task.backend_ai`` function that raises) failed and nothing else.
A mapped task has one row per mapped instance (``train_fold[0]`` ...).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

DAG_ID = "example_backend_ai"
MEANT_TO_FAIL = ("check_labels", "fails_on_purpose")
NO_OUTPUT = "(no output)"


def _value(raw: object) -> object:
    try:
        return json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except ValueError:
        return raw


def read_run(db: Path) -> tuple[str, list[tuple[str, str, str | None, object]]]:
    """The Dag run's state, and ``(task, state, session id, return value)`` per task instance in start order."""
    with sqlite3.connect(db) as conn:
        run_state = conn.execute("SELECT state FROM dag_run WHERE dag_id = ?", (DAG_ID,)).fetchone()[0]
        tasks = conn.execute(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? "
            "ORDER BY start_date IS NULL, start_date, task_id, map_index",
            (DAG_ID,),
        ).fetchall()
        xcoms = {
            (task, map_index, key): _value(value)
            for task, map_index, key, value in conn.execute(
                "SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = ?", (DAG_ID,)
            )
        }
        rendered = {
            (task, map_index): _value(fields)
            for task, map_index, fields in conn.execute(
                "SELECT task_id, map_index, rendered_fields FROM rendered_task_instance_fields WHERE dag_id = ?",
                (DAG_ID,),
            )
        }
    rows = []
    for task, map_index, state in tasks:
        session = xcoms.get((task, map_index, "session_id"))
        fields = rendered.get((task, map_index))
        if session is None and isinstance(fields, dict):
            session = fields.get("session_id")  # the sensor and the destroy task name create_session's
        name = task if map_index < 0 else f"{task}[{map_index}]"
        returned = xcoms.get((task, map_index, "return_value"))
        rows.append((name, str(state), str(session) if session else None, returned))
    return str(run_state), rows


def first_lines(session_ids: set[str]) -> dict[str, str]:
    """The first line each session's job printed, read from Backend.AI (also after the session ended)."""
    from airflow.providers.backend.ai._python_task.framing import FRAME_LINE_PREFIX
    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

    hook = BackendAIHook()
    lines = {}
    with hook.get_conn():
        for session_id in session_ids:
            try:
                log = hook.get_session_logs(session_id)
            except Exception as exc:
                lines[session_id] = f"(log not readable: {type(exc).__name__})"
                continue
            printed = (
                line for line in log.splitlines() if line.strip() and not line.startswith(FRAME_LINE_PREFIX)
            )
            lines[session_id] = next(printed, NO_OUTPUT)
    return lines


def table(rows: list[tuple[str, str, str, str]]) -> str:
    head = ("task", "state", "session", "first line of output")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    out = []
    for i, row in enumerate([head, *rows]):
        out.append(
            "   "
            + "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
            + "  "
            + row[3][:60]
        )
        if i == 0:
            out.append("   " + "  ".join("-" * w for w in widths) + "  " + "-" * 20)
    return "\n".join(out)


def main() -> int:
    run_state, rows = read_run(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db")
    output = first_lines({session for _, _, session, _ in rows if session})
    shown = []
    for task, state, session, returned in rows:
        printed = output.get(session) if session else None
        if printed is not None and printed != NO_OUTPUT:
            first = printed
        elif returned is not None:
            first = f"(returned) {returned}"
        else:
            first = printed or "-"
        shown.append((task, state, session or "-", first))
    print(table(shown), file=sys.stderr)
    states = {task: state for task, state, _, _ in rows}
    failed = sorted(task for task, state in states.items() if state == "failed")
    as_planned = run_state == "success" and failed == sorted(MEANT_TO_FAIL)
    print(f"   Dag run: {run_state}; failed tasks: {', '.join(failed) or 'none'}", file=sys.stderr)
    if not as_planned:
        print(
            f"   UNEXPECTED: only {' and '.join(MEANT_TO_FAIL)} should fail, and the run should succeed",
            file=sys.stderr,
        )
    return 0 if as_planned else 1


if __name__ == "__main__":
    sys.exit(main())
