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
apache/airflow's checks for one provider directory, applied to this repository.

apache/airflow checks every provider on each pull request: prek hooks under ``scripts/ci/prek/``,
``scripts/in_container/run_provider_yaml_files_check.py`` and the docs build's lint checks in
``devel-common/src/sphinx_exts/``. This package applies the rules that concern one provider directory, as if
this repository sat at ``providers/backend/ai/``. It is written from those rules, not copied from the
scripts: each rule names the upstream file and the commit it was read at, so it can be refreshed.

The map:

* ``model``: the provider directory (``Provider``: paths, provider.yaml, the file walks rules share),
  ``Rule``, ``Rules`` (an area's registry) and ``Result``.
* One module per area, each a list ``RULES`` of small check functions registered with their upstream
  reference: ``provider_yaml`` (provider.yaml and the files generated from it), ``packages``
  (pyproject.toml, ``__init__`` files, the tests/ layout), ``docs`` (pages, example includes,
  changelog), ``system_tests`` (the example Dags), ``provider_code`` (imports, warnings, exceptions,
  logging), ``operators`` (operator classes and template fields), ``licence``.
* This module: ``RULES`` (all areas, in the order they run) and ``run``; ``__main__``: the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provider_conformance import (
    docs,
    licence,
    operators,
    packages,
    provider_code,
    provider_yaml,
    system_tests,
)
from provider_conformance.model import Provider, Result, Rule

if TYPE_CHECKING:
    from pathlib import Path

AREAS = (provider_yaml, packages, docs, system_tests, provider_code, operators, licence)
RULES: tuple[Rule, ...] = tuple(rule for area in AREAS for rule in area.RULES)
RULES_BY_ID = {rule.id: rule for rule in RULES}


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
