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
"""The deployment's Airflow components: which are healthy, Celery's consumers, restarting what was stopped."""

from __future__ import annotations

import subprocess

from harness.deployment import DIR, HERE, db, log, pid_of
from harness.processes import group_alive
from harness.waiting import wait_for

AIRFLOW_COMPONENTS = (
    "api-server",
    "scheduler",
    "dag-processor",
    "worker1",
    "worker2",
    "triggerer1",
    "triggerer2",
)


def restart(name: str) -> None:
    """Start a stopped component again with the command ``up.sh`` recorded (``restart.sh``)."""
    subprocess.run(["bash", str(HERE / "restart.sh"), str(DIR), name], check=True)


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


def celery_consumer(action: str, queue: str, worker: str) -> None:
    """Let only one worker take the scenario's tasks (Celery's cancel/add_consumer)."""
    from airflow.providers.celery.executors.celery_executor import app

    hosts = [w for w in (app.control.inspect(timeout=5).ping() or {}) if w.startswith(f"{worker}@")]
    if not hosts:
        raise RuntimeError(f"celery worker {worker} did not answer a ping")
    getattr(app.control, f"{action}_consumer")(queue, destination=hosts, reply=True, timeout=10)
    log(f"celery {action}_consumer {queue} on {hosts}")


def restore_topology() -> list[str]:
    """
    Start again (``restart.sh``, the command ``up.sh`` recorded) every Airflow component that is not
    running, e.g. the worker or triggerer an earlier scenario killed, and wait until it is ready: each
    scenario starts on the full topology. Returns the names restarted.
    """
    dead = [name for name in AIRFLOW_COMPONENTS if not group_alive(pid_of(name))]
    for name in dead:
        restart(name)
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
