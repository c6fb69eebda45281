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
Secrets and transport security through the real SDK against the emulator.

* A canary secret key (random per run) must appear nowhere the provider writes or shows: task and SDK logs
  at DEBUG, exception messages and tracebacks, ``repr``/``str`` of hooks, configurations and operators,
  rendered template fields, XCom values, serialized triggers and trigger events, or the server's request log.
* TLS is verified unless the connection says otherwise; ``BACKEND_*`` variables and ``.env`` files on the
  worker cannot redirect traffic, switch TLS off or change the keys.
* A wrong key fails at once, with one request and a clear message.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import os
import secrets
import time
import traceback
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from tests_common.test_utils.version_compat import AIRFLOW_V_3_0_PLUS

from airflow.providers.backend.ai._sdk.client import build_api_config
from airflow.providers.backend.ai.exceptions import (
    BackendAIAPIError,
    BackendAIAuthError,
    BackendAIConnectionConfigError,
    BackendAIJobFailedError,
    BackendAITransientError,
)
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from backend_ai_emulator import start_emulator
from backend_ai_emulator.settings import Keypair
from integration.backend.ai.reliability.harness import (
    batch_operator,
    defer,
    make_context,
    resumed,
    run_job,
    run_trigger,
)
from integration.backend.ai.reliability.proxy import RewritingProxy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

CANARY_ACCESS_KEY = "AKIACANARYTEST000001"


@contextmanager
def capture_structlog_at_debug() -> Iterator[list[str]]:
    """Airflow 3 logs through structlog: keep every event (DEBUG and up) with its arguments and traceback."""
    events: list[str] = []
    if not AIRFLOW_V_3_0_PLUS:  # Airflow 2 logs through the standard library only (caplog has it all)
        yield events
        return
    import structlog

    def keep(_logger: Any, _method: str, event: dict[str, Any]) -> Any:
        events.append(repr(event))
        raise structlog.DropEvent

    previous = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.format_exc_info,
            keep,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    try:
        yield events
    finally:
        structlog.configure(**previous)


