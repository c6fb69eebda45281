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
Smoke test of a cluster from up.sh, through the SDK the provider uses (a USER keypair).

Runs four batch sessions at once: ``echo hi``, ``echo boom; exit 3``, ``sleep 30`` with
batch_timeout=3, and ``echo started; sleep 60`` destroyed while RUNNING (its logs are read while
it runs). Reads every outcome with the GraphQL ``compute_session`` query the provider uses, the
logs after termination, lists by name, queries a UUID that does not exist, destroys a session
that already ended, and checks that the second user sees none of the first user's sessions.

usage: set -a; . DIR/cluster.env; set +a; PYTHON smoke.py   (any Python with backend.ai-client 26.9.6)
Exits non-zero on the first check that fails.
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from typing import Any
from unittest import mock

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.func.session import ComputeSession
from ai.backend.client.session import Session

GQL_ONE = "query($id: UUID!) { compute_session(id: $id) { id name status status_info result } }"
GQL_LIST = (
    "query($filter: String) { compute_session_list(limit: 100, offset: 0, filter: $filter) "
    "{ items { id name status created_at } total_count } }"
)
DEAD = ("TERMINATED", "CANCELLED", "ERROR")
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[smoke {time.monotonic() - T0:5.1f}s] {msg}", flush=True)


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"smoke: FAILED: {what}")
    log(f"ok: {what}")


def config(access_key: str, secret_key: str) -> APIConfig:
    with mock.patch("ai.backend.client.config.load_dotenv", return_value=False):
        return APIConfig(
            endpoint=os.environ["BACKEND_AI_TEST_ENDPOINT"],
            endpoint_type="api",
            access_key=access_key,
            secret_key=secret_key,
        )


def query(s: Any, sid: uuid.UUID | str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = s.Admin.query(GQL_ONE, {"id": str(sid)})["compute_session"]
    return row


def wait(s: Any, sid: uuid.UUID, done: Any, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        row = query(s, sid)
        if row is not None and done(row):
            return row
        if time.monotonic() > deadline:
            raise SystemExit(f"smoke: FAILED: session {sid} still {row} after {timeout}s")
        time.sleep(0.5)


def ref(sid: uuid.UUID) -> Any:
    r = ComputeSession(str(sid))
    r.id = sid
    return r


def main() -> None:
    warnings.simplefilter("ignore")
    image = os.environ["BACKEND_AI_TEST_IMAGE"]
    user = config(os.environ["BACKEND_AI_TEST_ACCESS_KEY"], os.environ["BACKEND_AI_TEST_SECRET_KEY"])
    other = config(
        os.environ["BACKEND_AI_TEST_OTHER_ACCESS_KEY"], os.environ["BACKEND_AI_TEST_OTHER_SECRET_KEY"]
    )
    tag = uuid.uuid4().hex[:8]
    jobs = {
        "ok": ("echo hi", None),
        "fail": ("echo boom; exit 3", None),
        "timeout": ("sleep 30", 3),
        "destroy": ("echo started; sleep 60", None),
    }
    with Session(config=user) as session:
        s: Any = session  # the sync Session runs the SDK's coroutine-typed calls
        log(f"hello: {s.System.get_versions()}")
        ids: dict[str, uuid.UUID] = {}
        for key, (command, batch_timeout) in jobs.items():
            cs = s.ComputeSession.get_or_create(
                image,
                type_="batch",
                startup_command=command,
                batch_timeout=batch_timeout,
                enqueue_only=True,
                session_resources={"cpu": 1, "mem": "1g"},
                name=f"smoke-{key}-{tag}",
            )
            ids[key] = uuid.UUID(str(cs.id))
            log(f"created {key}: {command!r} -> {cs.id}")

        running = wait(s, ids["destroy"], lambda r: r["status"] == "RUNNING")
        log(f"destroy-me is {running['status']}")
        deadline = time.monotonic() + 10
        while (logs := ref(ids["destroy"]).get_logs()["result"]["logs"]) != "started\n":
            check(time.monotonic() < deadline, f"get_logs while RUNNING shows the output so far ({logs!r})")
            time.sleep(0.5)
        check(True, "get_logs while RUNNING answers 'started\\n'")
        log(f"destroy while RUNNING -> {ref(ids['destroy']).destroy()}")

        expected = {
            "ok": ("SUCCESS", "task-finished", "hi\n"),
            "fail": ("FAILURE", "task-failed", "boom\n"),
            "timeout": ("FAILURE", "task-timeout", ""),
            "destroy": ("UNDEFINED", "user-requested", "started\n"),
        }
        for key, (result, status_info, logs) in expected.items():
            row = wait(s, ids[key], lambda r: r["status"] in DEAD)
            log(f"{key}: {row}")
            check(
                (row["status"], row["result"], row["status_info"]) == ("TERMINATED", result, status_info),
                f"{key} ended TERMINATED/{result}/{status_info}",
            )
            got = ref(ids[key]).get_logs()["result"]["logs"]
            check(got == logs, f"{key}: get_logs after termination = {got!r}")

        missing = s.Admin.query(GQL_ONE, {"id": str(uuid.uuid4())})
        log(f"compute_session(nonexistent uuid) -> {missing}")
        check(missing == {"compute_session": None}, "compute_session of an unknown UUID is null")

        name = f"smoke-ok-{tag}"
        listed = s.Admin.query(GQL_LIST, {"filter": f'name == "{name}"'})["compute_session_list"]
        log(f"compute_session_list(name == {name!r}) -> {listed}")
        check(
            listed["total_count"] == 1 and listed["items"][0]["id"] == str(ids["ok"]),
            "compute_session_list with a name filter finds exactly that session",
        )

        try:
            again: Any = ref(ids["ok"]).destroy()
        except BackendAPIError as exc:
            again = f"BackendAPIError({exc.status}, {exc.data})"
        log(f"destroy of a TERMINATED session -> {again}")
        try:
            ref(ids["ok"]).get_info()
            gone = "answered"
        except BackendAPIError as exc:
            gone = f"HTTP {exc.status}"
        log(f"get_info of a TERMINATED session -> {gone}")

    with Session(config=other) as session2:
        s2: Any = session2
        seen = query(s2, ids["ok"])
        listed = s2.Admin.query(GQL_LIST, {"filter": f'name == "smoke-ok-{tag}"'})["compute_session_list"]
        log(f"second user: compute_session -> {seen}; list -> {listed}")
        check(
            seen is None and listed["total_count"] == 0,
            "the second user sees none of the first user's sessions",
        )
    log("all checks passed")


if __name__ == "__main__":
    main()
