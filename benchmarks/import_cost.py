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
Item 1: what the provider adds to every Dag parse.

Every measurement runs in a fresh interpreter (``sys.executable -c ...``) so nothing is cached in
``sys.modules``; the kinds of run are interleaved round by round so that machine noise hits them alike.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.common import IMAGE, REPO_ROOT, Section, airflow_env, median, ms

BUDGET_MS = 30.0
PROVIDER_MODULES = [
    "airflow.providers.backend.ai.operators.backend_ai",
    "airflow.providers.backend.ai.sensors.backend_ai",
    "airflow.providers.backend.ai.triggers.backend_ai",
    "airflow.providers.backend.ai.hooks.backend_ai",
]
#: The Airflow names the provider's modules use; resolving them is Airflow's cost, not the provider's.
AIRFLOW_NAMES_PROBE = """
s = airflow.providers.common.compat.sdk
s.BaseOperator, s.BaseHook, s.BaseSensorOperator, s.conf, s.AirflowException, s.AirflowFailException
import airflow.triggers.base
"""

_IMPORT_PROBE = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import airflow.providers.common.compat.sdk
t1, c1 = time.perf_counter(), time.process_time()
m1 = len(sys.modules)
{names}
t2, c2 = time.perf_counter(), time.process_time()
m2 = len(sys.modules)
{imports}
t3, c3 = time.perf_counter(), time.process_time()
sdk = sorted(m for m in sys.modules if m == "ai.backend" or m.startswith("ai.backend."))
print(json.dumps({{"compat": t1 - t0, "names": t2 - t1, "names_cpu": c2 - c1, "provider": t3 - t2,
                  "provider_cpu": c3 - c2, "total": t3 - t0, "total_cpu": c3 - c0, "ai_backend": sdk,
                  "modules_added": len(sys.modules) - m2}}))
"""

_DAGBAG_PROBE = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
t0 = time.perf_counter()
bag = DagBag(dag_folder={path!r}, safe_mode=True)
t1 = time.perf_counter()
sdk = sorted(m for m in sys.modules if m == "ai.backend" or m.startswith("ai.backend."))
tasks = sum(len(d.tasks) for d in bag.dags.values())
print(json.dumps({{"parse": t1 - t0, "dags": len(bag.dags), "tasks": tasks,
                  "errors": {{k: str(v)[-300:] for k, v in bag.import_errors.items()}}, "ai_backend": sdk}}))
"""

_DAG_TEMPLATE = """\
from __future__ import annotations

import pendulum
from airflow.sdk import DAG

{import_line}

with DAG(
    dag_id="{dag_id}",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    previous = None
    for i in range(20):
        task = {task_expr}
        if previous is not None:
            previous >> task
        previous = task
"""


