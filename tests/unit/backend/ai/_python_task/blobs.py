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
"""The largest argument that still fits in a job: the tests of the command-line limit share it."""

from __future__ import annotations

import random

from airflow.providers.backend.ai._python_task.payload import build_command
from airflow.providers.backend.ai.exceptions import BackendAIPythonTaskInputError

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def blob(chars: int, seed: int = 5) -> str:
    """Random letters and digits: base64 and zlib can hardly shrink them."""
    return "".join(random.Random(seed).choices(ALPHABET, k=chars))


def job_size(function_name: str, source: str, chars: int, seed: int = 5) -> int:
    """The size of the job that passes a blob of ``chars`` as the function's only argument."""
    return build_command(function_name=function_name, source=source, op_args=[blob(chars, seed)]).size


def largest_fitting_blob(function_name: str, source: str, seed: int = 5) -> int:
    """How many characters the largest blob that fits has (bisected: sizes move in base64 quanta)."""
    low, high = 0, 200_000
    while high - low > 1:
        middle = (low + high) // 2
        try:
            job_size(function_name, source, middle, seed)
        except BackendAIPythonTaskInputError:
            high = middle
        else:
            low = middle
    return low
