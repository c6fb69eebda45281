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
"""A scenario's result, and the checks the scenarios share: own logs and XCom, sessions per task, the end."""

from __future__ import annotations

import collections
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.airflow_state import task_log, xcom
from harness.backend_sessions import leaked_sessions, sessions_per_task

if TYPE_CHECKING:
    from harness.waiting import RunOutcome


@dataclass
class Result:
    name: str
    ok: bool = False
    tasks: int = 0
    kills: str = "-"
    retries: int = 0
    sessions_per_task: str = "-"
    leaked: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


JOB_LINE = re.compile(r"JOB-OUTPUT (\S+?)(?:[\"'\\,]|\s|$)")


def check_logs_and_xcom(dag_id: str, run_id: str, task_ids: list[str], problems: list[str]) -> None:
    """Each task's log and XCom return value hold its own job's output, no other's, and result SUCCESS."""
    for tid in task_ids:
        text = task_log(dag_id, run_id, tid)
        seen = set(JOB_LINE.findall(text))
        if tid not in seen:
            problems.append(f"{tid}: its job's output is not in its log")
        if seen - {tid}:
            problems.append(f"{tid}: log holds other jobs' output {sorted(seen - {tid})}")
        value = xcom(dag_id, run_id, tid)
        if not isinstance(value, dict):
            problems.append(f"{tid}: no XCom return value ({value!r})")
            continue
        logs = str(value.get("logs", ""))
        if f"JOB-OUTPUT {tid}" not in logs or set(JOB_LINE.findall(logs)) - {tid}:
            problems.append(f"{tid}: XCom logs do not match the task: {logs[:120]!r}")
        if value.get("result") != "SUCCESS":
            problems.append(f"{tid}: XCom result {value.get('result')!r}")


def expect_one_session_per_task(
    by_task: dict[str, list[dict[str, Any]]], task_ids: list[str], result: Result
) -> None:
    """Note the sessions per task (``40x1``) and a problem unless every task made exactly one."""
    per_task = sessions_per_task(by_task, task_ids)
    counts = collections.Counter(per_task.values())
    result.sessions_per_task = " ".join(f"{n}x{k}" for k, n in sorted(counts.items()))
    if set(per_task.values()) != {1}:
        result.problems.append(f"a job was created more than once (or never): {per_task}")


def finish(
    result: Result,
    run: RunOutcome,
    task_ids: list[str],
    started: float,
    expected: dict[str, str] | None = None,
    run_state: str = "success",
) -> None:
    """
    The checks every scenario ends with: the Dag run ended (as ``run_state``), every task in its expected
    state (``success`` by default), and no live session left.
    """
    problems = result.problems
    result.tasks = len(task_ids)
    if not run.ended:
        within = f" within {run.waited:.0f} s" if run.waited else ""
        tasks = f"unfinished tasks {run.unfinished()}" if run.unfinished() else "although every task is done"
        problems.append(f"the Dag run did not end{within}: its state is {run.state!r}, {tasks}")
    elif run.state != run_state:
        problems.append(f"the Dag run ended {run.state!r}, not {run_state!r}")
    rows = run.rows
    expected = expected or {}
    not_ok = {
        t: rows.get(t, {}).get("state")
        for t in task_ids
        if rows.get(t, {}).get("state") != expected.get(t, "success")
    }
    if not_ok:
        problems.append(f"tasks not in their expected state {expected or 'success'}: {not_ok}")
    result.retries = sum(max(0, (rows.get(t, {}).get("try_number") or 1) - 1) for t in task_ids)
    result.seconds = time.monotonic() - started
    leaked = leaked_sessions()
    result.leaked = len(leaked)
    if leaked:
        problems.append(f"live scaleout sessions left: {[(s['name'], s['status']) for s in leaked]}")
    result.ok = not problems
