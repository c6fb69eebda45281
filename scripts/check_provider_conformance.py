#!/usr/bin/env python
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
Check this repository against the rules apache/airflow applies to one provider directory.

apache/airflow checks every provider on each pull request: prek hooks under ``scripts/ci/prek/``,
``scripts/in_container/run_provider_yaml_files_check.py`` and the docs build's lint checks in
``devel-common/src/sphinx_exts/``. This script applies the rules that concern one provider directory, as if
this repository sat at ``providers/backend/ai/``. It is written from those rules, not copied from the
scripts: each rule names the upstream file and the commit it was read at, so it can be refreshed.

Layout: small helpers (``Provider``), then one function per rule, then ``RULES`` (the registry), then
``main``. A rule function takes a ``Provider`` and returns a list of problems; an empty list is a PASS.

Usage::

    .venv-airflow3/bin/python scripts/check_provider_conformance.py [--root DIR] [--rule ID ...]
        [--report-only] [--list]

It prints one line per rule (id, PASS/FAIL, what it found, the upstream file@commit) and exits 1 when a
rule fails, unless ``--report-only`` is given.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

DEFAULT_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_PREFIX = "apache-airflow-providers-"
LICENCE_MARK = "Licensed to the Apache Software Foundation (ASF)"
PKGUTIL_LINE = '__path__ = __import__("pkgutil").extend_path(__path__, __name__)'
ALLOWED_TEST_KINDS = {"unit", "integration", "system"}
# Directories no rule looks into: virtualenvs, build output, caches.
SKIPPED_DIRS = {".git", "__pycache__", "_build", "_api", "build", "dist", "artifacts", "node_modules"}
MODULE_KINDS = ("hooks", "operators", "sensors", "triggers", "bundles")
GENERATED_REMAINDER = (
    ".. THE REMAINDER OF THE FILE IS AUTOMATICALLY GENERATED. IT WILL BE OVERWRITTEN AT RELEASE TIME!"
)
DEFERRABLE_DEFAULT = "conf.getboolean('operators', 'default_deferrable', fallback=False)"
VERSION_FLAGS_MODULE = "tests_common.test_utils.version_compat"
GET_TEST_RUN_IMPORT = "from tests_common.test_utils.system_tests import get_test_run"
WATCHER_IMPORT = "from tests_common.test_utils.watcher import watcher"
SDIST_INCLUDES = [
    "docs/",
    "provider.yaml",
    "src/airflow/__init__.py",
    "src/airflow/providers/__init__.py",
    "tests/",
]
LICENSED_SUFFIXES = {".py", ".pyi", ".rst", ".yaml", ".yml", ".toml", ".sh", ".bash", ".md", ".cfg", ".ini"}
LOG_RECEIVERS = {"log", "logger", "logging"}
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}


# --------------------------------------------------------------------------------------------------------
# The provider directory, read lazily
# --------------------------------------------------------------------------------------------------------


@dataclass
class Provider:
    """The files of one provider directory and the facts derived from provider.yaml."""

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
        path = self.root / relative
        return path.read_text() if path.is_file() else ""

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

    def tree(self, path: Path) -> ast.Module:
        return ast.parse(path.read_text(), filename=str(path))


def installed_airflow_file(name: str) -> Path | None:
    """A data file shipped in the installed apache-airflow-core (found without importing Airflow)."""
    spec = importlib.util.find_spec("airflow")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / name
    return path if path.is_file() else None


def top_level_names(tree: ast.Module) -> set[str]:
    """Names a module defines at top level (classes, functions, assignments)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def classes(tree: ast.Module) -> Iterator[ast.ClassDef]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef))


def base_names(cls: ast.ClassDef) -> list[str]:
    names = []
    for base in cls.bases:
        node = base.value if isinstance(base, ast.Subscript) else base
        if isinstance(node, ast.Attribute):
            names.append(node.attr)
        elif isinstance(node, ast.Name):
            names.append(node.id)
    return names


def is_operator_class(cls: ast.ClassDef) -> bool:
    """The upstream heuristic: a direct base whose name ends in BaseOperator or BaseSensorOperator."""
    return any(name.endswith(("BaseOperator", "BaseSensorOperator")) for name in base_names(cls))


def template_fields(cls: ast.ClassDef) -> list[str]:
    for node in cls.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id == "template_fields" and isinstance(value, ast.Tuple):
            return [
                elt.value
                for elt in value.elts
                if isinstance(elt, ast.Constant) and isinstance(elt.value, str)
            ]
    return []


def constructor(cls: ast.ClassDef) -> ast.FunctionDef | None:
    return next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)


def self_attribute(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def rst_directives(text: str, name: str) -> Iterator[tuple[int, str, dict[str, str]]]:
    """(line number, argument, options) of each ``.. name::`` directive in an RST text."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = re.match(rf"^(\s*)\.\. {re.escape(name)}::\s*(.*)$", line)
        if not match:
            continue
        options: dict[str, str] = {}
        for option_line in lines[index + 1 :]:
            option = re.match(r"^\s+:([\w-]+):\s*(.*)$", option_line)
            if not option:
                break
            options[option.group(1)] = option.group(2).strip()
        yield index + 1, match.group(2).strip(), options


