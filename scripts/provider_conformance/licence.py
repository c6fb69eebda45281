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
"""The licence rule: apache/airflow's insert-license hooks put the ASF header on every file they cover."""

from __future__ import annotations

from provider_conformance.model import Provider, Rules

RULES = Rules()
LICENCE_MARK = "Licensed to the Apache Software Foundation (ASF)"
LICENSED_SUFFIXES = {".py", ".pyi", ".rst", ".yaml", ".yml", ".toml", ".sh", ".bash", ".md", ".cfg", ".ini"}


@RULES.register("licence-headers", ".pre-commit-config.yaml@76b99a1a (insert-license hooks)")
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
