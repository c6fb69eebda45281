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

    python scenarios.py DIR [--scenarios 1,2,3]

Airflow's state is read from PostgreSQL and the REST API; the Backend.AI side is read through the
Backend.AI API itself (the SDK's ``Admin.query``, not the provider).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

DIR = Path(os.environ.get("SCALEOUT_DIR", "."))
API = os.environ.get("SCALEOUT_API", "")
TERMINAL = {"success", "failed", "upstream_failed", "skipped", "removed"}
DEAD_SESSION = {"TERMINATED", "CANCELLED", "ERROR"}


# -- helpers -----------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[scenarios {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def db():
    return psycopg2.connect(
        host="127.0.0.1", port=int(os.environ["SCALEOUT_PG_PORT"]), user="airflow", dbname="airflow"
    )


def api(method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{API}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"{}")


def trigger(dag_id: str) -> str:
    deadline = time.monotonic() + 120
    while True:
        try:
            api("GET", f"/api/v2/dags/{dag_id}")
            break
        except urllib.error.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    run = api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})
    log(f"triggered {dag_id}: {run['dag_run_id']}")
    return run["dag_run_id"]


def task_rows(dag_id: str, run_id: str) -> dict[str, dict]:
    with db() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT task_id, state, try_number, hostname, queued_by_job_id, trigger_id "
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


def run_hash(run_id: str) -> str:
    import hashlib

    return hashlib.sha256(run_id.encode()).hexdigest()[:8]


def sessions_by_task(dag_id: str, run_id: str, task_ids: list[str], tries: int = 3) -> dict[str, list[dict]]:
    """The server's sessions of each task of the run: ``scaleout-<task>-<try>-<run>`` or the default name."""
    from airflow.providers.backend.ai.utils.session_params import default_session_name

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


def deployment_rss() -> int:
    """Sum of RSS (bytes) of the deployment's process groups and their descendants (incl. task processes)."""
    pgids = set()
    for f in (DIR / "pids").glob("*.pid"):
        with contextlib.suppress(ValueError):
            pgids.add(int(f.read_text()))
    procs = processes()
    return sum(procs[pid][2] for pid in tree(pgids, procs))


class MemorySampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, deployment_rss())
            self.stop.wait(2)


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


def finish(result: Result, dag_id: str, run_id: str, task_ids: list[str], rows: dict, started: float) -> None:
    problems = result.problems
    result.tasks = len(task_ids)
    not_ok = {t: rows.get(t, {}).get("state") for t in task_ids if rows.get(t, {}).get("state") != "success"}
    if not_ok:
        problems.append(f"tasks not successful: {not_ok}")
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
    per_task = sessions_per_task(sessions_by_task(dag_id, run_id, task_ids), task_ids)
    counts = collections.Counter(per_task.values())
    result.sessions_per_task = " ".join(f"{n}x{k}" for k, n in sorted(counts.items()))
    if set(per_task.values()) != {1}:
        result.problems.append(f"sessions per task not all 1: {per_task}")
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
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # every job is running on the server
            running = [s for s in sessions_by_task(dag_id, run_id, task_ids).values() if s]
            if len(running) == len(task_ids):
                break
            time.sleep(1)
        else:
            result.problems.append("the jobs did not all start on worker1")
        time.sleep(5)
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


def scenario_kill_triggerer(result: Result) -> None:
    dag_id = "scaleout_kill_triggerer"
    started = time.monotonic()
    task_ids = [f"deferred_{i:02d}" for i in range(12)]
    run_id = trigger(dag_id)
    deadline = time.monotonic() + 120
    holders: collections.Counter = collections.Counter()
    while time.monotonic() < deadline:
        with db() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT j.hostname, j.id, count(*) FROM task_instance ti JOIN trigger t ON ti.trigger_id=t.id "
                "JOIN job j ON t.triggerer_id=j.id WHERE ti.dag_id=%s AND ti.run_id=%s AND ti.state='deferred' "
                "GROUP BY j.hostname, j.id",
                (dag_id, run_id),
            )
            holders = collections.Counter({job_id: n for _, job_id, n in cur.fetchall()})
        if sum(holders.values()) == len(task_ids):
            break
        time.sleep(1)
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
    per_task = sessions_per_task(sessions_by_task(dag_id, run_id, task_ids), task_ids)
    counts = collections.Counter(per_task.values())
    result.sessions_per_task = " ".join(f"{n}x{k}" for k, n in sorted(counts.items()))
    if set(per_task.values()) != {1}:
        result.problems.append(f"a job was created more than once (or never): {per_task}")
    finish(result, dag_id, run_id, task_ids, rows, started)


SCENARIOS = {
    1: ("1 fan-out 20 sync + 20 deferrable", scenario_fanout),
    2: ("2 worker SIGKILL mid-job", scenario_kill_worker),
    3: ("3 triggerer SIGKILL mid-deferral", scenario_kill_triggerer),
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default="1,2,3")
    args = parser.parse_args()
    wanted = [int(s) for s in args.scenarios.split(",") if s.strip()]
    sampler = MemorySampler()
    sampler.start()
    results = []
    for number in wanted:
        if number not in SCENARIOS:
            results.append(Result(f"{number} (not implemented)", problems=["not implemented"]))
            continue
        name, func = SCENARIOS[number]
        result = Result(name)
        log(f"=== scenario {name}")
        before = sampler.peak
        sampler.peak = 0
        try:
            func(result)
        except Exception as exc:  # a scenario that crashes is a failed scenario
            import traceback

            traceback.print_exc()
            result.problems.append(f"crashed: {exc!r}")
            result.ok = False
        result.peak_rss_mb = max(sampler.peak, deployment_rss()) / 2**20
        sampler.peak = max(before, sampler.peak)
        results.append(result)
        log(f"=== scenario {name}: {'PASS' if result.ok else 'FAIL'} {result.problems}")
    sampler.stop.set()

    header = (
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
    table = [header] + [
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
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print()
    for i, row in enumerate(table):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in results:
        for p in r.problems:
            print(f"  scenario {r.name.split()[0]}: {p}")
    (DIR / "results.json").write_text(json.dumps([r.__dict__ for r in results], indent=2))
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
