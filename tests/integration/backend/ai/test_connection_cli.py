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
"""A connection made with ``airflow connections add`` works, and ``airflow connections test`` checks the keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def airflow(*args: str, **env: str) -> subprocess.CompletedProcess:
    binary = Path(sys.executable).with_name("airflow")
    return subprocess.run(
        [str(binary), *args],
        env={**os.environ, "AIRFLOW__CORE__TEST_CONNECTION": "Enabled", **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize(
    ("secret_ok", "expected"), [(True, "Connection success!"), (False, "Authentication failed")]
)
def test_connections_add_then_test(emulator, airflow_db, secret_ok, expected):
    emu = emulator
    conn_id = f"bai_cli_{secret_ok}".lower()
    secret = emu.secret_key if secret_ok else "Wrong" + "x" * 35
    airflow("connections", "delete", conn_id)
    added = airflow(
        "connections",
        "add",
        conn_id,
        "--conn-type",
        "backend_ai",
        "--conn-host",
        emu.endpoint,
        "--conn-login",
        emu.access_key,
        "--conn-password",
        secret,
        "--conn-extra",
        json.dumps({"group": "default", "request_timeout": 20}),
    )
    assert added.returncode == 0, added.stderr
    tested = airflow("connections", "test", conn_id)
    output = tested.stdout + tested.stderr
    assert expected in output, output
    assert secret not in output
    assert emu.request_count(route="gql") >= 1  # the authenticated probe reached the server
