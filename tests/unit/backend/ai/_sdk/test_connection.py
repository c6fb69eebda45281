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

import json

import pytest

from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig
from airflow.providers.backend.ai.exceptions import BackendAIConnectionConfigError
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

GOOD = {"host": "https://api.example.com", "login": "AKIAEXAMPLE", "password": "s3cr3t-canary-key"}


def settings_of(make_connection, **fields) -> BackendAIConnectionConfig:
    return BackendAIHook(make_connection("bai_test", **fields)).settings


class TestGoodConnections:
    def test_defaults(self, make_connection):
        settings = settings_of(make_connection, **GOOD)
        assert settings == BackendAIConnectionConfig(
            conn_id="bai_test",
            endpoint="https://api.example.com",
            access_key="AKIAEXAMPLE",
            secret_key="s3cr3t-canary-key",
        )
        assert settings.endpoint_type == "api"
        assert settings.domain == settings.group == "default"
        assert settings.skip_sslcert_validation is False
        assert settings.request_timeout == 60.0
        assert settings.connect_timeout == 10.0

    @pytest.mark.parametrize(
        ("host", "port", "endpoint"),
        [
            pytest.param("https://api.example.com/", None, "https://api.example.com", id="trailing-slash"),
            pytest.param("api.example.com", None, "https://api.example.com", id="bare-host-means-https"),
            pytest.param("http://127.0.0.1:8091", None, "http://127.0.0.1:8091", id="loopback-port"),
            pytest.param("http://127.0.0.1", 8091, "http://127.0.0.1:8091", id="port-field"),
            pytest.param(
                "https://api.example.com:443", None, "https://api.example.com", id="default-port-dropped"
            ),
            pytest.param("http://host:80/prefix", None, "http://host/prefix", id="path-prefix-kept"),
            pytest.param("http://[::1]:8091", None, "http://[::1]:8091", id="ipv6"),
        ],
    )
    def test_endpoint_forms(self, make_connection, host, port, endpoint):
        fields = {**GOOD, "host": host} | ({"port": port} if port else {})
        assert settings_of(make_connection, **fields).endpoint == endpoint

    def test_extras(self, make_connection):
        extra = {
            "endpoint_type": "api",
            "domain": "research",
            "group": "vision",
            "skip_sslcert_validation": "true",
            "request_timeout": "15",
        }
        settings = settings_of(make_connection, **GOOD, extra=extra)
        assert (settings.domain, settings.group) == ("research", "vision")
        assert settings.skip_sslcert_validation is True
        assert settings.request_timeout == 15.0
        assert settings.connect_timeout == 10.0

    def test_airflow2_prefixed_extras(self, make_connection):
        extra = {"extra__backend_ai__domain": "research", "extra__backend_ai__skip_sslcert_validation": False}
        settings = settings_of(make_connection, **GOOD, extra=extra)
        assert settings.domain == "research"
        assert settings.skip_sslcert_validation is False

    def test_uri_form(self, monkeypatch):
        monkeypatch.setenv(
            "AIRFLOW_CONN_BAI_URI",
            "backend-ai://AKIAEXAMPLE:s3cr3t%2Fkey@http%3A%2F%2F127.0.0.1%3A8091/?domain=research&request_timeout=5",
        )
        settings = BackendAIHook("bai_uri").settings
        assert settings.endpoint == "http://127.0.0.1:8091"
        assert settings.secret_key == "s3cr3t/key"
        assert settings.domain == "research"
        assert settings.request_timeout == 5.0

    def test_secret_not_in_repr(self, make_connection):
        settings = settings_of(make_connection, **GOOD)
        assert "s3cr3t-canary-key" not in repr(settings)
        assert "s3cr3t-canary-key" not in str(settings)
        assert "s3cr3t-canary-key" not in repr(BackendAIHook("bai_test"))


BAD = [
    pytest.param({"host": None}, "host (Endpoint URL): is required", id="missing-endpoint"),
    pytest.param({"host": "  "}, "host (Endpoint URL): is required", id="blank-endpoint"),
    pytest.param({"login": None}, "login (Access Key): is required", id="missing-access-key"),
    pytest.param({"password": None}, "password (Secret Key): is required", id="missing-secret-key"),
    pytest.param(
        {"password": " key "}, "password (Secret Key): must not start or end", id="secret-whitespace"
    ),
    pytest.param({"host": "ftp://example.com"}, "scheme must be http or https", id="bad-scheme"),
    pytest.param({"host": "https://"}, "must be a URL like", id="no-hostname"),
    pytest.param({"host": "https://ex ample.com"}, "must be a URL like", id="space-in-url"),
    pytest.param({"host": "https://example.com?x=1"}, "must be a URL like", id="query-string"),
    pytest.param({"host": "https://user@example.com"}, "must be a URL like", id="userinfo"),
    pytest.param({"host": "https://example.com:99999"}, "invalid port", id="port-out-of-range"),
    pytest.param(
        {"host": "https://example.com:8443", "port": 9443}, "port: 9443 contradicts", id="two-ports"
    ),
    pytest.param(
        {"extra": {"endpoint_type": "session"}}, "extra.endpoint_type: 'session'", id="session-type"
    ),
    pytest.param(
        {"extra": {"endpoint_type": "websocket"}}, "must be 'api', got 'websocket'", id="unknown-type"
    ),
    pytest.param(
        {"extra": {"domian": "x"}}, "extra.domian: unknown key; accepted keys: endpoint_type", id="typo"
    ),
    pytest.param({"extra": {"group": 3}}, "extra.group: must be a non-empty string", id="group-not-string"),
    pytest.param({"extra": {"skip_sslcert_validation": "maybe"}}, "must be true or false", id="bad-bool"),
    pytest.param(
        {"extra": {"request_timeout": "soon"}}, "request_timeout: must be a positive", id="bad-timeout"
    ),
    pytest.param({"extra": {"request_timeout": 0}}, "request_timeout: must be a positive", id="zero-timeout"),
    pytest.param(
        {"extra": {"request_timeout": "nan"}}, "request_timeout: must be a positive", id="nan-timeout"
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_connections_name_the_field(make_connection, change, message):
    with pytest.raises(BackendAIConnectionConfigError, match="bai_test") as err:
        settings_of(make_connection, **{**GOOD, **change})
    assert message in str(err.value)
    assert "s3cr3t-canary-key" not in str(err.value)


def test_bad_connection_sends_nothing(make_connection, monkeypatch):
    """The config is validated before any SDK object exists, so a bad field never reaches the network."""
    from ai.backend.client import session as sdk_session

    def fail(*args, **kwargs):
        raise AssertionError("a Session was created for an invalid connection")

    monkeypatch.setattr(sdk_session.Session, "__init__", fail)
    hook = BackendAIHook(make_connection("bai_test", **{**GOOD, "host": None}))
    with pytest.raises(BackendAIConnectionConfigError), hook.get_conn():
        pass
    ok, message = hook.test_connection()
    assert not ok
    assert "host (Endpoint URL): is required" in message


def test_extra_must_be_an_object(make_connection):
    conn_id = make_connection("bai_test", **GOOD)
    import os

    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
        {"conn_type": "backend_ai", **GOOD, "extra": "[1]"}
    )
    with pytest.raises(BackendAIConnectionConfigError, match="extra: must be a JSON object"):
        _ = BackendAIHook(conn_id).settings
