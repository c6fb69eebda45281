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
A worker process for the hard-kill scenarios: it runs one try of a batch task as a worker would, until the
test kills it with SIGKILL (no ``finally``, no ``on_kill``). Usage: ``python -m integration.backend.ai.reliability.worker JSON``
with ``{"mode", "command", "try_number", "kwargs"}`` and optionally ``"task_state_store": PATH`` (Airflow
3.3+: the task state store kept in that JSON file, see ``harness.file_task_state_store``) and
``"hang_on_set": true`` (the store write never returns).
"""

from __future__ import annotations

import json
import sys

from airflow.providers.common.compat.sdk import TaskDeferred

from integration.backend.ai.reliability.harness import batch_operator, file_task_state_store, make_context


def main() -> None:
    args = json.loads(sys.argv[1])
    op = batch_operator(args["mode"], args["command"], **args.get("kwargs", {}))
    store = None
    if args.get("task_state_store"):
        from airflow.sdk.execution_time import task_runner

        store, comms = file_task_state_store(
            args["task_state_store"], hang_on_set=args.get("hang_on_set", False)
        )
        task_runner.SUPERVISOR_COMMS = comms
    try:
        op.execute(make_context(try_number=args["try_number"], task_state_store=store))
    except TaskDeferred:
        print("deferred", flush=True)


if __name__ == "__main__":
    main()