def formatted(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + str(exc) + repr(exc)


def test_the_secret_key_appears_nowhere(backend_ai_emulator, make_connection, caplog, capsys):
    emu = backend_ai_emulator
    canary = "Canary" + secrets.token_urlsafe(32)
    emu.settings.keypairs[CANARY_ACCESS_KEY] = Keypair.make(CANARY_ACCESS_KEY, canary)
    make_connection("backend_ai_default", host=emu.endpoint, login=CANARY_ACCESS_KEY, password=canary)
    caplog.set_level(logging.DEBUG)
    for name in ("airflow.task", "airflow", "ai.backend", "aiohttp", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    seen: list[str] = []  # everything the provider produced that a person or a system could read
    context = make_context()

    with capture_structlog_at_debug() as events:
        # A job that succeeds on the worker, with a transient error on the way (its retry is logged).
        emu.faults.add("gql", "error", status=503, times=1)
        op = batch_operator(
            "sync", "echo job output; echo {{ ti.try_number }}", environment={"RUN": "{{ run_id }}"}
        )
        op.render_template_fields({**context, "run_id": "manual__1"})
        seen += [repr(getattr(op, field)) for field in op.template_fields]
        op.log.debug("debug-probe from the operator logger")
        seen.append(json.dumps(op.execute(context)))
        seen += [repr(op), str(op), repr(vars(op)), repr(op.hook), str(op.hook), repr(vars(op.hook))]
        seen += [repr(op.hook.settings), str(op.hook.settings)]
        api_config = op.hook.get_api_config()
        seen += [repr(api_config), str(api_config)]

        # A job that fails, deferred: trigger serialization, event, execute_complete, exception.
        deferred = batch_operator("deferrable", "echo failing; exit 3")
        # Its own task id: the sync job's session may still be TERMINATING, and a live name is not reused.
        context = make_context(task_id="deferred_job")
        trigger = defer(deferred, context)
        seen.append(json.dumps(trigger.serialize()))
        event = run_trigger(resumed(trigger))
        seen.append(json.dumps(event))
        with pytest.raises(BackendAIJobFailedError) as failed:
            batch_operator("deferrable", "ignored").execute_complete(context, event)
        seen.append(formatted(failed.value))

        # The API keeps failing: the error names the action, and the retries are logged.
        emu.faults.add("get_info", "error", status=502)
        emu.faults.add("logs", "error", status=502)
        with pytest.raises(BackendAITransientError) as transient:
            BackendAIHook(retry_limit=2).get_session_logs(event["session_id"])
        seen.append(formatted(transient.value))
        emu.faults.clear()

        # The connection test, whose message names the access key.
        seen.append(repr(BackendAIHook().test_connection()))

        # The canary as a wrong key (the server knows another one), and as a malformed password.
        emu.settings.keypairs[CANARY_ACCESS_KEY] = Keypair.make(
            CANARY_ACCESS_KEY, "AnotherSecretKey" + "x" * 24
        )
        with pytest.raises(BackendAIAuthError) as auth:
            run_job("sync", context, "echo never")
        seen.append(formatted(auth.value))
        make_connection(
            "backend_ai_default", host=emu.endpoint, login=CANARY_ACCESS_KEY, password=f" {canary} "
        )
        with pytest.raises(BackendAIConnectionConfigError) as config:
            BackendAIHook().settings  # noqa: B018
        seen.append(formatted(config.value))

    # XCom pushes, the task and SDK logs at DEBUG, and what the server recorded.
    seen += [repr(call) for call in context["ti"].xcom_push.call_args_list]
    seen += events
    seen.append(caplog.text)
    seen += [repr(r.__dict__) + r.getMessage() for r in caplog.records]
    out = capsys.readouterr()
    seen += [out.out, out.err]
    seen.append(repr(emu.requests))

    everything = "\n".join(seen)
    assert "debug-probe from the operator logger" in everything, "the DEBUG capture did not work"
    assert "job output" in everything, "the capture missed the job"
    assert event["session_id"] in everything, "the capture missed the job"
    assert CANARY_ACCESS_KEY in everything  # the access key is not a secret, and it was captured
    assert canary not in everything
    assert canary[6:30] not in everything  # not even a fragment (e.g. a truncated message)

    # Airflow's own masker learned the secret when the connection was read, as a second line of defence.
    try:
        from airflow.sdk._shared.secrets_masker import redact
    except ImportError:
        from airflow.utils.log.secrets_masker import redact
    assert canary not in str(redact(f"leak {canary} leak"))


# -- TLS and the worker's environment ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed_cert(tmp_path_factory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no trust store accepts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def hostile_worker_environment(monkeypatch, tmp_path, backend_ai_emulator):
    """
    A worker whose environment and working directory point the SDK elsewhere: another manager (a second
    emulator that must see no request), other keys, TLS checks off, an extra mount, in variables and in a
    ``.env`` file in the working directory.
    """
    with start_emulator() as elsewhere:
        stray = {
            "BACKEND_ENDPOINT": elsewhere.endpoint,
            "BACKEND_ACCESS_KEY": elsewhere.other_access_key,
            "BACKEND_SECRET_KEY": elsewhere.other_secret_key,
            "BACKEND_SKIP_SSLCERT_VALIDATION": "true",
            "BACKEND_VFOLDER_MOUNTS": "stolen-data",
            "BACKEND_ENDPOINT_TYPE": "session",
        }
        (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in stray.items()))
        monkeypatch.chdir(tmp_path)
        for key, value in stray.items():
            monkeypatch.setenv(key, value)
        yield elsewhere
        assert elsewhere.request_count() == 0, elsewhere.requests


def test_tls_is_verified_by_default(emulator, make_connection, context, self_signed_cert, task_log):
    with RewritingProxy(emulator.endpoint, tls=self_signed_cert) as proxy:
        make_connection(
            "backend_ai_default", host=proxy.endpoint, login=emulator.access_key, password=emulator.secret_key
        )
        with pytest.raises(
            BackendAIAPIError, match=r"(?i)certificate verify failed.*skip_sslcert_validation"
        ) as err:
            run_job("sync", context, "echo never")
        assert not isinstance(err.value, BackendAITransientError)  # not retried: no retry can fix it
    assert emulator.request_count(route="create") == 0
    assert task_log.text.count("certificate verify failed") <= 1  # no "Attempt n of 3 failed" warnings


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_tls_check_off_only_when_the_connection_says_so(
    mode, emulator, make_connection, context, self_signed_cert
):
    with RewritingProxy(emulator.endpoint, tls=self_signed_cert) as proxy:
        make_connection(
            "backend_ai_default",
            host=proxy.endpoint,
            login=emulator.access_key,
            password=emulator.secret_key,
            extra={"skip_sslcert_validation": "true"},
        )
        assert run_job(mode, context, "echo over tls")["logs"].strip() == "over tls"


def test_environment_cannot_switch_tls_off(
    emulator, make_connection, context, self_signed_cert, hostile_worker_environment
):
    with RewritingProxy(emulator.endpoint, tls=self_signed_cert) as proxy:
        make_connection(
            "backend_ai_default", host=proxy.endpoint, login=emulator.access_key, password=emulator.secret_key
        )
        assert build_api_config(BackendAIHook().settings).skip_sslcert_validation is False
        with pytest.raises(
            BackendAIAPIError, match=r"(?i)certificate verify failed.*skip_sslcert_validation"
        ):
            run_job("sync", context, "echo never")
    assert emulator.request_count(route="create") == 0


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_environment_cannot_redirect_traffic_or_change_keys(
    mode, emulator, context, hostile_worker_environment
):
    environ_before = dict(os.environ)
    result = run_job(mode, context, 'echo "mounts=$BACKEND_VFOLDER_MOUNTS"')
    assert result["result"] == "SUCCESS"
    assert {r.access_key for r in emulator.requests if r.route != "root"} == {emulator.access_key}
    config = BackendAIHook().get_api_config()
    assert config.endpoint == emulator.endpoint or str(config.endpoint).rstrip("/") == emulator.endpoint
    assert config.access_key == emulator.access_key
    assert config.secret_key == emulator.secret_key
    assert list(config.vfolder_mounts) == []
    assert dict(os.environ) == environ_before  # the .env file was not loaded into the worker's environment


# -- a wrong key: fail at once, no retry storm ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("login", "password", "match"),
    [
        ("AKIAEMULATORTEST0001", "WrongSecretKey/" + "x" * 25, r"HTTP 401.*(?i:signature mismatch)"),
        ("AKIAUNKNOWNKEY000000", "WrongSecretKey/" + "x" * 25, r"HTTP 401.*(?i:access key not found)"),
    ],
    ids=["wrong-secret", "unknown-access-key"],
)
@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_wrong_key_fails_fast_once(mode, login, password, match, emulator, make_connection, context):
    make_connection("backend_ai_default", host=emulator.endpoint, login=login, password=password)
    started = time.monotonic()
    with pytest.raises(BackendAIAuthError, match=match) as err:
        run_job(mode, context, "echo never")
    assert time.monotonic() - started < 5
    assert "create batch session" in str(err.value)
    authenticated = [r for r in emulator.requests if r.route != "root"]
    assert [(r.route, r.status) for r in authenticated] == [("create", 401)]  # one request, no retries
    assert emulator.sessions() == []


