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
The ``exampleinclude`` directive for the standalone docs build.

apache/airflow's docs pull example Dags into how-to guides with ``.. exampleinclude::`` (from
devel-common's sphinx_exts, which cannot be installed here), and its docs lint rejects ``literalinclude``
for example Dags. This stand-in accepts the same arguments and options as ``literalinclude`` (minus
``caption``) and puts the included file's repository path above the code. When this directory moves to
providers/backend/ai/ in apache/airflow, upstream's own extension provides the directive and this file is
not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from docutils import nodes
from sphinx.directives.code import LiteralInclude

if TYPE_CHECKING:
    from sphinx.application import Sphinx

REPO_ROOT = Path(__file__).resolve().parents[2]


class ExampleInclude(LiteralInclude):
    """``literalinclude`` with a header naming the example file; a missing marker is a build warning."""

    option_spec = {name: spec for name, spec in LiteralInclude.option_spec.items() if name != "caption"}

    def run(self) -> list[nodes.Node]:
        included = super().run()
        if not included or not isinstance(included[0], nodes.literal_block):
            return included  # LiteralInclude reported a problem (missing file or marker) as a warning
        _, absolute = self.env.relfn2path(self.arguments[0])
        path = Path(absolute).resolve()
        shown = path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else path.name
        header = nodes.paragraph("", "", nodes.literal(shown, shown), classes=["example-header"])
        return [nodes.compound("", header, *included, classes=["example-block-wrapper"])]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("exampleinclude", ExampleInclude)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
