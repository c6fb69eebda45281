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
Airflow's side, read as a client and an operator of the deployment would: the public REST API (``/api/v2``,
with a token from the api-server's ``/auth/token``), the metadata DB, and the task log files.
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import time
import urllib.error
import urllib.request
from typing import Any

from harness.deployment import API, DIR, db, log

#: Task instance states after which nothing more happens to the try.
TERMINAL = {"success", "failed", "upstream_failed", "skipped", "removed"}
#: Dag run states the scheduler records when a run is over.
RUN_ENDED = {"success", "failed"}

_token: str | None = None


def api(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """
    Call Airflow's public REST API as a client would: with a JWT from the api-server's ``/auth/token``.

    The deployment uses SimpleAuthManager with ``simple_auth_manager_all_admins``, whose ``GET /auth/token``
    issues an admin token without credentials; a 401 (expired token) fetches a new one once.
    """
    global _token
    for attempt in (1, 2):
        if _token is None:
            with urllib.request.urlopen(f"{API}/auth/token", timeout=30) as resp:
                _token = json.loads(resp.read())["access_token"]
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{API}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {_token}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and attempt == 1:
                _token = None
                continue
            detail = exc.read().decode(errors="replace")[:500]
            raise RuntimeError(f"{method} {path}: HTTP {exc.code} {detail}") from None
    raise AssertionError("unreachable")


def trigger_dag(dag_id: str) -> str:
    """Start a run of the Dag through the REST API (once the Dag is parsed); returns its run id."""
    deadline = time.monotonic() + 120
    while True:
        try:
            api("GET", f"/api/v2/dags/{dag_id}")
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    run = api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})
    log(f"triggered {dag_id}: {run['dag_run_id']}")
    return run["dag_run_id"]


def task_rows(dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's task instances by task id: state, try number, host, trigger (from the metadata DB)."""
    with db() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT task_id, state, try_number, hostname, queued_by_job_id, trigger_id, next_method "
            "FROM task_instance WHERE dag_id=%s AND run_id=%s",
            (dag_id, run_id),
        )
        cols = [c.name for c in cur.description]
        return {r[0]: dict(zip(cols, r, strict=False)) for r in cur.fetchall()}


def dag_run_state(dag_id: str, run_id: str) -> str | None:
    """The Dag run's own state, as the scheduler recorded it (``None`` for a run the DB does not hold)."""
    with db() as conn, conn.cursor() as cur:
        cur.execute("SELECT state FROM dag_run WHERE dag_id=%s AND run_id=%s", (dag_id, run_id))
        row = cur.fetchone()
    return None if row is None else row[0]


def run_end_after_tasks(dag_id: str, run_id: str) -> float | None:
    """
    Seconds from the last task instance's end to the Dag run's end, as the metadata DB recorded them: the
    window in which every task was done and the run still ``running`` (None while either is unknown).
    """
    with db() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT EXTRACT(EPOCH FROM dr.end_date - max(ti.end_date)) FROM dag_run dr "
            "JOIN task_instance ti ON ti.dag_id=dr.dag_id AND ti.run_id=dr.run_id "
            "WHERE dr.dag_id=%s AND dr.run_id=%s GROUP BY dr.end_date",
            (dag_id, run_id),
        )
        row = cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])


def xcom(dag_id: str, run_id: str, task_id: str) -> Any:
    """The task's XCom return value, decoded (``None`` if it pushed none)."""
    with db() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT value FROM xcom WHERE dag_id=%s AND run_id=%s AND task_id=%s AND key='return_value'",
            (dag_id, run_id, task_id),
        )
        row = cur.fetchone()
    if row is None:
        return None
    value = row[0]
    while isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            break
    return value


def _task_log_dir(dag_id: str, run_id: str, task_id: str) -> Any:
    return DIR / "airflow" / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"


def task_log(dag_id: str, run_id: str, task_id: str) -> str:
    """Every log file of the task (worker and trigger logs, all tries), concatenated."""
    base = _task_log_dir(dag_id, run_id, task_id)
    return "\n".join(p.read_text(errors="replace") for p in sorted(base.glob("**/*.log*")) if p.is_file())


TRIGGER_STARTED = re.compile(r"trigger \S+ \(ID \d+\) starting")


def trigger_watching(dag_id: str, run_id: str, task_id: str) -> bool:
    """True once a triggerer runs the task's trigger: Airflow's ``trigger ... (ID n) starting`` log line."""
    for path in _task_log_dir(dag_id, run_id, task_id).glob("attempt=1.log.trigger.*.log"):
        with contextlib.suppress(OSError):
            if TRIGGER_STARTED.search(path.read_text(errors="replace")):
                return True
    return False


def trigger_holders(dag_id: str, run_id: str) -> collections.Counter[int]:
    """TriggererJob id -> how many of the run's deferred tasks' triggers it holds."""
    with db() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT t.triggerer_id, count(*) FROM task_instance ti JOIN trigger t ON ti.trigger_id=t.id "
            "WHERE ti.dag_id=%s AND ti.run_id=%s AND ti.state='deferred' AND t.triggerer_id IS NOT NULL "
            "GROUP BY t.triggerer_id",
            (dag_id, run_id),
        )
        return collections.Counter(dict(cur.fetchall()))
