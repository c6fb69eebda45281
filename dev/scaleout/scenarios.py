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
Scale-out scenarios against the deployment of ``up.sh DIR`` (run with the scale-out venv and ``DIR/env``).

    python scenarios.py [--scenarios 1,2,3,4,5] [--report artifacts/scaleout.md]

Airflow's state is read from PostgreSQL and the REST API (``/api/v2``, with a token from the api-server's
``/auth/token``); the Backend.AI side is read through the Backend.AI API itself (the SDK's
``Admin.query``, not the provider).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

DIR = Path(os.environ.get("SCALEOUT_DIR", "."))
HERE = Path(__file__).resolve().parent
API = os.environ.get("SCALEOUT_API", "")
TERMINAL = {"success", "failed", "upstream_failed", "skipped", "removed"}
DEAD_SESSION = {"TERMINATED", "CANCELLED", "ERROR"}
#: ``status_info`` of a session that a destroy request ended (not its job): Backend.AI's own reasons.
DESTROYED_INFO = {"user-requested", "force-terminated"}
#: Scenario 4: a cleared or failed task's session must be destroyed within this many seconds.
DESTROY_WITHIN = 60


# -- helpers -----------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[scenarios {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def db():
    return psycopg2.connect(
        host="127.0.0.1", port=int(os.environ["SCALEOUT_PG_PORT"]), user="airflow", dbname="airflow"
    )


_token: str | None = None


def api(method: str, path: str, body: dict | None = None) -> dict:
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


def trigger(dag_id: str) -> str:
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


def task_rows(dag_id: str, run_id: str) -> dict[str, dict]:
    with db() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT task_id, state, try_number, hostname, queued_by_job_id, trigger_id, next_method "
            "FROM task_instance WHERE dag_id=%s AND run_id=%s",
            (dag_id, run_id),
        )
        cols = [c.name for c in cur.description]
        return {r[0]: dict(zip(cols, r, strict=False)) for r in cur.fetchall()}


