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
The provider's performance benchmarks, in one command.

    .venv-airflow3/bin/python -m benchmarks.run [--quick] [--output benchmarks/results.md] [--only 6]

Writes a Markdown report (machine, budgets, details) and exits 1 when a budget is broken or an item could
not be measured. See ``benchmarks/README.md``. Item 6 (the completion floor) runs against the real manager
when ``BACKEND_AI_TEST_ENDPOINT`` is set; ``--quick`` runs items 1-5 only unless ``--only`` names 6.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
import traceback
from pathlib import Path

from benchmarks.common import (
    DEFAULT_CONN_ID,
    OTHER_CONN_ID,
    REPO_ROOT,
    Section,
    machine_description,
    md_table,
    prepare_this_process,
    quiet_airflow_logging,
    set_connection,
)

TITLES = {
    1: "Dag-parse import cost",
    2: "Completion latency",
    3: "Triggerer scale",
    4: "Overhead versus the bare SDK",
    5: "API calls per job",
    6: "Completion floor",
}
TIME_LIMIT = {True: 180.0, False: 600.0}  # quick, full: items 1-5
QUICK_DEFAULT_ITEMS = {1, 2, 3, 4, 5}  # item 6 in a quick run only when asked for (--only 6)


def time_limit(quick: bool, numbers: set[int]) -> float:
    """The time the items that ran may take: items 1-5 share one limit, item 6 has its own."""
    from benchmarks import floor

    limit = TIME_LIMIT[quick] if numbers & {1, 2, 3, 4, 5} else 0.0
    return limit + (floor.TIME_LIMIT[quick] if 6 in numbers else 0.0)


def _timed(section: Section, fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    began = time.monotonic()
    print(f"[benchmarks] {section.number}. {section.title} …", file=sys.stderr, flush=True)
    try:
        fn(section, *args, **kwargs)
    except Exception:
        section.error = traceback.format_exc(limit=6)
        print(section.error, file=sys.stderr, flush=True)
    section.seconds = time.monotonic() - began
    print(f"[benchmarks]    done in {section.seconds:.1f} s", file=sys.stderr, flush=True)


def run_suite(quick: bool, only: set[int]) -> list[Section]:
    from benchmarks import api_calls, import_cost, latency, overhead, scale

    wanted = only or (QUICK_DEFAULT_ITEMS if quick else set(TITLES))
    sections = {n: Section(n, t) for n, t in TITLES.items() if n in wanted}
    if 1 in sections:  # fresh interpreters only: first, while this process has imported nothing heavy
        _timed(sections[1], import_cost.run, quick=quick)
    if {2, 3, 4, 5, 6} & set(sections):
        from benchmarks import jobs

        began = time.monotonic()
        jobs.preload()  # Airflow, the provider and the SDK, once, before any job is timed
        quiet_airflow_logging()
        print(f"[benchmarks] imports for the jobs: {time.monotonic() - began:.1f} s", file=sys.stderr)
    if 3 in sections:
        _timed(sections[3], scale.run, quick=quick)
    if {2, 4, 5} & set(sections):
        from benchmarks.emulator_proc import EmulatorProcess

        with EmulatorProcess() as emu:
            set_connection(DEFAULT_CONN_ID, emu.connection_json())
            set_connection(OTHER_CONN_ID, emu.connection_json(other=True))

            def latency_item(section: Section) -> None:
                latency.run(section, emu, quick=quick)
                if not quick:
                    latency.run_realistic(section, emu, runs=3)

            if 2 in sections:
                _timed(sections[2], latency_item)
            if 4 in sections:
                _timed(sections[4], overhead.run, emu, quick=quick)
            if 5 in sections:
                _timed(sections[5], api_calls.run, emu, quick=quick)
    if 6 in sections:  # its own server: the real manager if configured, else an emulator with its timing
        from benchmarks import floor

        _timed(sections[6], floor.run, quick=quick)
    return [sections[n] for n in sorted(sections)]


def render(
    sections: list[Section],
    *,
    quick: bool,
    argv: list[str],
    started: datetime.datetime,
    machine: list[tuple[str, str]],
    total: float,
) -> str:
    mode = "quick" if quick else "full"
    limit = time_limit(quick, {s.number for s in sections})
    failed = [s for s in sections if s.failed]
    out = [
        "# Benchmark results: apache-airflow-providers-backend-ai",
        "",
        f"Mode **{mode}**, started {started.strftime('%Y-%m-%d %H:%M:%S %Z')}, took {total:.0f} s "
        f"(limit {limit:.0f} s). Command: `{shlex.join([Path(sys.executable).relative_to(REPO_ROOT).as_posix() if Path(sys.executable).is_relative_to(REPO_ROOT) else sys.executable, '-m', 'benchmarks.run', *argv])}` "
        "(from the repository root). Overall: "
        + ("**all budgets met**." if not failed and total <= limit else "**budget broken**, see below."),
        "",
        "## Machine",
        "",
        md_table(["", ""], machine),
        "",
        "## Budgets and headline numbers",
        "",
    ]
    rows = []
    for s in sections:
        for c in s.checks:
            rows.append([c.item, c.metric, c.value, c.budget or "-", c.verdict])
        if s.error is not None:
            rows.append(
                [
                    f"{s.number}. {s.title}",
                    "could not be measured",
                    s.error.strip().splitlines()[-1],
                    "-",
                    "**FAIL**",
                ]
            )
    rows.append(
        [
            "suite",
            f"duration of the {mode} run",
            f"{total:.0f} s",
            f"< {limit:.0f} s",
            "pass" if total <= limit else "**FAIL**",
        ]
    )
    out += [md_table(["item", "metric", "value", "budget", "verdict"], rows), ""]
    for s in sections:
        out += [f"## {s.number}. {s.title}", "", f"Measured in {s.seconds:.0f} s.", ""]
        if s.table_rows:
            out += [md_table(s.table_header, s.table_rows), ""]
        for title, header, rows in s.extra_tables:
            out += [f"**{title}**", "", md_table(header, rows), ""]
        out += [f"- {note}" for note in s.notes]
        if s.error is not None:
            out += ["", "```", s.error.rstrip(), "```"]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="the CI variant: fewer runs, 200 triggers, < 3 min (items 1-5)"
    )
    parser.add_argument(
        "--output",
        default=None,
        help="where to write the Markdown report (default benchmarks/results.md, or results-quick.md with --quick)",
    )
    parser.add_argument("--only", default="", help="comma-separated item numbers (for development)")
    args = parser.parse_args(argv)
    only = {int(x) for x in args.only.split(",") if x.strip()}

    prepare_this_process()
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    machine = machine_description()
    sections = run_suite(args.quick, only)
    total = time.monotonic() - t0
    report = render(sections, quick=args.quick, argv=argv, started=started, machine=machine, total=total)
    output = Path(args.output or ("benchmarks/results-quick.md" if args.quick else "benchmarks/results.md"))
    if not output.is_absolute():
        output = Path.cwd() / output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    print(report)
    print(f"[benchmarks] report written to {output}", file=sys.stderr)
    broken = any(s.failed for s in sections) or total > time_limit(args.quick, {s.number for s in sections})
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
