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
``@task.backend_ai``: run a Python function in a Backend.AI batch session, its return value in XCom.

The decorated operator is the run-batch operator (teardown, deferral, durable retries, live logs, the
link) whose command is built from the function and its rendered arguments when the task runs
(``_python_task.payload``), and whose outcome is the value the function returned, read from the session's
log (``_python_task.result``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import DecoratedOperator, task_decorator_factory

from airflow.providers.backend.ai._base_operator import _is_unrendered
from airflow.providers.backend.ai._python_task import payload, result
from airflow.providers.backend.ai._python_task.framing import FRAME_LINE_PREFIX
from airflow.providers.backend.ai._session.events import SESSION_ID_XCOM_KEY
from airflow.providers.backend.ai._session.state import Verdict
from airflow.providers.backend.ai.exceptions import (
    BackendAIPythonTaskInputError,
    BackendAIPythonTaskResultError,
)
from airflow.providers.backend.ai.links.backend_ai import SESSION_URL_XCOM_KEY, BackendAISessionLink
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.common.compat.sdk import Context, TaskDecorator

    from airflow.providers.backend.ai._session.state import SessionFacts
    from airflow.providers.backend.ai._watch.end import FinalLog

#: What ``command`` holds until the task runs: the real command needs the rendered arguments.
COMMAND_PLACEHOLDER = "(built from the decorated function when the task runs)"
#: XCom keys the task pushes for its session; a ``multiple_outputs`` dict must not overwrite them.
RESERVED_XCOM_KEYS = frozenset(
    {SESSION_ID_XCOM_KEY, "session_name", SESSION_URL_XCOM_KEY, f"_link_{BackendAISessionLink.__name__}"}
)


class _BackendAIDecoratedOperator(DecoratedOperator, BackendAIRunBatchOperator):
    """
    Run the decorated function in a Backend.AI batch session and return what it returned.

    The run-batch operator with ``command`` built in :meth:`execute`, once ``op_args`` and ``op_kwargs``
    are rendered; its parameters are those of :func:`backend_ai_task`.
    """

    custom_operator_name = "@task.backend_ai"
    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *(f for f in BackendAIRunBatchOperator.template_fields if f != "command"),
        "requirements",
    )
    template_fields_renderers = {
        **{k: v for k, v in BackendAIRunBatchOperator.template_fields_renderers.items() if k != "command"},
        **DecoratedOperator.template_fields_renderers,
        "requirements": "py",
    }
    shallow_copy_attrs: Sequence[str] = ("python_callable",)
    hidden_log_prefix = FRAME_LINE_PREFIX

    def __init__(
        self,
        *,
        python_command: str = "python3",
        serializer: str = "json",
        requirements: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.python_command = payload.check_python_command(python_command)
        self.serializer = payload.check_serializer(serializer)
        self.requirements = requirements
        if not _is_unrendered(requirements):
            payload.check_requirements(requirements)
        super().__init__(command=COMMAND_PLACEHOLDER, **kwargs)
        payload.function_source(self.python_callable)  # a lambda or unreadable source fails at parse

    @property
    def function_name(self) -> str:
        return self.python_callable.__name__

    def execute(self, context: Context) -> Any:
        job = self.build_job()
        self.command = job.command
        self.log.info(
            "Calling %s() in a Backend.AI batch session: a %d-byte job (the limit is %d bytes)",
            self.function_name,
            job.size,
            payload.MAX_COMMAND_BYTES,
        )
        return super().execute(context)

    def build_job(self) -> payload.PythonJob:
        """The job from the rendered arguments; raises ``BackendAIPythonTaskInputError`` before any create."""
        op_args = [_resolved(value) for value in self.op_args]
        op_kwargs = {key: _resolved(value) for key, value in self.op_kwargs.items()}
        try:
            inspect.signature(self.python_callable).bind(*op_args, **op_kwargs)
        except TypeError as exc:
            raise BackendAIPythonTaskInputError(
                f"{self.function_name}() cannot be called with the task's arguments: {exc}. The Airflow "
                "context is not passed into the session: pass what the function needs as arguments "
                "(templates such as '{{ ds }}' and upstream XComs are rendered first)"
            ) from None
        return payload.build_command(
            function_name=self.function_name,
            source=payload.function_source(self.python_callable),
            op_args=op_args,
            op_kwargs=op_kwargs,
            serializer=self.serializer,
            python_command=self.python_command,
            requirements=payload.check_requirements(self.requirements),
        )

    def job_outcome(self, facts: SessionFacts, logs: FinalLog, session_name: str | None) -> Any:
        """The function's return value, read from the whole log; its exception, or the job's failure."""
        succeeded = facts.verdict is Verdict.SUCCEEDED
        if succeeded and not logs.fetched:
            raise BackendAIPythonTaskResultError(
                f"The job of {self.function_name}() succeeded, but its log could not be read, so its return "
                f"value is unknown: {logs.text}",
                session_id=facts.session_id,
            )

        def job_failed() -> NoReturn:
            BackendAIRunBatchOperator.job_outcome(self, facts, logs, session_name)
            raise AssertionError(f"session {facts.session_id}: a failed job was not reported as failed")

        value = result.return_value(
            logs.text,
            serializer=self.serializer,
            function_name=self.function_name,
            job_succeeded=succeeded,
            session_id=facts.session_id,
            job_failed=job_failed,
            warn=self.log.warning,
            facts=facts,
        )
        self._check_multiple_outputs(value, facts.session_id)
        self.log.info("%s() returned a value of type %s", self.function_name, type(value).__name__)
        return value

    def _check_multiple_outputs(self, value: Any, session_id: str) -> None:
        if not getattr(self, "multiple_outputs", False) or not isinstance(value, dict):
            return
        clashing = sorted(RESERVED_XCOM_KEYS.intersection(value))
        if clashing:
            raise BackendAIPythonTaskResultError(
                f"{self.function_name}() returned a dict with the keys {clashing}, which multiple_outputs=True "
                "would push over the XComs this task keeps for its session: rename them, or return the dict "
                "without multiple_outputs",
                session_id=session_id,
            )


def _resolved(value: Any) -> Any:
    """
    A plain list for the results of a mapped upstream task, which arrive as a lazy sequence of XComs.

    Airflow's own sequence types only: any other value is sent as it is (or refused by the serializer).
    """
    if isinstance(value, Sequence) and type(value).__module__.split(".")[0] == "airflow":
        return list(value)
    return value


def backend_ai_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> TaskDecorator:
    """
    Run the decorated function in a Backend.AI batch session: ``@task.backend_ai(image=..., ...)``.

    The function's source (without its decorators) and its arguments, rendered from templates and upstream
    XComs, run in the session; its return value is the task's XCom; its exception fails the task with
    :class:`~airflow.providers.backend.ai.exceptions.BackendAIPythonTaskError` (its type and message), the
    traceback in the task log. Takes every parameter of
    :class:`~airflow.providers.backend.ai.operators.backend_ai.BackendAIRunBatchOperator` but ``command``, and:

    .. seealso::
        :ref:`howto/decorator:backend_ai`

    :param python_callable: The function (set when the decorator is used without arguments).
    :param multiple_outputs: Push each key of a returned dict as an XCom of its own.
    :param python_command: The command that starts Python in the image, e.g. ``python3`` (default) or
        ``/opt/conda/bin/python``.
    :param serializer: How the arguments and the return value travel: ``json`` (default; any Python 3.6+
        in the image), ``pickle`` or ``cloudpickle`` (the image's Python must be the worker's, and
        ``cloudpickle`` installed on both).
    :param requirements: pip requirement specifiers installed in the session before the call. (templated)
    """
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=_BackendAIDecoratedOperator,
        **kwargs,
    )
