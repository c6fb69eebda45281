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
Fill a fresh Backend.AI 26.9.6 database and etcd for the e2e cluster, in one process.

Each step is a real ``backend.ai mgr`` command run in-process (one interpreter start instead of
one per command, about 6 s each), plus the project-roster step of ``rosters.py``. Run by
up.sh with the cloud-probe hook on PYTHONPATH; prints ``bootstrap: <step>`` before each step so
that a failure names its step.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import click
from rosters import join_fixture_rosters


def mgr(config: Path, *args: str) -> None:
    """Run one ``backend.ai mgr`` command in this process; raise on a non-zero exit."""
    from ai.backend.manager.cli.__main__ import main

    try:
        main.main(args=["-f", str(config), *args], prog_name="backend.ai mgr", standalone_mode=False)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise RuntimeError(f"backend.ai mgr {' '.join(args)} exited with {exc.code}") from exc
    except click.ClickException as exc:
        raise RuntimeError(f"backend.ai mgr {' '.join(args)}: {exc.format_message()}") from exc


def step(name: str) -> None:
    print(f"bootstrap: {name}", flush=True)


async def put_etcd(config: Path, key: str, value: str) -> None:
    """``mgr etcd put`` swallows errors, so write and read back with the same client."""
    from ai.backend.logging.types import LogLevel
    from ai.backend.manager.cli.context import CLIContext, etcd_ctx

    async with etcd_ctx(CLIContext(LogLevel.INFO, config)) as etcd:
        await etcd.put(key, value)
        if (got := await etcd.get(key)) != value:
            raise RuntimeError(f"etcd {key}: wrote {value!r}, read back {got!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manager-config", type=Path, required=True)
    parser.add_argument("--alembic-config", type=Path, required=True)
    parser.add_argument("--fixture", type=Path, required=True)
    parser.add_argument("--keys-dir", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, required=True, help="scratch space for generated files")
    parser.add_argument("--redis-addr", required=True, help="host:port")
    opts = parser.parse_args()
    cfg = opts.manager_config

    step("generate the manager's RPC keypair")
    opts.keys_dir.mkdir(parents=True, exist_ok=True)
    mgr(cfg, "generate-rpc-keypair", str(opts.keys_dir), "manager")

    step("create the schema (schema oneshot)")
    mgr(cfg, "schema", "oneshot", "-f", str(opts.alembic_config))

    step(f"populate the fixture {opts.fixture.name}")
    mgr(cfg, "fixture", "populate", str(opts.fixture))

    step("write and populate the role presets (permissions emit)")
    emit_root = opts.work_dir / "emit"
    (emit_root / "fixtures" / "manager").mkdir(parents=True, exist_ok=True)
    mgr(cfg, "permissions", "emit", "--repository", str(emit_root))
    mgr(cfg, "fixture", "populate", str(emit_root / "fixtures" / "manager" / "example-role-presets.json"))

    step("provision the preset roles (permissions provision)")
    mgr(cfg, "permissions", "provision")

    step("put the fixture's project members on the project rosters")
    joined = asyncio.run(join_fixture_rosters(cfg))
    print(f"joined {sum(map(len, joined.values()))} members to {len(joined)} project(s)")

    step("point the cluster at redis (etcd config/redis/addr)")
    asyncio.run(put_etcd(cfg, "config/redis/addr", opts.redis_addr))
    step("done")


if __name__ == "__main__":
    main()
