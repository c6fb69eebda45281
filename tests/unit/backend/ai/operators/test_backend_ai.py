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
from __future__ import annotations

import re
from datetime import timedelta
from unittest import mock

import pytest
import time_machine
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow.providers.backend.ai._session.params import SESSION_NAME_PATTERN, default_session_name
from airflow.providers.backend.ai._session.state import SessionFacts
from airflow.providers.backend.ai.exceptions import (
    BackendAIException,
    BackendAIJobFailedError,
    BackendAISessionNotVisibleError,
    BackendAIStartupTimeoutError,
    BackendAITransientError,
)
from airflow.providers.backend.ai.operators.backend_ai import (
    BackendAICreateSessionOperator,
    BackendAIDestroySessionOperator,
    BackendAIRunBatchOperator,
)
from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
WEBUI = "https://webui.example.com"
RUNNING = SessionFacts(SID, "RUNNING")
PREPARING = SessionFacts(SID, "PREPARING")
SUCCEEDED = SessionFacts(SID, "TERMINATING", "SUCCESS", "task-finished")
FAILED = SessionFacts(SID, "TERMINATED", "FAILURE", "task-failed")
TIMED_OUT = SessionFacts(SID, "TERMINATED", "FAILURE", "task-timeout")
CANCELLED = SessionFacts(SID, "TERMINATED", "UNDEFINED", "user-requested")
#: The events the trigger of commit 11b7351 (before the watch step) sent, captured from that commit: tasks
#: deferred then still resume after an upgrade.
EVENTS_FROM_11B7351 = {
    "success": {
        "status": "success",
        "session_id": "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d",
        "session_name": "af-example-train-t1-0123456789ab",
        "session_status": "TERMINATING",
        "result": "SUCCESS",
        "status_info": "task-finished",
        "message": "The job ended: SUCCESS",
        "log_offset": 12,
    },
    "failed": {
        "status": "failed",
        "session_id": "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d",
        "session_name": "af-example-train-t1-0123456789ab",
        "session_status": "TERMINATED",
        "result": "FAILURE",
        "status_info": "task-failed",
        "message": "The job ended: FAILURE",
        "log_offset": 0,
    },
    "timeout": {
        "status": "timeout",
        "session_id": "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d",
        "session_name": "af-example-train-t1-0123456789ab",
        "session_status": "PENDING",
        "result": "UNDEFINED",
        "status_info": None,
        "message": "The session did not start in time (status PENDING)",
    },
    "error": {
        "status": "error",
        "session_id": "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d",
        "session_name": "af-example-train-t1-0123456789ab",
        "session_status": None,
        "result": None,
        "status_info": None,
        "message": "Watching Backend.AI session 3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d failed: boom",
    },
}


def operator(**kwargs) -> BackendAIRunBatchOperator:
    return BackendAIRunBatchOperator(task_id="train", image="python:3.9", command="python train.py", **kwargs)