def wait_run(dag_id: str, run_id: str, timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = task_rows(dag_id, run_id)
        if rows and all(r["state"] in TERMINAL for r in rows.values()):
            return rows
        time.sleep(2)
    return task_rows(dag_id, run_id)


def xcom(dag_id: str, run_id: str, task_id: str):
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


def task_log(dag_id: str, run_id: str, task_id: str) -> str:
    base = DIR / "airflow" / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return "\n".join(p.read_text(errors="replace") for p in sorted(base.glob("**/*.log*")) if p.is_file())


JOB_LINE = re.compile(r"JOB-OUTPUT (\S+?)(?:[\"'\\,]|\s|$)")


def check_logs_and_xcom(dag_id: str, run_id: str, task_ids: list[str], problems: list[str]) -> None:
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


# -- the Backend.AI side, through the Backend.AI API ----------------------------------------------------

LIST_QUERY = (
    "query($limit: Int!, $offset: Int!) { compute_session_list(limit: $limit, offset: $offset) "
    "{ items { id name status status_info result created_at } total_count } }"
)


def server_sessions() -> list[dict]:
    """Every session of our keypair (the emulator ignores ``filter``, so filter by name client-side)."""
    from ai.backend.client.config import APIConfig
    from ai.backend.client.func.admin import Admin
    from ai.backend.client.session import Session

    cfg = APIConfig(
        endpoint=os.environ["BACKEND_AI_ENDPOINT"],
        endpoint_type="api",
        access_key=os.environ["BACKEND_AI_ACCESS_KEY"],
        secret_key=os.environ["BACKEND_AI_SECRET_KEY"],
        domain="default",
        group="default",
    )
    items: list[dict] = []
    with Session(config=cfg):
        offset = 0
        while True:
            page = Admin.query(LIST_QUERY, {"limit": 100, "offset": offset})["compute_session_list"]
            items += page["items"]
            offset += 100
            if offset >= page["total_count"] or not page["items"]:
                break
    return [i for i in items if "scaleout" in (i.get("name") or "")]


def leaked_sessions(wait: float = 30) -> list[dict]:
    """``scaleout`` sessions not terminated; waits a little for TERMINATING ones to finish."""
    deadline = time.monotonic() + wait
    while True:
        live = [s for s in server_sessions() if s["status"] not in DEAD_SESSION]
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(2)


def sessions_per_task(run_sessions: dict[str, list[dict]], task_ids: list[str]) -> dict[str, int]:
    return {tid: len(run_sessions.get(tid, [])) for tid in task_ids}


def expect_one_session_per_task(by_task: dict[str, list[dict]], task_ids: list[str], result: Result) -> None:
    """Note the sessions per task (``40x1``) and a problem unless every task made exactly one."""
    per_task = sessions_per_task(by_task, task_ids)
    counts = collections.Counter(per_task.values())
    result.sessions_per_task = " ".join(f"{n}x{k}" for k, n in sorted(counts.items()))
    if set(per_task.values()) != {1}:
        result.problems.append(f"a job was created more than once (or never): {per_task}")


def run_hash(run_id: str) -> str:
    import hashlib

    return hashlib.sha256(run_id.encode()).hexdigest()[:8]


def sessions_by_task(dag_id: str, run_id: str, task_ids: list[str], tries: int = 3) -> dict[str, list[dict]]:
    """The server's sessions of each task of the run: ``scaleout-<task>-<try>-<run>`` or the default name."""
    from airflow.providers.backend.ai._session.params import default_session_name

    names: dict[str, str] = {}
    for tid in task_ids:
        for t in range(1, tries + 1):
            names[f"scaleout-{tid}-{t}-{run_hash(run_id)}"] = tid
            names[default_session_name(dag_id, tid, run_id, -1, t)] = tid
    out: dict[str, list[dict]] = collections.defaultdict(list)
    for s in server_sessions():
        if s["name"] in names:
            out[names[s["name"]]].append(s)
    return out


# -- processes and memory -------------------------------------------------------------------------------


def pid_of(name: str) -> int:
    return int((DIR / "pids" / f"{name}.pid").read_text())


def processes() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, pgid, rss bytes) of every process."""
    out = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            out[int(proc.name)] = (int(fields[1]), int(fields[2]), int(fields[21]) * page)
        except (OSError, ValueError, IndexError):
            continue
    return out


def tree(pgids: set[int], procs: dict[int, tuple[int, int, int]]) -> set[int]:
    """Every process in the groups ``pgids`` and all their descendants (task processes start own sessions)."""
    keep = {pid for pid, (_, pgid, _) in procs.items() if pgid in pgids}
    changed = True
    while changed:
        new = {pid for pid, (ppid, _, _) in procs.items() if ppid in keep and pid not in keep}
        keep |= new
        changed = bool(new)
    return keep


def kill_group(name: str) -> None:
    """SIGKILL the component's process group and every descendant: what a dead host or container does."""
    pgid = pid_of(name)
    victims = tree({pgid}, processes())
    log(f"SIGKILL process group {pgid} ({name}) and its descendants: {len(victims)} processes")
    os.killpg(pgid, signal.SIGKILL)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    """True while the process group has a member that is not a zombie."""
    for pid, (_, group, _) in processes().items():
        if group != pgid:
            continue
        with contextlib.suppress(OSError):
            if (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return True
    return False


def wait_for(what: str, condition, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    log(f"timed out after {timeout:.0f} s waiting for {what}")
    return False


AIRFLOW_COMPONENTS = (
    "api-server",
    "scheduler",
    "dag-processor",
    "worker1",
    "worker2",
    "triggerer1",
    "triggerer2",
)


def healthy_jobs(job_type: str, within: float = 10) -> int:
    """How many Airflow jobs of ``job_type`` (SchedulerJob, TriggererJob) run with a recent heartbeat."""
    with db() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM job WHERE job_type=%s AND state='running' "
            "AND latest_heartbeat > now() - make_interval(secs => %s)",
            (job_type, within),
        )
        return cur.fetchone()[0]


def celery_workers() -> set[str]:
    from airflow.providers.celery.executors.celery_executor import app

    return {w.split("@", 1)[0] for w in (app.control.inspect(timeout=3).ping() or {})}


def restore_topology() -> list[str]:
    """
    Start again (``restart.sh``, the command ``up.sh`` recorded) every Airflow component that is not
    running, e.g. the worker or triggerer an earlier scenario killed, and wait until it is ready: each
    scenario starts on the full topology. Returns the names restarted.
    """
    dead = [name for name in AIRFLOW_COMPONENTS if not group_alive(pid_of(name))]
    for name in dead:
        subprocess.run(["bash", str(HERE / "restart.sh"), str(DIR), name], check=True)
    for name in dead:
        if name.startswith("worker"):
            ready = wait_for(f"{name} to answer Celery pings", lambda n=name: n in celery_workers(), 120, 1)
        elif name.startswith("triggerer"):
            ready = wait_for("two healthy triggerers", lambda: healthy_jobs("TriggererJob") >= 2, 120, 1)
        elif name == "scheduler":
            ready = wait_for("a healthy scheduler", lambda: healthy_jobs("SchedulerJob") >= 1, 120, 1)
        else:
            ready = wait_for(f"{name} to stay up", lambda n=name: group_alive(pid_of(n)), 10, 1)
        if not ready:
            raise RuntimeError(f"{name} did not come back after a restart")
    return dead


def deployment_rss() -> int:
    """Sum of RSS (bytes) of the deployment's process groups and their descendants (incl. task processes)."""
    pgids = set()
    for f in (DIR / "pids").glob("*.pid"):
        with contextlib.suppress(ValueError):
            pgids.add(int(f.read_text()))
    procs = processes()
    return sum(procs[pid][2] for pid in tree(pgids, procs))


class MemorySampler(threading.Thread):
    """Samples :func:`deployment_rss` every second: ``peak`` since the last :meth:`reset`, ``overall`` peak."""

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0
        self.overall = 0
        self.stop = threading.Event()

    def reset(self) -> None:
        self.peak = 0

    def sample(self) -> None:
        with contextlib.suppress(OSError):
            rss = deployment_rss()
            self.peak = max(self.peak, rss)
            self.overall = max(self.overall, rss)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)


