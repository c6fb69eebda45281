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
Find the Python examples in README.rst and docs/, and run one against a Backend.AI endpoint.

An example is a ``.. code-block:: python`` (or ``code``/``sourcecode``) block. Each one runs, on each
Airflow line, as a user would run it: an example that builds a Dag is put alone in a Dags folder, loaded
with ``DagBag`` and run with ``dag.test()`` (every Dag run must succeed); any other example (a hook call)
runs as a script with ``python``. The ``backend_ai_default`` connection points at the endpoint given.

reStructuredText comments directly above the directive (invisible in the rendered page) adjust that::

    .. example: skip-on airflow2: <why; the text around the example must say so too>
    .. example: skip: <why it cannot run anywhere, e.g. it needs a provider feature not built yet>
    .. example: connections: backend_ai_default, my_other_connection

``literalinclude`` blocks of Python files must include an example Dag that the system tests run
(``tests/system/**/example_*.py``); ``::`` literal blocks are never run, so Python code (an import, a
Dag or a hook) is not allowed in them.

Run ``python -m integration.backend.ai.doc_examples`` from ``tests/`` to list them.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[4]
LINES = ("airflow2", "airflow3")
DEFAULT_CONNECTION = "backend_ai_default"

_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. (?:code-block|code|sourcecode)::[ \t]*(?P<lang>\S*)[ \t]*$")
_LITERALINCLUDE = re.compile(r"^[ \t]*\.\. literalinclude::[ \t]*(?P<path>\S+)[ \t]*$")
_MARKER = re.compile(r"^[ \t]*\.\. example:[ \t]*(?P<body>.*?)[ \t]*$")
_MARKER_BODY = re.compile(
    r"^(?:(?P<skip_on>skip-on)[ \t]+(?P<line>\S+)|(?P<skip>skip)|(?P<connections>connections)):[ \t]*(?P<rest>.*)$"
)
_LITERAL_START = re.compile(r"::[ \t]*$")
_PYTHON = {"python", "python3", "py", "pycon"}


class ExampleMarkerError(ValueError):
    """A ``.. example:`` comment that cannot be read: the docs must be fixed, not the example skipped."""


@dataclass(frozen=True)
class DocExample:
    """One Python example: where it is, its code, and the markers above it."""

    path: Path
    line: int
    code: str
    skip_on: dict[str, str] = field(default_factory=dict)
    skip_everywhere: str | None = None
    connections: tuple[str, ...] = (DEFAULT_CONNECTION,)

    @property
    def id(self) -> str:
        """``README.rst:77`` (the line of the directive), relative to the repository when it is inside it."""
        try:
            where = self.path.resolve().relative_to(REPO_ROOT)
        except ValueError:
            where = Path(self.path.name)
        return f"{where.as_posix()}:{self.line}"

    @property
    def builds_dag(self) -> bool:
        """True when the code creates a Dag (``DAG(...)``, ``with DAG(...)`` or ``@dag``)."""
        for node in ast.walk(ast.parse(self.code)):
            target = node.func if isinstance(node, ast.Call) else node
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
            if isinstance(node, ast.Call) and name == "DAG":
                return True
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for deco in node.decorator_list:
                    func = deco.func if isinstance(deco, ast.Call) else deco
                    if (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)) == "dag":
                        return True
        return False

    def skip_reason(self, line: str) -> str | None:
        """Why this example does not run on ``line`` (``airflow2``/``airflow3``), or None if it runs."""
        if self.skip_everywhere is not None:
            return self.skip_everywhere
        return self.skip_on.get(line)


def doc_files(root: Path = REPO_ROOT) -> list[Path]:
    """README.rst and every ``.rst`` under docs/ (not the build output), sorted."""
    files = [root / "README.rst"] if (root / "README.rst").exists() else []
    docs = root / "docs"
    if docs.is_dir():
        files += sorted(p for p in docs.rglob("*.rst") if "_build" not in p.relative_to(docs).parts)
    return files