class TestValidation:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            (
                {"on_finish_action": "delete"},
                "Invalid on_finish_action 'delete': accepted values are 'destroy', 'keep', 'destroy_on_success'",
            ),
            (
                {"cluster_mode": "single"},
                "Invalid cluster_mode 'single': accepted values are 'single-node', 'multi-node'",
            ),
            ({"startup_timeout": 0}, "Invalid startup_timeout 0: expected a positive number"),
            ({"startup_timeout": -5}, "Invalid startup_timeout -5"),
            ({"poll_interval": "fast"}, "Invalid poll_interval 'fast'"),
            ({"batch_timeout": 0}, "Invalid batch_timeout 0: expected a positive number of seconds or None"),
            ({"cluster_size": 0}, "Invalid cluster_size 0: expected an integer of at least 1"),
            ({"cluster_size": 1.5}, "Invalid cluster_size 1.5"),
            ({"session_resources": ["cpu"]}, "Invalid session_resources ['cpu']: expected a mapping"),
            ({"session_resources": {"CPU!": 1}}, "Invalid session_resources slot name 'CPU!'"),
            ({"session_resources": {"mem": "lots"}}, "Invalid session_resources['mem'] 'lots'"),
            ({"session_resources": {"cpu": -1}}, "Invalid session_resources['cpu'] -1"),
            ({"session_resources": {"cpu": True}}, "Invalid session_resources['cpu'] True"),
            (
                {"resources": {"cpu": 8, "mem": "32g"}},  # the epic's spelling: not Airflow's executor hints
                "Invalid resources {'cpu': 8, 'mem': '32g'}: Backend.AI resource slots go in session_resources=",
            ),
            ({"session_name": "ab"}, "Invalid session_name 'ab': expected 4-64 characters"),
            ({"session_name": "-leading"}, "Invalid session_name '-leading'"),
            ({"session_name": "x" * 65}, "Invalid session_name"),
            ({"environment": {"A": {"nested": 1}}}, "Invalid environment['A']"),
            ({"environment": "A=1"}, "Invalid environment 'A=1': expected a mapping"),
            ({"vfolder_mounts": "data"}, "Invalid vfolder_mounts 'data': expected a list"),
            ({"mount_map": {"data": None}}, "Invalid mount_map['data']"),
            ({"command": ""}, "Invalid command '': expected a non-empty string"),
            (
                {"command": "echo " + "x" * 131_067},
                "Invalid command: 131,072 bytes, but the agent runs it as one shell argument, which Linux limits "
                "to 131,071 bytes",
            ),
            (
                {"bootstrap_script": "#" * 16_385},
                "Invalid bootstrap_script: 16,385 characters, but the manager stores at most 16,384",
            ),
            (
                {"environment": {"DATA": "x" * 131_067}},
                "Invalid environment['DATA']: with its name it takes over 131,071 bytes",
            ),
            ({"image": None}, "Invalid image None"),
            ({"xcom_log_limit": -1}, "Invalid xcom_log_limit -1"),
            ({"job_priority": "10"}, "Invalid job_priority '10': expected an integer from -2147483648"),
            ({"job_priority": 2**31}, "Invalid job_priority 2147483648"),
            ({"job_priority": True}, "Invalid job_priority True"),
            ({"is_preemptible": "no"}, "Invalid is_preemptible 'no': expected True or False"),
        ],
    )
    def test_invalid_input_names_the_parameter(self, kwargs, message):
        base = {"image": "python:3.9", "command": "echo hi"}
        with pytest.raises(ValueError, match=re.escape(message)):
            BackendAIRunBatchOperator(task_id="t", **{**base, **kwargs})

    def test_templated_values_are_checked_after_rendering(self, hook_calls, context):
        op = operator(session_name="{{ params.name }}", session_resources={"cpu": "{{ params.cpu }}"})
        op.session_name, op.session_resources = "no", {"cpu": "many"}  # as rendered
        with pytest.raises(ValueError, match="Invalid session_name 'no'"):
            op.execute(context)
        hook_calls.create.assert_not_called()

    def test_the_preemption_fields_reach_the_spec_only_when_set(self, context):
        assert (
            operator().session_spec(context).job_priority,
            operator().session_spec(context).is_preemptible,
        ) == (
            None,
            None,
        )
        spec = operator(job_priority=-3, is_preemptible=False).session_spec(context)
        assert (spec.job_priority, spec.is_preemptible) == (-3, False)
        assert "job_priority" not in spec.to_sdk_kwargs()  # get_or_create cannot send it

    def test_resources_are_not_baseoperators(self):
        op = operator(session_resources={"cpu": 2, "mem": "4g", "cuda.shares": 0.5})
        assert op.session_resources == {"cpu": 2, "mem": "4g", "cuda.shares": 0.5}
        assert "session_resources" in op.template_fields

    def test_a_slot_the_manager_does_not_know_is_refused_before_create(self, hook_calls, context):
        op = operator(session_resources={"cpu": 1, "mem": "1g", "cuda.devices": 1})
        with pytest.raises(
            ValueError,
            match=re.escape(
                "Invalid session_resources slot name 'cuda.devices' (did you mean 'cuda.device'?)"
            ),
        ) as caught:
            op.execute(context)
        assert "Known slots: 'cpu', 'mem', 'cuda.device', 'cuda.shares'" in str(caught.value)
        hook_calls.create.assert_not_called()

    def test_without_the_managers_list_only_the_spelling_is_checked(self, hook_calls, context, clock):
        """A manager that cannot be asked (old, or behind a proxy): the create goes ahead, it decides."""
        hook_calls.slots.return_value = None
        hook_calls.facts.return_value = SUCCEEDED
        operator(session_resources={"warp.drive": 1}).execute(context)
        hook_calls.create.assert_called_once()

    def test_the_longest_inputs_the_agent_can_run_pass(self):
        BackendAIRunBatchOperator(
            task_id="t",
            image="python:3.9",
            command="echo " + "x" * 131_066,
            bootstrap_script="#" * 16_384,
            environment={"D": "x" * 131_069},
        )

    def test_defaults(self):
        op = operator()
        assert (op.on_finish_action, op.poll_interval, op.startup_timeout, op.batch_timeout) == (
            "destroy",
            15,
            600,
            None,
        )
        assert op.deferrable is False


class TestSessionNames:
    @pytest.mark.parametrize(
        ("dag_id", "task_id"),
        [("dag", "train"), ("d" * 200, "t" * 200), ("데이터", "학습"), ("a.b", "c-d"), ("__", "..")],
    )
    def test_default_names_are_valid_and_unique_per_try(self, dag_id, task_id):
        names = {default_session_name(dag_id, task_id, "run", -1, t) for t in (1, 2, 3)}
        names.add(default_session_name(dag_id, task_id, "other-run", -1, 1))
        names.add(default_session_name(dag_id, task_id, "run", 7, 1))
        assert len(names) == 5
        assert all(SESSION_NAME_PATTERN.match(n) for n in names), names

    def test_default_name_is_stable(self):
        assert default_session_name("dag", "train", "r", -1, 2) == default_session_name(
            "dag", "train", "r", -1, 2
        )
        assert default_session_name("dag", "train", "r", -1, 2).startswith("af-dag-train-t2-")


class TestRunBatchSync:
    def test_success(self, hook_calls, context, clock):
        hook_calls.facts.side_effect = [PREPARING, RUNNING, RUNNING, SUCCEEDED]
        log = mock.MagicMock()
        with mock.patch.object(
            BackendAIRunBatchOperator, "log", new_callable=mock.PropertyMock, return_value=log
        ):
            result = operator(session_resources={"cpu": 1}).execute(context)
        assert result == {
            "session_id": SID,
            "session_name": default_session_name("dag", "train", "manual__2026-01-01", -1, 1),
            "status": "TERMINATING",
            "result": "SUCCESS",
            "status_info": "task-finished",
            "logs": "epoch 1\nepoch 2\ndone\n",
        }
        (spec,) = [c.args[1] for c in hook_calls.create.call_args_list]
        assert (spec.image, spec.command, dict(spec.resources)) == (
            "python:3.9",
            "python train.py",
            {"cpu": 1},
        )
        hook_calls.destroy.assert_called_once_with(mock.ANY, SID)
        context["ti"].xcom_push.assert_any_call(key="session_id", value=SID)
        # Adaptive polling, starting fast again once the job is seen running.
        assert [c.args[0] for c in clock.call_args_list] == [0.25, 0.25, 0.375]
        lines = [c.args for c in log.info.call_args_list]
        assert lines[lines.index(("%s", "epoch 1")) :][:3] == [
            ("%s", "epoch 1"),
            ("%s", "epoch 2"),
            ("%s", "done"),
        ]

    def test_session_link_is_pushed_when_the_session_exists(self, hook_calls, context, clock):
        hook_calls.facts.side_effect = [SUCCEEDED]
        operator().execute(context)
        url = f"{WEBUI}/session?sessionDetail={SID}"
        context["ti"].xcom_push.assert_any_call(key="backend_ai_session_url", value=url)
        context["ti"].xcom_push.assert_any_call(key="_link_BackendAISessionLink", value=url)

    def test_polling_backs_off_to_the_poll_interval(self, hook_calls, context, clock):
        hook_calls.facts.side_effect = [RUNNING] * 10 + [SUCCEEDED]
        operator(poll_interval=3).execute(context)
        assert [c.args[0] for c in clock.call_args_list] == [
            0.25,
            0.375,
            0.5625,
            0.84375,
            1.265625,
            1.8984375,
            2.84765625,
            3,
            3,
            3,
        ]

    @pytest.mark.parametrize(
        ("final", "reason"),
        [
            (FAILED, "the command exited with a non-zero code (task-failed)"),
            (TIMED_OUT, "batch_timeout expired (task-timeout)"),
            (CANCELLED, "ended as TERMINATED without a result (user-requested)"),
            (SessionFacts(SID, "ERROR", "UNDEFINED", "agent-error"), "ended as ERROR"),
        ],
    )
    def test_failures_raise_with_the_reason_and_log_tail(self, hook_calls, context, clock, final, reason):
        hook_calls.facts.side_effect = [RUNNING, final]
        with pytest.raises(BackendAIJobFailedError) as err:
            operator().execute(context)
        assert reason in str(err.value)
        assert "done" in err.value.log_tail
        assert err.value.session_id == SID
        hook_calls.destroy.assert_called_once_with(mock.ANY, SID)

    @pytest.mark.parametrize(
        ("action", "final", "destroyed"),
        [
            ("destroy", SUCCEEDED, True),
            ("destroy", FAILED, True),
            ("keep", SUCCEEDED, False),
            ("keep", FAILED, False),
            ("destroy_on_success", SUCCEEDED, True),
            ("destroy_on_success", FAILED, False),
        ],
    )
    def test_on_finish_action(self, hook_calls, context, clock, action, final, destroyed):
        hook_calls.facts.side_effect = [final]
        with pytest.raises(BackendAIJobFailedError) if final is FAILED else mock.MagicMock():
            operator(on_finish_action=action).execute(context)
        assert hook_calls.destroy.called is destroyed

    @pytest.mark.parametrize(
        ("action", "destroyed"), [("destroy", True), ("destroy_on_success", True), ("keep", False)]
    )
    def test_startup_timeout_destroys_unless_keep(self, hook_calls, context, clock, action, destroyed):
        hook_calls.facts.return_value = SessionFacts(SID, "PREPARING", status_info="pulling image")
        with pytest.raises(
            BackendAIStartupTimeoutError,
            match="did not start within startup_timeout=10s; last status PREPARING",
        ):
            operator(startup_timeout=10, on_finish_action=action).execute(context)
        assert hook_calls.destroy.called is destroyed
        assert sum(c.args[0] for c in clock.call_args_list) == pytest.approx(10)

    def test_monitoring_failure_destroys_the_running_job(self, hook_calls, context, clock):
        reads = iter([RUNNING])

        def read(*args):
            return next(reads, None) or _raise(BackendAITransientError("read", status=503))

        hook_calls.facts.side_effect = read
        with pytest.raises(BackendAITransientError):
            operator(on_finish_action="destroy_on_success", poll_interval=2).execute(context)
        hook_calls.destroy.assert_called_once_with(mock.ANY, SID)
        # Failed reads are tolerated for two poll intervals (a manager restart), then the error is raised.
        assert 4 < sum(c.args[0] for c in clock.call_args_list[1:]) <= 6

    def test_a_short_outage_is_ridden_out(self, hook_calls, context, clock):
        outage = BackendAITransientError("read", status=503)
        hook_calls.facts.side_effect = [RUNNING, outage, outage, SUCCEEDED]
        assert operator(poll_interval=2).execute(context)["result"] == "SUCCESS"

    def test_failed_creation_destroys_nothing(self, hook_calls, context):
        hook_calls.create.side_effect = BackendAITransientError("create", status=500)
        with pytest.raises(BackendAITransientError):
            operator().execute(context)
        hook_calls.destroy.assert_not_called()

    def test_large_log_is_truncated_in_xcom_only(self, hook_calls, context, clock):
        hook_calls.facts.side_effect = [SUCCEEDED]
        hook_calls.logs.return_value = "x" * 50 + "\nTAIL"
        result = operator(xcom_log_limit=10).execute(context)
        assert result["logs"].endswith("x\nTAIL")
        assert "characters truncated" in result["logs"]


