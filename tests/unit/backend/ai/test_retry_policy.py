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
"""BackendAIRetryPolicy: which failures it retries, how soon, which it fails, and that it serializes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

pytest.importorskip("airflow.sdk.definitions.retry_policy", reason="retry policies arrived in Airflow 3.3")

from airflow.sdk.definitions.retry_policy import RetryAction, RetryPolicy

from airflow.providers.backend.ai._session.state import SessionFacts
from airflow.providers.backend.ai.exceptions import (
    BackendAIAPIError,
    BackendAIAuthError,
    BackendAIConnectionConfigError,
    BackendAIException,
    BackendAIJobFailedError,
    BackendAIManagerVersionError,
    BackendAINotFoundError,
    BackendAIPreemptedError,
    BackendAISessionExistsError,
    BackendAIStartupTimeoutError,
    BackendAITransientError,
    BackendAIUnexpectedAnswerError,
)
from airflow.providers.backend.ai.retry_policy import BackendAIRetryPolicy, FailureKind, classify_failure

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"


def _preempted() -> BackendAIPreemptedError:
    return BackendAIPreemptedError(
        session_id=SID,
        facts=SessionFacts(SID, "TERMINATED", "UNDEFINED", "preempted-by-scheduler"),
        ran_for=42.4,
    )


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as cause:
            raise outer from cause
    except BaseException as exc:
        return exc


CASES = [
    pytest.param(_preempted(), FailureKind.PREEMPTED, id="preempted"),
    pytest.param(BackendAITransientError("read session", status=503), FailureKind.TRANSIENT, id="http-503"),
    pytest.param(BackendAITransientError("read session", status=429), FailureKind.TRANSIENT, id="http-429"),
    pytest.param(BackendAITransientError("read session"), FailureKind.TRANSIENT, id="no-answer"),
    pytest.param(
        BackendAIJobFailedError(
            "failed to start", session_id=SID, facts=SessionFacts(SID, "ERROR", status_info="failed-to-start")
        ),
        FailureKind.TRANSIENT,
        id="session-error",
    ),
    pytest.param(BackendAIAuthError("create session", status=401), FailureKind.PERMANENT, id="auth-401"),
    pytest.param(BackendAIAuthError("create session", status=403), FailureKind.PERMANENT, id="auth-403"),
    pytest.param(
        BackendAIConnectionConfigError("backend_ai_default", "host", "missing"),
        FailureKind.PERMANENT,
        id="conn",
    ),
    pytest.param(
        BackendAINotFoundError(
            "create session",
            status=404,
            title="No such environment image.",
            detail="Unknown image reference: cr.backend.ai/nowhere/no-such:0 (x86_64)",
            error_code="image_read_not-found",
        ),
        FailureKind.PERMANENT,
        id="unknown-image",
    ),
    pytest.param(
        BackendAIAPIError(
            "create session",
            status=400,
            title="Unknown resource slot type",
            detail="Unknown slot type: 'warp.drive'",
            error_code="backendai_parsing_not-found",
        ),
        FailureKind.PERMANENT,
        id="unknown-slot",
    ),
    pytest.param(
        BackendAIAPIError("create session", status=400, title="Invalid API parameters"),
        FailureKind.PERMANENT,
        id="bad-params-400",
    ),
    pytest.param(
        BackendAIAPIError("create session", detail="certificate verify failed"),
        FailureKind.PERMANENT,
        id="untrusted-certificate",
    ),
    pytest.param(
        BackendAIManagerVersionError(["job_priority"], "26.4.3", (26, 8)),
        FailureKind.PERMANENT,
        id="old-manager",
    ),
    pytest.param(
        ValueError("Invalid job_priority 'x': expected an integer"), FailureKind.PERMANENT, id="value"
    ),
    pytest.param(
        BackendAIAPIError(
            "create session",
            status=400,
            title="You have reached your resource limit.",
            error_code="session_create_unavailable",
        ),
        FailureKind.OTHER,
        id="quota-exceeded",
    ),
    pytest.param(
        BackendAIJobFailedError("exit 3", session_id=SID, facts=SessionFacts(SID, "TERMINATED", "FAILURE")),
        FailureKind.OTHER,
        id="job-failed",
    ),
    pytest.param(
        BackendAIStartupTimeoutError("did not start", session_id=SID, facts=SessionFacts(SID, "PENDING")),
        FailureKind.OTHER,
        id="startup-timeout",
    ),
    pytest.param(
        BackendAINotFoundError("read session", status=404, title="No such session."),
        FailureKind.OTHER,
        id="session-gone",
    ),
    pytest.param(BackendAISessionExistsError("job-1", SID), FailureKind.OTHER, id="session-exists"),
    pytest.param(
        BackendAIUnexpectedAnswerError("read session", detail="KeyError"), FailureKind.OTHER, id="odd"
    ),
    pytest.param(RuntimeError("boom"), FailureKind.OTHER, id="anything-else"),
    pytest.param(
        _chained(BackendAIException("Backend.AI session ended"), _preempted()),
        FailureKind.PREEMPTED,
        id="wrapped-preemption",
    ),
    pytest.param(
        _chained(RuntimeError("while reading"), BackendAITransientError("read session", status=502)),
        FailureKind.TRANSIENT,
        id="wrapped-transient",
    ),
]


@pytest.mark.parametrize(("exception", "kind"), CASES)
def test_classify_failure(exception: BaseException, kind: FailureKind) -> None:
    found, reason = classify_failure(exception)
    assert found is kind
    assert reason


def test_a_preemption_is_retried_at_once() -> None:
    decision = BackendAIRetryPolicy().evaluate(_preempted(), try_number=1, max_tries=3)
    assert decision.action is RetryAction.RETRY
    assert decision.retry_delay == timedelta(0)
    assert "preempted" in (decision.reason or "")


def test_preemption_delay_is_configurable() -> None:
    policy = BackendAIRetryPolicy(preemption_delay=timedelta(seconds=15))
    assert policy.evaluate(_preempted(), 1, 3).retry_delay == timedelta(seconds=15)


def test_transient_failures_back_off_exponentially_up_to_the_ceiling() -> None:
    policy = BackendAIRetryPolicy(transient_delay=10, backoff_factor=3, max_transient_delay=100)
    exc = BackendAITransientError("read session", status=503)
    delays = [policy.evaluate(exc, try_number=n, max_tries=9).retry_delay for n in range(1, 6)]
    assert delays == [timedelta(seconds=s) for s in (10, 30, 90, 100, 100)]
    decision = policy.evaluate(exc, try_number=2, max_tries=9)
    assert decision.action is RetryAction.RETRY
    assert "30 s" in (decision.reason or "")


def test_a_huge_try_number_does_not_overflow() -> None:
    policy = BackendAIRetryPolicy()
    exc = BackendAITransientError("read session", status=503)
    assert policy.evaluate(exc, try_number=100_000, max_tries=100_001).retry_delay == timedelta(minutes=10)


def test_what_a_retry_cannot_fix_fails_at_once() -> None:
    decision = BackendAIRetryPolicy().evaluate(BackendAIAuthError("create session", status=401), 1, 5)
    assert decision.action is RetryAction.FAIL
    assert "cannot fix" in (decision.reason or "")


def test_an_ordinary_job_failure_is_left_to_the_task_retries() -> None:
    exc = BackendAIJobFailedError("exit 3", session_id=SID, facts=SessionFacts(SID, "TERMINATED", "FAILURE"))
    decision = BackendAIRetryPolicy().evaluate(exc, 1, 5)
    assert decision.action is RetryAction.DEFAULT
    assert decision.retry_delay is None


def test_it_is_a_retry_policy_and_round_trips_through_json() -> None:
    policy = BackendAIRetryPolicy(
        preemption_delay=5, transient_delay=timedelta(seconds=20), backoff_factor=1.5, max_transient_delay=300
    )
    assert isinstance(policy, RetryPolicy)
    data = json.loads(json.dumps(policy.serialize()))
    assert data == {
        "__type": "BackendAIRetryPolicy",
        "__classpath": "airflow.providers.backend.ai.retry_policy.BackendAIRetryPolicy",
        "preemption_delay": 5.0,
        "transient_delay": 20.0,
        "backoff_factor": 1.5,
        "max_transient_delay": 300.0,
    }
    again = BackendAIRetryPolicy.deserialize(data)
    assert again == policy
    assert hash(again) == hash(policy)
    assert (
        repr(again)
        == repr(policy)
        == (
            "BackendAIRetryPolicy(preemption_delay=5, transient_delay=20, backoff_factor=1.5, max_transient_delay=300)"
        )
    )
    assert BackendAIRetryPolicy.deserialize({}) == BackendAIRetryPolicy()


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"preemption_delay": -1}, "preemption_delay"),
        ({"transient_delay": "soon"}, "transient_delay"),
        ({"transient_delay": float("inf")}, "transient_delay"),
        ({"backoff_factor": 0.5}, "backoff_factor"),
        ({"backoff_factor": True}, "backoff_factor"),
        ({"transient_delay": 60, "max_transient_delay": 30}, "max_transient_delay"),
    ],
)
def test_bad_settings_name_the_parameter(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(ValueError, match=f"Invalid {parameter} "):
        BackendAIRetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_a_dag_with_the_policy_serializes() -> None:
    """Airflow stores only ``has_retry_policy`` for the Dag; the worker re-parses the file for the policy."""
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator

    with DAG("retry_policy_dag", schedule=None) as dag:
        BackendAIRunBatchOperator(
            task_id="job", image="python", command="echo hi", retries=2, retry_policy=BackendAIRetryPolicy()
        )
    serialized = DagSerialization.to_dict(dag)
    task = serialized["dag"]["tasks"][0]["__var"]
    assert task.get("has_retry_policy") is True
    assert "retry_policy" not in task
    assert "BackendAIRetryPolicy" not in json.dumps(serialized)
