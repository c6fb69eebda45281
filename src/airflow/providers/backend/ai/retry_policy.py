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
A retry policy for Backend.AI tasks on a busy cluster (Airflow 3.3+).

Set ``retry_policy=BackendAIRetryPolicy()`` on a Backend.AI task. The task's ``retries`` still bounds the
number of tries; the policy decides, per failure, whether a retry can help and how soon:

* a preemption (terminate mode): retry at once, the job itself did not fail;
* a transient manager or agent failure (5xx, 429, no answer, a session that failed to start): retry with
  exponential backoff;
* what a retry cannot fix (bad parameters, credentials, an unknown image or resource slot, an untrusted
  TLS certificate): fail at once;
* anything else, an ordinary job failure included: the task's own ``retries`` and ``retry_delay``.
"""

from __future__ import annotations

import enum
import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.backend.ai.exceptions import (
    BackendAIAPIError,
    BackendAIAuthError,
    BackendAIConnectionConfigError,
    BackendAIException,
    BackendAIJobFailedError,
    BackendAIManagerVersionError,
    BackendAINotFoundError,
    BackendAIPreemptedError,
    BackendAIStartupTimeoutError,
    BackendAITransientError,
    BackendAIUnexpectedAnswerError,
)

try:
    from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
except ImportError:  # pragma: no cover - exercised on Airflow < 3.3 only
    raise ImportError(
        "BackendAIRetryPolicy needs Airflow 3.3 or later (retry_policy arrived in Airflow 3.3); "
        "on older Airflow use the task's retries and retry_delay."
    ) from None

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

__all__ = ["BackendAIRetryPolicy", "FailureKind", "classify_failure"]

#: How deep :func:`classify_failure` follows ``__cause__``/``__context__`` to find a provider error.
_CHAIN_DEPTH = 8
#: A 400 answer a later try may not meet again: the keypair's resource quota (``quota-exceeded``, title
#: "You have reached your resource limit.", error code ``session_create_unavailable``) frees up as the
#: keypair's other sessions end.
_MAYBE_LATER_400 = ("resource limit", "session_create_unavailable")


class FailureKind(enum.Enum):
    """What a failure of a Backend.AI task means for a retry."""

    PREEMPTED = "preempted"
    """The scheduler took the resources for a higher-priority session: retry at once."""
    TRANSIENT = "transient"
    """The manager or an agent failed for a while: retry with backoff."""
    PERMANENT = "permanent"
    """A retry would fail the same way: bad parameters, credentials, unknown image or slot."""
    OTHER = "other"
    """Anything else, an ordinary job failure included: the task's ``retries`` decide."""


def _chain(exception: BaseException) -> list[BaseException]:
    """The exception, then its causes (explicit first), without loops."""
    seen: list[BaseException] = []
    current: BaseException | None = exception
    while current is not None and len(seen) < _CHAIN_DEPTH and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _classify_one(exc: BaseException) -> tuple[FailureKind, str] | None:
    """The kind of one exception, or None when it says nothing about retrying."""
    name = type(exc).__name__
    if isinstance(exc, BackendAIPreemptedError):
        return FailureKind.PREEMPTED, "the session was preempted for a higher-priority one"
    if isinstance(exc, BackendAIConnectionConfigError):
        return FailureKind.PERMANENT, f"{name}: the Airflow connection is incomplete or malformed"
    if isinstance(exc, BackendAIManagerVersionError):
        return FailureKind.PERMANENT, f"{name}: the manager is too old for {' and '.join(exc.parameters)}"
    if isinstance(exc, BackendAIAuthError):
        return FailureKind.PERMANENT, f"{name}: the credentials were rejected (HTTP {exc.status})"
    if isinstance(exc, BackendAITransientError):
        return (
            FailureKind.TRANSIENT,
            f"{name}: the manager did not answer or answered {exc.status or 'nothing'}",
        )
    if isinstance(exc, BackendAINotFoundError):
        text = f"{exc.error_code or ''} {exc.title or ''} {exc.detail or ''}".lower()
        if "image" in text:
            return FailureKind.PERMANENT, f"{name}: the image is unknown to the manager"
        return None
    if isinstance(exc, BackendAIUnexpectedAnswerError):
        return None  # the manager, or a proxy, answered something odd: the task's retries decide
    if isinstance(exc, BackendAIAPIError):
        if exc.status is None:  # no answer that is not transient: an untrusted TLS certificate
            return FailureKind.PERMANENT, f"{name}: {exc.detail or 'the connection cannot be made'}"
        if 400 <= exc.status < 500:
            problem = f"{exc.error_code or ''} {exc.title or ''}".lower()
            if exc.status == 400 and any(marker in problem for marker in _MAYBE_LATER_400):
                return None
            return FailureKind.PERMANENT, f"{name}: the manager refused the request (HTTP {exc.status})"
        return None
    if isinstance(exc, BackendAIStartupTimeoutError):
        return None  # a long queue: whether to wait again is the task's retries' call
    if isinstance(exc, BackendAIJobFailedError):
        if exc.status == "ERROR":
            return FailureKind.TRANSIENT, f"{name}: the session failed to start ({exc.status_info})"
        return None
    if isinstance(exc, BackendAIException):
        return None
    if isinstance(exc, (ValueError, TypeError)):
        return FailureKind.PERMANENT, f"{name}: invalid parameters"
    return None


