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
# Namespace package stub, as every apache/airflow provider has one: `airflow` is shared with apache-airflow-core
# and the other providers. Only the sdist carries it; the wheel holds airflow/providers/backend/ai only.
from __future__ import annotations

from typing import TYPE_CHECKING

__path__ = __import__("pkgutil").extend_path(__path__, __name__)

if TYPE_CHECKING:
    # Never executed: the installed apache-airflow-core's airflow/__init__.py is found first. mypy, which
    # resolves `airflow` to this stub through mypy_path = src, learns here what the real package defines.
    __version__: str
