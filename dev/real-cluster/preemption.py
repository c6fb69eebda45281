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
Show or switch the preemption settings of the cluster's ``default`` resource group (admin API).

    DIR/venv/bin/python dev/real-cluster/preemption.py DIR show
    DIR/venv/bin/python dev/real-cluster/preemption.py DIR on reschedule   # or: on terminate
    DIR/venv/bin/python dev/real-cluster/preemption.py DIR off

It sends the manager's own admin mutation (``adminUpdateResourceGroup`` on ``/admin/gql/strawberry``)
with the superadmin keypair from ``DIR/cluster.env``; the mutation replaces the whole preemption config
(order OLDEST, victim scope USER, no minimum runtime). Tests switch preemption the same way and put the
previous settings back (``tests/integration/backend/ai/contract/busy.py``, ``PreemptionSwitch``). Prints the settings as JSON.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

FIELDS = "enabled mode order victimScope preemptiblePriority preemptionMinRuntime"
READ = f'{{ adminResourceGroupV2(name: "default") {{ scheduler {{ preemption {{ {FIELDS} }} }} }} }}'
UPDATE = (
    'mutation($p: PreemptionConfigInput!) { adminUpdateResourceGroup(input: {resourceGroupName: "default", '
    f"preemption: $p}}) {{ resourceGroup {{ scheduler {{ preemption {{ {FIELDS} }} }} }} }} }}"
)


def _env(cluster_dir: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in (cluster_dir / "cluster.env").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key] = shlex.split(value)[0] if value else ""
    return env


async def _call(env: dict[str, str], query: str, variables: dict[str, Any]) -> dict[str, Any]:
    from ai.backend.client.config import APIConfig
    from ai.backend.client.request import Request
    from ai.backend.client.session import AsyncSession

    with mock.patch("ai.backend.client.config.load_dotenv", return_value=False):
        config = APIConfig(
            endpoint=env["BACKEND_AI_TEST_ENDPOINT"],
            endpoint_type="api",
            access_key=env["BACKEND_AI_TEST_ADMIN_ACCESS_KEY"],
            secret_key=env["BACKEND_AI_TEST_ADMIN_SECRET_KEY"],
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        async with AsyncSession(config=config):
            request = Request("POST", "/admin/gql/strawberry")
            request.set_json({"query": query, "variables": variables})
            async with request.fetch() as resp:
                answer: dict[str, Any] = await resp.json()
    if answer.get("errors"):
        raise SystemExit(f"the manager refused: {json.dumps(answer['errors'])}")
    return answer["data"]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("show", "on", "off") or (argv[1] == "on" and len(argv) != 3):
        print(__doc__, file=sys.stderr)
        return 2
    env = _env(Path(argv[0]))
    if argv[1] == "show":
        data = asyncio.run(_call(env, READ, {}))
        print(json.dumps(data["adminResourceGroupV2"]["scheduler"]["preemption"]))
        return 0
    mode = argv[2].upper() if argv[1] == "on" else "TERMINATE"
    if mode not in ("TERMINATE", "RESCHEDULE"):
        print("mode: terminate or reschedule", file=sys.stderr)
        return 2
    config = {
        "enabled": argv[1] == "on",
        "mode": mode,
        "order": "OLDEST",
        "victimScope": "USER",
        "preemptiblePriority": 5,
        "preemptionMinRuntime": 0,
    }
    data = asyncio.run(_call(env, UPDATE, {"p": config}))
    print(json.dumps(data["adminUpdateResourceGroup"]["resourceGroup"]["scheduler"]["preemption"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