# --------------------------------------------------------------------------------------------------------
# Rules: provider.yaml and the files generated from it
# --------------------------------------------------------------------------------------------------------


def provider_yaml_schema(p: Provider) -> list[str]:
    """provider.yaml validates against the provider.yaml schema shipped with apache-airflow-core."""
    import jsonschema

    schema_file = installed_airflow_file("provider.yaml.schema.json")
    if schema_file is None:
        return ["apache-airflow-core's provider.yaml.schema.json not found: run with .venv-airflow3"]
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(p.yaml)
    ]


def provider_yaml_modules_exist(p: Provider) -> list[str]:
    """Every module listed under hooks/operators/sensors/triggers/bundles is in this package and exists."""
    problems = []
    for kind in MODULE_KINDS:
        for entry in p.yaml.get(kind, []):
            for module in entry.get("python-modules", []):
                if not module.startswith(p.package + "."):
                    problems.append(f"{kind}: {module} is outside {p.package}")
                elif p.module_file(module) is None:
                    problems.append(f"{kind}: {module} has no source file")
    return problems


def provider_yaml_modules_complete(p: Provider) -> list[str]:
    """The modules on disk under hooks/, operators/, sensors/, triggers/ are exactly those listed."""
    problems = []
    for kind in MODULE_KINDS:
        listed = {m for entry in p.yaml.get(kind, []) for m in entry.get("python-modules", [])}
        on_disk = {
            p.file_module(path)
            for path in p.src_files()
            if kind in path.relative_to(p.package_dir).parts[:-1] and path.name != "__init__.py"
        }
        problems += [f"{kind}: {m} exists but is not listed" for m in sorted(on_disk - listed)]
        problems += [f"{kind}: {m} is listed but does not exist" for m in sorted(listed - on_disk)]
    return problems


def provider_yaml_classes_exist(p: Provider) -> list[str]:
    """Class paths (connection hook classes, extra links, plugins, ...) are in this package and defined."""
    paths = [c["hook-class-name"] for c in p.yaml.get("connection-types", [])]
    paths += p.yaml.get("extra-links", []) + p.yaml.get("notifications", []) + p.yaml.get("executors", [])
    paths += p.yaml.get("queues", []) + [plugin["plugin-class"] for plugin in p.yaml.get("plugins", [])]
    problems = []
    for path in paths:
        module, _, name = path.rpartition(".")
        source = p.module_file(module)
        if not path.startswith(p.package + "."):
            problems.append(f"{path} is outside {p.package}")
        elif source is None or name not in top_level_names(p.tree(source)):
            problems.append(f"{path} is not defined")
    return problems


def provider_yaml_integrations(p: Provider) -> list[str]:
    """Integration names are unique, and every module group names a declared integration once."""
    declared = [i["integration-name"] for i in p.yaml.get("integrations", [])]
    problems = [f"integration {n!r} declared {c} times" for n, c in Counter(declared).items() if c > 1]
    for kind in MODULE_KINDS:
        names = [entry.get("integration-name", "") for entry in p.yaml.get(kind, [])]
        problems += [
            f"{kind}: integration {n!r} appears {c} times" for n, c in Counter(names).items() if c > 1
        ]
        problems += [f"{kind}: integration {n!r} is not declared" for n in names if n not in declared]
    return problems


def provider_yaml_how_to_guides(p: Provider) -> list[str]:
    """The how-to guides listed in provider.yaml are exactly the docs under operators/ sensors/ transfer/."""
    prefix = f"/docs/{p.yaml['package-name']}/"
    listed = {g for i in p.yaml.get("integrations", []) for g in i.get("how-to-guide", [])}
    guides = []
    for kind in ("operators", "sensors", "transfer"):
        guides += list(p.files(p.docs / kind, "*.rst"))
        if (p.docs / f"{kind}.rst").is_file():
            guides.append(p.docs / f"{kind}.rst")
    on_disk = {prefix + g.relative_to(p.docs).as_posix() for g in guides if g.name != "index.rst"}
    problems = [f"{g} is not listed as a how-to-guide" for g in sorted(on_disk - listed)]
    problems += [f"how-to-guide {g} does not exist" for g in sorted(listed - on_disk)]
    logos = {i["logo"] for i in p.yaml.get("integrations", []) if "logo" in i}
    logo_files = {f"/docs/integration-logos/{f.name}" for f in p.files(p.docs / "integration-logos", "*")}
    problems += [f"logo {logo} does not exist" for logo in sorted(logos - logo_files)]
    problems += [f"logo {logo} is not listed" for logo in sorted(logo_files - logos)]
    return problems


def get_provider_info_in_sync(p: Provider) -> list[str]:
    """get_provider_info() returns provider.yaml restricted to the keys of the runtime schema."""
    schema_file = installed_airflow_file("provider_info.schema.json")
    source = p.package_dir / "get_provider_info.py"
    if schema_file is None:
        return ["apache-airflow-core's provider_info.schema.json not found: run with .venv-airflow3"]
    if not source.is_file():
        return [f"{p.rel(source)} is missing"]
    namespace: dict[str, Any] = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)
    keys = json.loads(schema_file.read_text())["properties"]
    expected = {key: value for key, value in p.yaml.items() if key in keys}
    actual = namespace["get_provider_info"]()
    differing = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
    return [f"{p.rel(source)} differs from provider.yaml in: {', '.join(differing)}"] if differing else []


