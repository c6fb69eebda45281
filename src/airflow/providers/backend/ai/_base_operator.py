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
"""The base of the operators that create a Backend.AI batch session: its parameters, creation and teardown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec
from airflow.providers.backend.ai._session import params
from airflow.providers.backend.ai._session.events import SESSION_ID_XCOM_KEY
from airflow.providers.backend.ai._session.finish import FinishAction
from airflow.providers.backend.ai.exceptions import (
    BackendAINotFoundError,
    BackendAISessionExistsError,
    BackendAITransientError,
    BackendAIUnexpectedAnswerError,
)
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.links.backend_ai import BackendAISessionLink, push_session_url, session_url

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


def _is_unrendered(value: Any) -> bool:
    """True for a value whose final form is only known at run time: a Jinja template or an XCom reference."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(_is_unrendered(k) or _is_unrendered(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_is_unrendered(item) for item in value)
    return not isinstance(value, int | float | bool | type(None))


class SessionOperatorBase(BaseOperator):
    """
    Parameters and checks shared by the operators that create a batch session, and the session's lifecycle.

    The Backend.AI resource slots are ``session_resources``: ``resources`` belongs to ``BaseOperator`` (Airflow's
    executor hints ``cpus``, ``ram``, ``disk``, ``gpus``), as ``container_resources`` is KubernetesPodOperator's.
    """

    #: What happens to the session when the task is done with it. The create-session operator hands its
    #: session over, so only a session it could not hand over (a failure, a kill) is destroyed; the
    #: run-batch operator sets it from its ``on_finish_action`` argument.
    on_finish_action: FinishAction = FinishAction.DESTROY

    template_fields: Sequence[str] = (
        "image",
        "command",
        "bootstrap_script",
        "session_name",
        "environment",
        "session_resources",
        "vfolder_mounts",
        "mount_map",
    )
    operator_extra_links = (BackendAISessionLink(),)
    template_fields_renderers = {
        "command": "bash",
        "bootstrap_script": "bash",
        "environment": "json",
        "session_resources": "json",
        "mount_map": "json",
    }

    def __init__(
        self,
        *,
        image: str,
        command: str,
        bootstrap_script: str | None = None,
        backend_ai_conn_id: str = BackendAIHook.default_conn_name,
        session_name: str | None = None,
        session_resources: Mapping[str, str | int] | None = None,
        vfolder_mounts: Sequence[str] | None = None,
        mount_map: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
        cluster_size: int = 1,
        cluster_mode: str = "single-node",
        domain_name: str | None = None,
        group_name: str | None = None,
        architecture: str | None = None,
        scaling_group: str | None = None,
        startup_timeout: float = 600,
        batch_timeout: int | None = None,
        poll_interval: float = 15,
        use_event_stream: bool = True,
        **kwargs: Any,
    ) -> None:
        _refuse_slots_as_airflow_resources(kwargs.get("resources"))
        super().__init__(**kwargs)
        self.image = image
        self.command = command
        self.bootstrap_script = bootstrap_script
        self.backend_ai_conn_id = backend_ai_conn_id
        self.session_name = session_name
        self.session_resources = session_resources
        self.vfolder_mounts = vfolder_mounts
        self.mount_map = mount_map
        self.environment = environment
        self.cluster_size = params.check_cluster_size(cluster_size)
        self.cluster_mode = params.check_choice("cluster_mode", cluster_mode, params.CLUSTER_MODES)
        self.domain_name = domain_name
        self.group_name = group_name
        self.architecture = architecture
        self.scaling_group = scaling_group
        self.startup_timeout = params.check_positive_number("startup_timeout", startup_timeout)
        self.batch_timeout = params.check_batch_timeout(batch_timeout)
        self.poll_interval = params.check_positive_number("poll_interval", poll_interval)
        self.use_event_stream = use_event_stream
        self.session_id: str | None = None
        for name, check in params.TEMPLATED_FIELD_CHECKS.items():  # the rest after rendering
            if not _is_unrendered(value := getattr(self, name)):
                check(value)

    @cached_property
    def hook(self) -> BackendAIHook:
        return BackendAIHook(backend_ai_conn_id=self.backend_ai_conn_id)

    def session_spec(self, context: Context) -> BatchSessionSpec:
        """The session to create, from the rendered fields; raises ``ValueError`` for invalid values."""
        ti = context["ti"]
        try_key = (ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1), ti.try_number)
        return BatchSessionSpec.checked(
            name=params.check_optional_session_name(self.session_name)
            or params.default_session_name(*try_key),
            tag=params.session_tag(*try_key),
            image=self.image,
            command=self.command,
            bootstrap_script=self.bootstrap_script,
            session_resources=self.session_resources,
            vfolder_mounts=self.vfolder_mounts,
            mount_map=self.mount_map,
            environment=self.environment,
            cluster_size=self.cluster_size,
            cluster_mode=self.cluster_mode,
            domain_name=self.domain_name,
            group_name=self.group_name,
            batch_timeout=self.batch_timeout,
            architecture=self.architecture,
            scaling_group=self.scaling_group,
        )

    def create_session(self, context: Context, spec: BatchSessionSpec) -> str:
        """
        Enqueue the session and record its id at once, so that every later path can clean it up.

        :raises ValueError: ``session_resources`` names a slot the manager does not know (nothing created).
        """
        self.hook.check_resource_slots(spec.resources, parameter="session_resources")
        try:
            created = self.hook.create_batch_session(spec)
        except (BackendAITransientError, BackendAIUnexpectedAnswerError, BackendAISessionExistsError):
            self._clean_up_failed_create(spec)
            raise
        self.log.info("Created Backend.AI batch session %s (%s)", created.session_id, created.name)
        self.publish_session(context, created.session_id, created.name)
        return created.session_id

    def publish_session(self, context: Context, session_id: str, session_name: str) -> None:
        """Make ``session_id`` this task's session: for teardown, in XCom, and as the task's web UI link."""
        self.session_id = session_id
        context["ti"].xcom_push(key=SESSION_ID_XCOM_KEY, value=session_id)
        context["ti"].xcom_push(key="session_name", value=session_name)
        push_session_url(context["ti"], session_url(self.hook.settings.webui_url, session_id))

    def _clean_up_failed_create(self, spec: BatchSessionSpec) -> None:
        """
        The create failed without a readable answer, yet the server may have made the session: find it by
        its name and tag and destroy it (unless ``keep``), or nobody would ever watch or end it.
        """
        try:
            self.session_id = self.hook.find_session(spec.name, tag=spec.tag).session_id
        except BackendAINotFoundError:
            return
        except Exception as exc:  # the create's own error is the one to report
            self.log.error(
                "Could not check whether the failed create left session %r behind: %s", spec.name, exc
            )
            return
        if not self.on_finish_action.destroys(None):
            self.log.warning("Keeping Backend.AI session %s, made by the failed create", self.session_id)
            return
        try:
            self.destroy_session("its create request failed")
        except Exception as exc:
            self.log.error("Could not destroy Backend.AI session %s: %s", self.session_id, exc)

    def destroy_session(self, reason: str) -> None:
        if self.session_id is None:
            return
        if self.hook.destroy_session(self.session_id):
            self.log.info("Destroyed Backend.AI session %s (%s)", self.session_id, reason)
        else:
            self.log.info("Backend.AI session %s was already gone", self.session_id)

    def on_kill(self) -> None:
        """
        Destroy the session when the task is killed, unless told to keep it.

        This may run on another thread than ``execute``, so it uses a hook (and SDK session) of its own.
        """
        if self.session_id is None or not self.on_finish_action.destroys(None):
            return
        try:
            if BackendAIHook(backend_ai_conn_id=self.backend_ai_conn_id).destroy_session(self.session_id):
                self.log.info("Destroyed Backend.AI session %s because the task was killed", self.session_id)
        except Exception:
            self.log.exception("Could not destroy Backend.AI session %s on kill", self.session_id)


def _refuse_slots_as_airflow_resources(resources: Any) -> None:
    """
    Fail at parse time when Backend.AI slots are passed as ``resources``, the name the epic used.

    ``BaseOperator`` would take such a mapping as its own executor hints and either fail with a confusing
    error or silently ask the executor for them; Airflow's own ``Resources`` object still passes.
    """
    if isinstance(resources, Mapping):
        raise ValueError(
            f"Invalid resources {dict(resources)!r}: Backend.AI resource slots go in session_resources= "
            "(e.g. session_resources={'cpu': 2, 'mem': '4g', 'cuda.device': 1}); resources= is BaseOperator's "
            "hint for Airflow's executor"
        )
