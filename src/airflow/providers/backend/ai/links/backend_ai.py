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
"""Operator extra link to a session in the Backend.AI web UI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import TaskInstanceKey

#: XCom key of the session's web UI address, pushed as soon as the session exists (so the link works
#: while the task waits or is deferred).
SESSION_URL_XCOM_KEY = "backend_ai_session_url"


def session_url(webui_url: str | None, session_id: str) -> str | None:
    """The web UI page of a session, or None when the connection names no web UI."""
    if not webui_url:
        return None
    return f"{webui_url.rstrip('/')}/session?sessionDetail={session_id}"


class BackendAISessionLink(BaseOperatorLink):
    """Opens the task's session in the Backend.AI web UI (the connection's ``webui_url`` extra)."""

    name = "Backend.AI session"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=SESSION_URL_XCOM_KEY, ti_key=ti_key) or ""


def push_session_url(ti: Any, url: str | None) -> None:
    """
    Record the link before the task waits or defers.

    Airflow 3 shows links from the XCom ``_link_<class name>``, which the worker otherwise writes only
    when the task finishes; Airflow 2 calls :meth:`BackendAISessionLink.get_link`, which reads the first key.
    """
    if url:
        ti.xcom_push(key=SESSION_URL_XCOM_KEY, value=url)
        ti.xcom_push(key=f"_link_{BackendAISessionLink.__name__}", value=url)
