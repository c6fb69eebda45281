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
"""System tests run the example Dags with ``dag.test()``: they need a metadata database and a connection."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def backend_ai_target(request, airflow_db, make_connection):
    """Point ``backend_ai_default`` at a real cluster if one is configured, else at the emulator."""
    if os.environ.get("AIRFLOW_CONN_BACKEND_AI_DEFAULT_REAL"):
        os.environ["AIRFLOW_CONN_BACKEND_AI_DEFAULT"] = os.environ["AIRFLOW_CONN_BACKEND_AI_DEFAULT_REAL"]
        yield None
        return
    emu = request.getfixturevalue("backend_ai_emulator")
    make_connection("backend_ai_default", host=emu.endpoint, login=emu.access_key, password=emu.secret_key)
    yield emu
    emu.wait_until(lambda: not emu.live_sessions(), timeout=10)
