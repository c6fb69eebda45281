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
Rules on the documentation under ``docs/``: the pages upstream requires, how example Dags are included, and
the changelog.

apache/airflow checks these with prek hooks and with the lint checks and extensions of its docs build
(``devel-common/src/sphinx_exts``).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from typing import TYPE_CHECKING

from provider_conformance.model import PREK, YAML_CHECK, Provider, Rules, classes

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

RULES = Rules()
SPHINX_EXTS = "devel-common/src/sphinx_exts"
LINT_CHECKS = f"{SPHINX_EXTS}/docs_build/lint_checks.py@75a71fcf"
DOCS_CHECK = f"{PREK}/check_provider_docs.py@0df08334"
EXAMPLEINCLUDE = f"{SPHINX_EXTS}/exampleinclude.py@0bc24c2d"
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
GENERATED_REMAINDER = (
    ".. THE REMAINDER OF THE FILE IS AUTOMATICALLY GENERATED. IT WILL BE OVERWRITTEN AT RELEASE TIME!"
)


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


def rst_files(p: Provider) -> Iterator[Path]:
    return p.files(p.docs, "*.rst")


# -- The pages upstream requires ---------------------------------------------------------------------------


@RULES.register("docs-required-files", f"{YAML_CHECK} + {DOCS_CHECK}")
def docs_required_files(p: Provider) -> list[str]:
    """docs/ has index, changelog, commits, security and installing-providers-from-sources."""
    return [f"docs/{name} is missing" for name in REQUIRED_DOCS if not (p.docs / name).is_file()]


@RULES.register("docs-index-links", DOCS_CHECK)
def docs_index_links(p: Provider) -> list[str]:
    """docs/index.rst links the required pages with the titles upstream expects."""
    index = p.text("docs/index.rst")
    return [f"docs/index.rst lacks the entry '{link}'" for link in INDEX_LINKS if link not in index]


@RULES.register("docs-pypi-link", LINT_CHECKS)
def docs_pypi_link(p: Provider) -> list[str]:
    """docs/index.rst has the PyPI Repository link in its table of contents."""
    link = f"PyPI Repository <https://pypi.org/project/{p.yaml['package-name']}/>"
    return [] if link in p.text("docs/index.rst") else [f"docs/index.rst lacks '{link}'"]


@RULES.register("docs-system-tests-toc", f"{PREK}/check_system_tests_hidden_in_index.py@10f2d594")
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


@RULES.register(
    "docs-commits-directive",
    f"{SPHINX_EXTS}/providers_commits.py@f77d272b + templates/PROVIDER_COMMITS_TEMPLATE.rst.jinja2@eb85115a",
)
def docs_commits_directive(p: Provider) -> list[str]:
    """docs/commits.rst holds the airflow-providers-commits directive (the commit list is generated)."""
    found = ".. airflow-providers-commits::" in p.text("docs/commits.rst")
    return [] if found else ["docs/commits.rst lacks it"]


# -- Example Dags in the docs ------------------------------------------------------------------------------


@RULES.register("docs-exampleinclude-only", LINT_CHECKS)
def docs_exampleinclude_only(p: Provider) -> list[str]:
    """Example Dags are pulled into the docs with exampleinclude, never literalinclude."""
    return [
        f"{p.rel(doc)}:{number} uses literalinclude for an example Dag"
        for doc, number, line in p.lines(rst_files(p))
        if re.search(r"literalinclude::.+(?:example_dags|tests/system/)", line)
    ]


@RULES.register("docs-exampleinclude-markers", f"{EXAMPLEINCLUDE} (start-after/end-before must be found)")
def docs_exampleinclude_markers(p: Provider) -> list[str]:
    """Every exampleinclude points at an existing file holding its [START ...] and [END ...] markers."""
    problems = []
    for doc in rst_files(p):
        for number, argument, options in rst_directives(doc.read_text(), "exampleinclude"):
            base = p.docs if argument.startswith("/") else doc.parent  # as in Sphinx: "/x" is docs/x
            target = (base / argument.lstrip("/")).resolve()
            where = f"{p.rel(doc)}:{number}"
            if not target.is_file():
                problems.append(f"{where}: {argument} does not exist")
                continue
            content = target.read_text()
            for key in ("start-after", "end-before"):
                if key in options and options[key] not in content:
                    problems.append(f"{where}: '{options[key]}' not found in {argument}")
    return problems


@RULES.register("example-markers-paired", f"{EXAMPLEINCLUDE} (ours is stricter: pairs and order)")
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


# -- Markup and links --------------------------------------------------------------------------------------


@RULES.register("docs-no-code-directive", LINT_CHECKS)
def docs_no_code_directive(p: Provider) -> list[str]:
    """Docs use ``.. code-block::``, not ``.. code::``."""
    return [
        f"{p.rel(doc)}:{number} uses '.. code::'"
        for doc, number, line in p.lines(rst_files(p))
        if line.startswith(".. code::")
    ]


@RULES.register("docs-operator-guide-links", LINT_CHECKS)
def docs_operator_guide_links(p: Provider) -> list[str]:
    """An operator with a how-to guide anchor links back to it from its docstring."""
    guides = [p.docs / "operators.rst", p.docs / "sensors.rst", *p.files(p.docs / "operators", "*.rst")]
    names = {
        n for g in guides if g.is_file() for n in re.findall(r"\.\. _howto/operator:(.+?):", g.read_text())
    }
    return [
        f"{p.rel(source)}: {cls.name} lacks ':ref:`howto/operator:{cls.name}`'"
        for source in p.sources_in({"operators", "sensors", "transfers"})
        for cls in classes(p.tree(source))
        if cls.name in names and f":ref:`howto/operator:{cls.name}`" not in (ast.get_docstring(cls) or "")
    ]


# -- The changelog -----------------------------------------------------------------------------------------


@RULES.register("changelog-no-duplicates", f"{PREK}/changelog_duplicates.py@4f1a07a4")
def changelog_no_duplicates(p: Provider) -> list[str]:
    """No pull request number appears twice in the changelog."""
    numbers = re.findall(r"\(#(\d{1,6})\)`?`?$", p.text("docs/changelog.rst"), flags=re.MULTILINE)
    return [f"PR #{n} is listed {c} times" for n, c in Counter(numbers).items() if c > 1]


@RULES.register(
    "changelog-versions",
    f"{PREK}/check_changelog_format.py@1c07cdea + templates/PROVIDER_CHANGELOG_TEMPLATE.rst.jinja2@42c1e10e",
)
def changelog_versions(p: Provider) -> list[str]:
    """The changelog's newest version section is provider.yaml's version, and no version section is empty."""
    lines = [line.strip() for line in p.text("docs/changelog.rst").splitlines() if line.strip()]
    versions = [lines[i] for i in range(len(lines) - 1) if re.fullmatch(r"\.{3,}", lines[i + 1])]
    problems = []
    if not versions or versions[0] != p.version:
        problems.append(f"first version section is {versions[:1]}, provider.yaml says {p.version}")
    for i in range(len(lines) - 2):
        if re.fullmatch(r"\.{3,}", lines[i + 1]) and re.fullmatch(r"\d+\.\d+\.\d+", lines[i + 2]):
            problems.append(f"version section {lines[i]} is empty")
    return problems
