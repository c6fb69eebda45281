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
``create_session``: the body ``get_or_create`` sends, plus ``job_priority``/``is_preemptible``.

The body is compared with the one the installed SDK itself sends (run on both SDK lines), and sessions are
created through the real SDK over HTTP against the emulator, synchronously and asynchronously.
"""

from __future__ import annotations

import json
import uuid
import warnings
from typing import Any
from unittest import mock

import pytest
from ai.backend.client.config import APIConfig
from ai.backend.client.func.session import ComputeSession
from ai.backend.client.request import Request
from ai.backend.client.session import AsyncSession, Session

from airflow.providers.backend.ai._sdk.create import create_session, manager_supports_preemption_fields
from airflow.providers.backend.ai._session.params import check_job_priority
from airflow.providers.backend.ai.exceptions import BackendAIManagerVersionError

IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"


def _config(emu: Any) -> APIConfig:
    with mock.patch("ai.backend.client.config.load_dotenv", return_value=False):
        return APIConfig(
            endpoint=emu.endpoint,
            endpoint_type="api",
            access_key=emu.access_key,
            secret_key=emu.secret_key,
            domain="default",
            group="default",
            vfolder_mounts=[],
        )


def _session(emu: Any) -> Session:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = Session(config=_config(emu))
        session.open()
    return session


def _kwargs(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "name": f"body-{uuid.uuid4().hex[:10]}",
        "type_": "batch",
        "enqueue_only": True,
        "startup_command": "echo hi",
        "bootstrap_script": "true",
        "resources": {"cpu": 1, "mem": "1g"},
        "mounts": [],
        "mount_map": {},
        "envs": {"A": "1"},
        "cluster_size": 1,
        "batch_timeout": 300,
        "tag": "airflow-body-test",
        "scaling_group": "default",
    }
    kwargs.update(overrides)
    return kwargs


def _sent_bodies(calls: list[Any]) -> list[dict[str, Any]]:
    """The JSON of every ``POST /session`` the SDK's ``Request`` sent."""
    return [
        json.loads(call.args[0]._content)
        for call in calls
        if call.args[0].method == "POST" and call.args[0].path.rstrip("/").endswith("session")
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="batch-job"),
        pytest.param(
            {"domain_name": "default", "group_name": "default", "architecture": "aarch64"}, id="named"
        ),
        pytest.param({"priority": 20, "starts_at": None, "no_reuse": True}, id="priority"),
        pytest.param(
            {"bootstrap_script": None, "batch_timeout": None, "tag": None, "envs": None}, id="sparse"
        ),
    ],
)
def test_the_body_is_the_one_get_or_create_sends_plus_the_two_fields(
    backend_ai_emulator: Any, overrides: dict[str, Any]
) -> None:
    emu = backend_ai_emulator
    original = Request.set_json
    with mock.patch.object(Request, "set_json", autospec=True, side_effect=original) as spy:
        session = _session(emu)
        try:
            plain = ComputeSession.get_or_create(IMAGE, **_kwargs(**overrides))
            name = f"body-{uuid.uuid4().hex[:10]}"
            ours = create_session(
                IMAGE, **_kwargs(**overrides, name=name), job_priority=4, is_preemptible=False
            )
            for created in (plain, ours):
                _destroy(created)
        finally:
            session.close()
    sdk_body, our_body = _sent_bodies(spy.call_args_list)
    assert our_body.pop("job_priority") == 4
    assert our_body.pop("is_preemptible") is False
    assert our_body.pop("name") == name
    sdk_body.pop("name")
    assert our_body == sdk_body
    assert list(our_body) == list(sdk_body)  # the same keys in the same order, as on the wire
    assert json.dumps(our_body["config"], sort_keys=False) == json.dumps(sdk_body["config"], sort_keys=False)


def _destroy(created: Any) -> None:
    ref = ComputeSession(str(created.id))
    ref.id = created.id
    ref.destroy(forced=True)


def test_without_the_fields_it_sends_exactly_what_get_or_create_sends(backend_ai_emulator: Any) -> None:
    emu = backend_ai_emulator
    original = Request.set_json
    with mock.patch.object(Request, "set_json", autospec=True, side_effect=original) as spy:
        session = _session(emu)
        try:
            kwargs = _kwargs()
            created = create_session(IMAGE, **kwargs)
            _destroy(created)
            ComputeSession.get_or_create(IMAGE, **{**kwargs, "name": created.name + "x"})
            _destroy(emu.get_session(created.name + "x"))
        finally:
            session.close()
    ours, sdk = _sent_bodies(spy.call_args_list)
    assert "job_priority" not in ours
    assert "is_preemptible" not in ours
    sdk["name"] = ours["name"]
    assert ours == sdk
    assert emu.request_count("root", method="GET") == 1  # only the SDK's own version negotiation


