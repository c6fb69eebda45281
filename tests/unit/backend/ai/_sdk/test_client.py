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

import os
from uuid import UUID

from airflow.providers.backend.ai._sdk.client import build_api_config, session_ref
from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig

SETTINGS = BackendAIConnectionConfig(
    conn_id="c",
    endpoint="https://api.example.com",
    access_key="AKIAEXAMPLE",
    secret_key="connection-secret",
    domain="research",
    group="vision",
    request_timeout=15,
)


class TestBuildApiConfig:
    def test_takes_everything_from_the_connection(self):
        config = build_api_config(SETTINGS)
        assert str(config.endpoint) == "https://api.example.com"
        assert [str(url) for url in config.endpoints] == ["https://api.example.com"]
        assert config.endpoint_type == "api"
        assert (config.access_key, config.secret_key) == ("AKIAEXAMPLE", "connection-secret")
        assert (config.domain, config.group) == ("research", "vision")
        assert config.skip_sslcert_validation is False
        assert config.vfolder_mounts == []
        assert (config.connection_timeout, config.read_timeout) == (10.0, 15)

    def test_ignores_environment_and_dotenv_and_leaves_environ_alone(self, tmp_path, monkeypatch):
        for key, value in {
            "BACKEND_ENDPOINT": "https://evil.example.net",
            "BACKEND_ACCESS_KEY": "AKIAENV",
            "BACKEND_SECRET_KEY": "env-secret",
            "BACKEND_SKIP_SSLCERT_VALIDATION": "yes",
            "BACKEND_VFOLDER_MOUNTS": "leaked-folder",
            "BACKEND_READ_TIMEOUT": "0",
        }.items():
            monkeypatch.setenv(key, value)
        (tmp_path / ".env").write_text(
            "BACKEND_ENDPOINT=https://dotenv.example.net\nBACKEND_SKIP_SSLCERT_VALIDATION=true\n"
            "AIRFLOW__CORE__PARALLELISM=7\nDOTENV_CANARY=1\n"
        )
        nested = tmp_path / "a" / "b"
        nested.mkdir(parents=True)
        monkeypatch.chdir(nested)  # the SDK searches for .env upwards from the working directory
        before = dict(os.environ)

        config = build_api_config(SETTINGS)

        assert dict(os.environ) == before
        assert str(config.endpoint) == "https://api.example.com"
        assert (config.access_key, config.secret_key) == ("AKIAEXAMPLE", "connection-secret")
        assert config.skip_sslcert_validation is False
        assert config.vfolder_mounts == []
        assert config.read_timeout == 15

    def test_restores_the_sdk_environment_lookup(self):
        from ai.backend.client import config as sdk_config

        original = sdk_config.get_env
        build_api_config(SETTINGS)
        assert sdk_config.get_env is original

    def test_skip_sslcert_validation_from_connection(self):
        settings = BackendAIConnectionConfig(
            conn_id="c",
            endpoint="https://x.example",
            access_key="a",
            secret_key="s",
            skip_sslcert_validation=True,
        )
        assert build_api_config(settings).skip_sslcert_validation is True


def test_session_ref_addresses_by_uuid_on_both_sdk_lines():
    sid = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
    ref = session_ref(sid)
    assert ref.id == UUID(sid)
    assert ref.name == sid
