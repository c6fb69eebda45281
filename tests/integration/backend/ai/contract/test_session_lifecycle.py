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
"""Batch session lifecycle through the SDK: result, logs, termination, timeouts, destroy and cancel."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from ai.backend.client.exceptions import BackendAPIError

from .sdk import (
    PERMISSION_READ,
    PERMISSION_SOFT_DELETE,
    assert_not_enough_permission,
    create_batch,
    live_processes_in_group,
    open_session,
    query_session,
    session_ref,
    unique_name,
    wait_for_result,
    wait_for_status,
    wait_gone,
)

if TYPE_CHECKING:
    from ai.backend.client.session import Session

    from backend_ai_emulator import EmulatorHandle

    from .sdk import ContractTarget


def test_successful_job_result_logs_and_termination(sdk: Session, contract_target: ContractTarget) -> None:
    created = create_batch(sdk, contract_target, "echo contract-ok")
    assert created.created is True
    assert created.status == "PENDING"
    ref = session_ref(created.id)

    row = wait_for_result(sdk, contract_target, created.id)
    assert row["result"] == "SUCCESS"
    assert row["type"] == "BATCH"
    try:
        at_result: str | int = ref.get_logs()["result"]["logs"]
    except BackendAPIError as exc:
        at_result = exc.status
    if isinstance(at_result, str) or contract_target.is_emulator:
        assert isinstance(at_result, str)
        assert "contract-ok" in at_result
    else:
        # A loaded real manager can record the result after the agent dropped the kernel; from then until
        # TERMINATED it answers log reads with 500 (tests/integration/backend/ai/real_cluster/test_job_end.py). The log after
        # TERMINATED is checked below either way.
        assert at_result == 500

    # The REST view disappears once TERMINATED; by UUID that is the object-not-found flavour.
    err = wait_gone(sdk, contract_target, ref)
    assert err.data["type"] == "https://api.backend.ai/probs/object-not-found"
    assert err.data["title"] == "No such session."

    # GraphQL still has the row, and logs still work by UUID.
    final = wait_for_status(sdk, contract_target, created.id, "TERMINATED")
    assert final["result"] == "SUCCESS"
    assert final["status_info"] == "task-finished"
    assert final["terminated_at"] is not None
    assert "contract-ok" in ref.get_logs()["result"]["logs"]


def test_failing_job_reports_failure(sdk: Session, contract_target: ContractTarget) -> None:
    created = create_batch(sdk, contract_target, "echo about-to-fail; exit 3")
    row = wait_for_result(sdk, contract_target, created.id)
    assert row["result"] == "FAILURE"
    final = wait_for_status(sdk, contract_target, created.id, "TERMINATED")
    assert final["status_info"] == "task-failed"
    assert "about-to-fail" in session_ref(created.id).get_logs()["result"]["logs"]


def test_batch_timeout_fails_the_job(sdk: Session, contract_target: ContractTarget) -> None:
    created = create_batch(sdk, contract_target, "sleep 30", batch_timeout=1)
    row = wait_for_result(sdk, contract_target, created.id)
    assert row["result"] == "FAILURE"
    final = wait_for_status(sdk, contract_target, created.id, "TERMINATED")
    assert final["status_info"] == "task-timeout"


def test_get_info_while_alive_is_a_flat_dict_without_result(
    sdk: Session, contract_target: ContractTarget
) -> None:
    created = create_batch(sdk, contract_target, "sleep 30")
    ref = session_ref(created.id)
    info = ref.get_info()
    assert "result" not in info
    if contract_target.is_emulator:  # a manager reports the canonical image name
        assert info["image"] == contract_target.image
    assert info["status"] in {
        "PENDING",
        "SCHEDULED",
        "PREPARING",
        "PULLING",
        "PREPARED",
        "CREATING",
        "RUNNING",
    }
    assert isinstance(info["age"], int)
    assert info["statusInfo"] == "None" or isinstance(info["statusInfo"], str)
    assert ref.destroy(forced=True) in (
        {"stats": {"status": "terminated"}},
        {"stats": {"status": "cancelled"}},
    )


def test_destroy_while_running(sdk: Session, contract_target: ContractTarget) -> None:
    created = create_batch(sdk, contract_target, "sleep 30")
    wait_for_status(sdk, contract_target, created.id, "RUNNING")
    ref = session_ref(created.id)
    assert ref.destroy() == {"stats": {"status": "terminated"}}
    final = wait_for_status(sdk, contract_target, created.id, "TERMINATED")
    assert final["result"] == "UNDEFINED"
    assert final["status_info"] == "user-requested"
    # Already dead, addressed by UUID: nothing to do.
    assert ref.destroy() == {"stats": {}}


def test_forced_destroy_goes_straight_to_terminated(sdk: Session, contract_target: ContractTarget) -> None:
    created = create_batch(sdk, contract_target, "sleep 30")
    wait_for_status(sdk, contract_target, created.id, "RUNNING")
    assert session_ref(created.id).destroy(forced=True) == {"stats": {"status": "terminated"}}
    row = query_session(sdk, created.id)
    assert row is not None
    assert row["status"] == "TERMINATED"
    assert row["status_info"] == "force-terminated"
    assert row["result"] == "UNDEFINED"


def test_cancel_while_pending(sdk: Session, contract_target: ContractTarget) -> None:
    # A start time in the future keeps a batch session PENDING on the emulator and a real manager alike.
    starts_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = create_batch(sdk, contract_target, "echo never", starts_at=starts_at)
    ref = session_ref(created.id)
    assert ref.get_info()["status"] == "PENDING"
    assert ref.destroy() == {"stats": {"status": "cancelled"}}
    row = wait_for_status(sdk, contract_target, created.id, "CANCELLED")
    assert row["result"] == "UNDEFINED"
    with pytest.raises(BackendAPIError) as excinfo:
        ref.get_info()
    assert excinfo.value.status == 404


def test_name_lookup_404_is_entity_not_found(sdk: Session, contract_target: ContractTarget) -> None:
    from ai.backend.client.func.session import ComputeSession

    with pytest.raises(BackendAPIError) as excinfo:
        ComputeSession(unique_name("nosuch")).get_info()
    assert excinfo.value.status == 404
    assert excinfo.value.data["type"] == "https://api.backend.ai/probs/entity-not-found"


def test_name_stops_resolving_after_termination(sdk: Session, contract_target: ContractTarget) -> None:
    from ai.backend.client.func.session import ComputeSession

    name = unique_name()
    created = create_batch(sdk, contract_target, "echo by-name", name=name)
    by_name = ComputeSession(name)  # 25.5.2 style: addressed by name, no id
    assert by_name.get_info()["status"] != "TERMINATED"
    wait_for_status(sdk, contract_target, created.id, "TERMINATED")
    with pytest.raises(BackendAPIError) as excinfo:
        by_name.get_info()
    assert excinfo.value.data["type"] == "https://api.backend.ai/probs/entity-not-found"
    with pytest.raises(BackendAPIError):
        by_name.get_logs()
    assert "by-name" in session_ref(created.id).get_logs()["result"]["logs"]


def test_unknown_uuid_is_403_for_a_user(sdk: Session) -> None:
    """A USER keypair gets RBAC's 403 for a UUID it cannot see, not 404 (see test_isolation for others')."""
    missing = uuid.uuid4()
    for call, permission in (
        (session_ref(missing).get_info, PERMISSION_READ),
        (session_ref(missing).get_logs, PERMISSION_READ),
        (session_ref(missing).destroy, PERMISSION_SOFT_DELETE),
    ):
        with pytest.raises(BackendAPIError) as excinfo:
            call()
        assert_not_enough_permission(excinfo.value.status, excinfo.value.data, missing, permission)


@pytest.mark.emulator_only
def test_unknown_uuid_is_404_for_an_admin(contract_target: ContractTarget, emulator: EmulatorHandle) -> None:
    """An admin passes the RBAC check, so the lookup itself answers: 404 object-not-found."""
    from backend_ai_emulator.settings import Keypair

    admin = Keypair.make(
        "AKIAEMULATORADMIN001", "EmulatorFakeSecretKey/NotForProductionAD", role="superadmin"
    )
    emulator.settings.keypairs = {**emulator.settings.keypairs, admin.access_key: admin}
    missing = uuid.uuid4()
    config = contract_target.config(access_key=admin.access_key, secret_key=admin.secret_key)
    with open_session(config):
        for call in (
            session_ref(missing).get_info,
            session_ref(missing).get_logs,
            session_ref(missing).destroy,
        ):
            with pytest.raises(BackendAPIError) as excinfo:
                call()
            assert excinfo.value.status == 404
            assert excinfo.value.data["type"] == "https://api.backend.ai/probs/object-not-found"
            assert excinfo.value.data["error_code"] == "session_read_not-found"
            assert excinfo.value.data["msg"] == f"Session (id={missing}) does not exist."


def test_graphql_unknown_session_is_null(sdk: Session) -> None:
    assert query_session(sdk, uuid.uuid4()) is None


def test_restart_is_not_implemented(sdk: Session, contract_target: ContractTarget) -> None:
    created = create_batch(sdk, contract_target, "sleep 30")
    ref = session_ref(created.id)
    with pytest.raises(BackendAPIError) as excinfo:
        ref.restart()
    assert excinfo.value.status == 501
    assert excinfo.value.data["type"] == "https://api.backend.ai/probs/not-implemented"
    ref.destroy(forced=True)


def test_status_history_lists_the_steps(sdk: Session, contract_target: ContractTarget) -> None:
    created = create_batch(sdk, contract_target, "sleep 30")
    wait_for_status(sdk, contract_target, created.id, "RUNNING")
    ref = session_ref(created.id)
    history = ref.get_status_history()
    assert {"PENDING", "SCHEDULED", "PREPARING", "RUNNING"} <= set(history)
    ref.destroy(forced=True)


def test_interactive_session_runs_until_destroyed(sdk: Session, contract_target: ContractTarget) -> None:
    created = sdk.ComputeSession.get_or_create(contract_target.image, name=unique_name(), enqueue_only=True)
    contract_target.created.append(uuid.UUID(str(created.id)))
    row = wait_for_status(sdk, contract_target, created.id, "RUNNING")
    assert row["type"] == "INTERACTIVE"
    assert session_ref(created.id).destroy() == {"stats": {"status": "terminated"}}
    final = wait_for_status(sdk, contract_target, created.id, "TERMINATED")
    assert final["status_info"] == "user-requested"


# -- emulator-only: real bash semantics and server-side timing ------------------------------------


@pytest.mark.emulator_only
def test_result_is_known_before_terminated(
    sdk: Session, contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    emulator.settings.tick = 1.0
    created = create_batch(sdk, contract_target, "echo quick")
    row = wait_for_result(sdk, contract_target, created.id)
    assert row["result"] == "SUCCESS"
    assert row["status"] == "TERMINATING"
    snap = emulator.wait_for_session(created.id, status="TERMINATED")
    names = snap.event_names
    assert (
        names.index("session_success")
        < names.index("session_terminating")
        < names.index("session_terminated")
    )
    ended = snap.status_time("TERMINATING")
    terminated = snap.status_time("TERMINATED")
    assert ended is not None
    assert terminated is not None
    assert (terminated - ended).total_seconds() >= 1.9  # two scheduler ticks


@pytest.mark.emulator_only
def test_real_bash_semantics(sdk: Session, contract_target: ContractTarget, emulator: EmulatorHandle) -> None:
    script = 'echo "out:$GREETING"; echo "err" >&2; pwd > where; cat where; test "$HOME" = "$(pwd)"'
    created = create_batch(
        sdk, contract_target, script, envs={"GREETING": "hello"}, bootstrap_script="echo boot-$GREETING"
    )
    row = wait_for_result(sdk, contract_target, created.id)
    assert row["result"] == "SUCCESS", session_ref(created.id).get_logs()
    logs = session_ref(created.id).get_logs()["result"]["logs"].splitlines()
    assert logs[:3] == ["boot-hello", "out:hello", "err"]
    scratch = logs[3]
    snap = emulator.wait_for_session(created.id, status="TERMINATED")
    assert snap.exit_code == 0
    assert not Path(scratch).exists(), "scratch directory must be removed"


@pytest.mark.emulator_only
def test_bootstrap_failure_fails_the_job(sdk: Session, contract_target: ContractTarget) -> None:
    created = create_batch(sdk, contract_target, "echo never-runs", bootstrap_script="echo booting; exit 7")
    row = wait_for_result(sdk, contract_target, created.id)
    assert row["result"] == "FAILURE"
    logs = session_ref(created.id).get_logs()["result"]["logs"]
    assert "booting" in logs
    assert "never-runs" not in logs


@pytest.mark.emulator_only
def test_large_log_survives(sdk: Session, contract_target: ContractTarget) -> None:
    command = "head -c 6000000 /dev/zero | tr '\\0' 'x' | fold -w 100; echo; echo tail-marker"
    created = create_batch(sdk, contract_target, command)
    assert wait_for_result(sdk, contract_target, created.id)["result"] == "SUCCESS"
    logs = session_ref(created.id).get_logs()["result"]["logs"]
    assert len(logs) > 6_000_000
    assert logs.rstrip().endswith("tail-marker")


@pytest.mark.emulator_only
def test_timeout_and_destroy_kill_the_whole_process_group(
    sdk: Session, contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:

    timed = create_batch(sdk, contract_target, "sleep 30 & sleep 30; wait", batch_timeout="1s")
    destroyed = create_batch(sdk, contract_target, "(sleep 30; echo late) & sleep 30")
    running = emulator.wait_for_session(destroyed.id, predicate=lambda s: s.pid is not None)
    assert running.pid is not None
    session_ref(destroyed.id).destroy()
    timed_pid = emulator.wait_for_session(timed.id, predicate=lambda s: s.pid is not None).pid
    assert wait_for_result(sdk, contract_target, timed.id)["result"] == "FAILURE"
    emulator.wait_for_session(timed.id, status="TERMINATED")
    emulator.wait_for_session(destroyed.id, status="TERMINATED")
    for pgid in (running.pid, timed_pid):
        assert pgid is not None
        assert live_processes_in_group(pgid) == []
    assert emulator.wait_for_session(timed.id).status_info == "task-timeout"
    assert emulator.wait_for_session(destroyed.id).result == "UNDEFINED"


@pytest.mark.emulator_only
def test_one_second_job_is_known_well_under_two_seconds(
    sdk: Session, contract_target: ContractTarget
) -> None:
    started = time.perf_counter()
    created = create_batch(sdk, contract_target, "sleep 1; echo done")
    row = wait_for_result(sdk, contract_target, created.id)
    elapsed = time.perf_counter() - started
    assert row["result"] == "SUCCESS"
    assert 1.0 <= elapsed < 2.0, f"create -> result took {elapsed:.3f} s"


@pytest.mark.emulator_only
def test_fail_start_switch_ends_in_error(
    sdk: Session, contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    from ai.backend.client.func.session import ComputeSession

    emulator.settings.fail_start = True
    created = create_batch(sdk, contract_target, "echo never")
    row = wait_for_status(sdk, contract_target, created.id, "ERROR")
    assert row["result"] == "UNDEFINED"
    assert row["status_info"] == "failed-to-start"
    ref = session_ref(created.id)
    info = ref.get_info()  # ERROR is not "dead": still visible by UUID
    assert info["status"] == "ERROR"
    assert info["statusData"]["error"]["name"] == "EmulatedStartFailure"
    with pytest.raises(BackendAPIError) as excinfo:  # but a name no longer resolves
        ComputeSession(created.name).get_info()
    assert excinfo.value.data["type"].endswith("/entity-not-found")
    assert ref.destroy() == {"stats": {}}
    assert emulator.live_sessions() == []


@pytest.mark.emulator_only
def test_preparing_hold_keeps_the_session_preparing(
    sdk: Session, contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    emulator.settings.preparing_hold = 30
    created = create_batch(sdk, contract_target, "echo late")
    emulator.wait_for_session(created.id, status="PREPARING")
    assert session_ref(created.id).get_info()["status"] == "PREPARING"
    assert session_ref(created.id).destroy() == {"stats": {"status": "terminated"}}
    snap = emulator.wait_for_session(created.id, status="TERMINATED")
    assert "RUNNING" not in snap.statuses
    assert snap.event_names[-1] == "session_terminated"


def test_detail_uses_compute_session_node(sdk: Session, contract_target: ContractTarget) -> None:
    from ai.backend.client.func.session import ComputeSession

    if not hasattr(ComputeSession, "detail"):
        pytest.skip("ComputeSession.detail() does not exist in this SDK (25.x)")
    created = create_batch(sdk, contract_target, "sleep 30")
    wait_for_status(sdk, contract_target, created.id, "RUNNING")
    ref = session_ref(created.id)
    detail = ref.detail()
    assert detail["id"] == str(created.id)
    assert detail["name"] == created.name
    assert detail["status"] == "RUNNING"
    assert detail["type"] == "batch"  # the relay node has the enum value; legacy compute_session "BATCH"
    assert len(detail["kernels"]) == 1
    ref.destroy(forced=True)