# -- scenarios -------------------------------------------------------------------------------------------


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


def finish(
    result: Result,
    dag_id: str,
    run_id: str,
    task_ids: list[str],
    rows: dict,
    started: float,
    expected: dict[str, str] | None = None,
) -> None:
    """Common checks: every task in its expected state (``success`` by default), and no live session left."""
    problems = result.problems
    result.tasks = len(task_ids)
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


def scenario_fanout(result: Result) -> None:
    dag_id = "scaleout_fanout"
    started = time.monotonic()
    run_id = trigger(dag_id)
    task_ids = [f"sync_{i:02d}" for i in range(20)] + [f"deferred_{i:02d}" for i in range(20)]
    rows = wait_run(dag_id, run_id, timeout=300)
    check_logs_and_xcom(dag_id, run_id, task_ids, result.problems)
    expect_one_session_per_task(sessions_by_task(dag_id, run_id, task_ids), task_ids, result)
    finish(result, dag_id, run_id, task_ids, rows, started)


def celery_consumer(action: str, queue: str, worker: str) -> None:
    """Let only one worker take the scenario's tasks (Celery's cancel/add_consumer)."""
    from airflow.providers.celery.executors.celery_executor import app

    hosts = [w for w in (app.control.inspect(timeout=5).ping() or {}) if w.startswith(f"{worker}@")]
    if not hosts:
        raise RuntimeError(f"celery worker {worker} did not answer a ping")
    getattr(app.control, f"{action}_consumer")(queue, destination=hosts, reply=True, timeout=10)
    log(f"celery {action}_consumer {queue} on {hosts}")