def provider_init_version(p: Provider) -> list[str]:
    """The package __init__ carries __version__ == provider.yaml versions[0] and the minimum-Airflow guard."""
    init = p.package_dir / "__init__.py"
    if not init.is_file():
        return [f"{p.rel(init)} is missing"]
    version = None
    for node in p.tree(init).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__version__" for t in node.targets):
            version = getattr(node.value, "value", None)
    problems = []
    if version != str(p.yaml["versions"][0]):
        problems.append(f"__version__ is {version!r}, provider.yaml says {p.yaml['versions'][0]!r}")
    if "needs Apache Airflow" not in init.read_text():
        problems.append("no minimum-Airflow RuntimeError guard")
    return problems


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
    if project.get("version") != str(p.yaml["versions"][0]):
        problems.append(
            f"project.version is {project.get('version')!r}, provider.yaml says {p.yaml['versions'][0]}"
        )
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


# --------------------------------------------------------------------------------------------------------
# Rules: packages, __init__ files and the test layout
# --------------------------------------------------------------------------------------------------------


def namespace_src_init(p: Provider) -> list[str]:
    """Every package dir under src/airflow has __init__.py; the shared levels extend __path__ with pkgutil."""
    base = p.root / "src" / "airflow"
    shared = {base, base / "providers"}
    if len(p.id_parts) > 1:  # "backend" of backend.ai is a second-level namespace like "apache" or "dbt"
        shared.add(base / "providers" / p.id_parts[0])
    problems = []
    directories = [base] + [d for d in sorted(base.rglob("*")) if d.is_dir() and "__pycache__" not in d.parts]
    for directory in directories:
        init = directory / "__init__.py"
        if not init.is_file():
            problems.append(f"{p.rel(init)} is missing")
        elif directory in shared and PKGUTIL_LINE not in init.read_text():
            problems.append(f"{p.rel(init)} lacks the pkgutil __path__ extension")
    return problems


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


def shared_level(p: Provider, parts: tuple[str, ...]) -> bool:
    """tests/<kind>/backend is shared by every provider whose id starts with backend.: a namespace."""
    return len(parts) == 2 and len(p.id_parts) > 1 and parts[1] == p.id_parts[0]


def tests_init_files(p: Provider) -> list[str]:
    """Test packages below tests/<kind>/ have __init__.py; tests/<kind>/backend/ extends __path__ (pkgutil)."""
    tests = p.root / "tests"
    problems = []
    for directory in sorted(d for d in tests.rglob("*") if d.is_dir()) if tests.is_dir() else []:
        parts = directory.relative_to(tests).parts
        if len(parts) < 2 or "__pycache__" in parts or parts[0] not in ALLOWED_TEST_KINDS:
            continue
        init = directory / "__init__.py"
        if not init.is_file():
            problems.append(f"{p.rel(init)} is missing")
        elif shared_level(p, parts) and PKGUTIL_LINE not in init.read_text():
            problems.append(f"{p.rel(init)} lacks the pkgutil __path__ extension")
    return problems


# --------------------------------------------------------------------------------------------------------
# Rules: documentation
# --------------------------------------------------------------------------------------------------------

REQUIRED_DOCS = (
    "index.rst",
    "changelog.rst",
    "commits.rst",
    "security.rst",
    "installing-providers-from-sources.rst",
)
INDEX_LINKS = (
    "Changelog <changelog>",
    "Security <security>",
    "Detailed list of commits <commits>",
    "Installing from sources <installing-providers-from-sources>",
)


def docs_required_files(p: Provider) -> list[str]:
    """docs/ has index, changelog, commits, security and installing-providers-from-sources."""
    return [f"docs/{name} is missing" for name in REQUIRED_DOCS if not (p.docs / name).is_file()]


def docs_index_links(p: Provider) -> list[str]:
    """docs/index.rst links the required pages with the titles upstream expects."""
    index = p.text("docs/index.rst")
    return [f"docs/index.rst lacks the entry '{link}'" for link in INDEX_LINKS if link not in index]


def docs_pypi_link(p: Provider) -> list[str]:
    """docs/index.rst has the PyPI Repository link in its table of contents."""
    link = f"PyPI Repository <https://pypi.org/project/{p.yaml['package-name']}/>"
    return [] if link in p.text("docs/index.rst") else [f"docs/index.rst lacks '{link}'"]


def docs_system_tests_toc(p: Provider) -> list[str]:
    """With system tests present, docs/index.rst has the hidden 'System tests' toctree before the generated tail."""
    if not p.system_tests_dir.is_dir():
        return []
    block = (
        "\n.. toctree::\n    :hidden:\n    :maxdepth: 1\n    :caption: System tests\n\n"
        f"    System Tests <_api/tests/system/{'/'.join(p.id_parts)}/index>\n"
    )
    manual_part = p.text("docs/index.rst").split(GENERATED_REMAINDER)[0]
    return [] if block in manual_part else ["docs/index.rst lacks the hidden System tests toctree" + block]


