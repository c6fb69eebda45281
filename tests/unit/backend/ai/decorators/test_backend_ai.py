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
``@task.backend_ai`` with the hook's methods autospecced: what it sends, what it returns, what it refuses.

The session log the mocked hook returns carries frames written by the runner's own ``frame_text``.
"""

from __future__ import annotations

import base64
import json
import random
import re
import zlib
from datetime import datetime
from unittest import mock

import pytest
from airflow.providers.common.compat.sdk import DAG, TaskDeferred, task

from airflow.providers.backend.ai._python_task import runner
from airflow.providers.backend.ai._python_task.framing import FRAME_LINE_PREFIX
from airflow.providers.backend.ai._python_task.payload import MAX_COMMAND_BYTES
from airflow.providers.backend.ai._session.state import SessionFacts
from airflow.providers.backend.ai._watch.end import FinalLog
from airflow.providers.backend.ai.decorators.backend_ai import (
    COMMAND_PLACEHOLDER,
    _BackendAIDecoratedOperator,
    _resolved,
    backend_ai_task,
)
from airflow.providers.backend.ai.exceptions import (
    BackendAIJobFailedError,
    BackendAIPythonTaskError,
    BackendAIPythonTaskInputError,
    BackendAIPythonTaskResultError,
)
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator
from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
RUNNING = SessionFacts(SID, "RUNNING")
SUCCEEDED = SessionFacts(SID, "TERMINATING", "SUCCESS", "task-finished")
FAILED = SessionFacts(SID, "TERMINATED", "FAILURE", "task-failed")
RUN_ID = "a" * 32


def ok(value: object) -> str:
    return runner.frame_text(RUN_ID, "ok", json.dumps(value).encode())


def error(type_: str, message: str) -> str:
    return runner.frame_text(
        RUN_ID, "error", json.dumps({"stage": "call", "type": type_, "message": message}).encode()
    )


def train(epochs: int, learning_rate: float = 0.1) -> dict:
    """A function as a Dag file holds it."""
    return {"epochs": epochs, "learning_rate": learning_rate}


def operator(function=train, *, op_args=(3,), op_kwargs=None, **kwargs) -> _BackendAIDecoratedOperator:
    return _BackendAIDecoratedOperator(
        task_id="train",
        python_callable=function,
        op_args=list(op_args),
        op_kwargs=op_kwargs or {},
        image="python:3.11",
        **kwargs,
    )


def sent_job(hook_calls) -> dict:
    """The job inside the command of the one session created."""
    ((_, spec), _) = hook_calls.create.call_args
    encoded = re.search(r'^main\("([A-Za-z0-9+/=]+)"\)$', spec.command, re.MULTILINE).group(1)
    return json.loads(zlib.decompress(base64.b64decode(encoded)))


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args if args else msg)

    warning = error = exception = debug = info


@pytest.fixture
def task_log():
    log = RecordingLog()
    with mock.patch.object(
        _BackendAIDecoratedOperator, "log", new_callable=mock.PropertyMock, return_value=log
    ):
        yield log


class TestRegistration:
    def test_task_backend_ai_is_the_providers_decorator(self):
        assert task.backend_ai is backend_ai_task

    def test_the_decorated_function_becomes_a_mapped_or_plain_task_of_this_operator(self):
        with DAG("d", schedule=None, start_date=datetime(2026, 1, 1)) as dag:

            @task.backend_ai(image="python:3.11", session_resources={"cpu": 1})
            def double(x: int) -> int:
                return 2 * x

            double(1)
            double.expand(x=[1, 2, 3])
        plain, mapped = dag.task_dict["double"], dag.task_dict["double__1"]
        assert isinstance(plain, _BackendAIDecoratedOperator)
        assert plain.session_resources == {"cpu": 1}
        assert mapped.operator_class is _BackendAIDecoratedOperator


class TestParameters:
    def test_template_fields_are_the_operators_but_command_plus_the_functions(self):
        fields = set(_BackendAIDecoratedOperator.template_fields)
        assert fields == (set(BackendAIRunBatchOperator.template_fields) - {"command"}) | {
            "op_args",
            "op_kwargs",
            "requirements",
        }
        assert "command" not in _BackendAIDecoratedOperator.template_fields_renderers

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            (
                {"serializer": "dill"},
                "Invalid serializer 'dill': expected one of 'json', 'pickle', 'cloudpickle'",
            ),
            ({"python_command": "python3\nrm -rf /"}, "Invalid python_command"),
            ({"python_command": " "}, "Invalid python_command"),
            ({"requirements": "numpy"}, "Invalid requirements 'numpy': expected a list"),
            ({"requirements": ["numpy", ""]}, "Invalid requirements entry ''"),
            ({"session_resources": {"mem": "lots"}}, "Invalid session_resources['mem'] 'lots'"),
            ({"on_finish_action": "delete"}, "Invalid on_finish_action 'delete'"),
            ({"job_priority": 1.5}, "Invalid job_priority 1.5: expected an integer"),
            ({"is_preemptible": 0}, "Invalid is_preemptible 0: expected True or False"),
        ],
    )
    def test_bad_parameters_fail_at_parse_naming_the_parameter(self, kwargs, message):
        with pytest.raises(ValueError, match=re.escape(message)):
            operator(**kwargs)

    def test_a_lambda_fails_at_parse(self):
        with pytest.raises(ValueError, match="not a function defined with def"):
            operator(lambda epochs: epochs)

    def test_templated_requirements_are_checked_when_the_task_runs(self, hook_calls, context):
        op = operator(requirements="{{ var.value.requirements }}")  # renders to a string: not a list
        with pytest.raises(ValueError, match="Invalid requirements"):
            op.execute(context)
        hook_calls.create.assert_not_called()

    def test_the_command_is_a_placeholder_until_the_task_runs(self):
        assert operator().command == COMMAND_PLACEHOLDER


class TestExecute:
    def test_sends_the_function_without_its_decorator_and_the_rendered_arguments(
        self, hook_calls, context, task_log
    ):
        hook_calls.facts.return_value = SUCCEEDED
        hook_calls.logs.return_value = "epoch 1\n" + ok({"loss": 0.5})
        op = operator(op_args=[3], op_kwargs={"learning_rate": 0.5}, python_command="/opt/conda/bin/python")
        assert op.execute(context) == {"loss": 0.5}
        job = sent_job(hook_calls)
        assert job["function"] == "train"
        assert job["source"].startswith("def train(epochs: int, learning_rate: float = 0.1) -> dict:\n")
        assert (job["args"], job["kwargs"], job["serializer"]) == ([3], {"learning_rate": 0.5}, "json")
        ((_, spec), _) = hook_calls.create.call_args
        assert spec.command.startswith("exec 2>&1\n/opt/conda/bin/python - <<'BACKEND_AI_PYTHON_TASK'\n")
        assert len(spec.command.encode()) <= MAX_COMMAND_BYTES
        assert any(
            re.fullmatch(r"Calling train\(\) in a Backend.AI batch session: a \d+-byte job .*", line)
            for line in task_log.lines
        )

    def test_job_priority_and_is_preemptible_reach_the_session(self, hook_calls, context, task_log):
        hook_calls.facts.return_value = SUCCEEDED
        hook_calls.logs.return_value = ok(1)
        operator(job_priority=7, is_preemptible=False).execute(context)
        ((_, spec), _) = hook_calls.create.call_args
        assert (spec.job_priority, spec.is_preemptible) == (7, False)

    def test_the_frame_stays_out_of_the_task_log(self, hook_calls, context, task_log):
        hook_calls.facts.return_value = SUCCEEDED
        hook_calls.logs.return_value = "epoch 1\n" + ok("x" * 20_000) + "after\n"
        assert operator().execute(context) == "x" * 20_000
        assert "epoch 1" in task_log.lines
        assert "after" in task_log.lines
        assert not [line for line in task_log.lines if line.startswith(FRAME_LINE_PREFIX)]

    @pytest.mark.parametrize(
        ("op_args", "op_kwargs", "message"),
        [
            (
                (),
                {},
                r"train\(\) cannot be called with the task's arguments: missing a required argument: 'epochs'",
            ),
            (
                (1,),
                {"ti": None},
                r"got an unexpected keyword argument 'ti'.*The Airflow context is not passed",
            ),
        ],
    )
    def test_a_call_the_signature_refuses_fails_before_create(
        self, hook_calls, context, op_args, op_kwargs, message
    ):
        op = operator(op_args=(1,), op_kwargs={})
        op.op_args, op.op_kwargs = list(op_args), dict(op_kwargs)  # as rendered (e.g. mapped kwargs)
        with pytest.raises(BackendAIPythonTaskInputError, match=message):
            op.execute(context)
        hook_calls.create.assert_not_called()

    def test_an_input_too_large_fails_before_create_naming_it_and_the_limit(self, hook_calls, context):
        blob = base64.b64encode(random.Random(1).randbytes(150_000)).decode()  # 200 KB that barely compresses
        op = operator(op_args=(), op_kwargs={"epochs": blob})
        with pytest.raises(
            BackendAIPythonTaskInputError,
            match=rf"over the limit of {MAX_COMMAND_BYTES:,} bytes.*op_kwargs\['epochs'\]",
        ):
            op.execute(context)
        hook_calls.create.assert_not_called()

    def test_an_unserializable_argument_fails_before_create_naming_its_type(self, hook_calls, context):
        with pytest.raises(
            BackendAIPythonTaskInputError,
            match=r"Argument op_args\[0\] of type set cannot be sent with serializer='json'",
        ):
            operator(op_args=({1, 2},)).execute(context)
        hook_calls.create.assert_not_called()

    def test_the_functions_exception_fails_the_task_with_its_type_and_message(self, hook_calls, context):
        hook_calls.facts.return_value = FAILED
        hook_calls.logs.return_value = "Traceback (most recent call last):\nValueError: bad labels\n" + error(
            "ValueError", "bad labels"
        )
        with pytest.raises(
            BackendAIPythonTaskError,
            match=r"^ValueError: bad labels\n\(train\(\) raised in Backend.AI session",
        ) as failed:
            operator().execute(context)
        assert failed.value.facts == FAILED
        assert failed.value.log_tail == "Traceback (most recent call last):\nValueError: bad labels"
        hook_calls.destroy.assert_called_once()

    def test_a_failed_job_without_a_frame_is_the_operators_usual_failure(self, hook_calls, context):
        hook_calls.facts.return_value = FAILED
        hook_calls.logs.return_value = "bash: python3: command not found\n"
        with pytest.raises(
            BackendAIJobFailedError, match="the command exited with a non-zero code"
        ) as failed:
            operator().execute(context)
        assert not isinstance(failed.value, BackendAIPythonTaskError)
        assert "python3: command not found" in failed.value.log_tail

    def test_defers_with_the_frame_hidden_from_the_triggers_streaming(self, hook_calls, context):
        hook_calls.facts.return_value = RUNNING
        with pytest.raises(TaskDeferred) as deferred:
            operator(deferrable=True).execute(context)
        trigger = deferred.value.trigger
        assert isinstance(trigger, BackendAISessionTrigger)
        assert trigger.serialize()[1]["hide_line_prefix"] == FRAME_LINE_PREFIX
        hook_calls.destroy.assert_not_called()

    def test_the_plain_operator_hides_nothing(self, hook_calls, context):
        hook_calls.facts.return_value = RUNNING
        with pytest.raises(TaskDeferred) as deferred:
            BackendAIRunBatchOperator(task_id="t", image="i", command="c", deferrable=True).execute(context)
        assert deferred.value.trigger.hide_line_prefix is None

    def test_execute_complete_reads_the_value_on_a_freshly_parsed_operator(self, hook_calls, context):
        hook_calls.logs.return_value = ok([1, 2])
        event = {
            "status": "ended",
            "session_id": SID,
            "session_name": "n",
            "session_status": "TERMINATED",
            "result": "SUCCESS",
            "status_info": "task-finished",
            "message": "The job ended: SUCCESS",
            "log_offset": 0,
        }
        assert operator(deferrable=True).execute_complete(context, event) == [1, 2]
        hook_calls.destroy.assert_called_once()


class TestJobOutcome:
    def test_an_unreadable_log_of_a_successful_job_says_so(self):
        with pytest.raises(
            BackendAIPythonTaskResultError, match=r"succeeded, but its log could not be read.*HTTP 500"
        ):
            operator().job_outcome(
                SUCCEEDED, FinalLog("[the session log could not be fetched: HTTP 500]", fetched=False), "n"
            )

    def test_an_unreadable_log_of_a_failed_job_is_the_usual_failure(self):
        with pytest.raises(BackendAIJobFailedError, match="non-zero code") as failed:
            operator().job_outcome(
                FAILED, FinalLog("[the session log could not be fetched: HTTP 500]", fetched=False), "n"
            )
        assert "could not be fetched" in failed.value.log_tail

    def test_a_successful_job_without_a_frame_is_a_result_error(self):
        with pytest.raises(BackendAIPythonTaskResultError, match="holds no result frame"):
            operator().job_outcome(SUCCEEDED, FinalLog("epoch 1\n"), "n")

    @pytest.mark.parametrize("key", ["session_id", "session_name", "backend_ai_session_url"])
    def test_multiple_outputs_may_not_overwrite_the_session_xcoms(self, key):
        with pytest.raises(BackendAIPythonTaskResultError, match=rf"keys \['{key}'\].*multiple_outputs=True"):
            operator(multiple_outputs=True).job_outcome(SUCCEEDED, FinalLog(ok({key: 1, "loss": 0.5})), "n")

    def test_without_multiple_outputs_any_dict_is_one_value(self):
        value = {"session_id": "mine", "loss": 0.5}
        assert operator().job_outcome(SUCCEEDED, FinalLog(ok(value)), "n") == value


class TestResolved:
    def test_airflows_lazy_sequences_become_lists_and_other_values_stay(self):
        lazy = mock.create_autospec(list, instance=True)  # stands for LazyXComSequence (a Sequence)
        type(lazy).__module__ = "airflow.sdk.execution_time.lazy_sequence"
        lazy.__iter__.return_value = iter([1, 2])
        lazy.__len__.return_value = 2
        assert _resolved(lazy) == [1, 2]
        assert _resolved((1, 2)) == (1, 2)
        assert _resolved("text") == "text"
