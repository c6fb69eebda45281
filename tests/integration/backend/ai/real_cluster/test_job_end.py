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
What the provider may do the moment a job's end is known on the real manager, seconds before TERMINATED.

A job is over when GraphQL ``result`` flips (or ``session_success``/``session_failure`` arrives), 2-4 s
before the session is TERMINATED (wire notes §5.5). These tests check on the real manager that acting at
that moment is safe: the log read then is the whole log, and destroying a session the manager is already
terminating (or has terminated) raises nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

if TYPE_CHECKING:
    from .conftest import RealCluster

pytestmark = pytest.mark.usefixtures("real_connection")

LINES = 2000
#: Prints many lines up to its very last instant, then exits: the end of the log is written as the job ends.
MANY_LINES = f'for i in $(seq 1 {LINES}); do echo "line $i of {LINES}"; done'
DEADLINE = 90.0


@dataclass
class AtJobEnd:
    """What was seen at the moment the job's end became known."""

    session_id: str
    how: str  # "event" or "poll"
    status: str  # the session's status read right then
    result: str
    logs: str
    seconds_after_end: float  # from the job's end being known to the log read returning
    destroyed: bool | None = None


def _spec(cluster: RealCluster, name_prefix: str, command: str) -> BatchSessionSpec:
    return BatchSessionSpec(image=cluster.image, command=command, name=f"{name_prefix}{uuid.uuid4().hex[:8]}")


async def _at_end_by_event(
    cluster: RealCluster, spec: BatchSessionSpec, *, destroy: bool = False
) -> AtJobEnd:
    """
    Create the job with the hook, wait for its ``session_success``/``failure`` on the event stream, and the
    moment its result reads back read its log through the hook (and destroy it, if asked).
    """
    from ai.backend.client.func.session import ComputeSession
    from ai.backend.client.session import AsyncSession

    hook = BackendAIHook()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = AsyncSession(config=cluster._config())
        await events.open()
    try:
        async with ComputeSession("*").listen_events() as stream:  # subscribe first: no replay
            created = await hook.a_create_batch_session(spec)

            async def _end() -> None:
                async for msg in stream:
                    payload = json.loads(msg.data) if msg.data else {}
                    if payload.get("sessionId") == created.session_id and msg.event in (
                        "session_success",
                        "session_failure",
                    ):
                        return
                raise AssertionError("the event stream ended")

            await asyncio.wait_for(_end(), DEADLINE)
        async with hook.get_async_conn():
            # The agent's event can come before the manager has recorded the result (the provider's watch
            # reads again soon for the same reason): the end is known once the result reads back.
            deadline = time.monotonic() + DEADLINE
            while (facts := await hook.a_get_session_facts(created.session_id)).result == "UNDEFINED":
                assert time.monotonic() < deadline, f"no result within {DEADLINE} s of the event: {facts}"
                await asyncio.sleep(0.05)
            seen = time.monotonic()
            logs = await hook.a_get_session_logs(created.session_id)
            took = time.monotonic() - seen
            destroyed = await hook.a_destroy_session(created.session_id) if destroy else None
    finally:
        await events.close()
    return AtJobEnd(created.session_id, "event", facts.status, facts.result, logs, took, destroyed)


def _at_end_by_poll(spec: BatchSessionSpec) -> AtJobEnd:
    """Create the job with the hook, read its state every 50 ms, and read its log as ``result`` flips."""
    hook = BackendAIHook()
    with hook.get_conn():
        created = hook.create_batch_session(spec)
        deadline = time.monotonic() + DEADLINE
        while True:
            facts = hook.get_session_facts(created.session_id)
            if facts.result != "UNDEFINED" or facts.status in ("TERMINATED", "CANCELLED", "ERROR"):
                break
            assert time.monotonic() < deadline, f"no result within {DEADLINE} s: {facts}"
            time.sleep(0.05)
        seen = time.monotonic()
        logs = hook.get_session_logs(created.session_id)
    return AtJobEnd(created.session_id, "poll", facts.status, facts.result, logs, time.monotonic() - seen)


def _wait_terminated(session_id: str) -> Any:
    hook = BackendAIHook()
    with hook.get_conn():
        deadline = time.monotonic() + 45
        while True:
            facts = hook.get_session_facts(session_id)
            if facts.status == "TERMINATED":
                return facts
            assert time.monotonic() < deadline, f"not TERMINATED within 45 s: {facts}"
            time.sleep(0.25)


@pytest.mark.parametrize("how", ["event", "poll"])
def test_log_read_when_the_result_is_known_is_the_whole_log(
    real_connection: RealCluster, name_prefix: str, how: str
) -> None:
    """
    The log fetched the moment the job's end is known equals the log fetched after TERMINATED, for a job
    that writes 2,000 lines up to its last instant. So the provider may read the log once, right away.
    """
    spec = _spec(real_connection, name_prefix, MANY_LINES)
    by_event = how == "event"
    early = asyncio.run(_at_end_by_event(real_connection, spec)) if by_event else _at_end_by_poll(spec)
    assert early.result == "SUCCESS"
    # Read while the manager was still finishing the session, not after it.
    assert early.status in ("RUNNING", "TERMINATING"), early.status
    final = _wait_terminated(early.session_id)
    assert (final.result, final.status_info) == ("SUCCESS", "task-finished")
    with BackendAIHook().get_conn():
        late = BackendAIHook().get_session_logs(early.session_id)
    expected = [f"line {i} of {LINES}" for i in range(1, LINES + 1)]
    assert late.splitlines() == expected
    assert early.logs == late, (
        f"read {early.seconds_after_end:.3f} s after the end by {how}: "
        f"{len(early.logs.splitlines())} of {LINES} lines, ends {early.logs[-60:]!r}"
    )
    # Teardown (real_connection) checks that the session ended; it is TERMINATED already.


