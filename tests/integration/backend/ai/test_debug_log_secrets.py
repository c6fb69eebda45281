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
The provider's own log lines carry no secret key at DEBUG, checked before Airflow's masking.

A job (one that succeeds with streamed output, one that fails) and a connection test run against the
emulator with a random secret key while every record of the provider's loggers (``airflow.providers.
backend.ai``) and of the task logger (``airflow.task``: the operators' and hooks' loggers) is captured at
DEBUG, with its arguments, extras and traceback, *before* any handler or processor could mask it. Airflow's
masker is a second line of defence, not the test: ``airflow dags test`` at DEBUG on Airflow 3 prints the key
anyway (see docs/security.rst). ``test_a_leak_is_caught`` plants a leak in each path to show the capture
would see one.
"""

from __future__ import annotations

import logging
import secrets
import traceback
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from tests_common.test_utils.version_compat import AIRFLOW_V_3_0_PLUS

from airflow.providers.backend.ai.exceptions import BackendAIJobFailedError
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator
from backend_ai_emulator.settings import Keypair

if TYPE_CHECKING:
    from collections.abc import Iterator

    from backend_ai_emulator import EmulatorHandle

pytestmark = pytest.mark.integration

IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"
ACCESS_KEY = "AKIADEBUGLOGTEST0001"
#: The loggers that are the provider's: its modules, and the task logger its operators and hooks use.
OURS = ("airflow.providers.backend.ai", "airflow.task")


def _ours(name: str | None) -> bool:
    return name is not None and any(name == root or name.startswith(root + ".") for root in OURS)


class _Recorder(logging.Handler):
    """Keeps the full text of every record: message, arguments, extras and traceback."""

    def __init__(self, lines: list[tuple[str, str]]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.getMessage(), repr(record.args), repr(record.__dict__)]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append("".join(traceback.format_exception(record.exc_info[1])))
        self.lines.append((record.name, "\n".join(parts)))


@contextmanager
def stdlib_capture(lines: list[tuple[str, str]]) -> Iterator[None]:
    """
    A recorder on the provider's and the task logger's nearest ancestors, all at DEBUG.

    ``airflow.task.operators`` and ``airflow.task.hooks`` are below ``airflow.task``, whose handler carries
    Airflow's masking filter, so the record reaches the recorder first, unmasked.
    """
    recorder = _Recorder(lines)
    names = ("airflow.providers.backend.ai", "airflow.task.operators", "airflow.task.hooks", "airflow.task")
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(recorder)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.removeHandler(recorder)
            logger.setLevel(level)


class _NamedSink:
    """What the structlog logger factory hands out: only its name is read (the chain drops every event)."""

    def __init__(self, *args: Any) -> None:
        self.name = str(args[0]) if args else None


@contextmanager
def structlog_capture(lines: list[tuple[str, str]]) -> Iterator[None]:
    """On Airflow 3 operators and hooks log through structlog: keep every DEBUG event with its logger name."""
    if not AIRFLOW_V_3_0_PLUS:
        yield
        return
    import structlog

    def keep(logger: Any, _method: str, event: dict[str, Any]) -> Any:
        lines.append((getattr(logger, "name", None), repr(event)))
        raise structlog.DropEvent

    previous = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.format_exc_info,
            keep,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=_NamedSink,
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        structlog.configure(**previous)


def run_and_capture(emulator: EmulatorHandle, context: dict[str, Any]) -> list[tuple[str, str]]:
    """Run a good job, a failing job and a connection test; return every log line captured, any logger."""
    lines: list[tuple[str, str]] = []
    with stdlib_capture(lines), structlog_capture(lines):
        ok = BackendAIRunBatchOperator(
            task_id="good_job",
            image=IMAGE,
            command="echo job output; sleep 0.3; echo done",
            session_name=f"debug-good-{secrets.token_hex(4)}",
        ).execute(context)
        assert ok["result"] == "SUCCESS"
        with pytest.raises(BackendAIJobFailedError):
            BackendAIRunBatchOperator(
                task_id="bad_job",
                image=IMAGE,
                command="echo failing; exit 3",
                log_streaming=False,
                session_name=f"debug-bad-{secrets.token_hex(4)}",
            ).execute(context)
        hook = BackendAIHook()
        assert hook.test_connection()[0]
        with hook.get_conn() as api:
            api.Resource.get_resource_slots()
        hook.log.debug("debug probe from the hook logger")
    return lines


@pytest.fixture
def secret_key(emulator: EmulatorHandle, make_connection: Any) -> str:
    """A random secret key for a keypair of its own, behind ``backend_ai_default``."""
    key = "DebugCanary" + secrets.token_urlsafe(30)
    emulator.settings.keypairs[ACCESS_KEY] = Keypair.make(ACCESS_KEY, key)
    make_connection("backend_ai_default", host=emulator.endpoint, login=ACCESS_KEY, password=key)
    return key


def test_our_debug_lines_never_carry_the_secret_key(
    emulator: EmulatorHandle, context: dict[str, Any], secret_key: str
) -> None:
    lines = run_and_capture(emulator, context)
    ours = "\n".join(text for name, text in lines if _ours(name))
    # The capture saw our DEBUG lines, the job's output (task logger) and the failure.
    assert "debug probe from the hook logger" in ours
    assert "job output" in ours
    assert "failing" in ours
    assert secret_key not in ours
    assert secret_key[11:35] not in ours  # not even a fragment


def _leak_from_hook(monkeypatch: pytest.MonkeyPatch, secret_key: str) -> None:
    original = BackendAIHook.create_batch_session

    def leaky(self: BackendAIHook, spec: Any) -> Any:
        self.log.debug("creating", exc_info=ValueError(f"bad key {self.settings.secret_key}"))
        return original(self, spec)

    monkeypatch.setattr(BackendAIHook, "create_batch_session", leaky)


def _leak_from_operator(monkeypatch: pytest.MonkeyPatch, secret_key: str) -> None:
    original = BackendAIRunBatchOperator.execute

    def leaky(self: BackendAIRunBatchOperator, context: Any) -> Any:
        self.log.debug(
            "connection: %s", {"password": self.hook.get_connection("backend_ai_default").password}
        )
        return original(self, context)

    monkeypatch.setattr(BackendAIRunBatchOperator, "execute", leaky)


def _leak_from_module_logger(monkeypatch: pytest.MonkeyPatch, secret_key: str) -> None:
    original = BackendAIHook.test_connection

    def leaky(self: BackendAIHook) -> Any:
        logging.getLogger("airflow.providers.backend.ai.utils.session_events").debug(
            "probe", extra={"key": self.settings.secret_key}
        )
        return original(self)

    monkeypatch.setattr(BackendAIHook, "test_connection", leaky)


@pytest.mark.parametrize("plant", [_leak_from_hook, _leak_from_operator, _leak_from_module_logger])
def test_a_leak_is_caught(
    emulator: EmulatorHandle,
    context: dict[str, Any],
    secret_key: str,
    monkeypatch: pytest.MonkeyPatch,
    plant: Any,
) -> None:
    """Each planted DEBUG line reaches the capture unmasked, so the test above would fail on a real leak."""
    plant(monkeypatch, secret_key)
    lines = run_and_capture(emulator, context)
    leaking = [name for name, text in lines if secret_key in text]
    assert leaking, "the capture missed a planted leak"
    assert all(_ours(name) for name in leaking), leaking