def scenario_kill_worker(result: Result) -> None:
    dag_id = "scaleout_kill_worker"
    queue = os.environ.get("AIRFLOW__OPERATORS__DEFAULT_QUEUE", "default")
    started = time.monotonic()
    task_ids = ["durable_00", "plain_01", "durable_02", "plain_03"]
    celery_consumer("cancel", queue, "worker2")  # all four go to worker1
    try:
        run_id = trigger(dag_id)

        # Kill once every job runs on the server and its worker is watching it: the task's log shows the
        # job's first line (the worker streams the session log into the task log).
        def all_running() -> bool:
            by_task = sessions_by_task(dag_id, run_id, task_ids)
            return all(
                any(s["status"] == "RUNNING" for s in by_task.get(tid, []))
                and f"JOB-OUTPUT {tid}" in task_log(dag_id, run_id, tid)
                for tid in task_ids
            )

        if not wait_for("every job to run on worker1", all_running, timeout=120, interval=1):
            result.problems.append("the jobs did not all start on worker1")
    finally:
        kill_group("worker1")
        result.kills = "worker1 (SIGKILL group)"
        celery_consumer("add", queue, "worker2")
    rows = wait_run(dag_id, run_id, timeout=300)
    check_logs_and_xcom(dag_id, run_id, task_ids, result.problems)
    by_task = sessions_by_task(dag_id, run_id, task_ids)
    per_task = sessions_per_task(by_task, task_ids)
    result.sessions_per_task = ", ".join(f"{t}={n}" for t, n in per_task.items())
    for tid in task_ids:
        sessions = sorted(by_task.get(tid, []), key=lambda s: s["created_at"])
        if tid.startswith("durable"):
            if len(sessions) != 1:
                result.problems.append(
                    f"{tid} (durable): {len(sessions)} sessions, the job ran more than once"
                )
        else:
            if len(sessions) != 2:
                result.problems.append(f"{tid}: expected 2 sessions (dead try + retry), got {len(sessions)}")
            elif sessions[0]["status_info"] not in ("user-requested", "force-terminated"):
                result.problems.append(
                    f"{tid}: the dead try's session was not destroyed by the retry "
                    f"(status_info {sessions[0]['status_info']!r}, result {sessions[0]['result']!r})"
                )
    finish(result, dag_id, run_id, task_ids, rows, started)


def triggerer_of_job(job_id: int) -> str:
    """
    The triggerer process (by name) that runs as TriggererJob ``job_id``.

    The job table has no pid; a triggerer holds its triggers' log files ``*.trigger.<job id>.log`` open.
    """
    pattern = re.compile(r"\.trigger\.(\d+)\.log$")
    for name in ("triggerer1", "triggerer2"):
        pgid = pid_of(name)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if os.getpgid(int(proc.name)) != pgid:
                    continue
                for fd in (proc / "fd").iterdir():
                    m = pattern.search(os.readlink(fd))
                    if m and int(m.group(1)) == job_id:
                        return name
            except OSError:
                continue
    raise RuntimeError(f"no triggerer process holds a log of TriggererJob {job_id}")


def trigger_holders(dag_id: str, run_id: str) -> collections.Counter:
    """TriggererJob id -> how many of the run's deferred tasks' triggers it holds."""
    with db() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT t.triggerer_id, count(*) FROM task_instance ti JOIN trigger t ON ti.trigger_id=t.id "
            "WHERE ti.dag_id=%s AND ti.run_id=%s AND ti.state='deferred' AND t.triggerer_id IS NOT NULL "
            "GROUP BY t.triggerer_id",
            (dag_id, run_id),
        )
        return collections.Counter(dict(cur.fetchall()))


