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
"""Exceptions raised by the Backend.AI provider; each says what failed and carries the evidence."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.common.compat.sdk import AirflowException

if TYPE_CHECKING:
    from airflow.providers.backend.ai._session.state import SessionFacts


class BackendAIException(AirflowException):
    """Base class of every error raised by the Backend.AI provider."""


class BackendAIConnectionConfigError(BackendAIException, ValueError):
    """The Airflow connection is incomplete or malformed; raised before anything is sent to the server."""

    def __init__(self, conn_id: str, field: str, problem: str) -> None:
        self.conn_id = conn_id
        self.field = field
        super().__init__(f"Backend.AI connection {conn_id!r}: {field}: {problem}")


class BackendAIAPIError(BackendAIException):
    """
    A Backend.AI API call failed.

    :param action: what the provider was doing, e.g. "destroy session 3f1c…".
    :param status: the HTTP status, or None when no response arrived (connection error, timeout).
    :param title: the server's error title (problem+json title).
    :param detail: the server's message (problem+json msg) or the client-side error.
    :param error_code: the server's error_code, when it sent one.
    """

    #: What the message says in place of the HTTP status when there is none.
    without_status = "no response"

    def __init__(
        self,
        action: str,
        *,
        status: int | None = None,
        title: str | None = None,
        detail: str | None = None,
        error_code: str | None = None,
    ) -> None:
        self.action = action
        self.status = status
        self.title = title
        self.detail = detail
        self.error_code = error_code
        where = f"HTTP {status}" if status is not None else self.without_status
        text = f"{title.rstrip('.')}: {detail}" if title and detail else title or detail
        super().__init__(
            f"Backend.AI API call failed while trying to {action} ({where}): {text or 'no detail'}"
        )


class BackendAIAuthError(BackendAIAPIError):
    """The server rejected the credentials (wrong keys, clock skew) or the caller lacks permission."""


class BackendAINotFoundError(BackendAIAPIError):
    """The session (or another object) does not exist, or no longer exists, for this keypair."""


class BackendAISessionNotVisibleError(BackendAINotFoundError):
    """
    The manager will not show this session to this keypair: an unknown session id, or another keypair's.

    With RBAC (Backend.AI 26) the manager answers both with 403 before it looks the session up. Reading it
    is as good as "not found"; destroying it is not "already gone": nothing was destroyed.
    """


class BackendAITransientError(BackendAIAPIError):
    """A failure worth retrying: a 5xx or 429 answer, a dropped connection or a timeout."""


class BackendAIUnexpectedAnswerError(BackendAIAPIError):
    """The manager (or a proxy in front of it) answered something the provider cannot read; not retried."""

    without_status = "unreadable answer"


class BackendAISessionExistsError(BackendAIException):
    """A live session already has the requested name; the provider does not attach to sessions it did not create."""

    def __init__(self, name: str, session_id: str) -> None:
        self.name = name
        self.session_id = session_id
        super().__init__(
            f"A live Backend.AI session named {name!r} already exists ({session_id}); refusing to attach to a "
            "session this task did not create. Choose another session_name, or destroy that session."
        )


class BackendAIJobFailedError(BackendAIException):
    """
    The batch job ended without success (failed, timed out, was cancelled, or the session errored).

    :param message: what happened.
    :param session_id: the session.
    :param facts: the session's last known state; ``status``, ``result`` and ``status_info`` come from it
        (None when the session was never read).
    :param log_tail: the last lines of the session's log, also quoted in the message.
    """

    def __init__(
        self, message: str, *, session_id: str | None, facts: SessionFacts | None = None, log_tail: str = ""
    ) -> None:
        self.session_id = session_id
        self.facts = facts
        self.log_tail = log_tail
        self.status: str | None = facts.status if facts else None
        self.result: str | None = facts.result if facts else None
        self.status_info: str | None = facts.status_info if facts else None
        super().__init__(f"{message}\nLast lines of the session log:\n{log_tail}" if log_tail else message)


class BackendAIStartupTimeoutError(BackendAIJobFailedError):
    """The session did not start running within ``startup_timeout``."""


class BackendAIPreemptedError(BackendAIJobFailedError):
    """
    The scheduler preempted the session for a higher-priority one and terminated it (terminate mode).

    Not a failure of the job: it is worth retrying at once (``BackendAIRetryPolicy`` does). In reschedule
    mode the manager reruns the job by itself and this error is not raised.

    :param ran_for: seconds the job had been running when it was preempted, when known.
    """

    def __init__(
        self,
        *,
        session_id: str | None,
        facts: SessionFacts | None = None,
        ran_for: float | None = None,
        log_tail: str = "",
    ) -> None:
        self.ran_for = ran_for
        how_long = f" after running {ran_for:.0f} s" if ran_for is not None else ""
        status_info = facts.status_info if facts else None
        super().__init__(
            f"Backend.AI session {session_id} was preempted by the scheduler{how_long} "
            f"(status_info {status_info!r}): a session of the same user with a higher job_priority needed "
            "its resources, and the resource group's preemption mode is terminate, so the job will not "
            "rerun by itself. The job did not fail; retry the task (BackendAIRetryPolicy retries it at once).",
            session_id=session_id,
            facts=facts,
            log_tail=log_tail,
        )


class BackendAIPythonTaskInputError(BackendAIException, ValueError):
    """
    ``@task.backend_ai``: the function's arguments cannot be sent (not serializable, or the job is too large).

    Raised before any session is created.
    """


class BackendAIPythonTaskError(BackendAIJobFailedError):
    """
    ``@task.backend_ai``: the function raised, its return value could not be serialized, or its
    ``requirements`` failed to install. The message starts with ``<type>: <message>``; the traceback is in
    the task log and in ``log_tail``.

    :param function_name: the decorated function's name.
    :param error_type: the exception's type as the session named it, e.g. ``ValueError`` or ``numpy.AxisError``.
    :param error_message: ``str()`` of the exception.
    :param stage: where it happened: ``call`` (the function raised), ``serialize`` (its return value),
        ``requirements``, ``load`` (the arguments), ``compile`` (the source), or ``runner``.
    """

    _WHERE = {
        "call": "{}() raised",
        "serialize": "the return value of {}() could not be sent back",
        "requirements": "the requirements could not be installed",
        "load": "the arguments of {}() could not be loaded in the session",
        "compile": "the source of {}() could not be compiled in the session",
    }

    def __init__(
        self,
        *,
        function_name: str,
        error_type: str,
        error_message: str,
        stage: str,
        session_id: str | None,
        facts: SessionFacts | None = None,
        log_tail: str = "",
    ) -> None:
        self.function_name = function_name
        self.error_type = error_type
        self.error_message = error_message
        self.stage = stage
        where = self._WHERE.get(stage, "the task runner failed").format(function_name)
        super().__init__(
            f"{error_type}: {error_message}\n({where} in Backend.AI session {session_id}; "
            "the traceback, if any, is in the task log)",
            session_id=session_id,
            facts=facts,
            log_tail=log_tail,
        )


class BackendAIManagerVersionError(BackendAIException):
    """
    The manager is too old for a parameter the task sets; raised before any session exists.

    ``job_priority`` and ``is_preemptible`` need Backend.AI 26.8: 25.x-26.2 refuse a create that carries
    them (400), and 26.3-26.7 drop them without a word, so the session would run preemptible at priority 0.
    """

    def __init__(self, parameters: list[str], manager_version: str, needed: tuple[int, int]) -> None:
        self.parameters = parameters
        self.manager_version = manager_version
        self.needed = needed
        names = " and ".join(parameters)
        super().__init__(
            f"{names} need{'s' if len(parameters) == 1 else ''} Backend.AI manager "
            f"{needed[0]}.{needed[1]} or later; this manager is {manager_version}. Remove {names} from the "
            "task, or run it on a newer manager."
        )


class BackendAIPythonTaskResultError(BackendAIException):
    """
    ``@task.backend_ai``: the job ended, but there is no return value to push: its log holds no intact
    result frame, could not be read, or the value cannot be loaded or pushed.
    """

    def __init__(self, message: str, *, session_id: str | None, problems: tuple[str, ...] = ()) -> None:
        self.session_id = session_id
        self.problems = problems
        details = "".join(f"\n- {problem}" for problem in problems)
        super().__init__(f"{message} (Backend.AI session {session_id}){details}")
