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

from unittest import mock

import pytest

from airflow.providers.backend.ai.exceptions import BackendAIConnectionConfigError
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.links.backend_ai import BackendAISessionLink, push_session_url, session_url
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator

SID = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"


def test_session_url():
    assert (
        session_url("https://webui.example.com/", SID)
        == f"https://webui.example.com/session?sessionDetail={SID}"
    )
    assert session_url(None, SID) is None


def test_link_reads_the_pushed_url():
    link = BackendAISessionLink()
    with mock.patch("airflow.providers.backend.ai.links.backend_ai.XCom", autospec=True) as xcom:
        xcom.get_value.return_value = "https://webui.example.com/session?sessionDetail=x"
        assert (
            link.get_link(mock.Mock(), ti_key=mock.sentinel.key)
            == "https://webui.example.com/session?sessionDetail=x"
        )
        xcom.get_value.assert_called_once_with(key="backend_ai_session_url", ti_key=mock.sentinel.key)
        xcom.get_value.return_value = None
        assert link.get_link(mock.Mock(), ti_key=mock.sentinel.key) == ""


def test_no_webui_means_no_link():
    ti = mock.Mock()
    push_session_url(ti, None)
    ti.xcom_push.assert_not_called()


def test_operators_declare_the_link():
    op = BackendAIRunBatchOperator(task_id="t", image="i", command="c")
    assert [link.name for link in op.operator_extra_links] == ["Backend.AI session"]


@pytest.mark.parametrize("value", ["webui.example.com", "ftp://x", "https://x?y=1", 3])
def test_bad_webui_url(make_connection, value):
    conn_id = make_connection(
        "bai", host="https://api.example.com", login="AK", password="SK", extra={"webui_url": value}
    )
    with pytest.raises(BackendAIConnectionConfigError, match="extra.webui_url"):
        _ = BackendAIHook(conn_id).settings


def test_webui_url_from_connection(make_connection):
    conn_id = make_connection(
        "bai",
        host="https://api.example.com",
        login="AK",
        password="SK",
        extra={"webui_url": "https://webui.example.com/"},
    )
    assert BackendAIHook(conn_id).settings.webui_url == "https://webui.example.com"
