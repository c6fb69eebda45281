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
Rules on the system tests: the example Dags under ``tests/system/<provider>/``.

Upstream runs every example Dag as a system test, so each must end the way its test runner expects and be
tagged so the docs and the UI can tell examples apart.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

from provider_conformance.model import PREK, Provider, Rules

if TYPE_CHECKING:
    from collections.abc import Iterator

RULES = Rules()
SYSTEM_TESTS_CHECK = f"{PREK}/check_system_tests.py@1ac4aff4"
GET_TEST_RUN_IMPORT = "from tests_common.test_utils.system_tests import get_test_run"
WATCHER_IMPORT = "from tests_common.test_utils.watcher import watcher"
WATCHER_WIRING = " >> watcher()"


def dag_calls(tree: ast.Module) -> Iterator[ast.Call]:
    """The ``DAG(...)``, ``models.DAG(...)`` and ``dag(...)`` calls of a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id in {"DAG", "dag"}) or (
                isinstance(func, ast.Attribute) and func.attr == "DAG"
            ):
                yield node


@RULES.register("system-tests-get-test-run", SYSTEM_TESTS_CHECK)
def system_tests_get_test_run(p: Provider) -> list[str]:
    """Each example Dag ends by importing get_test_run from tests_common and setting test_run = get_test_run(dag)."""
    pattern = re.compile(
        re.escape(GET_TEST_RUN_IMPORT) + r"(?:  # noqa: E402)?\s+(?:#[^\n]*\s+)*test_run = get_test_run\("
    )
    return [
        f"{p.rel(e)} lacks the tests_common get_test_run tail"
        for e in p.system_examples()
        if not pattern.search(e.read_text())
    ]


@RULES.register("system-tests-watcher", SYSTEM_TESTS_CHECK)
def system_tests_watcher(p: Provider) -> list[str]:
    """An example Dag that imports the tests_common watcher wires it with '>> watcher()' as the last dependency."""
    problems = []
    for example in p.system_examples():
        content = example.read_text()
        if WATCHER_IMPORT not in content:
            continue
        position = content.find(WATCHER_WIRING)
        if position < 0:
            problems.append(f"{p.rel(example)} imports watcher but never wires '>> watcher()'")
        elif re.search(r"<<|>>", content[position + len(WATCHER_WIRING) :]):
            problems.append(f"{p.rel(example)}: dependencies are set after '>> watcher()'")
    return problems


@RULES.register("example-dag-tags", f"{PREK}/check_example_dag_tags.py@1aefd39d")
def example_dag_tags(p: Provider) -> list[str]:
    """Every example Dag has tags=[...] written inline and containing "example"."""
    problems = []
    for example in p.system_examples():
        for call in dag_calls(p.tree(example)):
            tags = next((k.value for k in call.keywords if k.arg == "tags"), None)
            literal = [e.value for e in getattr(tags, "elts", []) if isinstance(e, ast.Constant)]
            if not isinstance(tags, (ast.List, ast.Tuple)) or "example" not in literal:
                problems.append(f"{p.rel(example)}:{call.lineno} Dag lacks an inline 'example' tag")
    return problems