def docs_commits_directive(p: Provider) -> list[str]:
    """docs/commits.rst holds the airflow-providers-commits directive (the commit list is generated)."""
    return (
        []
        if ".. airflow-providers-commits::" in p.text("docs/commits.rst")
        else ["docs/commits.rst lacks it"]
    )


def docs_exampleinclude_only(p: Provider) -> list[str]:
    """Example Dags are pulled into the docs with exampleinclude, never literalinclude."""
    problems = []
    for doc in p.files(p.docs, "*.rst"):
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if re.search(r"literalinclude::.+(?:example_dags|tests/system/)", line):
                problems.append(f"{p.rel(doc)}:{number} uses literalinclude for an example Dag")
    return problems


def _resolve_doc_path(p: Provider, doc: Path, argument: str) -> Path:
    return (p.docs / argument.lstrip("/")) if argument.startswith("/") else (doc.parent / argument)


def docs_exampleinclude_markers(p: Provider) -> list[str]:
    """Every exampleinclude points at an existing file holding its [START ...] and [END ...] markers."""
    problems = []
    for doc in p.files(p.docs, "*.rst"):
        for number, argument, options in rst_directives(doc.read_text(), "exampleinclude"):
            target = _resolve_doc_path(p, doc, argument).resolve()
            where = f"{p.rel(doc)}:{number}"
            if not target.is_file():
                problems.append(f"{where}: {argument} does not exist")
                continue
            content = target.read_text()
            for key in ("start-after", "end-before"):
                if key in options and options[key] not in content:
                    problems.append(f"{where}: '{options[key]}' not found in {argument}")
    return problems


def example_markers_paired(p: Provider) -> list[str]:
    """In example Dags each [START name] marker has exactly one [END name] after it, and names are unique."""
    problems = []
    for example in p.system_examples():
        content = example.read_text()
        starts = re.findall(r"\[START (\w+)\]", content)
        ends = re.findall(r"\[END (\w+)\]", content)
        for name in sorted(set(starts) | set(ends)):
            if Counter(starts)[name] != 1 or Counter(ends)[name] != 1:
                problems.append(
                    f"{p.rel(example)}: {name} has {starts.count(name)} START / {ends.count(name)} END"
                )
            elif content.index(f"[END {name}]") < content.index(f"[START {name}]"):
                problems.append(f"{p.rel(example)}: [END {name}] comes before its START")
    return problems


def docs_no_code_directive(p: Provider) -> list[str]:
    """Docs use ``.. code-block::``, not ``.. code::``."""
    return [
        f"{p.rel(doc)}:{number} uses '.. code::'"
        for doc in p.files(p.docs, "*.rst")
        for number, line in enumerate(doc.read_text().splitlines(), 1)
        if line.startswith(".. code::")
    ]


def docs_operator_guide_links(p: Provider) -> list[str]:
    """An operator with a how-to guide anchor links back to it from its docstring."""
    guides = [p.docs / "operators.rst", p.docs / "sensors.rst", *p.files(p.docs / "operators", "*.rst")]
    names = {
        n for g in guides if g.is_file() for n in re.findall(r"\.\. _howto/operator:(.+?):", g.read_text())
    }
    problems = []
    for source in p.src_files():
        if not {"operators", "sensors", "transfers"} & set(source.relative_to(p.package_dir).parts):
            continue
        for cls in classes(p.tree(source)):
            if cls.name in names and f":ref:`howto/operator:{cls.name}`" not in (
                ast.get_docstring(cls) or ""
            ):
                problems.append(f"{p.rel(source)}: {cls.name} lacks ':ref:`howto/operator:{cls.name}`'")
    return problems


def changelog_no_duplicates(p: Provider) -> list[str]:
    """No pull request number appears twice in the changelog."""
    numbers = re.findall(r"\(#(\d{1,6})\)`?`?$", p.text("docs/changelog.rst"), flags=re.MULTILINE)
    return [f"PR #{n} is listed {c} times" for n, c in Counter(numbers).items() if c > 1]


def changelog_versions(p: Provider) -> list[str]:
    """The changelog's newest version section is provider.yaml's version, and no version section is empty."""
    lines = [line.strip() for line in p.text("docs/changelog.rst").splitlines() if line.strip()]
    versions = [lines[i] for i in range(len(lines) - 1) if re.fullmatch(r"\.{3,}", lines[i + 1])]
    problems = []
    if not versions or versions[0] != str(p.yaml["versions"][0]):
        problems.append(
            f"first version section is {versions[:1]}, provider.yaml says {p.yaml['versions'][0]}"
        )
    for i in range(len(lines) - 2):
        if re.fullmatch(r"\.{3,}", lines[i + 1]) and re.fullmatch(r"\d+\.\d+\.\d+", lines[i + 2]):
            problems.append(f"version section {lines[i]} is empty")
    return problems


# --------------------------------------------------------------------------------------------------------
# Rules: system tests (the example Dags)
# --------------------------------------------------------------------------------------------------------


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


def system_tests_watcher(p: Provider) -> list[str]:
    """An example Dag that imports the tests_common watcher wires it with '>> watcher()' as the last dependency."""
    problems = []
    for example in p.system_examples():
        content = example.read_text()
        if WATCHER_IMPORT not in content:
            continue
        position = content.find(" >> watcher()")
        if position < 0:
            problems.append(f"{p.rel(example)} imports watcher but never wires '>> watcher()'")
        elif re.search(r"<<|>>", content[position + len(" >> watcher()") :]):
            problems.append(f"{p.rel(example)}: dependencies are set after '>> watcher()'")
    return problems


