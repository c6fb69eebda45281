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
"""The Backend.AI side, read through the Backend.AI API itself (the SDK's ``Admin.query``, not the provider)."""

from __future__ import annotations

import collections
import hashlib
import os
import time
from typing import Any

DEAD_SESSION = {"TERMINATED", "CANCELLED", "ERROR"}
#: ``status_info`` of a session that a destroy request ended (not its job): Backend.AI's own reasons.
DESTROYED_INFO = {"user-requested", "force-terminated"}

LIST_QUERY = (
    "query($limit: Int!, $offset: Int!) { compute_session_list(limit: $limit, offset: $offset) "
    "{ items { id name status status_info result created_at } total_count } }"
)


def server_sessions() -> list[dict[str, Any]]:
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
    items: list[dict[str, Any]] = []
    with Session(config=cfg):
        offset = 0
        while True:
            page = Admin.query(LIST_QUERY, {"limit": 100, "offset": offset})["compute_session_list"]
            items += page["items"]
            offset += 100
            if offset >= page["total_count"] or not page["items"]:
                break
    return [i for i in items if "scaleout" in (i.get("name") or "")]


def leaked_sessions(wait: float = 30) -> list[dict[str, Any]]:
    """``scaleout`` sessions not terminated; waits a little for TERMINATING ones to finish."""
    deadline = time.monotonic() + wait
    while True:
        live = [s for s in server_sessions() if s["status"] not in DEAD_SESSION]
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(2)


def run_hash(run_id: str) -> str:
    return hashlib.sha256(run_id.encode()).hexdigest()[:8]


def sessions_by_task(
    dag_id: str, run_id: str, task_ids: list[str], tries: int = 3
) -> dict[str, list[dict[str, Any]]]:
    """The server's sessions of each task of the run: ``scaleout-<task>-<try>-<run>`` or the default name."""
    from airflow.providers.backend.ai._session.params import default_session_name

    names: dict[str, str] = {}
    for tid in task_ids:
        for t in range(1, tries + 1):
            names[f"scaleout-{tid}-{t}-{run_hash(run_id)}"] = tid
            names[default_session_name(dag_id, tid, run_id, -1, t)] = tid
    out: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for s in server_sessions():
        if s["name"] in names:
            out[names[s["name"]]].append(s)
    return out


def sessions_per_task(run_sessions: dict[str, list[dict[str, Any]]], task_ids: list[str]) -> dict[str, int]:
    return {tid: len(run_sessions.get(tid, [])) for tid in task_ids}