class TestOnKill:
    def test_before_the_session_exists(self, hook_calls):
        operator().on_kill()
        hook_calls.destroy.assert_not_called()

    def test_destroys_with_a_hook_of_its_own(self, hook_calls):
        op = operator()
        op.session_id = SID
        op.on_kill()
        (call,) = hook_calls.destroy.call_args_list
        assert call.args[0] is not op.hook
        assert call.args[1] == SID

    def test_keep_and_errors(self, hook_calls):
        op = operator(on_finish_action="keep")
        op.session_id = SID
        op.on_kill()
        hook_calls.destroy.assert_not_called()
        op = operator()
        op.session_id = SID
        hook_calls.destroy.side_effect = BackendAITransientError("destroy", status=503)
        op.on_kill()  # logged, never raised


class TestRunBatchDeferrable:
    @time_machine.travel("2026-01-01 00:00:00", tick=False)
    def test_defers_with_deadlines(self, hook_calls, context):
        hook_calls.facts.return_value = PREPARING
        with pytest.raises(TaskDeferred) as deferred:
            operator(deferrable=True, startup_timeout=100, batch_timeout=1000, poll_interval=5).execute(
                context
            )
        trigger = deferred.value.trigger
        assert isinstance(trigger, BackendAISessionTrigger)
        assert deferred.value.method_name == "execute_complete"
        now = 1767225600.0
        assert (trigger.session_id, trigger.poll_interval) == (SID, 5)
        assert trigger.startup_deadline == now + 100
        assert trigger.end_deadline == now + 100 + 1000 + 60
        # A requeue restarts the startup deadline and moves the end deadline; Airflow's backstop leaves
        # room for REQUEUES_COVERED of them.
        assert (trigger.startup_timeout, trigger.requeue_extends_end_deadline) == (100, True)
        assert deferred.value.timeout == timedelta(seconds=1100 + 60 + 3 * (100 + 1000) + 60)
        hook_calls.destroy.assert_not_called()
        context["ti"].xcom_push.assert_any_call(key="session_id", value=SID)

    def test_job_already_ended_completes_inline(self, hook_calls, context):
        hook_calls.facts.return_value = SUCCEEDED
        assert operator(deferrable=True).execute(context)["result"] == "SUCCESS"
        hook_calls.destroy.assert_called_once()

    def event(self, status, facts, message="m"):
        return {
            "status": status,
            "session_id": facts.session_id,
            "session_name": "job-1",
            "session_status": facts.status,
            "result": facts.result,
            "status_info": facts.status_info,
            "message": message,
        }

    def test_execute_complete_success(self, hook_calls, context):
        result = operator(deferrable=True).execute_complete(context, self.event("ended", SUCCEEDED))
        assert (result["session_id"], result["session_name"], result["result"]) == (SID, "job-1", "SUCCESS")
        hook_calls.destroy.assert_called_once_with(mock.ANY, SID)

    def test_execute_complete_failure(self, hook_calls, context):
        with pytest.raises(BackendAIJobFailedError, match="task-failed"):
            operator(deferrable=True).execute_complete(context, self.event("ended", FAILED))
        hook_calls.destroy.assert_called_once_with(mock.ANY, SID)

    @pytest.mark.parametrize("legacy_status", ["success", "failed"])
    def test_an_ended_job_is_judged_by_its_facts_whatever_the_event_says(
        self, hook_calls, context, legacy_status
    ):
        """Events of triggers deferred before the ``ended`` kind carry a word; the facts decide."""
        with pytest.raises(BackendAIJobFailedError, match="task-failed"):
            operator(deferrable=True).execute_complete(context, self.event(legacy_status, FAILED))
        result = operator(deferrable=True).execute_complete(context, self.event(legacy_status, SUCCEEDED))
        assert result["result"] == "SUCCESS"

    @pytest.mark.parametrize(
        ("kind", "error", "match"),
        [
            ("success", None, None),
            ("failed", BackendAIJobFailedError, "the command exited with a non-zero code"),
            ("timeout", BackendAIStartupTimeoutError, "did not start in time"),
            ("error", BackendAIException, "failed: boom"),
        ],
    )
    def test_events_of_the_previous_release_resume_the_task(self, hook_calls, context, kind, error, match):
        event = EVENTS_FROM_11B7351[kind]
        if error is None:
            assert operator(deferrable=True).execute_complete(context, event)["result"] == "SUCCESS"
        else:
            with pytest.raises(error, match=match):
                operator(deferrable=True).execute_complete(context, event)
        hook_calls.destroy.assert_called_once_with(mock.ANY, event["session_id"])

    @pytest.mark.parametrize(
        ("status", "error"), [("timeout", BackendAIStartupTimeoutError), ("error", BackendAIException)]
    )
    def test_execute_complete_timeout_and_error_destroy(self, hook_calls, context, status, error):
        with pytest.raises(error, match="the message"):
            operator(deferrable=True).execute_complete(context, self.event(status, RUNNING, "the message"))
        hook_calls.destroy.assert_called_once_with(mock.ANY, SID)
        hook_calls.logs.assert_not_called()

    @pytest.mark.parametrize(
        "event",
        [
            None,
            {"status": "success"},
            {
                **dict.fromkeys(
                    (
                        "status",
                        "session_id",
                        "session_name",
                        "session_status",
                        "result",
                        "status_info",
                        "message",
                    )
                ),
                "status": "odd",
            },
        ],
    )
    def test_malformed_events(self, hook_calls, context, event):
        with pytest.raises(BackendAIException):
            operator(deferrable=True).execute_complete(context, event)
        hook_calls.destroy.assert_not_called()