def _dag_calls(tree: ast.Module) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id in {"DAG", "dag"}) or (
                isinstance(func, ast.Attribute) and func.attr == "DAG"
            ):
                yield node


def example_dag_tags(p: Provider) -> list[str]:
    """Every example Dag has tags=[...] written inline and containing "example"."""
    problems = []
    for example in p.system_examples():
        for call in _dag_calls(p.tree(example)):
            tags = next((k.value for k in call.keywords if k.arg == "tags"), None)
            literal = [e.value for e in getattr(tags, "elts", []) if isinstance(e, ast.Constant)]
            if not isinstance(tags, (ast.List, ast.Tuple)) or "example" not in literal:
                problems.append(f"{p.rel(example)}:{call.lineno} Dag lacks an inline 'example' tag")
    return problems


# --------------------------------------------------------------------------------------------------------
# Rules: provider source code
# --------------------------------------------------------------------------------------------------------


def base_operator_import(p: Provider) -> list[str]:
    """Provider code does not import BaseOperator from airflow.models.baseoperator."""
    pattern = re.compile(r"from airflow\.models\.baseoperator import.* BaseOperator")
    return [
        f"{p.rel(source)}:{number}"
        for source in p.src_files()
        for number, line in enumerate(source.read_text().splitlines(), 1)
        if pattern.search(line)
    ]


def deprecation_warnings(p: Provider) -> list[str]:
    """Provider code warns with AirflowProviderDeprecationWarning: no bare DeprecationWarning, no category-less @deprecated."""
    problems = []
    for source in p.src_files():
        for node in ast.walk(p.tree(source)):
            if isinstance(node, ast.Name) and node.id in {"DeprecationWarning", "PendingDeprecationWarning"}:
                problems.append(f"{p.rel(source)}:{node.lineno} uses {node.id}")
            for decorator in getattr(node, "decorator_list", []):
                name = getattr(
                    getattr(decorator, "func", decorator),
                    "id",
                    getattr(getattr(decorator, "func", decorator), "attr", ""),
                )
                if name == "deprecated":
                    category = next(
                        (k.value for k in getattr(decorator, "keywords", []) if k.arg == "category"), None
                    )
                    if (
                        getattr(category, "id", getattr(category, "attr", None))
                        != "AirflowProviderDeprecationWarning"
                    ):
                        problems.append(
                            f"{p.rel(source)}:{decorator.lineno} @deprecated without AirflowProviderDeprecationWarning"
                        )
    return problems


def conf_import(p: Provider) -> list[str]:
    """conf comes from airflow.providers.common.compat.sdk, not airflow.configuration or airflow.sdk.configuration."""
    problems = []
    for source in p.src_files():
        for node in ast.walk(p.tree(source)):
            forbidden = {"airflow.configuration", "airflow.sdk.configuration"}
            if isinstance(node, ast.ImportFrom) and node.module in forbidden:
                problems += [
                    f"{p.rel(source)}:{node.lineno} imports conf from {node.module}"
                    for alias in node.names
                    if alias.name == "conf"
                ]
    return problems


def deferrable_default(p: Provider) -> list[str]:
    """A ``deferrable`` argument of an operator or sensor defaults to [operators] default_deferrable."""
    problems = []
    for source in p.src_files():
        if not {"operators", "sensors"} & set(source.relative_to(p.package_dir).parts):
            continue
        for node in ast.walk(p.tree(source)):
            if not (isinstance(node, ast.FunctionDef) and node.name == "__init__"):
                continue
            args = node.args
            positional = args.posonlyargs + args.args
            defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
            for arg, default in [
                *zip(positional, defaults, strict=True),
                *zip(args.kwonlyargs, args.kw_defaults, strict=True),
            ]:
                if arg.arg == "deferrable" and (
                    default is None or ast.unparse(default) != DEFERRABLE_DEFAULT
                ):
                    problems.append(
                        f"{p.rel(source)}:{arg.lineno} deferrable default is not {DEFERRABLE_DEFAULT}"
                    )
    return problems


def _operator_classes(p: Provider) -> Iterator[tuple[Path, ast.ClassDef]]:
    for source in p.src_files():
        if {"operators", "sensors", "transfers"} & set(source.relative_to(p.package_dir).parts):
            for cls in classes(p.tree(source)):
                if is_operator_class(cls):
                    yield source, cls


def operators_init_assignments(p: Provider) -> list[str]:
    """Each template field is assigned in __init__ as ``self.x = x`` (or passed on as ``super().__init__(x=x)``)."""
    problems = []
    for source, cls in _operator_classes(p):
        fields, init = template_fields(cls), constructor(cls)
        if not fields or init is None:
            continue
        assigned: set[str] = set()
        invalid: set[str] = set()
        for node in ast.walk(init):
            pairs: list[tuple[str | None, ast.AST | None]] = []
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                pairs = [(self_attribute(t), node.value) for t in targets]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "__init__":
                pairs = [(k.arg, k.value) for k in node.keywords if k.arg]
            for field, value in pairs:
                if field in fields:
                    if isinstance(value, ast.BoolOp) and isinstance(value.op, ast.Or):
                        value = value.values[0]  # ``self.x = x or default`` is allowed
                    same_name = isinstance(value, ast.Name) and value.id == field
                    (assigned if same_name else invalid).add(field)
        where = f"{p.rel(source)} {cls.name}"
        problems += [
            f"{where}: self.{f} is assigned from something other than '{f}'" for f in sorted(invalid)
        ]
        problems += [
            f"{where}: template field {f} is never assigned in __init__"
            for f in fields
            if f not in assigned | invalid
        ]
    return problems


