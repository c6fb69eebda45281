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
Bad input, table-driven: operator parameters, templates that render invalid values, connection fields and
extras, and server answers that are malformed. Every case must fail with an error that names the field;
where the input is ours, before anything is sent (the emulator must see no create request, or no request
at all for a bad connection). Then the extremes that must work: non-ASCII, very long commands and names,
a huge environment and a log of several MB.
"""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest

from airflow.providers.backend.ai.exceptions import (
    BackendAIConnectionConfigError,
    BackendAINotFoundError,
    BackendAIUnexpectedAnswerError,
)
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator
from integration.backend.ai.reliability.harness import IMAGE, MODES, make_context, run_job
from integration.backend.ai.reliability.proxy import RewritingProxy

pytestmark = pytest.mark.integration

VALID = {"task_id": "job", "image": IMAGE, "command": "echo ok"}

# -- operator parameters: rejected when the Dag is parsed --------------------------------------------------

PARAMETERS = [
    ("empty-image", {"image": ""}, r"Invalid image ''"),
    ("image-not-a-string", {"image": 42}, r"Invalid image 42"),
    ("blank-command", {"command": "   "}, r"Invalid command '   '"),
    ("no-command", {"command": None}, r"Invalid command None"),
    ("short-session-name", {"session_name": "ab"}, r"Invalid session_name 'ab'"),
    ("long-session-name", {"session_name": "n" * 65}, r"Invalid session_name 'n{65}'"),
    ("session-name-with-space", {"session_name": "bad name!"}, r"Invalid session_name 'bad name!'"),
    ("non-ascii-session-name", {"session_name": "세션-이름-학습"}, r"Invalid session_name '세션-이름-학습'"),
    ("negative-resource", {"session_resources": {"cpu": -1}}, r"Invalid session_resources\['cpu'\] -1"),
    ("bad-slot-name", {"session_resources": {"CPU!": 1}}, r"Invalid session_resources slot name 'CPU!'"),
    ("resources-not-a-mapping", {"session_resources": "cpu=1"}, r"Invalid session_resources 'cpu=1'"),
    ("bad-memory-size", {"session_resources": {"mem": "lots"}}, r"Invalid session_resources\['mem'\] 'lots'"),
    (
        "slots-as-airflow-resources",
        {"resources": {"cpu": 1, "mem": "1g"}},
        r"Invalid resources \{'cpu': 1, 'mem': '1g'\}: Backend.AI resource slots go in session_resources=",
    ),
    ("environment-value-none", {"environment": {"A": None}}, r"Invalid environment\['A'\] None"),
    ("environment-empty-key", {"environment": {"": "x"}}, r"Invalid environment key ''"),
    ("environment-not-a-mapping", {"environment": ["A=1"]}, r"Invalid environment \['A=1'\]"),
    ("vfolder-mounts-a-string", {"vfolder_mounts": "data"}, r"Invalid vfolder_mounts 'data'"),
    ("mount-map-nested", {"mount_map": {"data": ["/x"]}}, r"Invalid mount_map\['data'\]"),
    ("cluster-size-zero", {"cluster_size": 0}, r"Invalid cluster_size 0"),
    ("unknown-cluster-mode", {"cluster_mode": "triple"}, r"Invalid cluster_mode 'triple'"),
    ("startup-timeout-zero", {"startup_timeout": 0}, r"Invalid startup_timeout 0"),
    ("startup-timeout-nan", {"startup_timeout": float("nan")}, r"Invalid startup_timeout nan"),
    ("negative-batch-timeout", {"batch_timeout": -5}, r"Invalid batch_timeout -5"),
    ("poll-interval-text", {"poll_interval": "fast"}, r"Invalid poll_interval 'fast'"),
    ("unknown-finish-action", {"on_finish_action": "delete"}, r"Invalid on_finish_action 'delete'"),
    ("negative-xcom-log-limit", {"xcom_log_limit": -1}, r"Invalid xcom_log_limit -1"),
    ("boolean-xcom-log-limit", {"xcom_log_limit": True}, r"Invalid xcom_log_limit True"),
    ("durable-not-a-bool", {"durable": "yes"}, r"Invalid durable 'yes': expected True or False"),
]


@pytest.mark.parametrize(("kwargs", "match"), [p[1:] for p in PARAMETERS], ids=[p[0] for p in PARAMETERS])
def test_invalid_parameter(kwargs, match, emulator):
    with pytest.raises(ValueError, match=match):
        BackendAIRunBatchOperator(**{**VALID, **kwargs})
    assert emulator.request_count() == 0


# -- templates that render invalid values: rejected before any create -------------------------------------

TEMPLATES = [
    ("session-name-too-short", {"session_name": "{{ 'x' }}"}, r"Invalid session_name 'x'"),
    ("session-name-non-ascii", {"session_name": "{{ 'Ω' * 8 }}"}, r"Invalid session_name 'Ω{8}'"),
    ("command-empty", {"command": "{{ '' }}"}, r"Invalid command ''"),
    ("image-blank", {"image": "{{ ' ' }}"}, r"Invalid image ' '"),
    (
        "resource-negative",
        {"session_resources": {"cpu": "{{ -2 }}"}},
        r"Invalid session_resources\['cpu'\] '-2'",
    ),
    ("mount-empty", {"vfolder_mounts": ["{{ '' }}"]}, r"Invalid vfolder_mounts \[''\]"),
]


@pytest.mark.parametrize(("kwargs", "match"), [t[1:] for t in TEMPLATES], ids=[t[0] for t in TEMPLATES])
def test_template_rendering_an_invalid_value(kwargs, match, emulator, context):
    op = BackendAIRunBatchOperator(**{**VALID, **kwargs})  # unrendered: accepted at parse time
    op.render_template_fields(context)
    with pytest.raises(ValueError, match=match):
        op.execute(context)
    assert emulator.request_count(route="create") == 0


# -- connection fields and extras: rejected before any request ------------------------------------------

CONNECTIONS = [
    ("no-host", {"host": None}, r"host \(Endpoint URL\): is required"),
    ("ftp-host", {"host": "ftp://127.0.0.1"}, r"host \(Endpoint URL\): scheme must be http or https"),
    ("host-with-query", {"host": "http://127.0.0.1:1/?a=b"}, r"host \(Endpoint URL\): must be a URL"),
    (
        "port-contradicts-url",
        {"host": "http://127.0.0.1:8080", "port": 9090},
        r"'backend_ai_default': port: 9090",
    ),
    ("no-login", {"login": None}, r"login \(Access Key\): is required"),
    ("no-password", {"password": None}, r"password \(Secret Key\): is required"),
    ("password-with-spaces", {"password": " secret "}, r"password \(Secret Key\): must not start or end"),
    ("unknown-extra", {"extra": {"timeout": 5}}, r"extra\.timeout: unknown key"),
    ("extra-not-an-object", {"extra": [1, 2]}, r"extra: must be a JSON object"),
    (
        "request-timeout-text",
        {"extra": {"request_timeout": "abc"}},
        r"extra\.request_timeout: must be a positive",
    ),
    (
        "request-timeout-zero",
        {"extra": {"request_timeout": 0}},
        r"extra\.request_timeout: must be a positive",
    ),
    ("tls-flag-maybe", {"extra": {"skip_sslcert_validation": "maybe"}}, r"extra\.skip_sslcert_validation"),
    ("session-endpoint", {"extra": {"endpoint_type": "session"}}, r"extra\.endpoint_type: 'session'"),
    ("domain-a-number", {"extra": {"domain": 42}}, r"extra\.domain: must be a non-empty string"),
]


@pytest.mark.parametrize(("fields", "match"), [c[1:] for c in CONNECTIONS], ids=[c[0] for c in CONNECTIONS])
def test_invalid_connection(fields, match, emulator, make_connection, context):
    good = {"host": emulator.endpoint, "login": emulator.access_key, "password": emulator.secret_key}
    make_connection("backend_ai_default", **{k: v for k, v in {**good, **fields}.items() if v is not None})
    with pytest.raises(BackendAIConnectionConfigError, match=match) as err:
        BackendAIRunBatchOperator(**VALID).execute(context)
    assert err.value.conn_id == "backend_ai_default"
    assert emulator.request_count() == 0


# -- server answers that are malformed or unexpected -------------------------------------------------------


def _without(key: str):
    return lambda body: {k: v for k, v in body.items() if k != key}


def _node_without(key: str):
    def transform(body: dict[str, Any]) -> dict[str, Any]:
        node = (body.get("data") or {}).get("compute_session")
        if node:
            node.pop(key, None)
        return body

    return transform


def _null_node(body: dict[str, Any]) -> dict[str, Any]:
    if "compute_session" in (body.get("data") or {}):
        body["data"]["compute_session"] = None
    return body


ANSWERS = [
    (
        "create-without-sessionId",
        ("POST", "/session", {"transform": _without("sessionId")}),
        BackendAIUnexpectedAnswerError,
        r"create batch session '.+' \(unreadable answer\): KeyError: 'sessionId'",
    ),
    (
        "create-non-json-200",
        ("POST", "/session", {"status": 200, "body": b"<html>OK</html>", "content_type": "text/html"}),
        BackendAIUnexpectedAnswerError,
        r"create batch session '.+' \(HTTP 200\): .*unexpected mimetype: text/html",
    ),
    (
        "create-json-list",
        ("POST", "/session", {"status": 201, "body": b"[]", "content_type": "application/json"}),
        BackendAIUnexpectedAnswerError,
        r"create batch session '.+' \(unreadable answer\): TypeError",
    ),
    (
        "create-invalid-json",
        ("POST", "/session", {"status": 201, "body": b"{", "content_type": "application/json"}),
        BackendAIUnexpectedAnswerError,
        r"create batch session '.+' \(unreadable answer\): JSONDecodeError",
    ),
    (
        "graphql-without-status",
        ("POST", "/admin/gql", {"transform": _node_without("status")}),
        BackendAIUnexpectedAnswerError,
        r"read the status of session [0-9a-f-]+ \(unreadable answer\): .*has no status",
    ),
    (
        "graphql-without-result",
        ("POST", "/admin/gql", {"transform": _node_without("result")}),
        BackendAIUnexpectedAnswerError,
        r"has no result for session",
    ),
    (
        "graphql-null-session",
        ("POST", "/admin/gql", {"transform": _null_node}),
        BackendAINotFoundError,
        r"read session [0-9a-f-]+ \(HTTP 404\): No such session",
    ),
    (
        "graphql-non-json-200",
        ("POST", "/admin/gql", {"status": 200, "body": b"<html>login</html>", "content_type": "text/html"}),
        BackendAIUnexpectedAnswerError,
        r"read the status of session [0-9a-f-]+ \(HTTP 200\): .*unexpected mimetype: text/html",
    ),
]


@pytest.mark.parametrize(("rewrite", "error", "match"), [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS])
def test_malformed_answer(rewrite, error, match, emulator, make_connection, context):
    method, path, changes = rewrite
    with RewritingProxy(emulator.endpoint) as proxy:
        proxy.rewrite(method, path, **changes)
        make_connection(
            "backend_ai_default", host=proxy.endpoint, login=emulator.access_key, password=emulator.secret_key
        )
        with pytest.raises(error, match=match):
            BackendAIRunBatchOperator(**{**VALID, "command": "sleep 30"}, poll_interval=1).execute(context)
    assert len(emulator.sessions()) == 1  # one session, destroyed (the fixture checks that none is left)


def test_unreadable_log_is_noted_not_fatal(emulator, make_connection, context):
    with RewritingProxy(emulator.endpoint) as proxy:
        proxy.rewrite("GET", r"/session/[^/]+/logs", status=200, body=b"garbage", content_type="text/plain")
        make_connection(
            "backend_ai_default", host=proxy.endpoint, login=emulator.access_key, password=emulator.secret_key
        )
        result = BackendAIRunBatchOperator(**VALID, poll_interval=1).execute(context)
    assert result["result"] == "SUCCESS"
    assert result["logs"].startswith("[the session log could not be fetched: ")
    assert "unexpected mimetype: text/plain" in result["logs"]


# -- extremes that must work ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_non_ascii_command_and_log(mode, emulator, context):
    text = "héllo wörld — 世界 🚀 ‮RTL‬"
    result = run_job(
        mode, context, f"printf '%s\\n' '{text}'; echo \"$GRUSS\"", environment={"GRUSS": "grüß dich 👋"}
    )
    assert result["logs"].splitlines() == [text, "grüß dich 👋"]


def test_very_long_command(emulator, context):
    command = "true " + " ".join(["argument"] * 12_000) + "; echo long-command-ok"  # about 100 KB
    assert len(command) > 100_000
    assert run_job("sync", context, command)["logs"].strip() == "long-command-ok"


def test_very_long_and_non_ascii_ids_give_a_valid_default_name(emulator):
    context = make_context(dag_id="데이터_" + "d" * 240, task_id="学習.タスク-" + "t" * 240, run_id="r" * 250)
    result = run_job("sync", context, "echo ok")
    name = result["session_name"]
    assert 4 <= len(name) <= 64, name
    assert name.isascii(), name
    assert emulator.get_session(result["session_id"]).name == name


def test_huge_environment(emulator, context):
    environment = {f"VAR_{i:05d}": "v" * 100 for i in range(5_000)}  # about 500 KB
    environment["LAST"] = "last-variable-arrived"
    result = run_job("sync", context, 'echo "$LAST"; env | grep -c ^VAR_', environment=environment)
    assert result["logs"].split() == ["last-variable-arrived", "5000"]


def test_log_of_several_megabytes_is_truncated_in_xcom(emulator, context):
    lines = 3_000  # 3,000 lines of 2,000 characters: about 6 MB
    command = f"for i in $(seq -w 1 {lines}); do printf 'line %s %01990d\\n' $i 0; done"
    with BackendAIHook().get_conn():  # import the SDK first: its thousand modules are not the log's cost
        pass
    tracemalloc.start()
    try:
        result = run_job("sync", context, command, xcom_log_limit=10_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    logs = result["logs"]
    note, _, kept = logs.partition("\n")
    assert note.startswith("[... ")
    assert "characters truncated; the full log is in the task log" in note
    assert len(kept) == 10_000
    assert kept.rstrip().endswith(f"line {lines} " + "0" * 1990)
    assert len(json.dumps(result)) < 12_000  # the XCom value stays small
    log_size = emulator.get_session(result["session_id"]).log_bytes.__len__()
    assert log_size > 5_000_000
    assert peak < 20 * log_size, f"peak {peak / 1e6:.0f} MB for a {log_size / 1e6:.0f} MB log"
