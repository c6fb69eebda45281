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

One function per scenario, in their order; what they stand on (the deployment, its processes, Airflow's
REST API and metadata DB, the Backend.AI API, the waits, the shared checks, the table) is in ``harness/``.
Airflow's state is read from PostgreSQL and the REST API (``/api/v2``, with a token from the api-server's
``/auth/token``); the Backend.AI side is read through the Backend.AI API itself (the SDK's
``Admin.query``, not the provider).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from harness.airflow_state import (
    api,
    run_end_after_tasks,
    task_log,
    task_rows,
    trigger_dag,
    trigger_holders,
)
from harness.backend_sessions import (
    DEAD_SESSION,
    DESTROYED_INFO,
    server_sessions,
    sessions_by_task,
    sessions_per_task,
)
from harness.checks import Result, check_logs_and_xcom, expect_one_session_per_task, finish
from harness.deployment import DIR, log, pid_of
from harness.processes import MemorySampler, group_alive, kill_group, triggerer_of_job
from harness.report import render_details, render_table, write_report
from harness.topology import celery_consumer, restart, restore_topology
from harness.waiting import read_run, wait_for, wait_run, wait_until_busy

if TYPE_CHECKING:
    from collections.abc import Callable

#: Scenario 4: a cleared or failed task's session must be destroyed within this many seconds.
DESTROY_WITHIN = 60


def scenario_fanout(result: Result) -> None:
    """1. 20 sync + 20 deferrable tasks at once: each its own job, log and XCom, one session each."""
    dag_id = "scaleout_fanout"
    started = time.monotonic()
    run_id = trigger_dag(dag_id)
    task_ids = [f"sync_{i:02d}" for i in range(20)] + [f"deferred_{i:02d}" for i in range(20)]
    run = wait_run(dag_id, run_id, timeout=300)
    check_logs_and_xcom(dag_id, run_id, task_ids, result.problems)
    expect_one_session_per_task(sessions_by_task(dag_id, run_id, task_ids), task_ids, result)
    finish(result, run, task_ids, started)


def scenario_kill_worker(result: Result) -> None:
    """
    2. SIGKILL the worker running four sync tasks once their jobs run; the retries run on the other worker.
    Durable tasks adopt the dead try's job (one session); the others destroy it and start anew (two).
    """
    dag_id = "scaleout_kill_worker"
    queue = os.environ.get("AIRFLOW__OPERATORS__DEFAULT_QUEUE", "default")
    started = time.monotonic()
    task_ids = ["durable_00", "plain_01", "durable_02", "plain_03"]
    celery_consumer("cancel", queue, "worker2")  # all four go to worker1
    try:
        run_id = trigger_dag(dag_id)

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
    run = wait_run(dag_id, run_id, timeout=300)
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
            elif sessions[0]["status_info"] not in DESTROYED_INFO:
                result.problems.append(
                    f"{tid}: the dead try's session was not destroyed by the retry "
                    f"(status_info {sessions[0]['status_info']!r}, result {sessions[0]['result']!r})"
                )
    finish(result, run, task_ids, started)


def scenario_kill_triggerer(result: Result) -> None:
    """3. SIGKILL the triggerer holding most of 12 deferred tasks; the other takes them over, one job each."""
    dag_id = "scaleout_kill_triggerer"
    started = time.monotonic()
    task_ids = [f"deferred_{i:02d}" for i in range(12)]
    run_id = trigger_dag(dag_id)
    holders: collections.Counter[int] = collections.Counter()

    def all_held() -> bool:
        nonlocal holders
        holders = trigger_holders(dag_id, run_id)
        return sum(holders.values()) == len(task_ids)

    wait_for("every task to be deferred and held by a triggerer", all_held, timeout=120, interval=1)
    if not holders:
        result.problems.append("no deferred task was held by a triggerer")
        finish(result, read_run(dag_id, run_id), task_ids, started)
        return
    victim_job, held = holders.most_common(1)[0]
    victim = triggerer_of_job(victim_job)
    log(f"triggerer job {victim_job} ({victim}) holds {held} of {sum(holders.values())} deferred tasks")
    kill_group(victim)
    result.kills = f"{victim} (SIGKILL group, held {held}/{len(task_ids)})"
    run = wait_run(dag_id, run_id, timeout=300)
    check_logs_and_xcom(dag_id, run_id, task_ids, result.problems)
    expect_one_session_per_task(sessions_by_task(dag_id, run_id, task_ids), task_ids, result)
    finish(result, run, task_ids, started)


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
    run_id = trigger_dag(dag_id)
    first = wait_until_busy(dag_id, run_id, task_ids, timeout=180, result=result)
    if result.problems:
        finish(result, read_run(dag_id, run_id), task_ids, started)
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
    run = wait_run(dag_id, run_id, timeout=240)
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
        if run.rows.get(tid, {}).get("try_number") != 2:
            result.problems.append(
                f"{tid}: cleared once, yet try_number is {run.rows.get(tid, {}).get('try_number')}"
            )
    finish(result, run, task_ids, started, expected, run_state="failed")  # failed tasks fail the run


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
    run_id = trigger_dag(dag_id)
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
    restart("scheduler")
    result.notes.append(
        f"scheduler down {time.monotonic() - stopped:.0f} s ({how}); meanwhile {len(done)} sync task(s) "
        f"succeeded and {len(resumable)} trigger(s) fired, waiting for the restarted scheduler"
    )

    # The restarted scheduler records the run's end after the last task's: wait_run waits for the run itself.
    run = wait_run(dag_id, run_id, timeout=300)
    if (gap := run_end_after_tasks(dag_id, run_id)) is not None:
        result.notes.append(f"the Dag run's end ({run.state}) was recorded {gap:.1f} s after its last task's")
    check_logs_and_xcom(dag_id, run_id, task_ids, result.problems)
    expect_one_session_per_task(sessions_by_task(dag_id, run_id, task_ids), task_ids, result)
    finish(result, run, task_ids, started)


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
    run_id = trigger_dag(dag_id)
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
    run = wait_run(dag_id, run_id, timeout=300)
    check_logs_and_xcom(dag_id, run_id, task_ids, result.problems)
    by_task = sessions_by_task(dag_id, run_id, task_ids)
    expect_one_session_per_task(by_task, task_ids, result)
    killed = sorted(t for t, ss in by_task.items() if any(x["status_info"] in DESTROYED_INFO for x in ss))
    if killed:
        result.problems.append(
            f"the resumed triggerer destroyed the jobs its triggers had moved away from: {killed}"
        )
    finish(result, run, task_ids, started)


SCENARIOS: dict[int, tuple[str, Callable[[Result], None]]] = {
    1: ("1 fan-out 20 sync + 20 deferrable", scenario_fanout),
    2: ("2 worker SIGKILL mid-job", scenario_kill_worker),
    3: ("3 triggerer SIGKILL mid-deferral", scenario_kill_triggerer),
    4: ("4 clear / mark failed via REST", scenario_clear_fail),
    5: ("5 scheduler restart mid-run", scenario_restart_scheduler),
    # Not in the default set: see the docstring.
    6: ("6 triggerer paused (SIGSTOP) past health check", scenario_pause_triggerer),
}


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
