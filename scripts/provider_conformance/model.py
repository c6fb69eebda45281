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
What every rule works on: the provider directory (``Provider``), and the ``Rule`` records the rules make.

A rule is a function that takes a ``Provider`` and returns its problems (an empty list is a PASS). Each area
module collects its rules in a ``Rules`` list with ``@RULES.register(id, upstream)``; ``upstream`` names the
apache/airflow file and the commit the rule was read at, so it can be refreshed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

DEFAULT_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_PREFIX = "apache-airflow-providers-"
# Directories no rule looks into: virtualenvs, build output, caches.
SKIPPED_DIRS = {".git", "__pycache__", "_build", "_api", "build", "dist", "artifacts", "node_modules"}
# Upstream references several rules share: the prek hooks' folder and the provider.yaml check.
PREK = "scripts/ci/prek"
YAML_CHECK = "scripts/in_container/run_provider_yaml_files_check.py@018fb69e"


@dataclass
class Provider:
    """The files of one provider directory and the facts derived from provider.yaml, read lazily."""

    root: Path

    @cached_property
    def yaml(self) -> dict[str, Any]:
        return yaml.safe_load((self.root / "provider.yaml").read_text())

    @cached_property
    def provider_id(self) -> str:
        """``backend.ai`` for ``apache-airflow-providers-backend-ai``."""
        return self.yaml["package-name"].removeprefix(PACKAGE_PREFIX).replace("-", ".")

    @property
    def id_parts(self) -> list[str]:
        return self.provider_id.split(".")

    @property
    def version(self) -> str:
        """The version being prepared: the first entry of provider.yaml's ``versions``."""
        return str(self.yaml["versions"][0])

    @property
    def package(self) -> str:
        return f"airflow.providers.{self.provider_id}"

    @property
    def package_dir(self) -> Path:
        return self.root / "src" / "airflow" / "providers" / Path(*self.id_parts)

    @property
    def docs(self) -> Path:
        return self.root / "docs"

    @property
    def system_tests_dir(self) -> Path:
        return self.root / "tests" / "system" / Path(*self.id_parts)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def text(self, relative: str) -> str:
        """The text of a file of the provider, or "" when it does not exist."""
        path = self.root / relative
        return path.read_text() if path.is_file() else ""

    # -- Which files --------------------------------------------------------------------------------------

    def files(self, base: Path, pattern: str = "*.py") -> Iterator[Path]:
        """Files under ``base`` matching ``pattern``, skipping virtualenvs, caches and build output."""
        if not base.is_dir():
            return
        for path in sorted(base.rglob(pattern)):
            parts = path.relative_to(self.root).parts
            if any(part in SKIPPED_DIRS or part.startswith(".venv") for part in parts):
                continue
            if path.is_file():
                yield path

    def src_files(self) -> Iterator[Path]:
        return self.files(self.package_dir)

    def sources_in(self, folders: set[str]) -> Iterator[Path]:
        """The package's source files inside any of ``folders`` (such as operators/ or sensors/)."""
        return (path for path in self.src_files() if folders & set(path.relative_to(self.package_dir).parts))

    def test_files(self) -> Iterator[Path]:
        return self.files(self.root / "tests")

    def system_examples(self) -> Iterator[Path]:
        return self.files(self.system_tests_dir, "example_*.py")

    def module_file(self, module: str) -> Path | None:
        """The source file of a dotted module under ``src/``, or None."""
        base = self.root / "src" / Path(*module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def file_module(self, path: Path) -> str:
        return ".".join(path.relative_to(self.root / "src").with_suffix("").parts)

    # -- What is in them: the walks most rules make ---------------------------------------------------------

    def tree(self, path: Path) -> ast.Module:
        return ast.parse(path.read_text(), filename=str(path))

    def lines(self, paths: Iterable[Path]) -> Iterator[tuple[Path, int, str]]:
        """(file, line number from 1, line) of every line of ``paths``."""
        for path in paths:
            for number, line in enumerate(path.read_text().splitlines(), 1):
                yield path, number, line

    def nodes(self, paths: Iterable[Path]) -> Iterator[tuple[Path, ast.AST]]:
        """(file, node) of every syntax node of the Python files ``paths``."""
        for path in paths:
            for node in ast.walk(self.tree(path)):
                yield path, node


def classes(tree: ast.Module) -> Iterator[ast.ClassDef]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef))


def name_of(node: ast.AST | None) -> str:
    """The last name of a reference: ``x`` for ``x`` and for ``a.b.x``; "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


# A rule's check: the problems it finds in a provider directory; none is a PASS.
type Check = Callable[[Provider], list[str]]


@dataclass(frozen=True)
class Rule:
    """One conformance rule: its id, its check, and the upstream file@commit it follows."""

    id: str
    check: Check
    upstream: str

    @property
    def summary(self) -> str:
        """The first line of the check's docstring: what the rule asks for."""
        return (self.check.__doc__ or "").strip().splitlines()[0]


class Rules(list[Rule]):
    """The rules of one area, in the order they run."""

    def register(self, rule_id: str, upstream: str) -> Callable[[Check], Check]:
        """Decorator: the function below is the check of rule ``rule_id``, written from ``upstream``."""

        def add(check: Check) -> Check:
            self.append(Rule(rule_id, check, upstream))
            return check

        return add


@dataclass(frozen=True)
class Result:
    """What one rule found in one provider directory."""

    rule: Rule
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems
