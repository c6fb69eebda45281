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
"""The description of a batch session to create, as the hook sends it to the SDK."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.providers.backend.ai._session import params

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True)
class BatchSessionSpec:
    """
    A batch session to create; :meth:`checked` builds one from the operators' parameters, checked.

    :param image: container image reference.
    :param command: the batch job, run by the session as its startup command.
    :param name: session name (4-64 characters); unique per task try so retries never reuse a session.
    :param tag: the session's Backend.AI tag (at most 64 characters): it tells the session this spec created
        apart from any other of the same name (see ``BackendAIHook.create_batch_session``). The operators set
        the deterministic tag of the task try (``_session.params.session_tag``), so that a retry finds what
        an earlier try left (``BackendAIHook.find_sessions_by_tag``); a spec built elsewhere gets a random one.
    :param job_priority: the session's ``job_priority`` (Backend.AI 26.8+), None for the manager's default.
    :param is_preemptible: whether a higher-priority session may preempt it, None for the default (True).
        Neither goes through ``to_sdk_kwargs``: ``get_or_create`` cannot send them (``_sdk.create`` does).
    """

    image: str
    command: str
    name: str
    bootstrap_script: str | None = None
    resources: Mapping[str, str | int] = field(default_factory=dict)
    vfolder_mounts: tuple[str, ...] = ()
    mount_map: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    cluster_size: int = 1
    cluster_mode: str = "single-node"
    domain_name: str | None = None
    group_name: str | None = None
    batch_timeout: int | None = None
    architecture: str | None = None
    scaling_group: str | None = None
    tag: str = field(default_factory=lambda: f"airflow-{uuid.uuid4().hex}", compare=False)
    job_priority: int | None = None
    is_preemptible: bool | None = None

    @classmethod
    def checked(
        cls,
        *,
        name: str,
        image: Any,
        command: Any,
        tag: str | None = None,
        bootstrap_script: str | None = None,
        session_resources: Any = None,
        vfolder_mounts: Any = None,
        mount_map: Any = None,
        environment: Any = None,
        cluster_size: Any = 1,
        cluster_mode: Any = "single-node",
        domain_name: str | None = None,
        group_name: str | None = None,
        batch_timeout: Any = None,
        architecture: str | None = None,
        scaling_group: str | None = None,
        job_priority: Any = None,
        is_preemptible: Any = None,
    ) -> BatchSessionSpec:
        """
        The session the operators' parameters (under their names) describe, each value checked first.

        :raises ValueError: a value is invalid; the message names the parameter and what it accepts.
        """
        check = params.TEMPLATED_FIELD_CHECKS
        return cls(
            image=check["image"](image),
            command=check["command"](command),
            name=params.check_session_name(name),
            bootstrap_script=check["bootstrap_script"](bootstrap_script),
            resources=check["session_resources"](session_resources),
            vfolder_mounts=check["vfolder_mounts"](vfolder_mounts),
            mount_map=check["mount_map"](mount_map),
            environment=check["environment"](environment),
            cluster_size=params.check_cluster_size(cluster_size),
            cluster_mode=params.check_choice("cluster_mode", cluster_mode, params.CLUSTER_MODES),
            domain_name=domain_name,
            group_name=group_name,
            batch_timeout=params.check_batch_timeout(batch_timeout),
            architecture=architecture,
            scaling_group=scaling_group,
            job_priority=None if job_priority is None else params.check_job_priority(job_priority),
            is_preemptible=None if is_preemptible is None else params.check_is_preemptible(is_preemptible),
            **({"tag": tag} if tag is not None else {}),
        )

    def to_sdk_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``ComputeSession.get_or_create``: enqueue only, never block on start."""
        from ai.backend.common.types import ClusterMode

        kwargs: dict[str, Any] = {
            "name": self.name,
            "type_": "batch",
            "enqueue_only": True,
            "startup_command": self.command,
            "bootstrap_script": self.bootstrap_script,
            "resources": dict(self.resources),
            "mounts": list(self.vfolder_mounts),  # a fresh list: the SDK appends to the one it is given
            "mount_map": dict(self.mount_map),
            "envs": dict(self.environment),
            "cluster_size": self.cluster_size,
            "cluster_mode": ClusterMode(self.cluster_mode),
            "domain_name": self.domain_name,
            "group_name": self.group_name,
            "batch_timeout": self.batch_timeout,
            "scaling_group": self.scaling_group,
            "tag": self.tag,
        }
        if self.architecture:
            kwargs["architecture"] = self.architecture
        return kwargs