class TestCreateAndDestroy:
    def test_destroy_checks_forced(self):
        with pytest.raises(ValueError, match="Invalid forced 'yes': expected True or False"):
            BackendAIDestroySessionOperator(task_id="d", session_id=SID, forced="yes")

    def test_create_waits_for_start(self, hook_calls, context, clock):
        hook_calls.facts.side_effect = [PREPARING, RUNNING]
        op = BackendAICreateSessionOperator(task_id="create", image="python:3.9", command="sleep 60")
        assert op.execute(context) == {"session_id": SID, "session_name": mock.ANY}
        hook_calls.destroy.assert_not_called()

    def test_create_destroys_when_start_fails(self, hook_calls, context, clock):
        hook_calls.facts.return_value = PREPARING
        op = BackendAICreateSessionOperator(
            task_id="create", image="python:3.9", command="sleep 60", startup_timeout=5
        )
        with pytest.raises(BackendAIStartupTimeoutError):
            op.execute(context)
        hook_calls.destroy.assert_called_once_with(mock.ANY, SID)

    def test_create_without_waiting(self, hook_calls, context):
        op = BackendAICreateSessionOperator(
            task_id="c", image="python:3.9", command="sleep 60", wait_for_start=False
        )
        assert op.execute(context)["session_id"] == SID
        hook_calls.facts.assert_not_called()

    @pytest.mark.parametrize(("existed", "expected"), [(True, True), (False, False)])
    def test_destroy(self, hook_calls, context, existed, expected):
        hook_calls.destroy.return_value = existed
        op = BackendAIDestroySessionOperator(task_id="d", session_id=SID, forced=True)
        assert op.execute(context) is expected
        hook_calls.destroy.assert_called_once_with(mock.ANY, SID, forced=True)

    def test_destroy_of_a_session_this_keypair_may_not_see_fails(self, hook_calls, context):
        """RBAC's 403 (unknown id, or another keypair's session) is not "already gone": nothing was destroyed."""
        hook_calls.destroy.side_effect = BackendAISessionNotVisibleError(
            f"destroy session {SID}", status=403, title="No such session for this keypair"
        )
        op = BackendAIDestroySessionOperator(task_id="d", session_id=SID)
        log = mock.MagicMock()
        with (
            mock.patch.object(
                BackendAIDestroySessionOperator, "log", new_callable=mock.PropertyMock, return_value=log
            ),
            pytest.raises(BackendAISessionNotVisibleError, match=f"destroy session {SID} \\(HTTP 403\\)"),
        ):
            op.execute(context)
        assert "nothing was destroyed" in log.error.call_args.args[0]

    def test_destroy_needs_a_session(self, hook_calls, context):
        with pytest.raises(ValueError, match="Invalid session_id ''"):
            BackendAIDestroySessionOperator(task_id="d", session_id="").execute(context)