def scenario_kill_triggerer(result: Result) -> None:
    dag_id = "scaleout_kill_triggerer"
    started = time.monotonic()
    task_ids = [f"deferred_{i:02d}" for i in range(12)]
    run_id = trigger(dag_id)
    holders: collections.Counter = collections.Counter()

    def all_held() -> bool:
        nonlocal holders
        holders = trigger_holders(dag_id, run_id)
        return sum(holders.values()) == len(task_ids)

    wait_for("every task to be deferred and held by a triggerer", all_held, timeout=120, interval=1)
    if not holders:
        result.problems.append("no deferred task was held by a triggerer")
        finish(result, dag_id, run_id, task_ids, task_rows(dag_id, run_id), started)
        return
    victim_job, held = holders.most_common(1)[0]
    victim = triggerer_of_job(victim_job)
    log(f"triggerer job {victim_job} ({victim}) holds {held} of {sum(holders.values())} deferred tasks")
    kill_group(victim)
    result.kills = f"{victim} (SIGKILL group, held {held}/{len(task_ids)})"
    rows = wait_run(dag_id, run_id, timeout=300)
    check_logs_and_xcom(dag_id, run_id, task_ids, result.problems)
    expect_one_session_per_task(sessions_by_task(dag_id, run_id, task_ids), task_ids, result)
    finish(result, dag_id, run_id, task_ids, rows, started)


def scenario_pause_triggerer(result: Result) -> None:
    """
    6 (not in the default set). A triggerer that is alive but silent past the health-check threshold (a
    frozen VM, CPU starvation, a network partition; here SIGSTOP) loses its triggers to the other one. When
    it resumes it cancels them. The jobs must survive that: every task succeeds, one session each, none
    destroyed by a kill.
    """
    dag_id = "scaleout_kill_triggerer"
    started = time.monotonic()
    task_ids = [f"deferred_{i:02d}" for i in range(12)]
    run_id = trigger(dag_id)
    wait_until_busy(dag_id, run_id, task_ids, timeout=180, result=result)
    victim_job, held = trigger_holders(dag_id, run_id).most_common(1)[0]
    victim = triggerer_of_job(victim_job)
    pgid = pid_of(victim)
    log(f"SIGSTOP {victim} (TriggererJob {victim_job}, holds {held} of {len(task_ids)} triggers)")
    os.killpg(pgid, signal.SIGSTOP)
    paused = time.monotonic()
    try:
        moved = wait_for(
            f"the triggers of {victim} to move to the other triggerer",
            lambda: victim_job not in trigger_holders(dag_id, run_id),
            timeout=120,
            interval=1,
        )
    finally:
        os.killpg(pgid, signal.SIGCONT)
    result.kills = (
        f"{victim} (SIGSTOP {time.monotonic() - paused:.0f} s, held {held}/{len(task_ids)}), SIGCONT"
    )
    if not moved:
        result.problems.append("the paused triggerer's triggers did not move")
    rows = wait_run(dag_id, run_id, timeout=300)
    check_logs_and_xcom(dag_id, run_id, task_ids, result.problems)
    by_task = sessions_by_task(dag_id, run_id, task_ids)
    expect_one_session_per_task(by_task, task_ids, result)
    killed = sorted(t for t, ss in by_task.items() if any(x["status_info"] in DESTROYED_INFO for x in ss))
    if killed:
        result.problems.append(
            f"the resumed triggerer destroyed the jobs its triggers had moved away from: {killed}"
        )
    finish(result, dag_id, run_id, task_ids, rows, started)


TRIGGER_STARTED = re.compile(r"trigger \S+ \(ID \d+\) starting")


def trigger_watching(dag_id: str, run_id: str, task_id: str) -> bool:
    """True once a triggerer runs the task's trigger: Airflow's ``trigger ... (ID n) starting`` log line."""
    base = DIR / "airflow" / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    for path in base.glob("attempt=1.log.trigger.*.log"):
        with contextlib.suppress(OSError):
            if TRIGGER_STARTED.search(path.read_text(errors="replace")):
                return True
    return False