def test_key_revoked_while_deferred_fails_the_watch_once(emulator, make_connection, context):
    trigger = resumed(defer(batch_operator("deferrable", "echo started; sleep 60"), context))
    emulator.wait_for_session(trigger.session_id, status="RUNNING")
    make_connection(
        "backend_ai_default",
        host=emulator.endpoint,
        login=emulator.access_key,
        password="Revoked/" + "x" * 32,
    )
    before = emulator.request_count(route="gql")
    event = run_trigger(trigger)
    assert event["status"] == "error"
    assert "HTTP 401" in event["message"]
    assert emulator.request_count(route="gql") - before == 1
    # The key is back: the resumed task destroys the session and reports the watch's failure.
    make_connection(
        "backend_ai_default", host=emulator.endpoint, login=emulator.access_key, password=emulator.secret_key
    )
    with pytest.raises(Exception, match="HTTP 401"):
        batch_operator("deferrable", "ignored").execute_complete(context, event)


def test_connection_test_with_a_wrong_key_is_one_request(emulator, make_connection):
    make_connection(
        "backend_ai_default", host=emulator.endpoint, login=emulator.access_key, password="Wrong/" + "x" * 34
    )
    ok, message = BackendAIHook().test_connection()
    assert not ok
    assert message.startswith("Authentication failed: ")
    assert "401" in message
    assert emulator.request_count(route="gql") == 1


def test_async_hook_ignores_the_environment_too(emulator, hostile_worker_environment):
    async def main() -> str:
        hook = BackendAIHook()
        async with hook.get_async_conn():
            return (await hook.a_get_session_facts("00000000-0000-0000-0000-000000000001")).status

    with pytest.raises(Exception, match="HTTP 404|No such session"):
        asyncio.run(main())
    assert emulator.request_count(route="gql") == 1