class TestLogStreaming:
    def run_logged(self, op, context):
        log = mock.MagicMock()
        with mock.patch.object(
            BackendAIRunBatchOperator, "log", new_callable=mock.PropertyMock, return_value=log
        ):
            result = op.execute(context)
        return result, [c.args[1] for c in log.info.call_args_list if c.args[:1] == ("%s",)]

    def test_lines_are_streamed_once_while_the_job_runs(self, hook_calls, context, clock):
        hook_calls.facts.side_effect = [PREPARING, RUNNING, RUNNING, RUNNING, SUCCEEDED]
        hook_calls.logs.side_effect = ["a\n", "a\nb\npart", "a\nb\npartial\n", "a\nb\npartial\nlast"]
        result, lines = self.run_logged(operator(), context)
        assert lines == ["a", "b", "partial", "last"]
        assert hook_calls.logs.call_count == 4  # three reads while running, one at the end
        assert result["logs"] == "a\nb\npartial\nlast"

    def test_streaming_off_reads_the_log_once(self, hook_calls, context, clock):
        hook_calls.facts.side_effect = [RUNNING, RUNNING, SUCCEEDED]
        _, lines = self.run_logged(operator(log_streaming=False), context)
        assert hook_calls.logs.call_count == 1
        assert lines == ["epoch 1", "epoch 2", "done"]

    def test_a_failed_log_read_does_not_fail_the_job(self, hook_calls, context, clock):
        hook_calls.facts.side_effect = [RUNNING, SUCCEEDED]
        hook_calls.logs.side_effect = [BackendAITransientError("fetch the log", status=503), "x\ny\n"]
        _, lines = self.run_logged(operator(), context)
        assert lines == ["x", "y"]

    def test_execute_complete_writes_only_what_the_trigger_did_not(self, hook_calls, context):
        hook_calls.logs.return_value = "streamed 1\nstreamed 2\nrest\n"
        event = {
            "status": "ended",
            "session_id": SID,
            "session_name": "job-1",
            "session_status": "TERMINATED",
            "result": "SUCCESS",
            "status_info": "task-finished",
            "message": "m",
            "log_offset": len("streamed 1\nstreamed 2\n"),
        }
        log = mock.MagicMock()
        with mock.patch.object(
            BackendAIRunBatchOperator, "log", new_callable=mock.PropertyMock, return_value=log
        ):
            result = operator(deferrable=True).execute_complete(context, event)
        assert [c.args[1] for c in log.info.call_args_list if c.args[:1] == ("%s",)] == ["rest"]
        assert result["logs"] == "streamed 1\nstreamed 2\nrest\n"  # XCom keeps the whole log


def test_the_reason_is_read_again_when_the_result_came_first(hook_calls, context, clock):
    """On a real manager the result is set ~30 ms before the reason; one more read picks the reason up."""
    hook_calls.facts.side_effect = [RUNNING, SessionFacts(SID, "RUNNING", "SUCCESS", None), SUCCEEDED]
    result = operator().execute(context)
    assert result["status_info"] == "task-finished"
    assert hook_calls.facts.call_count == 3


def _raise(error: Exception):
    raise error