def test_sync_create_stores_the_fields_and_answers_like_get_or_create(backend_ai_emulator: Any) -> None:
    emu = backend_ai_emulator
    session = _session(emu)
    try:
        created = create_session(IMAGE, **_kwargs(), job_priority=9, is_preemptible=False)
        assert isinstance(created, ComputeSession)
        assert isinstance(created.id, uuid.UUID)
        assert created.created is True
        assert created.status == "PENDING"
        assert (created.domain, created.group) == ("default", "default")
        snap = emu.get_session(created.id)
        assert (snap.job_priority, snap.is_preemptible) == (9, False)
        assert snap.name == created.name
        _destroy(created)
    finally:
        session.close()


async def test_async_create_returns_a_coroutine(backend_ai_emulator: Any) -> None:
    emu = backend_ai_emulator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = AsyncSession(config=_config(emu))
        await session.open()
    try:
        created = await create_session(IMAGE, **_kwargs(), job_priority=-3)
        snap = emu.get_session(created.id)
        assert (snap.job_priority, snap.is_preemptible) == (-3, True)
        ref = ComputeSession(str(created.id))
        ref.id = created.id
        await ref.destroy(forced=True)
    finally:
        await session.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"job_priority": True}, "Invalid job_priority True", id="bool"),
        pytest.param({"job_priority": "5"}, "Invalid job_priority '5'", id="string"),
        pytest.param({"job_priority": 2.0}, "Invalid job_priority 2.0", id="float"),
        pytest.param({"job_priority": 2**31}, "Invalid job_priority 2147483648", id="beyond-int32"),
        pytest.param({"is_preemptible": "no"}, "Invalid is_preemptible 'no'", id="preemptible-string"),
        pytest.param({"is_preemptible": 0}, "Invalid is_preemptible 0", id="preemptible-int"),
    ],
)
def test_bad_values_fail_before_anything_is_sent(
    backend_ai_emulator: Any, kwargs: dict[str, Any], message: str
) -> None:
    emu = backend_ai_emulator
    session = _session(emu)
    try:
        before = emu.request_count()
        with pytest.raises(ValueError, match=message):
            create_session(IMAGE, **_kwargs(), **kwargs)
        assert emu.request_count() == before
    finally:
        session.close()


@pytest.mark.parametrize("version", ["26.4.3", "25.15.0", "26.7.0rc1", "", "unknown"])
def test_an_older_manager_is_refused_before_any_session_exists(
    backend_ai_emulator: Any, version: str
) -> None:
    emu = backend_ai_emulator
    emu.settings.manager_version = version
    session = _session(emu)
    try:
        with pytest.raises(BackendAIManagerVersionError) as excinfo:
            create_session(IMAGE, **_kwargs(), job_priority=5)
        assert excinfo.value.parameters == ["job_priority"]
        assert "26.8 or later" in str(excinfo.value)
        assert emu.request_count("create") == 0
        assert not emu.sessions()
        # Without the fields the same manager is fine: nothing it does not know is sent.
        created = create_session(IMAGE, **_kwargs())
        _destroy(created)
    finally:
        session.close()


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        ("26.9.6", True),
        ("26.8.0", True),
        ("26.8.0rc1", True),
        ("26.9.6-emulator", True),
        ("27.0.1", True),
        ("26.7.0", False),
        ("25.19.2", False),
        ("", False),
        ("banana", False),
    ],
)
def test_manager_versions(version: str, supported: bool) -> None:
    assert manager_supports_preemption_fields(version) is supported


def test_job_priority_range() -> None:
    assert check_job_priority(-(2**31)) == -(2**31)
    assert check_job_priority(2**31 - 1) == 2**31 - 1
    with pytest.raises(ValueError, match="from -2147483648 to 2147483647"):
        check_job_priority(-(2**31) - 1)


def test_outside_an_sdk_session_it_says_so() -> None:
    with pytest.raises(RuntimeError, match="inside an SDK Session or AsyncSession"):
        create_session(IMAGE, **_kwargs())
