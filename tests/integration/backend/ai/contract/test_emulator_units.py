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
"""Unit tests of the emulator's own parts: signing, parsing, GraphQL reader and the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from backend_ai_emulator import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    compute_signature,
    signed_headers,
    start_emulator,
    verify,
)
from backend_ai_emulator.auth import parse_authorization, signing_string
from backend_ai_emulator.errors import ApiError
from backend_ai_emulator.graphql import parse_query, parse_session_ref, session_node_global_id
from backend_ai_emulator.settings import EmulatorSettings
from backend_ai_emulator.validation import parse_binary_size, parse_create_body, parse_timeout_seconds

from .sdk import live_processes_in_group

pytestmark = pytest.mark.emulator_only

EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_DATE = "2025-07-22T01:02:03.456789+00:00"


def _example(path: str, ctype: str) -> str:
    return compute_signature(
        EXAMPLE_SECRET,
        method="POST" if path == "/session" else "GET",
        raw_path_qs=path,
        raw_date=EXAMPLE_DATE,
        date=datetime.fromisoformat(EXAMPLE_DATE),
        host="127.0.0.1:8091",
        content_type=ctype,
        api_version="v9.20250722",
    )


def test_signature_matches_the_worked_example() -> None:
    assert signing_string(
        "POST", "/session", EXAMPLE_DATE, "127.0.0.1:8091", "application/json", "v9.20250722"
    ) == (
        "POST\n/session\n2025-07-22T01:02:03.456789+00:00\nhost:127.0.0.1:8091\ncontent-type:application/json\n"
        "x-backendai-version:v9.20250722\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert (
        _example("/session", "application/json")
        == "57b070a87dc5240058bfeae0199c81585ac9edf51c5557cd535da809a3f68ab2"
    )
    assert (
        _example(
            "/events/session?sessionId=3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d&scope=*",
            "application/octet-stream",
        )
        == "3b614f61a048d442d3379757a1871c9335e41a94ad19cebd98b599e5082d3f0f"
    )


def _verify(headers: dict[str, str], now: datetime) -> str:
    return verify(
        method="POST",
        raw_path_qs="/session",
        host="127.0.0.1:8091",
        content_type="application/json",
        headers=headers,
        secrets_by_access_key={"AKIAIOSFODNN7EXAMPLE": EXAMPLE_SECRET},
        now=now,
    )


def test_verifier_accepts_the_example_and_rejects_variations() -> None:
    good = {
        "Date": EXAMPLE_DATE,
        "X-BackendAI-Version": "v9.20250722",
        "Authorization": "BackendAI signMethod=HMAC-SHA256, credential=AKIAIOSFODNN7EXAMPLE:"
        "57b070a87dc5240058bfeae0199c81585ac9edf51c5557cd535da809a3f68ab2",
    }
    when = datetime.fromisoformat(EXAMPLE_DATE)
    assert _verify(good, when + timedelta(minutes=14)) == "AKIAIOSFODNN7EXAMPLE"
    cases = {
        "Date/time sync error": ({**good}, when + timedelta(minutes=16)),
        "HMAC signature mismatch": ({**good, "X-BackendAI-Version": "v8.20240915"}, when),
        "Access key not found in HMAC": (
            {**good, "Authorization": good["Authorization"].replace("AKIAIOSFODNN7EXAMPLE", "AKIAOTHER")},
            when,
        ),
        "Invalid authorization type name": ({**good, "Authorization": "Bearer x"}, when),
        "Unsupported request signing method (MAC type)": (
            {**good, "Authorization": good["Authorization"].replace("HMAC-SHA256", "CMAC-SHA256")},
            when,
        ),
    }
    for msg, (headers, now) in cases.items():
        with pytest.raises(ApiError) as excinfo:
            _verify(headers, now)
        assert excinfo.value.msg == msg


def test_parse_authorization() -> None:
    assert parse_authorization("BackendAI signMethod=HMAC-SHA256, credential=AK:SIG") == (
        "HMAC-SHA256",
        "AK",
        "SIG",
    )
    with pytest.raises(ApiError):
        parse_authorization("BackendAI signMethod=HMAC-SHA256")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (300, 300),
        (12.9, 12),
        ("300", 300),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("2d", 172800),
        ("1w", 604800),
        ("1.5h", 5400),
        (0, 0),
    ],
)
def test_timeout_seconds(value: object, seconds: int) -> None:
    assert parse_timeout_seconds(value) == seconds


@pytest.mark.parametrize("value", ["", "soon", "5x", "1yr", "2mo", "-3", -1, True, None, [1]])
def test_timeout_seconds_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_timeout_seconds(value)


def test_binary_sizes() -> None:
    assert parse_binary_size("1g") == 2**30
    assert parse_binary_size("512m") == 512 * 2**20
    assert parse_binary_size("1GiB") == 2**30
    assert parse_binary_size(1024) == 1024


def test_create_body_aliases_and_validation() -> None:
    req = parse_create_body(
        {
            "clientSessionToken": "job-1",
            "lang": "img",
            "sessionType": "BATCH",
            "startupCommand": "echo",
            "batchTimeout": "1m",
            "reuse": False,
            "enqueueOnly": True,
            "maxWaitSeconds": 3,
            "config": {"environ": {"A": "1"}, "resources": {"cpu": 2}, "scalingGroup": "sg"},
        }
    )
    assert (req.name, req.image, req.session_type, req.batch_timeout, req.reuse) == (
        "job-1",
        "img",
        "batch",
        60,
        False,
    )
    assert (req.enqueue_only, req.max_wait_seconds, req.environ, req.scaling_group) == (
        True,
        3,
        {"A": "1"},
        "sg",
    )
    for bad in (
        {"image": "i"},
        {"name": "ok-name", "image": "i", "priority": 101},
        {"name": "ok-name", "image": "i", "maxWaitSeconds": -1},
        {"name": "ab", "image": "i"},
    ):
        with pytest.raises(ApiError) as excinfo:
            parse_create_body(bad)
        assert excinfo.value.status == 400


def test_graphql_reader() -> None:
    op, fields = parse_query(
        'query($id: UUID!) { s: compute_session(id: $id) { id status kernel { a } } other(x: "y", n: [1, 2]) }',
        {"id": "abc"},
    )
    assert op == "query"
    assert [(f.key, f.name, f.args) for f in fields] == [
        ("s", "compute_session", {"id": "abc"}),
        ("other", "other", {"x": "y", "n": [1, 2]}),
    ]
    assert [f.name for f in fields[0].selections] == ["id", "status", "kernel"]
    sid = "3f1c6a7e-2a63-4c56-9b8e-1d2f3a4b5c6d"
    assert str(parse_session_ref(session_node_global_id(uuid.UUID(sid)))) == sid


def test_settings_restore_is_deep() -> None:
    base = EmulatorSettings()
    live = base.copy()
    live.known_images.add("x")
    live.resource_limits["*"]["cpu"] = 1
    live.tick = 9
    live.restore(base)
    assert "x" not in live.known_images
    assert live.resource_limits["*"]["cpu"] == 64
    assert live.tick == base.tick


def test_cli_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[5] / "emulator"), *sys.path]),
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend_ai_emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(7)]
        ready = time.monotonic() - started
        exports = dict(re.findall(r"export (\w+)=(\S+)", "".join(lines)))
        endpoint = exports["BACKEND_AI_TEST_ENDPOINT"]
        assert exports["BACKEND_AI_TEST_ACCESS_KEY"] == DEFAULT_ACCESS_KEY
        assert ready < 10, f"CLI took {ready:.2f} s to come up"
        with urllib.request.urlopen(endpoint + "/", timeout=5) as resp:
            assert json.load(resp)["version"] == "v9.20250722"
        body = json.dumps(
            {
                "name": "cli-job",
                "image": "cr.backend.ai/stable/python:3.9-ubuntu20.04",
                "type": "batch",
                "startupCommand": "sleep 60 & sleep 60",
                "enqueueOnly": True,
            }
        ).encode()
        url = endpoint + "/session"
        req = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers=signed_headers("POST", url, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY),
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 201
        # Find the job's process group: children of the emulator running "sleep 60".
        deadline = time.monotonic() + 10
        groups: set[int] = set()
        while not groups and time.monotonic() < deadline:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    stat = (entry / "stat").read_text()
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                fields = stat.rsplit(")", 1)[1].split()
                ppid, pgid = int(fields[1]), int(fields[2])
                if b"sleep\x0060" in cmdline and (
                    ppid == proc.pid or (pgid != proc.pid and ppid in _pids_of(proc.pid))
                ):
                    groups.add(pgid)
            time.sleep(0.05)
        assert groups, "the job's processes were not found"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        out = proc.stdout.read()
        assert "stopped" in out
        for pgid in groups:
            assert live_processes_in_group(pgid) == [], "job processes survived the emulator"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _pids_of(parent: int) -> set[int]:
    """Direct children of ``parent``."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                children.add(int(entry.name))
    return children


def test_cli_refuses_non_loopback() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[5] / "emulator"), *sys.path]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "backend_ai_emulator", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 2
    assert "non-loopback" in done.stderr


def test_start_emulator_refuses_non_loopback() -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        start_emulator(host="0.0.0.0")


def test_start_emulator_programmatic_context_manager() -> None:
    began = time.perf_counter()
    with start_emulator() as emu:
        elapsed = time.perf_counter() - began
        assert elapsed < 1.0, f"startup took {elapsed:.3f} s"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", emu.endpoint)
        with urllib.request.urlopen(emu.endpoint, timeout=5) as resp:
            assert json.load(resp)["manager"] == "26.9.6-emulator"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(emu.endpoint, timeout=2)
