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
Write the "System tests" pages that apache/airflow's docs build generates.

Upstream, sphinx-autoapi documents each provider's tests/system package under _api/, and a provider's
index.rst lists ``System Tests <_api/tests/system/<provider path>/index>`` in a hidden toctree (a prek hook
requires it). This build has no autoapi, so at the start of each build this extension writes that page
(into docs/_api/, which git ignores): one section per example Dag with its docstring and its source.
apache/airflow's autoapi writes the page itself once the directory moves to providers/backend/ai/.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from sphinx.application import Sphinx

DOCS = Path(__file__).resolve().parents[1]
REPO_ROOT = DOCS.parent


def provider_path() -> str:
    """``backend/ai`` for apache-airflow-providers-backend-ai."""
    package = yaml.safe_load((REPO_ROOT / "provider.yaml").read_text())["package-name"]
    return package.removeprefix("apache-airflow-providers-").replace("-", "/")


def render(examples: list[Path]) -> str:
    title = "System tests"
    lines = [title, "=" * len(title), "", "The example Dags, each run as a system test with dag.test().", ""]
    for example in examples:
        name = example.stem
        docstring = ast.get_docstring(ast.parse(example.read_text())) or ""
        lines += [name, "-" * len(name), "", docstring, ""]
        lines += [
            f".. exampleinclude:: /{example.relative_to(DOCS, walk_up=True).as_posix()}",
            "    :language: python",
            "",
        ]
    return "\n".join(lines)


def write_pages(app: Sphinx) -> None:
    relative = provider_path()
    examples = sorted((REPO_ROOT / "tests" / "system" / relative).glob("example_*.py"))
    page = DOCS / "_api" / "tests" / "system" / relative / "index.rst"
    page.parent.mkdir(parents=True, exist_ok=True)
    content = render(examples)
    if not page.is_file() or page.read_text() != content:  # rewriting unchanged pages would rebuild them
        page.write_text(content)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", write_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