def test_destroy_while_the_manager_terminates_raises_nothing(
    real_connection: RealCluster, name_prefix: str
) -> None:
    """
    ``destroy_session`` right after ``session_success``, while the manager is already terminating the
    session: no error, and the job's outcome stays what the job did (the manager answers "nothing to do",
    ``{"stats": {}}``, which the hook reports as False: the session had ended).
    """
    spec = _spec(real_connection, name_prefix, "sleep 1; echo done")
    early = asyncio.run(_at_end_by_event(real_connection, spec, destroy=True))
    assert early.result == "SUCCESS"
    assert early.status in ("RUNNING", "TERMINATING"), early.status
    if early.status == "TERMINATING":  # then the manager had nothing left to do: the hook says "ended"
        assert early.destroyed is False
    final = _wait_terminated(early.session_id)
    assert (final.status, final.result, final.status_info) == ("TERMINATED", "SUCCESS", "task-finished")
    with BackendAIHook().get_conn():
        assert BackendAIHook().get_session_logs(early.session_id) == "done\n"


def test_destroy_of_a_terminated_session_raises_nothing(
    real_connection: RealCluster, name_prefix: str
) -> None:
    """``destroy_session`` of a TERMINATED session, plain and forced: no error, nothing changes."""
    spec = _spec(real_connection, name_prefix, "exit 4")
    early = _at_end_by_poll(spec)
    assert early.result == "FAILURE"
    before = _wait_terminated(early.session_id)
    hook = BackendAIHook()
    with hook.get_conn():
        answered = hook.destroy_session(early.session_id)
        answered_forced = hook.destroy_session(early.session_id, forced=True)
        after = hook.get_session_facts(early.session_id)
    # The manager answers {"stats": {}}: nothing to do, the session had ended (the hook says False).
    assert answered is False
    assert answered_forced is False
    assert (after.status, after.result, after.status_info) == (
        before.status,
        before.result,
        before.status_info,
    )
    assert (after.status, after.result, after.status_info) == ("TERMINATED", "FAILURE", "task-failed")


def test_log_reads_between_the_result_and_terminated_are_whole_or_fail(
    real_connection: RealCluster, name_prefix: str
) -> None:
    """
    Every log read from the moment ``result`` flips until TERMINATED either returns the whole log or fails:
    once the agent has dropped the destroyed kernel (about one scheduler tick after the result) and until
    the manager marks the session TERMINATED and reads the stored log, the manager relays the agent's
    ``KeyError`` as HTTP 500. Never a partial log. (Plain SDK calls: the hook would retry the 500s.) The read
    right at the result is usually whole, but a loaded manager may already be in the 500 window then.
    """
    from ai.backend.client.exceptions import BackendAPIError
    from ai.backend.client.func.session import ComputeSession
    from ai.backend.client.session import Session

    hook = BackendAIHook()
    with hook.get_conn():
        created = hook.create_batch_session(_spec(real_connection, name_prefix, MANY_LINES))
    query = "query($id: UUID!) { compute_session(id: $id) { status result } }"
    reads: list[tuple[float, str, str | int]] = []  # (seconds after the result, status, lines or HTTP status)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api = Session(config=real_connection._config())
        api.open()
    try:
        ref = ComputeSession(created.session_id)
        ref.id = uuid.UUID(created.session_id)
        deadline = time.monotonic() + DEADLINE
        while api.Admin.query(query, {"id": created.session_id})["compute_session"]["result"] == "UNDEFINED":
            assert time.monotonic() < deadline, "no result"
            time.sleep(0.05)
        flipped = time.monotonic()
        status = "RUNNING"
        while status != "TERMINATED" and time.monotonic() - flipped < 30:
            # The status is read before the log: a read paired with TERMINATED certainly came after it.
            status = api.Admin.query(query, {"id": created.session_id})["compute_session"]["status"]
            try:
                outcome: str | int = ref.get_logs()["result"]["logs"]
            except BackendAPIError as exc:
                outcome = exc.status
            reads.append((time.monotonic() - flipped, status, outcome))
            time.sleep(0.1)
    finally:
        api.close()
    full = "".join(f"line {i} of {LINES}\n" for i in range(1, LINES + 1))
    summary = [
        (round(at, 2), st, o if isinstance(o, int) else f"{len(o.splitlines())} lines") for at, st, o in reads
    ]
    assert status == "TERMINATED", summary
    assert all(o == full or o == 500 for _, _, o in reads), summary
    assert all(o == full for _, st, o in reads if st == "TERMINATED"), summary
