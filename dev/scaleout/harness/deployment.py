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
"""The deployment of ``up.sh DIR``, from the settings ``DIR/env`` exports: its directory, metadata DB and pids."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psycopg2

DIR = Path(os.environ.get("SCALEOUT_DIR", "."))
HERE = Path(__file__).resolve().parent.parent  # dev/scaleout
API = os.environ.get("SCALEOUT_API", "")


def log(msg: str) -> None:
    print(f"[scenarios {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def db() -> Any:
    """A connection to the metadata DB (PostgreSQL): ``with db() as conn, conn.cursor() as cur``."""
    return psycopg2.connect(
        host="127.0.0.1", port=int(os.environ["SCALEOUT_PG_PORT"]), user="airflow", dbname="airflow"
    )


def pid_of(name: str) -> int:
    """The recorded pid (= process group id) of a component: ``scheduler``, ``worker1``, ..."""
    return int((DIR / "pids" / f"{name}.pid").read_text())
