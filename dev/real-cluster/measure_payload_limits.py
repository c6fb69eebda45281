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
Measure how large a batch job's inputs and output may be on a Backend.AI manager (or the emulator).

For each probe it creates one batch session through the SDK, waits for its result, reads its log after
the end, destroys it, and prints one row: what was sent, the create answer (status and error body), the
job's result and status info, and what the log held. Sizes are bytes of UTF-8 (the ASCII probes make
them equal to characters).

Probes: ``startup_command`` around the kernel's single-argument limit (131,072 bytes with the NUL) and
around the request-body limit; ``bootstrap_script`` around 16,384 characters (the manager's column);
one ``envs`` value around 131,072 bytes; job output of 1, 10 and 24 MiB; and output that is not UTF-8.

Usage, from the repository root::

    set -a; . DIR/cluster.env; set +a
    .venv-airflow3/bin/python dev/real-cluster/measure_payload_limits.py [probe-name ...]

``BACKEND_AI_TEST_ENDPOINT``/``_ACCESS_KEY``/``_SECRET_KEY``/``_IMAGE`` name the manager (the emulator's
defaults are used when only the endpoint is given).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "emulator"))

import contextlib

from ai.backend.client.exceptions import BackendAPIError, BackendClientError
from integration.backend.ai.contract.sdk import make_config, open_session, query_session, session_ref

#: Linux MAX_ARG_STRLEN: one argv or environment string, including its terminating NUL.
ARG_STRLEN = 131_072
MIB = 1024 * 1024


@dataclass
class Probe:
    name: str
    command: str
    bootstrap: str | None = None
    envs: dict[str, str] = field(default_factory=dict)
    #: What the log should end with (or hold) for the job to count as having run its payload.
    expect_in_log: str | None = None


def padded_command(total: int, tag: str) -> str:
    """A shell command of exactly ``total`` bytes that prints ``ok-<tag>`` (the padding is a comment)."""
    head = f"echo ok-{tag} #"
    return head + "x" * (total - len(head))


def probes() -> list[Probe]:
    found = []
    for size in (ARG_STRLEN - 1, ARG_STRLEN):
        found.append(Probe(f"command-{size}", padded_command(size, str(size)), expect_in_log=f"ok-{size}"))
    for size in (MIB - 4096, MIB, 2 * MIB):
        found.append(Probe(f"command-{size}", padded_command(size, str(size)), expect_in_log=f"ok-{size}"))
    for size in (16_384, 16_385):
        found.append(
            Probe(
                f"bootstrap-{size}",
                "echo ok-bootstrap",
                bootstrap="#" + "b" * (size - 1),
                expect_in_log="ok-bootstrap",
            )
        )
    for size in (ARG_STRLEN - 1, ARG_STRLEN):
        # the string "V=<value>" has ``size`` bytes, plus its NUL: 131,071 fits, 131,072 does not
        value_size = size - 2
        found.append(
            Probe(
                f"env-string-{size}",
                'echo "ok-env ${#V}"',
                envs={"V": "v" * value_size},
                expect_in_log=f"ok-env {value_size}",
            )
        )
    for mib in (1, 10, 24):
        found.append(
            Probe(
                f"output-{mib}MiB",
                f"head -c {mib * MIB} /dev/zero | tr '\\0' 'a' | fold -w 1023; echo; echo ok-output",
                expect_in_log="ok-output",
            )
        )
    found.append(
        Probe(
            "output-not-utf8",
            "printf 'before\\n\\377\\376 bad bytes\\n'; printf 'nul:\\000:end\\n'; echo ok-bytes",
            expect_in_log="ok-bytes",
        )
    )
    return found


def run_probe(session: Any, image: str, probe: Probe, timeout: float) -> dict[str, Any]:
    from ai.backend.client.func.session import ComputeSession

    row: dict[str, Any] = {"probe": probe.name, "command_bytes": len(probe.command.encode())}
    name = f"lim-{uuid.uuid4().hex[:10]}"
    started = time.monotonic()
    try:
        created = ComputeSession.get_or_create(
            image,
            name=name,
            type_="batch",
            enqueue_only=True,
            startup_command=probe.command,
            bootstrap_script=probe.bootstrap,
            envs=probe.envs,
            resources={"cpu": 1, "mem": "1g"},
        )
    except BackendAPIError as exc:
        row.update(create=f"HTTP {exc.status}", error=_short(exc.data))
        return row
    except BackendClientError as exc:
        row.update(create="client error", error=_short(str(exc)))
        return row
    session_id = str(created.id)
    row["create"] = "201"
    try:
        deadline = time.monotonic() + timeout
        facts = None
        while time.monotonic() < deadline:
            facts = query_session(session, session_id)
            if facts and (
                facts["result"] != "UNDEFINED" or facts["status"] in ("TERMINATED", "CANCELLED", "ERROR")
            ):
                break
            time.sleep(0.5)
        row.update(
            result=facts and facts["result"],
            status=facts and facts["status"],
            status_info=facts and facts["status_info"],
            seconds=round(time.monotonic() - started, 1),
        )
        # The log as stored after the end (wait for TERMINATED, when the manager serves it from its database).
        while time.monotonic() < deadline:
            facts = query_session(session, session_id)
            if facts and facts["status"] in ("TERMINATED", "CANCELLED", "ERROR"):
                break
            time.sleep(0.5)
        row["final_status"] = facts and facts["status"]
        try:
            logs = session_ref(session_id).get_logs()["result"]["logs"]
        except BackendAPIError as exc:
            row.update(log=f"HTTP {exc.status}", log_error=_short(exc.data))
        else:
            row.update(
                log_chars=len(logs),
                log_bytes=len(logs.encode("utf-8", "surrogatepass")),
                log_ok=probe.expect_in_log in logs if probe.expect_in_log else None,
                log_tail=_short(logs[-120:]),
            )
    finally:
        with contextlib.suppress(BackendAPIError):
            session_ref(session_id).destroy(forced=True)
    return row


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: list[str]) -> int:
    endpoint = os.environ["BACKEND_AI_TEST_ENDPOINT"]
    from backend_ai_emulator import DEFAULT_ACCESS_KEY, DEFAULT_IMAGE, DEFAULT_SECRET_KEY

    access = os.environ.get("BACKEND_AI_TEST_ACCESS_KEY", DEFAULT_ACCESS_KEY)
    secret = os.environ.get("BACKEND_AI_TEST_SECRET_KEY", DEFAULT_SECRET_KEY)
    image = os.environ.get("BACKEND_AI_TEST_IMAGE", DEFAULT_IMAGE)
    selected = [p for p in probes() if not argv or p.name in argv]
    with open_session(make_config(endpoint, access, secret, read_timeout=300)) as session:
        for probe in selected:
            row = run_probe(session, image, probe, timeout=180)
            print(" | ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
