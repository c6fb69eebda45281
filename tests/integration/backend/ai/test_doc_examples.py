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
Every Python example in README.rst and docs/ runs, on this Airflow line, against the emulator.

Each example is written alone into a fresh Dags folder (with a copy of a migrated metadata database) and
run in a subprocess as a user would run it (see ``doc_examples.py`` for the rules and the markers): an
example that builds a Dag must end in successful Dag runs with ``dag.test()``, any other runs with
``python``. The ``backend_ai_default`` connection points at the emulator, which accepts any image name
(an image is only a label there) and has GPU slots. After each example the server must hold no live
session. A deliberately broken copy of an example makes the run fail (``test_broken_*``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tests_common.test_utils.version_compat import AIRFLOW_V_3_0_PLUS

from integration.backend.ai.doc_examples import (
    REPO_ROOT,
    DocExample,
    ExampleMarkerError,
    collect_examples,
    doc_files,
    extract_examples,
    literalincluded_python,
    python_in_literal_blocks,
)

if TYPE_CHECKING:
    from backend_ai_emulator import EmulatorHandle

pytestmark = pytest.mark.integration

LINE = "airflow3" if AIRFLOW_V_3_0_PLUS else "airflow2"
EXAMPLES = collect_examples()
RUNNER = Path(__file__).with_name("_run_doc_example.py")
TIMEOUT = 300


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A metadata database migrated once per session; each example runs on a copy of it."""
    home = tmp_path_factory.mktemp("doc-examples-home")
    airflow = Path(sys.executable).with_name("airflow")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    subprocess.run([str(airflow), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return home / "airflow.db"


def run_example(
    example: DocExample, emulator: EmulatorHandle, workdir: Path, migrated_db: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``example`` as a user would, against ``emulator``; return the finished process."""
    home, dags = workdir / "airflow-home", workdir / "dags"
    home.mkdir()
    dags.mkdir()
    shutil.copy(migrated_db, home / "airflow.db")
    module = re.sub(r"\W", "_", f"doc_example_{example.id}").lower()
    source = dags / f"{module}.py"
    source.write_text(example.code, encoding="utf-8")
    connection = {
        "conn_type": "backend_ai",
        "host": emulator.endpoint,
        "login": emulator.access_key,
        "password": emulator.secret_key,
    }
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "BACKEND_"))
        },
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__METRICS__TIMER_UNIT_CONSISTENCY": "True",
        "PYTHONPATH": "",
        **{f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(connection) for conn_id in example.connections},
    }
    command = (
        [sys.executable, str(RUNNER), "dag", str(source)]
        if example.builds_dag
        else [sys.executable, str(source)]
    )
    return subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True, timeout=TIMEOUT)


def _tail(proc: subprocess.CompletedProcess[str], lines: int = 60) -> str:
    return "\n".join((proc.stdout + proc.stderr).splitlines()[-lines:])


