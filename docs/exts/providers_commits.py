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
The ``airflow-providers-commits`` directive for the standalone docs build.

In apache/airflow, docs/commits.rst holds ``.. airflow-providers-commits::``, which devel-common's
sphinx_exts replaces with the provider's commits per released version when the docs are built with
commits included. This stand-in renders the same place: with ``INCLUDE_COMMITS=true`` it lists this
repository's commits (``git log``), otherwise a sentence saying how to get them. apache/airflow's own
extension takes over when the directory moves to providers/backend/ai/.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

if TYPE_CHECKING:
    from sphinx.application import Sphinx

REPO_ROOT = Path(__file__).resolve().parents[2]


def _commits() -> list[str]:
    """One line per commit, newest first: short hash, date, subject."""
    result = subprocess.run(
        ["git", "log", "--date=short", "--pretty=format:%h %cd %s"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


class ProviderCommits(SphinxDirective):
    """Replaced by the list of commits, or by a note when the build leaves them out."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        if os.environ.get("INCLUDE_COMMITS") != "true":
            note = "The list of commits is added when the docs are built with INCLUDE_COMMITS=true."
            return [nodes.paragraph(note, note)]
        items = nodes.bullet_list()
        for line in _commits():
            items += nodes.list_item("", nodes.paragraph("", "", nodes.literal(line, line)))
        return [items]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("airflow-providers-commits", ProviderCommits)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