def operators_init_no_template_logic(p: Provider) -> list[str]:
    """__init__ does not read template fields beyond assigning them: they are rendered only after __init__."""
    problems = []
    for source, cls in _operator_classes(p):
        fields, init = set(template_fields(cls)), constructor(cls)
        if not fields or init is None:
            continue
        allowed: set[int] = set()
        for node in ast.walk(init):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                value = node.value.values[0] if isinstance(node.value, ast.BoolOp) else node.value
                allowed.add(id(value))
            elif isinstance(node, ast.keyword):
                allowed.add(id(node.value))
            elif (
                isinstance(node, ast.Compare)
                and isinstance(node.comparators[0], ast.Constant)
                and node.comparators[0].value is None
            ):
                allowed.add(id(node.left))
        parameters = {a.arg for a in [*init.args.args, *init.args.kwonlyargs]}
        defaults = {id(n) for d in [*init.args.defaults, *init.args.kw_defaults] if d for n in ast.walk(d)}
        for node in ast.walk(init):
            if (
                id(node) in allowed
                or id(node) in defaults
                or not isinstance(getattr(node, "ctx", None), ast.Load)
            ):
                continue
            name = node.id if isinstance(node, ast.Name) and node.id in parameters else self_attribute(node)
            if name in fields:
                problems.append(
                    f"{p.rel(source)}:{node.lineno} {cls.name}.__init__ reads template field {name}"
                )
    return problems


def class_chain(cls: ast.ClassDef, by_name: dict[str, ast.ClassDef]) -> Iterator[ast.ClassDef]:
    """The class and its bases defined in the same module (bases from elsewhere are not followed)."""
    yield cls
    for base in base_names(cls):
        if base in by_name:
            yield from class_chain(by_name[base], by_name)


def template_fields_are_attributes(p: Provider) -> list[str]:
    """Every template field of an operator/sensor is an instance attribute set in an __init__ of its class chain."""
    problems = []
    for source in p.src_files():
        if not {"operators", "sensors"} & set(source.relative_to(p.package_dir).parts):
            continue
        by_name = {cls.name: cls for cls in classes(p.tree(source))}
        for cls in by_name.values():
            if not cls.name.endswith(("Operator", "Sensor")):
                continue
            fields = {f for c in class_chain(cls, by_name) for f in template_fields(c)}
            attributes = {
                self_attribute(t)
                for c in class_chain(cls, by_name)
                if (init := constructor(c)) is not None
                for node in ast.walk(init)
                if isinstance(node, (ast.Assign, ast.AnnAssign))
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            }
            problems += [
                f"{p.rel(source)} {cls.name}: template field {f} is never set"
                for f in sorted(fields - attributes)
            ]
    return problems


def version_compat_own_provider(p: Provider) -> list[str]:
    """Provider code takes AIRFLOW_V_* flags from its own version_compat module only."""
    own = f"{p.package}.version_compat"
    return [
        f"{p.rel(source)}:{node.lineno} imports from {node.module}"
        for source in p.src_files()
        for node in ast.walk(p.tree(source))
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").endswith("version_compat")
        and node.module != own
    ]


def no_raise_airflow_exception(p: Provider) -> list[str]:
    """Provider code raises specific exceptions, not bare AirflowException (upstream allows none in new files)."""
    return [
        f"{p.rel(source)}:{number}"
        for source in p.src_files()
        for number, line in enumerate(source.read_text().splitlines(), 1)
        if not line.strip().startswith("#") and re.search(r"raise\s+AirflowException\b", line)
    ]


