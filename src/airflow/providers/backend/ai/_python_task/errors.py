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
"""Errors of ``@task.backend_ai``: bad input before a session exists, and what the function's run reported."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.backend.ai.exceptions import BackendAIException, BackendAIJobFailedError

if TYPE_CHECKING:
    from airflow.providers.backend.ai._session.state import SessionFacts


class PythonTaskInputError(ValueError):
    """The function's arguments cannot be sent (not serializable, or the job is too large); nothing was created."""


class PythonTaskFunctionError(BackendAIJobFailedError):
    """
    The function raised, its return value could not be serialized, or its ``requirements`` failed to install.

    :param error_type: the exception's type as the session named it, e.g. ``ValueError`` or ``numpy.AxisError``.
    :param error_message: ``str()`` of the exception.
    :param stage: where it happened: ``call`` (the function raised), ``serialize`` (its return value),
        ``requirements``, ``load`` (the arguments), ``compile`` (the source), or ``runner``.
    """

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
        where = {
            "call": f"{function_name}() raised",
            "serialize": f"the return value of {function_name}() could not be sent back",
            "requirements": "the requirements could not be installed",
            "load": f"the arguments of {function_name}() could not be loaded in the session",
            "compile": f"the source of {function_name}() could not be compiled in the session",
        }.get(stage, "the task runner failed")
        super().__init__(
            f"{error_type}: {error_message}\n({where} in Backend.AI session {session_id}; "
            "the traceback, if any, is in the task log)",
            session_id=session_id,
            facts=facts,
            log_tail=log_tail,
        )


class PythonTaskResultError(BackendAIException):
    """The job ended but its log holds no intact result frame, so there is no return value to push."""

    def __init__(self, message: str, *, session_id: str | None, problems: tuple[str, ...] = ()) -> None:
        self.session_id = session_id
        self.problems = problems
        details = "".join(f"\n- {problem}" for problem in problems)
        super().__init__(f"{message} (Backend.AI session {session_id}){details}")
