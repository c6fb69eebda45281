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
Teeth for scripts/check_provider_conformance.py (the package scripts/provider_conformance): for every rule,
a copy of this repository passes the rule, and the same copy with exactly that rule broken fails it.

The repository itself passes every rule (``dev/test.sh`` runs the script blocking).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

pytest.importorskip("yaml")
pytest.importorskip("jsonschema")
if int(version("apache-airflow").split(".")[0]) < 3:
    pytest.skip(
        "the rules read apache-airflow-core 3's provider.yaml and provider_info schemas",
        allow_module_level=True,
    )

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_provider_conformance.py"
# The rules live in the package scripts/provider_conformance (the script above is its command line).
_spec = importlib.util.spec_from_file_location(
    "provider_conformance", REPO / "scripts" / "provider_conformance" / "__init__.py"
)
assert _spec is not None
assert _spec.loader is not None
conformance = importlib.util.module_from_spec(_spec)
sys.modules["provider_conformance"] = conformance
_spec.loader.exec_module(conformance)

PACKAGE = Path("src/airflow/providers/backend/ai")
EXAMPLE = Path("tests/system/backend/ai/example_backend_ai.py")
NOT_COPIED = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "__pycache__",
    "_build",
    "_api",
    ".mypy_cache",
    ".ruff_cache",
    "artifacts",
    "dist",
    "build",
)


# ----------------------------------------------------------------------------------------------------------
# Small editing helpers for the copy
# ----------------------------------------------------------------------------------------------------------