def _markers(
    lines: list[str], directive_index: int, path: Path
) -> tuple[dict[str, str], str | None, tuple[str, ...]]:
    """Read the ``.. example:`` comments right above line ``directive_index`` (blank lines may separate)."""
    skip_on: dict[str, str] = {}
    skip: str | None = None
    connections: list[str] = [DEFAULT_CONNECTION]
    i = directive_index - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    while i >= 0 and (match := _MARKER.match(lines[i])):
        where = f"{path}:{i + 1}"
        body = _MARKER_BODY.match(match["body"])
        if body is None:
            raise ExampleMarkerError(
                f"{where}: cannot read {lines[i].strip()!r}; expected '.. example: skip-on airflow2: <reason>', "
                "'.. example: skip: <reason>' or '.. example: connections: <conn id>, ...'"
            )
        rest = body["rest"].strip()
        if body["skip_on"]:
            if body["line"] not in LINES:
                raise ExampleMarkerError(
                    f"{where}: unknown Airflow line {body['line']!r}; expected one of {LINES}"
                )
            if not rest:
                raise ExampleMarkerError(f"{where}: say why the example does not run on {body['line']}")
            skip_on[body["line"]] = rest
        elif body["skip"]:
            if not rest:
                raise ExampleMarkerError(f"{where}: say why the example does not run")
            skip = rest
        else:
            names = [n.strip() for n in rest.split(",") if n.strip()]
            if not names:
                raise ExampleMarkerError(f"{where}: name at least one connection id")
            connections += [n for n in names if n not in connections]
        i -= 1
    return skip_on, skip, tuple(connections)


def _block(lines: list[str], start: int, indent: int) -> tuple[str, int]:
    """The indented body that starts after line ``start`` (options and blank lines skipped)."""
    i = start + 1
    while i < len(lines) and (not lines[i].strip() or re.match(r"^[ \t]+:[\w-]+:", lines[i])):
        if lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) <= indent:
            break
        i += 1
    body: list[str] = []
    while i < len(lines):
        text = lines[i]
        if text.strip() and len(text) - len(text.lstrip()) <= indent:
            break
        body.append(text)
        i += 1
    return textwrap.dedent("\n".join(body)).strip("\n") + "\n", i


def extract_examples(path: Path) -> list[DocExample]:
    """Every Python code block of one reStructuredText file, with its markers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    examples: list[DocExample] = []
    for index, text in enumerate(lines):
        match = _DIRECTIVE.match(text)
        if match is None or match["lang"].lower() not in _PYTHON:
            continue
        code, _ = _block(lines, index, len(match["indent"]))
        skip_on, skip, connections = _markers(lines, index, path)
        examples.append(DocExample(path, index + 1, code, skip_on, skip, connections))
    return examples


def collect_examples(root: Path = REPO_ROOT) -> list[DocExample]:
    """Every Python example in README.rst and docs/ under ``root``."""
    return [example for path in doc_files(root) for example in extract_examples(path)]


def literalincluded_python(root: Path = REPO_ROOT) -> list[tuple[Path, int, Path]]:
    """``(rst file, line, included file)`` for every ``literalinclude`` of a ``.py`` file."""
    found = []
    for path in doc_files(root):
        for index, text in enumerate(path.read_text(encoding="utf-8").splitlines()):
            match = _LITERALINCLUDE.match(text)
            if match and match["path"].endswith(".py"):
                found.append((path, index + 1, (path.parent / match["path"]).resolve()))
    return found


def python_in_literal_blocks(root: Path = REPO_ROOT) -> list[tuple[Path, int]]:
    """``::`` literal blocks that hold Python code (an import, a Dag or a hook), which would never run."""
    found = []
    for path in doc_files(root):
        lines = path.read_text(encoding="utf-8").splitlines()
        for index, text in enumerate(lines):
            if not _LITERAL_START.search(text) or text.lstrip().startswith(".. "):
                continue
            indent = len(text) - len(text.lstrip())
            code, _ = _block(lines, index, indent)
            try:
                tree = ast.parse(code)
            except SyntaxError:
                continue
            if any(isinstance(n, ast.Import | ast.ImportFrom) for n in ast.walk(tree)) or re.search(
                r"\b(DAG|BackendAI\w*Hook|BackendAI\w*Operator)\(", code
            ):
                found.append((path, index + 1))
    return found


def main() -> None:
    """List the examples, what kind each is, and where they are skipped."""
    for example in collect_examples():
        kind = "dag" if example.builds_dag else "script"
        notes = [f"skip on {line}: {why}" for line, why in example.skip_on.items()]
        if example.skip_everywhere:
            notes.append(f"skipped: {example.skip_everywhere}")
        print(f"{example.id}\t{kind}\t{'; '.join(notes) or 'runs on ' + ' and '.join(LINES)}")


if __name__ == "__main__":
    main()
