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
Rules on what provider code (and, for two of them, test code) imports, raises, warns with and logs.

Upstream keeps providers on the public Task SDK and compat surfaces, so that they keep working as Airflow
core moves; these rules are its prek hooks over the provider's ``src/`` and ``tests/``.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

from provider_conformance.model import PREK, Provider, Rules, name_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

RULES = Rules()
PROVIDERS_PREK_CONFIG = "providers/.pre-commit-config.yaml@25844aae"
VERSION_FLAGS_MODULE = "tests_common.test_utils.version_compat"
LOG_RECEIVERS = {"log", "logger", "logging"}
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}


def imports_from(p: Provider, paths: Iterable[Path]) -> Iterator[tuple[Path, ast.ImportFrom]]:
    """Every ``from x import y`` statement of ``paths``."""
    return ((path, node) for path, node in p.nodes(paths) if isinstance(node, ast.ImportFrom))


@RULES.register("base-operator-import", f"{PROVIDERS_PREK_CONFIG} (check-base-operator-usage)")
def base_operator_import(p: Provider) -> list[str]:
    """Provider code does not import BaseOperator from airflow.models.baseoperator."""
    pattern = re.compile(r"from airflow\.models\.baseoperator import.* BaseOperator")
    return [
        f"{p.rel(source)}:{number}" for source, number, line in p.lines(p.src_files()) if pattern.search(line)
    ]


@RULES.register(
    "deprecation-warnings",
    f"{PROVIDERS_PREK_CONFIG} (check-no-airflow-deprecation-in-providers) + {PREK}/check_deprecations.py@1ac4aff4",
)
def deprecation_warnings(p: Provider) -> list[str]:
    """Provider code warns with AirflowProviderDeprecationWarning: no bare DeprecationWarning, no category-less @deprecated."""
    problems = []
    for source, node in p.nodes(p.src_files()):
        if isinstance(node, ast.Name) and node.id in {"DeprecationWarning", "PendingDeprecationWarning"}:
            problems.append(f"{p.rel(source)}:{node.lineno} uses {node.id}")
        for decorator in getattr(node, "decorator_list", []):
            call = decorator if isinstance(decorator, ast.Call) else None
            if name_of(call.func if call else decorator) != "deprecated":
                continue
            category = next((k.value for k in call.keywords if k.arg == "category"), None) if call else None
            if name_of(category) != "AirflowProviderDeprecationWarning":
                problems.append(
                    f"{p.rel(source)}:{decorator.lineno} @deprecated without AirflowProviderDeprecationWarning"
                )
    return problems


@RULES.register("conf-import", f"{PREK}/check_conf_import_in_providers.py@9a7ff409")
def conf_import(p: Provider) -> list[str]:
    """conf comes from airflow.providers.common.compat.sdk, not airflow.configuration or airflow.sdk.configuration."""
    forbidden = {"airflow.configuration", "airflow.sdk.configuration"}
    return [
        f"{p.rel(source)}:{node.lineno} imports conf from {node.module}"
        for source, node in imports_from(p, p.src_files())
        if node.module in forbidden
        for alias in node.names
        if alias.name == "conf"
    ]


@RULES.register(
    "version-compat-own-provider",
    f"{PREK}/check_provider_version_compat.py@4d845fbb + scripts/in_container/run_check_imports_in_providers.py@418ea6bb",
)
def version_compat_own_provider(p: Provider) -> list[str]:
    """Provider code takes AIRFLOW_V_* flags from its own version_compat module only."""
    own = f"{p.package}.version_compat"
    return [
        f"{p.rel(source)}:{node.lineno} imports from {node.module}"
        for source, node in imports_from(p, p.src_files())
        if (node.module or "").endswith("version_compat") and node.module != own
    ]


@RULES.register("no-raise-airflow-exception", f"{PREK}/check_new_airflow_exception_usage.py@50683381")
def no_raise_airflow_exception(p: Provider) -> list[str]:
    """Provider code raises specific exceptions, not bare AirflowException (upstream allows none in new files)."""
    return [
        f"{p.rel(source)}:{number}"
        for source, number, line in p.lines(p.src_files())
        if not line.strip().startswith("#") and re.search(r"raise\s+AirflowException\b", line)
    ]


@RULES.register("lazy-logging", f"{PREK}/check_lazy_logging.py@1ac4aff4")
def lazy_logging(p: Provider) -> list[str]:
    """Log calls use %-style arguments, not f-strings."""
    return [
        f"{p.rel(source)}:{node.lineno} logs an f-string"
        for source, node in p.nodes([*p.src_files(), *p.test_files()])
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.args
        and name_of(node.func.value) in LOG_RECEIVERS
        and node.func.attr in LOG_METHODS
        and isinstance(node.args[0], ast.JoinedStr)
    ]


@RULES.register("tests-version-flags-import", f"{PREK}/check_airflow_v_imports_in_tests.py@4d845fbb")
def tests_version_flags_import(p: Provider) -> list[str]:
    """Tests import AIRFLOW_V_* flags from tests_common.test_utils.version_compat, not from the provider."""
    return [
        f"{p.rel(source)}:{node.lineno} imports {', '.join(a.name for a in node.names)} from {node.module}"
        for source, node in imports_from(p, p.test_files())
        if any(a.name.startswith("AIRFLOW_V_") for a in node.names) and node.module != VERSION_FLAGS_MODULE
    ]