def classify_failure(exception: BaseException) -> tuple[FailureKind, str]:
    """
    Classify a task's exception for a retry decision, with a short reason.

    The exception and its causes are read in order and the first one that says something decides, so an
    error a provider exception wraps still counts.
    """
    for exc in _chain(exception):
        found = _classify_one(exc)
        if found is not None:
            return found
    return FailureKind.OTHER, f"{type(exception).__name__}: left to the task's retries"


def _seconds(value: timedelta | float, parameter: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise ValueError(f"Invalid {parameter} {value!r}: expected a timedelta or a number of seconds")
    if seconds < 0:
        raise ValueError(f"Invalid {parameter} {value!r}: expected zero or more seconds")
    return float(seconds)


class BackendAIRetryPolicy(RetryPolicy):
    """
    Retry Backend.AI tasks when a retry can help, and only then.

    :param preemption_delay: wait before retrying a preempted job (default: none, retry at once).
    :param transient_delay: wait before the first retry after a transient failure.
    :param backoff_factor: each further try after a transient failure waits this many times longer.
    :param max_transient_delay: the longest wait after a transient failure.
    """

    def __init__(
        self,
        *,
        preemption_delay: timedelta | float = 0.0,
        transient_delay: timedelta | float = timedelta(seconds=30),
        backoff_factor: float = 2.0,
        max_transient_delay: timedelta | float = timedelta(minutes=10),
    ) -> None:
        self.preemption_delay = _seconds(preemption_delay, "preemption_delay")
        self.transient_delay = _seconds(transient_delay, "transient_delay")
        self.max_transient_delay = _seconds(max_transient_delay, "max_transient_delay")
        if isinstance(backoff_factor, bool) or not isinstance(backoff_factor, (int, float)):
            raise ValueError(f"Invalid backoff_factor {backoff_factor!r}: expected a number of at least 1")
        if not math.isfinite(backoff_factor) or backoff_factor < 1:
            raise ValueError(f"Invalid backoff_factor {backoff_factor!r}: expected a number of at least 1")
        self.backoff_factor = float(backoff_factor)
        if self.max_transient_delay < self.transient_delay:
            raise ValueError(
                f"Invalid max_transient_delay {max_transient_delay!r}: expected at least transient_delay "
                f"({self.transient_delay:g} s)"
            )

    def transient_wait(self, try_number: int) -> timedelta:
        """The wait after a transient failure of try ``try_number`` (1-based)."""
        exponent = max(try_number, 1) - 1
        try:
            seconds = self.transient_delay * self.backoff_factor**exponent
        except OverflowError:
            seconds = self.max_transient_delay
        return timedelta(seconds=min(seconds, self.max_transient_delay))

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Context | None = None,
    ) -> RetryDecision:
        kind, why = classify_failure(exception)
        if kind is FailureKind.PREEMPTED:
            return RetryDecision.retry(
                delay=timedelta(seconds=self.preemption_delay), reason=f"{why}; retrying the job"
            )
        if kind is FailureKind.TRANSIENT:
            wait = self.transient_wait(try_number)
            return RetryDecision.retry(
                delay=wait, reason=f"{why}; retrying in {wait.total_seconds():g} s (try {try_number})"
            )
        if kind is FailureKind.PERMANENT:
            return RetryDecision.fail(reason=f"{why}; a retry cannot fix this")
        return RetryDecision.default()

    # -- serialization -------------------------------------------------------------------------

    def serialize(self) -> dict[str, Any]:
        return {
            "__type": type(self).__name__,
            "__classpath": f"{type(self).__module__}.{type(self).__qualname__}",
            "preemption_delay": self.preemption_delay,
            "transient_delay": self.transient_delay,
            "backoff_factor": self.backoff_factor,
            "max_transient_delay": self.max_transient_delay,
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> BackendAIRetryPolicy:
        return cls(
            preemption_delay=data.get("preemption_delay", 0.0),
            transient_delay=data.get("transient_delay", 30.0),
            backoff_factor=data.get("backoff_factor", 2.0),
            max_transient_delay=data.get("max_transient_delay", 600.0),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BackendAIRetryPolicy):
            return NotImplemented
        return self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.serialize().items())))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(preemption_delay={self.preemption_delay:g}, "
            f"transient_delay={self.transient_delay:g}, backoff_factor={self.backoff_factor:g}, "
            f"max_transient_delay={self.max_transient_delay:g})"
        )
