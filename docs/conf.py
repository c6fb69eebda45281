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
"""Sphinx configuration for the apache-airflow-providers-backend-ai documentation."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the example Dag is included from tests/system
# Stand-ins for the Sphinx extensions apache/airflow's devel-common provides (exampleinclude, the
# airflow-providers-commits directive, and the autoapi-generated System tests page); see docs/exts/.
sys.path.insert(0, str(Path(__file__).resolve().parent / "exts"))
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-docs-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

project = "apache-airflow-providers-backend-ai"
copyright = "The Apache Software Foundation"
release = version = "0.1.0"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "exampleinclude",
    "providers_commits",
    "system_tests_pages",
]
exclude_patterns = ["_build", "exts"]
html_theme = "alabaster"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
nitpicky = False
# The API reference documents the provider only; types from Airflow and the SDK are not cross-linked.
suppress_warnings = ["ref.python"]
