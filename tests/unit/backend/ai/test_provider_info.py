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
"""provider.yaml, the generated provider info, and Airflow's discovery of the provider agree."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from tests_common.test_utils.version_compat import AIRFLOW_V_3_0_PLUS

from airflow.providers.backend.ai.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[4]
PACKAGE = "apache-airflow-providers-backend-ai"
MODULE_PREFIX = "airflow.providers.backend.ai."


def _airflow_schema(name: str) -> dict:
    spec = importlib.util.find_spec("airflow")
    assert spec is not None
    assert spec.origin is not None
    return json.loads((Path(spec.origin).parent / name).read_text())


def _provider_yaml() -> dict:
    return yaml.safe_load((ROOT / "provider.yaml").read_text())


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "gen_provider_info", ROOT / "scripts" / "gen_provider_info.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="Airflow 2's provider.yaml schema predates conn-fields")
def test_provider_yaml_matches_airflow_schema():
    jsonschema.validate(_provider_yaml(), _airflow_schema("provider.yaml.schema.json"))


def test_provider_info_matches_installed_runtime_schema():
    jsonschema.validate(get_provider_info(), _airflow_schema("provider_info.schema.json"))


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="the file is generated with Airflow 3's runtime schema")
def test_generated_file_is_in_sync_with_provider_yaml():
    generator = _load_generator()
    committed = (ROOT / "src/airflow/providers/backend/ai/get_provider_info.py").read_text()
    assert committed == generator.render(), "run: .venv-airflow3/bin/python scripts/gen_provider_info.py"


def test_provider_info_is_provider_yaml_minus_release_keys():
    data = _provider_yaml()
    dropped = {"state", "lifecycle", "source-date-epoch", "versions"}
    assert get_provider_info() == {key: value for key, value in data.items() if key not in dropped}


def test_package_name_matches_distribution_and_version():
    info = get_provider_info()
    assert info["package-name"] == PACKAGE
    assert importlib.metadata.version(PACKAGE) == _provider_yaml()["versions"][0]


def test_every_declared_module_and_class_exists_under_the_required_prefix():
    info = get_provider_info()
    modules = [
        m
        for kind in ("operators", "sensors", "hooks", "triggers")
        for e in info[kind]
        for m in e["python-modules"]
    ]
    classes = [c["hook-class-name"] for c in info["connection-types"]] + info.get("extra-links", [])
    for module in modules:
        assert module.startswith(MODULE_PREFIX)
        importlib.import_module(module)
    for path in classes:
        assert path.startswith(MODULE_PREFIX)
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path


def test_hook_form_methods_mirror_the_declarative_form():
    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

    (conn_type,) = get_provider_info()["connection-types"]
    behaviour = BackendAIHook.get_ui_field_behaviour()
    assert behaviour["hidden_fields"] == ["schema", "port"]
    assert behaviour["relabeling"] == {
        "host": "Endpoint URL",
        "login": "Access Key",
        "password": "Secret Key",
    }
    assert set(behaviour["placeholders"]) == {"host", "login", "password"}
    assert set(conn_type["conn-fields"]) == {
        "endpoint_type",
        "domain",
        "group",
        "skip_sslcert_validation",
        "request_timeout",
        "webui_url",
    }
    jsonschema.validate(behaviour, _airflow_schema("customized_form_field_behaviours.schema.json"))


@pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="the Flask form exists on Airflow 2 only")
def test_airflow2_form_widgets():
    from airflow.www.app import create_app
    from wtforms import BooleanField, StringField

    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

    with create_app(testing=True).app_context():
        widgets = BackendAIHook.get_connection_form_widgets()
    assert (
        isinstance(widgets["skip_sslcert_validation"], type(BooleanField("x")))
        or widgets["skip_sslcert_validation"].field_class is BooleanField
    )
    assert all(w.field_class in (StringField, BooleanField) for w in widgets.values()), (
        "Airflow 2 accepts only String/Boolean/Integer/Password fields"
    )


def _airflow_cli(*args: str) -> str:
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_airflow_cli_discovers_the_provider():
    assert PACKAGE in _airflow_cli("providers", "list", "--output", "plain")
    hooks = _airflow_cli("providers", "hooks", "--output", "plain")
    (line,) = [line for line in hooks.splitlines() if line.startswith("backend_ai")]
    assert "airflow.providers.backend.ai.hooks.backend_ai.BackendAIHook" in line
    assert "backend_ai_conn_id" in line
    (details,) = json.loads(_airflow_cli("providers", "get", PACKAGE, "--full", "--output", "json"))
    assert details["package-name"] == PACKAGE
    assert details["connection-types"][0]["hook-class-name"].endswith("BackendAIHook")


def test_the_form_methods_are_the_hooks_own():
    """Airflow 2's ProvidersManager looks for them in the hook class's own ``__dict__`` (inherited ones are ignored)."""
    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

    assert {"get_ui_field_behaviour", "get_connection_form_widgets"} <= set(BackendAIHook.__dict__)
    assert BackendAIHook.get_ui_field_behaviour()["relabeling"]["host"] == "Endpoint URL"
