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
The package's layers import downwards only, even under ``TYPE_CHECKING``.

From the bottom: ``_session`` and ``exceptions`` (what a session's state means, no I/O), ``_sdk`` (everything that touches
backend.ai-client), ``_watch`` (the watch step, its loops, the event hub), the hook, the operators' shared
parts, and the public operators, sensors and triggers. A module may import its own layer and the ones below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "airflow.providers.backend.ai"
SRC = Path(__file__).resolve().parents[4] / "src" / "airflow" / "providers" / "backend" / "ai"
#: Each top-level part of the package and its layer (higher layers may import lower ones).
LAYERS = {
    "version_compat": 0,
    "get_provider_info": 0,
    "_session": 1,
    "exceptions": 1,  # pure too: the failures carry the session's facts
    "retry_policy": 1,  # public, but pure: it reads the failures only
    "_python_task": 1,  # pure: the in-session runner, the command it travels in, the frame it answers with
    "_sdk": 2,
    "_watch": 3,
    "hooks": 4,
    "links": 4,
    "_connection_form": 3,
    "_base_operator": 5,
    "_resumable": 5,
    "operators": 6,
    "sensors": 6,
    "triggers": 6,
    "decorators": 7,  # @task.backend_ai builds on the run-batch operator
}
#: Imports that go up on purpose: the operators and the sensor defer to the trigger at run time.
DEFERRAL = {("operators", "triggers"), ("sensors", "triggers")}


def imported_parts(path: Path) -> set[str]:
    """The top-level parts of this package that ``path`` imports, anywhere in the file."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
    prefix = PACKAGE + "."
    return {module[len(prefix) :].split(".")[0] for module in modules if module.startswith(prefix)}


def part_of(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


MODULES = sorted(p for p in SRC.rglob("*.py") if part_of(p) != "__init__")


def test_every_part_has_a_layer():
    assert {part_of(p) for p in MODULES} == set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_down_only(path: Path):
    own = part_of(path)
    upward = {
        part
        for part in imported_parts(path)
        if LAYERS[part] > LAYERS[own] or (LAYERS[part] == LAYERS[own] and part != own and LAYERS[own] >= 4)
    }
    assert upward <= {part for (low, part) in DEFERRAL if low == own}, f"{own} imports {upward}"


def test_the_check_sees_an_upward_import(tmp_path: Path):
    """The check has teeth: a watch module importing the hook, only for type checking, is caught."""
    module = tmp_path / "bad.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        f"    from {PACKAGE}.hooks.backend_ai import BackendAIHook\n"
    )
    assert imported_parts(module) == {"hooks"}
    assert LAYERS["hooks"] > LAYERS["_watch"]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_modules_stay_readable_in_one_pass(path: Path):
    """A module over 450 lines is a sign it does more than one job: split it by role."""
    assert len(path.read_text().splitlines()) <= 450