@pytest.fixture
def doc_emulator(emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> EmulatorHandle:
    """The emulator as the docs assume a cluster: any image, and ``python`` on the jobs' PATH."""
    emulator.settings.accept_any_image = True
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return emulator


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_doc_example_runs(
    example: DocExample, doc_emulator: EmulatorHandle, tmp_path: Path, migrated_db: Path
) -> None:
    reason = example.skip_reason(LINE)
    if reason is not None:
        pytest.skip(f"{example.id} is marked not to run on {LINE}: {reason}")
    proc = run_example(example, doc_emulator, tmp_path, migrated_db)
    assert proc.returncode == 0, f"{example.id} failed on {LINE} (exit {proc.returncode}):\n{_tail(proc)}"
    if "BackendAI" in example.code:
        assert doc_emulator.request_count() > 0, f"{example.id} never reached the emulator"


def test_examples_are_found() -> None:
    """The extractor sees every Python code block (a directive it missed would never run)."""
    directives = [
        (path, n)
        for path in doc_files()
        for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.match(r"^\s*\.\. (code-block|code|sourcecode)::\s*(python3?|py)\s*$", text)
    ]
    assert len(EXAMPLES) == len(directives) >= 1
    assert any(e.id.startswith("README.rst:") for e in EXAMPLES)
    assert all(e.code.strip() for e in EXAMPLES)


def test_literalincluded_python_runs_as_a_system_test() -> None:
    """Examples shown with ``literalinclude`` come from example Dags that tests/system runs with dag.test()."""
    system = REPO_ROOT / "tests" / "system"
    for rst, line, included in literalincluded_python():
        assert included.is_file(), f"{rst}:{line}: {included} does not exist"
        not_run = f"{rst}:{line}: {included} is not a system-test example Dag, so nothing runs it"
        assert included.is_relative_to(system), not_run
        assert included.name.startswith("example_"), not_run


def test_no_python_hides_in_literal_blocks() -> None:
    assert python_in_literal_blocks() == [], "use '.. code-block:: python' so that the example runs"


def test_skipped_examples_say_so_in_the_text() -> None:
    """An example marked not to run on a line has text nearby naming that Airflow version."""
    for example in EXAMPLES:
        lines = example.path.read_text(encoding="utf-8").splitlines()
        nearby = "\n".join(lines[max(0, example.line - 15) : example.line + example.code.count("\n") + 15])
        for line in example.skip_on:
            version = {"airflow2": "Airflow 2", "airflow3": "Airflow 3"}[line]
            assert version in nearby, f"{example.id} does not run on {line}; say so in the text next to it"


# -- the step fails when an example is broken ------------------------------------------------------------


def _broken_copy(tmp_path: Path, old: str, new: str) -> DocExample:
    """README.rst copied into ``tmp_path`` with ``old`` replaced in its first example."""
    readme = (REPO_ROOT / "README.rst").read_text(encoding="utf-8")
    original = extract_examples(REPO_ROOT / "README.rst")[0]
    assert old in original.code, f"the README example no longer contains {old!r}: update this test"
    root = tmp_path / "broken"
    root.mkdir()
    broken_code = original.code.replace(old, new, 1)
    text = readme.replace(_indented(original.code), _indented(broken_code), 1)
    assert text != readme
    (root / "README.rst").write_text(text, encoding="utf-8")
    [example] = [e for e in extract_examples(root / "README.rst") if e.line == original.line]
    assert example.code == broken_code
    return example


def _indented(code: str) -> str:
    return "\n".join(f"    {line}" if line else "" for line in code.rstrip("\n").splitlines())


def test_broken_resource_slot_fails_the_step(
    doc_emulator: EmulatorHandle, tmp_path: Path, migrated_db: Path
) -> None:
    """The slip issue 22 found: ``cuda.devices`` instead of ``cuda.device`` makes the Dag run fail."""
    example = _broken_copy(tmp_path, '"cuda.device"', '"cuda.devices"')
    workdir = tmp_path / "run"
    workdir.mkdir()
    proc = run_example(example, doc_emulator, workdir, migrated_db)
    assert proc.returncode != 0, _tail(proc)
    assert "cuda.devices" in proc.stdout + proc.stderr
    assert not doc_emulator.live_sessions()


def test_broken_import_fails_the_step(
    doc_emulator: EmulatorHandle, tmp_path: Path, migrated_db: Path
) -> None:
    example = _broken_copy(tmp_path, "from airflow import DAG", "from airflow.sdk import DAGG")
    workdir = tmp_path / "run"
    workdir.mkdir()
    proc = run_example(example, doc_emulator, workdir, migrated_db)
    assert proc.returncode == 2, _tail(proc)
    assert "DAGG" in proc.stderr
    assert doc_emulator.request_count(route="create") == 0


# -- the markers -------------------------------------------------------------------------------------------

_MARKED = """\
Title
=====

This one needs Airflow 3.

.. example: skip-on airflow2: airflow.sdk does not exist on Airflow 2.11
.. example: connections: other_conn

.. code-block:: python
    :caption: an example

    from airflow.sdk import DAG

    print("three")

Not run at all:

.. example: skip: needs a feature not built yet

.. code-block:: python

    hook.run_batch()

A literal block::

    not python
"""


def test_markers_are_read(tmp_path: Path) -> None:
    rst = tmp_path / "page.rst"
    rst.write_text(_MARKED, encoding="utf-8")
    first, second = extract_examples(rst)
    assert first.line == 9
    assert first.code == 'from airflow.sdk import DAG\n\nprint("three")\n'
    assert first.skip_on == {"airflow2": "airflow.sdk does not exist on Airflow 2.11"}
    assert first.skip_reason("airflow2") == "airflow.sdk does not exist on Airflow 2.11"
    assert first.skip_reason("airflow3") is None
    assert first.connections == ("backend_ai_default", "other_conn")
    assert not first.builds_dag
    assert second.skip_reason("airflow3") == second.skip_reason("airflow2") == "needs a feature not built yet"


@pytest.mark.parametrize(
    "marker",
    [
        ".. example: skip-on airflow1: old",
        ".. example: skip-on airflow2:",
        ".. example: skip:",
        ".. example: connections:",
        ".. example: run-twice: why not",
    ],
)
def test_bad_markers_fail(tmp_path: Path, marker: str) -> None:
    rst = tmp_path / "page.rst"
    rst.write_text(f"{marker}\n\n.. code-block:: python\n\n    print(1)\n", encoding="utf-8")
    with pytest.raises(ExampleMarkerError, match=r"page\.rst:1: "):
        extract_examples(rst)


@pytest.mark.parametrize(
    ("code", "is_dag"),
    [
        ("from airflow import DAG\nwith DAG('x'):\n    pass\n", True),
        ("import airflow\ndag = airflow.DAG('x')\n", True),
        ("from airflow.sdk import dag\n@dag()\ndef x():\n    pass\nx()\n", True),
        ("from airflow.sdk import dag\n@dag\ndef x():\n    pass\nx()\n", True),
        ("hook = BackendAIHook()\nprint(hook.test_connection())\n", False),
    ],
)
def test_dag_examples_are_told_from_scripts(tmp_path: Path, code: str, is_dag: bool) -> None:
    assert DocExample(tmp_path / "x.rst", 1, code).builds_dag is is_dag


def test_a_script_example_that_raises_fails_the_step(
    doc_emulator: EmulatorHandle, tmp_path: Path, migrated_db: Path
) -> None:
    """The hook path: a script that fails (here: wrong keys on a named connection) exits non-zero."""
    code = (
        "from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook\n"
        "ok, message = BackendAIHook('backend_ai_default').test_connection()\n"
        "assert ok, message\n"
        "ok, message = BackendAIHook('not_defined').test_connection()\n"
        "assert ok, message\n"
    )
    proc = run_example(DocExample(tmp_path / "x.rst", 1, code), doc_emulator, tmp_path, migrated_db)
    assert proc.returncode == 1, _tail(proc)
    assert "not_defined" in proc.stderr
    assert doc_emulator.request_count(route="gql") == 1  # the first connection test reached the emulator


def test_readme_repeats_the_installation_workaround_verbatim() -> None:
    """The tabulate workaround lives in docs/index.rst; README.rst (the PyPI page) carries an exact copy."""
    docs = (REPO_ROOT / "docs" / "index.rst").read_text(encoding="utf-8")
    section = docs.split("checks the two agree.\n", 1)[1].split("\nRequirements\n------------", 1)[0]
    readme = (REPO_ROOT / "README.rst").read_text(encoding="utf-8")
    copy = readme.split("the docs are not published yet:\n", 1)[1].split("\nA minimal Dag\n", 1)[0]
    assert "tabulate>=0.9.0" in section
    assert copy.strip() == section.strip()