def wait_until_busy(
    dag_id: str, run_id: str, task_ids: list[str], timeout: float, result: Result
) -> dict[str, dict]:
    """
    Wait until every task's job runs on the server and the task waits for it: sync tasks ``running`` on a
    worker, deferrable ones ``deferred`` with their trigger running in a triggerer. Returns each task's
    session (try 1) as the server lists it.
    """
    deadline = time.monotonic() + timeout
    waiting: list[str] = list(task_ids)
    sessions: dict[str, dict] = {}
    while time.monotonic() < deadline:
        rows = task_rows(dag_id, run_id)
        by_task = sessions_by_task(dag_id, run_id, task_ids, tries=1)
        waiting = []
        for tid in task_ids:
            found = [s for s in by_task.get(tid, []) if s["status"] == "RUNNING"]
            state = rows.get(tid, {}).get("state")
            if not found:
                waiting.append(tid)
                continue
            sessions[tid] = found[0]
            if tid.startswith(("sync", "w1_sync")) and state == "running":
                continue
            if state == "deferred" and trigger_watching(dag_id, run_id, tid):
                continue
            waiting.append(tid)
        if not waiting:
            return sessions
        time.sleep(1)
    result.problems.append(f"not all jobs were running and watched within {timeout:.0f} s: {waiting}")
    return sessions


def scenario_clear_fail(result: Result) -> None:
    """
    4. Clear some tasks and mark others failed through the REST API while their jobs run: sync tasks on a
    worker, deferrable ones in a triggerer. Every first-try session must be destroyed within
    ``DESTROY_WITHIN`` seconds; cleared tasks rerun (a short job) and succeed, failed ones stay failed.
    """
    dag_id = "scaleout_clear_fail"
    started = time.monotonic()
    actions = {"clear": (0, 1), "fail": (2, 3)}
    ids = {
        (mode, action): [f"{mode}_{action}_{i:02d}" for i in numbers]
        for mode in ("sync", "deferred")
        for action, numbers in actions.items()
    }
    task_ids = [tid for group in ids.values() for tid in group]
    clear_ids = ids["sync", "clear"] + ids["deferred", "clear"]
    fail_ids = ids["sync", "fail"] + ids["deferred", "fail"]
    run_id = trigger(dag_id)
    first = wait_until_busy(dag_id, run_id, task_ids, timeout=180, result=result)
    if result.problems:
        finish(result, dag_id, run_id, task_ids, task_rows(dag_id, run_id), started)
        return

    acted: dict[str, float] = {}
    for tid in fail_ids:
        api(
            "PATCH",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{tid}",
            {"new_state": "failed", "note": "scale-out scenario 4"},
        )
        acted[tid] = time.monotonic()
    log(f"marked failed through the REST API: {fail_ids}")
    cleared = api(
        "POST",
        f"/api/v2/dags/{dag_id}/clearTaskInstances",
        {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": clear_ids,
            "only_failed": False,
            "reset_dag_runs": True,
        },
    )
    now = time.monotonic()
    acted.update(dict.fromkeys(clear_ids, now))
    log(f"cleared through the REST API: {sorted(ti['task_id'] for ti in cleared.get('task_instances', []))}")
    result.kills = f"REST: {len(clear_ids)} cleared, {len(fail_ids)} marked failed (half sync, half deferred)"

    # Every first-try session must end by a destroy (not its own end: the job sleeps 600 s) in time.
    destroyed_after: dict[str, float] = {}
    deadline = max(acted.values()) + DESTROY_WITHIN
    while len(destroyed_after) < len(task_ids) and time.monotonic() < deadline:
        by_id = {s["id"]: s for s in server_sessions()}
        for tid in task_ids:
            if tid in destroyed_after:
                continue
            session = by_id.get(first[tid]["id"])  # a session the manager no longer lists is gone too
            if session is None or session["status"] in DEAD_SESSION | {"TERMINATING"}:
                if session is not None and session["status_info"] not in DESTROYED_INFO:
                    result.problems.append(
                        f"{tid}: session {session['name']} ended as {session['status']}/"
                        f"{session['status_info']!r}, not by a destroy"
                    )
                destroyed_after[tid] = time.monotonic() - acted[tid]
        time.sleep(1)
    late = sorted(set(task_ids) - set(destroyed_after))
    if late:
        result.problems.append(f"sessions not destroyed within {DESTROY_WITHIN} s: {late}")
    for mode in ("sync", "deferred"):
        for action, label in (("clear", "cleared"), ("fail", "marked failed")):
            times = [destroyed_after[t] for t in ids[mode, action] if t in destroyed_after]
            if times:
                result.notes.append(
                    f"{mode} tasks {label}: sessions destroyed {min(times):.0f}-{max(times):.0f} s after the call"
                )

    expected = dict.fromkeys(fail_ids, "failed") | dict.fromkeys(clear_ids, "success")
    rows = wait_run(dag_id, run_id, timeout=240)
    check_logs_and_xcom(dag_id, run_id, clear_ids, result.problems)
    by_task = sessions_by_task(dag_id, run_id, task_ids)
    per_task = sessions_per_task(by_task, task_ids)
    wanted = dict.fromkeys(clear_ids, 2) | dict.fromkeys(fail_ids, 1)  # a cleared task reruns once
    result.sessions_per_task = (
        f"cleared {' '.join(str(per_task[t]) for t in clear_ids)}, "
        f"failed {' '.join(str(per_task[t]) for t in fail_ids)}"
    )
    wrong = {t: per_task[t] for t in task_ids if per_task[t] != wanted[t]}
    if wrong:
        result.problems.append(f"sessions per task differ from {wanted}: {wrong}")
    for tid in clear_ids:
        if rows.get(tid, {}).get("try_number") != 2:
            result.problems.append(
                f"{tid}: cleared once, yet try_number is {rows.get(tid, {}).get('try_number')}"
            )
    finish(result, dag_id, run_id, task_ids, rows, started, expected)


