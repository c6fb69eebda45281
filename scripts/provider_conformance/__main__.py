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

Usage (``scripts/check_provider_conformance.py`` runs this)::

    .venv-airflow3/bin/python scripts/check_provider_conformance.py [--root DIR] [--rule ID ...]
        [--report-only] [--list]

It prints one line per rule (id, PASS/FAIL, what it found, the upstream file@commit) and exits 1 when a
rule fails, unless ``--report-only`` is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from provider_conformance import RULES, RULES_BY_ID, run
from provider_conformance.model import DEFAULT_ROOT, Result


def format_result(result: Result, details: int = 8) -> str:
    """The rule's verdict line, then up to ``details`` - 1 further problems, one a line."""
    found = "ok" if result.passed else f"{len(result.problems)} problem(s): {result.problems[0]}"
    line = f"{result.rule.id:34} {'PASS' if result.passed else 'FAIL'}  {found}  [upstream: {result.rule.upstream}]"
    extra = [f"    - {problem}" for problem in result.problems[1:details]]
    if len(result.problems) > details:
        extra.append(f"    ... and {len(result.problems) - details} more")
    return "\n".join([line, *extra])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
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