def write(root: Path, relative: str | Path, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def replace(root: Path, relative: str | Path, old: str, new: str) -> None:
    path = root / relative
    text = path.read_text()
    assert old in text, f"{old!r} not in {relative}: the breaker needs updating"
    path.write_text(text.replace(old, new, 1))


def append(root: Path, relative: str | Path, text: str) -> None:
    path = root / relative
    path.write_text(path.read_text() + text)


def add_operator_module(root: Path, body: str) -> None:
    """A new operators module (new files keep the breakers independent of how src/ is split)."""
    write(root, PACKAGE / "operators" / "probe.py", "from airflow.sdk import BaseOperator\n\n\n" + body)


def problems(root: Path, rule_id: str) -> list[str]:
    [result] = conformance.run(root, [rule_id])
    return result.problems


# ----------------------------------------------------------------------------------------------------------
# One breaker per rule
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    rule: str
    breaks: Callable[[Path], None]


PROBE_OPERATOR = '''class ProbeOperator(BaseOperator):
    """A probe."""

    template_fields = ("image",)

    def __init__(self, *, image: str, image_name: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
{init}
'''

CASES = [
    Case("provider-yaml-schema", lambda r: replace(r, "provider.yaml", "state: not-ready", "state: bogus")),
    Case(
        "provider-yaml-modules-exist",
        lambda r: replace(
            r,
            "provider.yaml",
            "      - airflow.providers.backend.ai.hooks.backend_ai\n",
            "      - airflow.providers.backend.ai.hooks.backend_ai\n      - airflow.providers.backend.ai.hooks.gone\n",
        ),
    ),
    Case("provider-yaml-modules-complete", lambda r: write(r, PACKAGE / "hooks" / "unlisted.py", "X = 1\n")),
    Case(
        "provider-yaml-classes-exist",
        lambda r: replace(
            r, "provider.yaml", ".links.backend_ai.BackendAISessionLink", ".links.backend_ai.NoSuchLink"
        ),
    ),
    Case(
        "provider-yaml-integrations",
        lambda r: replace(
            r,
            "provider.yaml",
            "operators:\n  - integration-name: Backend.AI",
            "operators:\n  - integration-name: Nope",
        ),
    ),
    Case(
        "provider-yaml-how-to-guides",
        lambda r: write(r, "docs/operators/unlisted.rst", "Unlisted\n========\n"),
    ),
    Case(
        "get-provider-info-in-sync",
        lambda r: replace(r, "provider.yaml", "`Backend.AI <https://www.backend.ai/>`__", "Something else"),
    ),
    Case(
        "provider-init-version",
        lambda r: (r / PACKAGE / "__init__.py").write_text(
            re.sub(
                r'__version__ = "[^"]+"', '__version__ = "9.9.9"', (r / PACKAGE / "__init__.py").read_text()
            )
        ),
    ),
    Case("pyproject-build-files", lambda r: replace(r, "pyproject.toml", '"src/airflow/__init__.py",', "")),
    Case("namespace-src-init", lambda r: (r / "src/airflow/providers/__init__.py").unlink()),
    Case(
        "tests-layout",
        lambda r: write(r, "tests/e2e_new/test_x.py", "X = 1\n"),
    ),
    Case("tests-init-files", lambda r: write(r, "tests/unit/backend/ai/newpkg/test_x.py", "X = 1\n")),
    Case("docs-required-files", lambda r: (r / "docs/commits.rst").unlink()),
    Case(
        "docs-index-links",
        lambda r: replace(
            r, "docs/index.rst", "Installing from sources <installing-providers-from-sources>", ""
        ),
    ),
    Case(
        "docs-pypi-link",
        lambda r: replace(
            r,
            "docs/index.rst",
            "PyPI Repository <https://pypi.org/project/apache-airflow-providers-backend-ai/>",
            "",
        ),
    ),
    Case(
        "docs-system-tests-toc",
        lambda r: replace(r, "docs/index.rst", ":caption: System tests", ":caption: Examples"),
    ),
    Case(
        "docs-commits-directive",
        lambda r: replace(r, "docs/commits.rst", ".. airflow-providers-commits::", ""),
    ),
    Case(
        "docs-exampleinclude-only",
        lambda r: append(
            r, "docs/security.rst", f"\n.. literalinclude:: /../{EXAMPLE}\n    :language: python\n"
        ),
    ),
    Case(
        "docs-exampleinclude-markers",
        lambda r: replace(r, EXAMPLE, "[START howto_operator_backend_ai_failure]", "[START renamed]"),
    ),
    Case("example-markers-paired", lambda r: append(r, EXAMPLE, "# [START orphan_marker]\n")),
    Case(
        "docs-no-code-directive",
        lambda r: append(r, "docs/security.rst", "\n.. code:: python\n\n    x = 1\n"),
    ),
    Case(
        "docs-operator-guide-links",
        lambda r: (
            add_operator_module(r, 'class ProbeOperator(BaseOperator):\n    """No guide link."""\n'),
            append(
                r, "docs/operators/backend_ai.rst", "\n.. _howto/operator:ProbeOperator:\n\nProbe\n-----\n"
            ),
        ),
    ),
    Case(
        "changelog-no-duplicates",
        lambda r: append(r, "docs/changelog.rst", "\n* Fix a thing (#12345)\n* Fix it again (#12345)\n"),
    ),
    Case(
        "changelog-versions",
        lambda r: replace(r, "docs/changelog.rst", "0.1.0\n.....", "0.2.0\n.....\n\n0.1.0\n....."),
    ),
    Case("system-tests-get-test-run", lambda r: replace(r, EXAMPLE, "test_run = get_test_run(dag)", "")),
    Case(
        "system-tests-watcher",
        lambda r: replace(
            r, EXAMPLE, "test_run = get_test_run(dag)", "prepare >> train\ntest_run = get_test_run(dag)"
        ),
    ),
    Case(
        "example-dag-tags",
        lambda r: replace(r, EXAMPLE, 'tags=["example", "backend.ai"]', 'tags=["backend.ai"]'),
    ),
    Case(
        "base-operator-import",
        lambda r: write(r, PACKAGE / "probe.py", "from airflow.models.baseoperator import BaseOperator\n"),
    ),
    Case(
        "deprecation-warnings",
        lambda r: write(
            r,
            PACKAGE / "probe.py",
            'import warnings\n\nwarnings.warn("old", DeprecationWarning, stacklevel=1)\n',
        ),
    ),
    Case("conf-import", lambda r: write(r, PACKAGE / "probe.py", "from airflow.configuration import conf\n")),
    Case(
        "deferrable-default",
        lambda r: add_operator_module(
            r,
            "class ProbeOperator(BaseOperator):\n    def __init__(self, *, deferrable: bool = False, **kwargs) -> None:\n"
            "        super().__init__(**kwargs)\n",
        ),
    ),
    Case(
        "operators-init-assignments",
        lambda r: add_operator_module(r, PROBE_OPERATOR.format(init="        self.image = image_name")),
    ),
    Case(
        "operators-init-no-template-logic",
        lambda r: add_operator_module(
            r,
            PROBE_OPERATOR.format(init="        self.image = image\n        self.tag = image.split(':')[-1]"),
        ),
    ),
    Case(
        "template-fields-are-attributes",
        lambda r: add_operator_module(r, PROBE_OPERATOR.format(init="        pass")),
    ),
    Case(
        "version-compat-own-provider",
        lambda r: write(
            r,
            PACKAGE / "probe.py",
            "from airflow.providers.amazon.version_compat import AIRFLOW_V_3_0_PLUS\n",
        ),
    ),
    Case(
        "no-raise-airflow-exception",
        lambda r: write(r, PACKAGE / "probe.py", "def fail():\n    raise AirflowException('no')\n"),
    ),
    Case(
        "lazy-logging",
        lambda r: write(r, PACKAGE / "probe.py", 'def f(log, x):\n    log.info(f"value {x}")\n'),
    ),
    Case(
        "tests-version-flags-import",
        lambda r: write(
            r,
            "tests/unit/backend/ai/test_probe.py",
            "from airflow.providers.backend.ai.version_compat import AIRFLOW_V_3_0_PLUS\n",
        ),
    ),
    Case("licence-headers", lambda r: write(r, "docs/unlicensed.rst", "No header\n=========\n")),
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("pristine") / "repo"
    shutil.copytree(REPO, copy, ignore=NOT_COPIED)
    return copy


@pytest.fixture
def repo_copy(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(pristine, copy)
    return copy


def test_every_rule_has_a_breaking_case() -> None:
    assert sorted(case.rule for case in CASES) == sorted(rule.id for rule in conformance.RULES)
    assert len(conformance.RULES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[case.rule for case in CASES])
def test_rule_passes_a_conforming_copy_and_fails_the_broken_one(case: Case, repo_copy: Path) -> None:
    assert problems(repo_copy, case.rule) == []
    case.breaks(repo_copy)
    found = problems(repo_copy, case.rule)
    assert found, f"{case.rule} did not notice the break"
    assert not any(problem.startswith("could not check") for problem in found), found


def test_the_repository_passes_every_rule() -> None:
    failed = {result.rule.id: result.problems for result in conformance.run(REPO) if result.problems}
    assert failed == {}


def test_command_line_prints_one_line_per_rule_and_exits_by_result(pristine: Path) -> None:
    command = [sys.executable, str(SCRIPT), "--root", str(pristine)]
    blocking = subprocess.run(command, capture_output=True, text=True, check=False)
    verdict_lines = [line for line in blocking.stdout.splitlines() if re.match(r"^\S+\s+(PASS|FAIL)  ", line)]
    assert [line.split()[0] for line in verdict_lines] == [rule.id for rule in conformance.RULES]
    assert all("[upstream: " in line and "@" in line for line in verdict_lines)
    any_failure = any(line.split()[1] == "FAIL" for line in verdict_lines)
    assert blocking.returncode == (1 if any_failure else 0), blocking.stdout
    report_only = subprocess.run([*command, "--report-only"], capture_output=True, text=True, check=False)
    assert report_only.returncode == 0


def test_command_line_fails_on_a_broken_copy(repo_copy: Path) -> None:
    (repo_copy / "docs" / "commits.rst").unlink()
    command = [sys.executable, str(SCRIPT), "--root", str(repo_copy), "--rule", "docs-required-files"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert (
        "docs-required-files                FAIL  1 problem(s): docs/commits.rst is missing" in result.stdout
    )