def scenario_restart_scheduler(result: Result) -> None:
    """
    5. Stop the scheduler (SIGTERM, SIGKILL if it does not exit in 30 s) while a run's first wave runs and is
    deferred, keep it down until work finished without it, start it again with the command ``up.sh``
    recorded (``restart.sh``). The run must complete: every task succeeded once, one session per task.
    """
    dag_id = "scaleout_restart_scheduler"
    started = time.monotonic()
    wave1 = [f"w1_{m}_{i:02d}" for m in ("sync", "deferred") for i in range(6)]
    wave2 = [f"w2_{m}_{i:02d}" for m in ("sync", "deferred") for i in range(2)]
    task_ids = wave1 + wave2
    run_id = trigger(dag_id)
    wait_until_busy(dag_id, run_id, wave1, timeout=180, result=result)

    pgid = pid_of("scheduler")
    stopped = time.monotonic()
    log(f"SIGTERM scheduler (process group {pgid})")
    os.killpg(pgid, signal.SIGTERM)
    if wait_for("the scheduler to exit after SIGTERM", lambda: not group_alive(pgid), timeout=30):
        how = f"SIGTERM, exited in {time.monotonic() - stopped:.0f} s"
    else:
        kill_group("scheduler")
        wait_for("the scheduler to die after SIGKILL", lambda: not group_alive(pgid), timeout=10)
        how = "SIGTERM, then SIGKILL after 30 s"
    result.kills = f"scheduler ({how}), restarted"

    # Down until work moved on without it: a sync task reported its end through the api-server, or a
    # trigger fired (the task waits in ``scheduled`` for a scheduler to resume it).
    def moved_on() -> bool:
        rows = task_rows(dag_id, run_id)
        return any(
            rows.get(t, {}).get("state") == "success"
            or (rows.get(t, {}).get("state") == "scheduled" and rows.get(t, {}).get("next_method"))
            for t in wave1
        )

    if not wait_for(
        "a first-wave task to finish while the scheduler is down", moved_on, timeout=90, interval=1
    ):
        result.problems.append("no task finished while the scheduler was down")
    rows = task_rows(dag_id, run_id)
    done = [t for t in wave1 if rows.get(t, {}).get("state") == "success"]
    resumable = [t for t in wave1 if rows.get(t, {}).get("state") == "scheduled"]
    subprocess.run(["bash", str(HERE / "restart.sh"), str(DIR), "scheduler"], check=True)
    result.notes.append(
        f"scheduler down {time.monotonic() - stopped:.0f} s ({how}); meanwhile {len(done)} sync task(s) "
        f"succeeded and {len(resumable)} trigger(s) fired, waiting for the restarted scheduler"
    )

    rows = wait_run(dag_id, run_id, timeout=300)
    check_logs_and_xcom(dag_id, run_id, task_ids, result.problems)
    expect_one_session_per_task(sessions_by_task(dag_id, run_id, task_ids), task_ids, result)
    with db() as conn, conn.cursor() as cur:
        cur.execute("SELECT state FROM dag_run WHERE dag_id=%s AND run_id=%s", (dag_id, run_id))
        run_state = cur.fetchone()[0]
    if run_state != "success":
        result.problems.append(f"the Dag run ended {run_state!r}")
    finish(result, dag_id, run_id, task_ids, rows, started)


