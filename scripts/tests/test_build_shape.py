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
The sdist and the wheel have apache/airflow's provider shape (docs/installing-providers-from-sources.rst).

Built the way that page says (``uv build``), from a copy of the repository: the namespace stubs
``src/airflow/__init__.py`` and ``src/airflow/providers/__init__.py`` go into the sdist only, the wheel
holds ``airflow/providers/backend/ai`` alone, and neither carries the emulator, dev/ or the tests_common
stand-in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOT_COPIED = shutil.ignore_patterns(".git", ".venv*", "__pycache__", "_build", "_api", ".mypy_cache", "dist")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str]]:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (dev/setup-venv.sh installs it)")
    work = tmp_path_factory.mktemp("build")
    shutil.copytree(REPO, work / "repo", ignore=NOT_COPIED)
    command = [
        uv,
        "build",
        "--quiet",
        "--python",
        sys.executable,
        "--out-dir",
        str(work / "dist"),
        str(work / "repo"),
    ]
    subprocess.run(command, check=True, timeout=600, env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"})
    [sdist] = (work / "dist").glob("*.tar.gz")
    [wheel] = (work / "dist").glob("*.whl")
    with tarfile.open(sdist) as archive:
        sdist_files = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    with zipfile.ZipFile(wheel) as archive:
        wheel_files = archive.namelist()
    return sdist_files, wheel_files


def test_sdist_carries_the_namespace_stubs_provider_yaml_docs_and_tests(
    built: tuple[list[str], list[str]],
) -> None:
    sdist, _ = built
    for expected in (
        "src/airflow/__init__.py",
        "src/airflow/providers/__init__.py",
        "provider.yaml",
        "docs/index.rst",
        "docs/commits.rst",
        "tests/system/backend/ai/example_backend_ai.py",
        "src/airflow/providers/backend/ai/get_provider_info.py",
    ):
        assert expected in sdist
    assert not [name for name in sdist if name.startswith(("emulator/", "dev/", ".ci/"))]


def test_wheel_holds_the_provider_package_only(built: tuple[list[str], list[str]]) -> None:
    _, wheel = built
    code = [name for name in wheel if ".dist-info/" not in name]
    assert code
    assert all(name.startswith("airflow/providers/backend/ai/") for name in code), code
    assert "airflow/__init__.py" not in wheel
    assert "airflow/providers/__init__.py" not in wheel
    assert not [name for name in wheel if "tests_common" in name or "emulator" in name]
