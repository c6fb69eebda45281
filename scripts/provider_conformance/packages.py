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
Rules on the build file and the package layout: pyproject.toml, the ``__init__`` files of ``src/`` and
``tests/``, and the folders ``tests/`` may hold.

A provider inside apache/airflow shares the namespace levels ``airflow``, ``airflow.providers`` (and, for
``backend.ai``, ``airflow.providers.backend``) with every other provider, so those levels extend
``__path__`` with pkgutil instead of owning it.
"""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING

from provider_conformance.model import PREK, Provider, Rules

if TYPE_CHECKING:
    from pathlib import Path

RULES = Rules()
INIT_CHECK = f"{PREK}/check_providers_subpackages_all_have_init.py@0a90b7cf"
PKGUTIL_LINE = '__path__ = __import__("pkgutil").extend_path(__path__, __name__)'
ALLOWED_TEST_KINDS = {"unit", "integration", "system"}
SDIST_INCLUDES = [
    "docs/",
    "provider.yaml",
    "src/airflow/__init__.py",
    "src/airflow/providers/__init__.py",
    "tests/",
]


def directories_below(base: Path) -> list[Path]:
    """Every directory below ``base``, sorted, leaving out ``__pycache__``."""
    if not base.is_dir():
        return []
    return [
        d for d in sorted(base.rglob("*")) if d.is_dir() and "__pycache__" not in d.relative_to(base).parts
    ]


def init_file_problems(p: Provider, directory: Path, namespace: bool) -> list[str]:
    """``directory`` has an ``__init__.py``, which extends ``__path__`` with pkgutil if ``namespace``."""
    init = directory / "__init__.py"
    if not init.is_file():
        return [f"{p.rel(init)} is missing"]
    if namespace and PKGUTIL_LINE not in init.read_text():
        return [f"{p.rel(init)} lacks the pkgutil __path__ extension"]
    return []


@RULES.register(
    "pyproject-build-files",
    f"{PREK}/update_providers_build_files.py@0bfcdf56 + templates/pyproject_TEMPLATE.toml.jinja2@8d41448c (as in providers/ray/pyproject.toml@dbe1ffa3)",
)
def pyproject_build_files(p: Provider) -> list[str]:
    """pyproject.toml has the shape of the generated provider pyproject (name, version, entry point, sdist)."""
    project_file = p.root / "pyproject.toml"
    if not project_file.is_file():
        return ["pyproject.toml is missing"]
    data = tomllib.loads(project_file.read_text())
    project, flit = data.get("project", {}), data.get("tool", {}).get("flit", {})
    problems = []
    if project.get("name") != p.yaml["package-name"]:
        problems.append(f"project.name is {project.get('name')!r}")
    if project.get("version") != p.version:
        problems.append(f"project.version is {project.get('version')!r}, provider.yaml says {p.version}")
    entry = project.get("entry-points", {}).get("apache_airflow_provider", {}).get("provider_info")
    if entry != f"{p.package}.get_provider_info:get_provider_info":
        problems.append(f"provider_info entry point is {entry!r}")
    if flit.get("module", {}).get("name") != p.package:
        problems.append(f"tool.flit.module.name is {flit.get('module', {}).get('name')!r}")
    missing = [item for item in SDIST_INCLUDES if item not in flit.get("sdist", {}).get("include", [])]
    if missing:
        problems.append(f"tool.flit.sdist.include lacks {missing}")
    if sorted(project.get("license-files", [])) != ["LICENSE", "NOTICE"]:
        problems.append("license-files is not ['LICENSE', 'NOTICE']")
    return problems


@RULES.register(
    "namespace-src-init", f"{INIT_CHECK} + common_prek_utils.py@1234fd0c (KNOWN_SECOND_LEVEL_PATHS)"
)
def namespace_src_init(p: Provider) -> list[str]:
    """Every package dir under src/airflow has __init__.py; the shared levels extend __path__ with pkgutil."""
    base = p.root / "src" / "airflow"
    shared = {base, base / "providers"}
    if len(p.id_parts) > 1:  # "backend" of backend.ai is a second-level namespace like "apache" or "dbt"
        shared.add(base / "providers" / p.id_parts[0])
    return [
        problem
        for directory in [base, *directories_below(base)]
        for problem in init_file_problems(p, directory, namespace=directory in shared)
    ]


@RULES.register("tests-layout", f"{INIT_CHECK} (ALLOWED_SUB_FOLDERS_OF_TESTS)")
def tests_layout(p: Provider) -> list[str]:
    """tests/ holds only unit/, integration/ and system/ folders (plus conftest.py and __init__.py)."""
    tests = p.root / "tests"
    problems = []
    for entry in sorted(tests.iterdir()) if tests.is_dir() else []:
        if entry.name == "__pycache__":
            continue
        if entry.is_dir() and entry.name not in ALLOWED_TEST_KINDS:
            problems.append(f"tests/{entry.name}/ is not one of {sorted(ALLOWED_TEST_KINDS)}")
        elif entry.is_file() and entry.name not in {"conftest.py", "__init__.py"}:
            problems.append(f"tests/{entry.name} should live in a unit/, integration/ or system/ folder")
    return problems


@RULES.register("tests-init-files", f"{INIT_CHECK} + check_init_in_tests.py@1ac4aff4")
def tests_init_files(p: Provider) -> list[str]:
    """Test packages below tests/<kind>/ have __init__.py; tests/<kind>/backend/ extends __path__ (pkgutil)."""
    tests = p.root / "tests"
    problems = []
    for directory in directories_below(tests):
        parts = directory.relative_to(tests).parts
        if len(parts) < 2 or parts[0] not in ALLOWED_TEST_KINDS:
            continue
        # tests/<kind>/backend is shared by every provider whose id starts with "backend.": a namespace.
        shared = len(parts) == 2 and len(p.id_parts) > 1 and parts[1] == p.id_parts[0]
        problems += init_file_problems(p, directory, namespace=shared)
    return problems