SCENARIOS = {
    1: ("1 fan-out 20 sync + 20 deferrable", scenario_fanout),
    2: ("2 worker SIGKILL mid-job", scenario_kill_worker),
    3: ("3 triggerer SIGKILL mid-deferral", scenario_kill_triggerer),
    4: ("4 clear / mark failed via REST", scenario_clear_fail),
    5: ("5 scheduler restart mid-run", scenario_restart_scheduler),
    # Not in the default set: see the docstring.
    6: ("6 triggerer paused (SIGSTOP) past health check", scenario_pause_triggerer),
}

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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default="1,2,3,4,5", help="comma-separated scenario numbers")
    parser.add_argument("--report", type=Path, help="also write the results table to this Markdown file")
    args = parser.parse_args()
    wanted = [int(s) for s in args.scenarios.replace(" ", ",").split(",") if s.strip()]
    sampler = MemorySampler()
    sampler.start()
    results = []
    began = time.monotonic()
    for number in wanted:
        if number not in SCENARIOS:
            results.append(Result(f"{number} (no such scenario)", problems=["no such scenario"]))
            continue
        name, func = SCENARIOS[number]
        result = Result(name)
        log(f"=== scenario {name}")
        try:
            if restored := restore_topology():
                log(f"restarted what an earlier scenario stopped: {', '.join(restored)}")
            sampler.reset()
            func(result)
        except Exception as exc:  # a scenario that crashes is a failed scenario
            import traceback

            traceback.print_exc()
            result.problems.append(f"crashed: {exc!r}")
            result.ok = False
        sampler.sample()
        result.peak_rss_mb = sampler.peak / 2**20
        results.append(result)
        log(f"=== scenario {name}: {'PASS' if result.ok else 'FAIL'} {result.problems}")
    sampler.stop.set()
    seconds = time.monotonic() - began

    print()
    print(render_table(results))
    for line in render_details(results):
        print(" ", line[2:])
    print(
        f"  peak RSS of the whole deployment: {sampler.overall / 2**20:.0f} MB; scenarios took {seconds:.0f} s"
    )
    (DIR / "results.json").write_text(json.dumps([r.__dict__ for r in results], indent=2))
    if args.report:
        write_report(args.report, results, sampler.overall / 2**20, seconds)
        log(f"results table written to {args.report}")
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