def _run_probe(code: str, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=str(REPO_ROOT), env=env, capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(f"probe failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _import_probe(kind: str) -> str:
    names = AIRFLOW_NAMES_PROBE if kind in ("names", "provider_after_names") else ""
    imports = "\n".join(f"import {m}" for m in PROVIDER_MODULES) if kind.startswith("provider") else ""
    return _IMPORT_PROBE.format(names=names, imports=imports)


def _write_dags(folder: Path) -> dict[str, Path]:
    ours = folder / "bench_backend_ai_dag.py"
    ours.write_text(
        _DAG_TEMPLATE.format(
            import_line="from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator",
            dag_id="bench_backend_ai_20",
            task_expr=(
                f'BackendAIRunBatchOperator(task_id=f"job_{{i}}", image="{IMAGE}", '
                'command=f"python train.py --shard {i}", session_resources={"cpu": 1, "mem": "1g"})'
            ),
        )
    )
    empty = folder / "bench_empty_dag.py"
    empty.write_text(
        _DAG_TEMPLATE.format(
            import_line="from airflow.providers.standard.operators.empty import EmptyOperator",
            dag_id="bench_empty_20",
            task_expr='EmptyOperator(task_id=f"job_{i}")',
        )
    )
    return {"ours": ours, "empty": empty}


def _compile_sources(env: dict[str, str]) -> None:
    """Write the provider's .pyc files up front, so that no measured interpreter pays for compiling."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO_ROOT / "src")],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


def run(section: Section, *, quick: bool) -> None:
    env = airflow_env()
    # The budget is judged on the best round: as many rounds in CI as in a full run, so that a burst of load
    # on the machine (seen: +10 ms over 7 s, all three quick rounds slow) is less likely to cover them all.
    rounds = 5
    dag_rounds = 0 if quick else 3  # the DagBag comparison has no budget: full runs only
    # quick: only what the budget needs; full: also the baseline alone and the Airflow-names split
    kinds = ["provider"] if quick else ["baseline", "provider", "names", "provider_after_names"]
    _compile_sources(env)

    samples: dict[str, list[dict]] = {k: [] for k in kinds}
    for r in range(rounds):
        for kind in kinds if r % 2 == 0 else reversed(kinds):
            samples[kind].append(_run_probe(_import_probe(kind), env))

    wall = [s["provider"] for s in samples["provider"]]
    cpu = [s["provider_cpu"] for s in samples["provider"]]
    sdk_loaded = sorted({m for s in samples["provider"] for m in s["ai_backend"]})
    section.check(
        f"importing operators, sensors, triggers, hooks after `compat.sdk`: CPU time, best of {rounds} fresh interpreters",
        f"+{min(cpu) * 1000:.1f} ms (wall: best +{min(wall) * 1000:.1f} ms, median +{median(wall) * 1000:.1f} ms)",
        f"≤ +{BUDGET_MS:.0f} ms",
        min(cpu) * 1000 <= BUDGET_MS,
    )
    section.check(
        "`ai.backend` modules loaded by those imports",
        str(len(sdk_loaded)) + (f" ({', '.join(sdk_loaded[:5])}…)" if sdk_loaded else ""),
        "0",
        not sdk_loaded,
    )
    best = {k: min(s["total"] for s in v) for k, v in samples.items()}
    if "baseline" in samples:
        section.check(
            "same, as best total of provider runs minus best total of baseline-only runs (wall; noisy)",
            f"{(best['provider'] - best['baseline']) * 1000:+.1f} ms",
        )
    if "provider_after_names" in samples:
        section.check(
            "split (CPU, best): Airflow names the provider uses / the provider's own modules",
            f"{min(s['names_cpu'] for s in samples['names']) * 1000:.1f} ms / "
            f"{min(s['provider_cpu'] for s in samples['provider_after_names']) * 1000:.1f} ms",
        )
    section.table_header = [
        "fresh interpreter imports",
        "total wall, best",
        "total wall, median",
        "provider modules: wall best / CPU best",
    ]
    labels = {
        "baseline": "`airflow.providers.common.compat.sdk` (baseline)",
        "provider": "baseline, then the provider's 4 modules",
        "names": "baseline, then the Airflow names the provider uses (BaseOperator, BaseHook, BaseSensorOperator, BaseTrigger, conf, exceptions)",
        "provider_after_names": "baseline, those Airflow names, then the provider's 4 modules",
    }
    for kind in kinds:
        own = samples[kind]
        section.table_rows.append(
            [
                labels[kind],
                ms(best[kind]),
                ms(median([s["total"] for s in own])),
                f"{ms(min(s['provider'] for s in own))} / {ms(min(s['provider_cpu'] for s in own))}"
                if kind.startswith("provider")
                else "-",
            ]
        )
    section.notes.append(
        f"{rounds} rounds, kinds interleaved (order reversed every other round), each a fresh interpreter with "
        f".pyc files already written; the provider's imports add {samples['provider'][0]['modules_added']} "
        "modules. The budgeted figure is the CPU time (`time.process_time()`) of the provider imports, measured "
        "inside each run right after `compat.sdk` was imported, best of the rounds. On an idle machine it equals "
        "the wall time; on this shared 2-core machine the wall time also counts waiting for a core, and the "
        "difference between best totals of separate interpreters is dominated by the noise of the ~1.3 s "
        "Airflow import, so both are reported but not budgeted."
    )

    if dag_rounds:
        _dagbag(section, env, dag_rounds)


def _dagbag(section: Section, env: dict[str, str], dag_rounds: int) -> None:
    """Airflow's own parser on a Dag of 20 of our tasks vs the same Dag of EmptyOperators."""
    with tempfile.TemporaryDirectory(prefix="bench-dags-") as tmp:
        paths = _write_dags(Path(tmp))
        parses: dict[str, list[dict]] = {k: [] for k in paths}
        for r in range(dag_rounds + 1):  # round 0 compiles the Dag files and is not counted
            for kind in list(paths) if r % 2 == 0 else list(reversed(list(paths))):
                result = _run_probe(_DAGBAG_PROBE.format(path=str(paths[kind])), env)
                if r:
                    parses[kind].append(result)
    for kind, runs in parses.items():
        errs = [e for s in runs for e in s["errors"].values()]
        if errs or any(s["tasks"] != 20 for s in runs):
            raise RuntimeError(f"DagBag could not parse the {kind} Dag: {errs[:1]}")
    best_ours = min(s["parse"] for s in parses["ours"])
    best_empty = min(s["parse"] for s in parses["empty"])
    dag_sdk = sorted({m for s in parses["ours"] for m in s["ai_backend"]})
    section.check(
        f"DagBag parse of a 20-task Dag, ours vs EmptyOperator (best of {dag_rounds})",
        f"{ms(best_ours)} vs {ms(best_empty)} (+{(best_ours - best_empty) * 1000:.0f} ms)",
    )
    section.check(
        "`ai.backend` modules loaded by the DagBag parse of our Dag", str(len(dag_sdk)), "0", not dag_sdk
    )
    section.table_rows.append(
        [
            "DagBag(<Dag file with 20 BackendAIRunBatchOperator>), Airflow pre-imported, first parse",
            ms(best_ours),
            ms(median([s["parse"] for s in parses["ours"]])),
            "-",
        ]
    )
    section.table_rows.append(
        [
            "DagBag(<same Dag with 20 EmptyOperator>), Airflow pre-imported, first parse",
            ms(best_empty),
            ms(median([s["parse"] for s in parses["empty"]])),
            "-",
        ]
    )


if __name__ == "__main__":  # pragma: no cover - manual use
    s = Section(1, "Dag-parse import cost")
    t = time.perf_counter()
    run(s, quick="--quick" in sys.argv)
    for c in s.checks:
        print(c)
    for row in s.table_rows:
        print(row)
    print(textwrap.shorten(" ".join(s.notes), 300), f"{time.perf_counter() - t:.1f}s")