def lazy_logging(p: Provider) -> list[str]:
    """Log calls use %-style arguments, not f-strings."""
    problems = []
    for source in [*p.src_files(), *p.test_files()]:
        for node in ast.walk(p.tree(source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                continue
            receiver = node.func.value
            receiver_name = getattr(receiver, "id", getattr(receiver, "attr", ""))
            if (
                receiver_name in LOG_RECEIVERS
                and node.func.attr in LOG_METHODS
                and isinstance(node.args[0], ast.JoinedStr)
            ):
                problems.append(f"{p.rel(source)}:{node.lineno} logs an f-string")
    return problems


# --------------------------------------------------------------------------------------------------------
# Rules: tests and licence headers
# --------------------------------------------------------------------------------------------------------


def tests_version_flags_import(p: Provider) -> list[str]:
    """Tests import AIRFLOW_V_* flags from tests_common.test_utils.version_compat, not from the provider."""
    return [
        f"{p.rel(source)}:{node.lineno} imports {', '.join(a.name for a in node.names)} from {node.module}"
        for source in p.test_files()
        for node in ast.walk(p.tree(source))
        if isinstance(node, ast.ImportFrom)
        and any(a.name.startswith("AIRFLOW_V_") for a in node.names)
        and node.module != VERSION_FLAGS_MODULE
    ]


def licence_headers(p: Provider) -> list[str]:
    """Every source, docs and config file carries the ASF licence header near its top."""
    problems = []
    for path in p.files(p.root, "*"):
        if path.suffix not in LICENSED_SUFFIXES or path.name in {"LICENSE", "NOTICE"}:
            continue
        head = "\n".join(path.read_text(errors="replace").splitlines()[:25])
        if LICENCE_MARK not in head:
            problems.append(p.rel(path))
    return problems


# --------------------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One conformance rule: its id, its check, and the upstream file@commit it follows."""

    id: str
    check: Callable[[Provider], list[str]]
    upstream: str

    @property
    def summary(self) -> str:
        return (self.check.__doc__ or "").strip().splitlines()[0]


PREK = "scripts/ci/prek"
RULES: tuple[Rule, ...] = (
    Rule(
        "provider-yaml-schema",
        provider_yaml_schema,
        "scripts/in_container/run_provider_yaml_files_check.py@018fb69e + airflow-core/src/airflow/provider.yaml.schema.json@451092b8 (read from the installed core)",
    ),
    Rule(
        "provider-yaml-modules-exist",
        provider_yaml_modules_exist,
        "scripts/in_container/run_provider_yaml_files_check.py@018fb69e",
    ),
    Rule(
        "provider-yaml-modules-complete",
        provider_yaml_modules_complete,
        "scripts/in_container/run_provider_yaml_files_check.py@018fb69e",
    ),
    Rule(
        "provider-yaml-classes-exist",
        provider_yaml_classes_exist,
        "scripts/in_container/run_provider_yaml_files_check.py@018fb69e",
    ),
    Rule(
        "provider-yaml-integrations",
        provider_yaml_integrations,
        "scripts/in_container/run_provider_yaml_files_check.py@018fb69e",
    ),
    Rule(
        "provider-yaml-how-to-guides",
        provider_yaml_how_to_guides,
        "scripts/in_container/run_provider_yaml_files_check.py@018fb69e",
    ),
    Rule(
        "get-provider-info-in-sync",
        get_provider_info_in_sync,
        "dev/breeze/src/airflow_breeze/utils/packages.py@0e5662cf + templates/get_provider_info_TEMPLATE.py.jinja2@4d845fbb",
    ),
    Rule(
        "provider-init-version",
        provider_init_version,
        "dev/breeze/src/airflow_breeze/templates/PROVIDER__INIT__PY_TEMPLATE.py.jinja2@aa7cb519",
    ),
    Rule(
        "pyproject-build-files",
        pyproject_build_files,
        f"{PREK}/update_providers_build_files.py@0bfcdf56 + templates/pyproject_TEMPLATE.toml.jinja2@8d41448c (as in providers/ray/pyproject.toml@dbe1ffa3)",
    ),
    Rule(
        "namespace-src-init",
        namespace_src_init,
        f"{PREK}/check_providers_subpackages_all_have_init.py@0a90b7cf + common_prek_utils.py@1234fd0c (KNOWN_SECOND_LEVEL_PATHS)",
    ),
    Rule(
        "tests-layout",
        tests_layout,
        f"{PREK}/check_providers_subpackages_all_have_init.py@0a90b7cf (ALLOWED_SUB_FOLDERS_OF_TESTS)",
    ),
    Rule(
        "tests-init-files",
        tests_init_files,
        f"{PREK}/check_providers_subpackages_all_have_init.py@0a90b7cf + check_init_in_tests.py@1ac4aff4",
    ),
    Rule(
        "docs-required-files",
        docs_required_files,
        "scripts/in_container/run_provider_yaml_files_check.py@018fb69e + "
        + f"{PREK}/check_provider_docs.py@0df08334",
    ),
    Rule("docs-index-links", docs_index_links, f"{PREK}/check_provider_docs.py@0df08334"),
    Rule("docs-pypi-link", docs_pypi_link, "devel-common/src/sphinx_exts/docs_build/lint_checks.py@75a71fcf"),
    Rule(
        "docs-system-tests-toc",
        docs_system_tests_toc,
        f"{PREK}/check_system_tests_hidden_in_index.py@10f2d594",
    ),
    Rule(
        "docs-commits-directive",
        docs_commits_directive,
        "devel-common/src/sphinx_exts/providers_commits.py@f77d272b + templates/PROVIDER_COMMITS_TEMPLATE.rst.jinja2@eb85115a",
    ),
    Rule(
        "docs-exampleinclude-only",
        docs_exampleinclude_only,
        "devel-common/src/sphinx_exts/docs_build/lint_checks.py@75a71fcf",
    ),
    Rule(
        "docs-exampleinclude-markers",
        docs_exampleinclude_markers,
        "devel-common/src/sphinx_exts/exampleinclude.py@0bc24c2d (start-after/end-before must be found)",
    ),
    Rule(
        "example-markers-paired",
        example_markers_paired,
        "devel-common/src/sphinx_exts/exampleinclude.py@0bc24c2d (ours is stricter: pairs and order)",
    ),
    Rule(
        "docs-no-code-directive",
        docs_no_code_directive,
        "devel-common/src/sphinx_exts/docs_build/lint_checks.py@75a71fcf",
    ),
    Rule(
        "docs-operator-guide-links",
        docs_operator_guide_links,
        "devel-common/src/sphinx_exts/docs_build/lint_checks.py@75a71fcf",
    ),
    Rule("changelog-no-duplicates", changelog_no_duplicates, f"{PREK}/changelog_duplicates.py@4f1a07a4"),
    Rule(
        "changelog-versions",
        changelog_versions,
        f"{PREK}/check_changelog_format.py@1c07cdea + templates/PROVIDER_CHANGELOG_TEMPLATE.rst.jinja2@42c1e10e",
    ),
    Rule("system-tests-get-test-run", system_tests_get_test_run, f"{PREK}/check_system_tests.py@1ac4aff4"),
    Rule("system-tests-watcher", system_tests_watcher, f"{PREK}/check_system_tests.py@1ac4aff4"),
    Rule("example-dag-tags", example_dag_tags, f"{PREK}/check_example_dag_tags.py@1aefd39d"),
    Rule(
        "base-operator-import",
        base_operator_import,
        "providers/.pre-commit-config.yaml@25844aae (check-base-operator-usage)",
    ),
    Rule(
        "deprecation-warnings",
        deprecation_warnings,
        f"providers/.pre-commit-config.yaml@25844aae (check-no-airflow-deprecation-in-providers) + {PREK}/check_deprecations.py@1ac4aff4",
    ),
    Rule("conf-import", conf_import, f"{PREK}/check_conf_import_in_providers.py@9a7ff409"),
    Rule("deferrable-default", deferrable_default, f"{PREK}/check_deferrable_default.py@1ac4aff4"),
    Rule(
        "operators-init-assignments",
        operators_init_assignments,
        f"{PREK}/validate_operators_init.py@03b94ce8",
    ),
    Rule(
        "operators-init-no-template-logic",
        operators_init_no_template_logic,
        f"{PREK}/validate_operators_init.py@03b94ce8",
    ),
    Rule(
        "template-fields-are-attributes",
        template_fields_are_attributes,
        "scripts/in_container/run_template_fields_check.py@0e5662cf",
    ),
    Rule(
        "version-compat-own-provider",
        version_compat_own_provider,
        f"{PREK}/check_provider_version_compat.py@4d845fbb + scripts/in_container/run_check_imports_in_providers.py@418ea6bb",
    ),
    Rule(
        "no-raise-airflow-exception",
        no_raise_airflow_exception,
        f"{PREK}/check_new_airflow_exception_usage.py@50683381",
    ),
    Rule("lazy-logging", lazy_logging, f"{PREK}/check_lazy_logging.py@1ac4aff4"),
    Rule(
        "tests-version-flags-import",
        tests_version_flags_import,
        f"{PREK}/check_airflow_v_imports_in_tests.py@4d845fbb",
    ),
    Rule("licence-headers", licence_headers, ".pre-commit-config.yaml@76b99a1a (insert-license hooks)"),
)
RULES_BY_ID = {rule.id: rule for rule in RULES}


@dataclass(frozen=True)
class Result:
    rule: Rule
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def run(root: Path, rule_ids: list[str] | None = None) -> list[Result]:
    """Apply the selected rules (all by default) to the provider directory at ``root``."""
    provider = Provider(root.resolve())
    selected = [RULES_BY_ID[rule_id] for rule_id in rule_ids] if rule_ids else list(RULES)
    results = []
    for rule in selected:
        try:
            problems = rule.check(provider)
        except Exception as error:  # a rule that cannot read what it needs fails, it does not crash the run
            problems = [f"could not check: {type(error).__name__}: {error}"]
        results.append(Result(rule, problems))
    return results


def format_result(result: Result, details: int = 8) -> str:
    found = "ok" if result.passed else f"{len(result.problems)} problem(s): {result.problems[0]}"
    line = f"{result.rule.id:34} {'PASS' if result.passed else 'FAIL'}  {found}  [upstream: {result.rule.upstream}]"
    extra = [f"    - {problem}" for problem in result.problems[1:details]]
    if len(result.problems) > details:
        extra.append(f"    ... and {len(result.problems) - details} more")
    return "\n".join([line, *extra])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help="provider directory (default: this repo)"
    )
    parser.add_argument("--rule", action="append", choices=sorted(RULES_BY_ID), help="run only this rule")
    parser.add_argument("--report-only", action="store_true", help="always exit 0 (report, do not block)")
    parser.add_argument("--list", action="store_true", help="list the rules and exit")
    args = parser.parse_args(argv)
    if args.list:
        for rule in RULES:
            print(f"{rule.id:34} {rule.summary}  [upstream: {rule.upstream}]")
        return 0
    results = run(args.root, args.rule)
    for result in results:
        print(format_result(result))
    failed = [r.rule.id for r in results if not r.passed]
    print(
        f"\n{len(results) - len(failed)} of {len(results)} rules pass"
        + (f"; failing: {', '.join(failed)}" if failed else "")
    )
    return 0 if args.report_only or not failed else 1


if __name__ == "__main__":
    sys.exit(main())
