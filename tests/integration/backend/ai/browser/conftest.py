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
Browser tests: a real Airflow web server in a subprocess, driven by headless Chromium through Selenium.

The server runs from the interpreter that runs pytest, so each Airflow line checks its own UI:

* ``.venv-airflow3/bin/python -m pytest tests/integration/backend/ai/browser`` starts ``airflow api-server`` (the React UI);
* ``.venv-airflow2/bin/python -m pytest tests/integration/backend/ai/browser`` starts ``airflow webserver`` (the 2.x FAB UI).

Every server gets its own throw-away ``AIRFLOW_HOME``, listens on ``127.0.0.1`` only and runs in its own
process group, which is stopped (and checked empty) when the test ends. Chromium and chromedriver are
used from ``/usr/bin``; nothing is downloaded. Without them the tests are skipped, not failed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
APT_INSTALL = "apt-get install -y chromium chromium-driver"

REPO_ROOT = Path(__file__).resolve().parents[5]
#: Screenshots and server logs land here (``/artifacts/`` is git-ignored).
ARTIFACTS_DIR = REPO_ROOT / "artifacts" / "browser"

AIRFLOW_VERSION = version("apache-airflow")
AIRFLOW_MAJOR = int(AIRFLOW_VERSION.split(".")[0])

SERVER_START_TIMEOUT = 90.0  # seconds until the health endpoint answers (about 5-12 s here)
SERVER_STOP_TIMEOUT = 20.0  # seconds after SIGTERM before the process group gets SIGKILL
CLI_TIMEOUT = 120.0  # seconds for ``airflow db migrate`` / ``airflow users create``

_NOTES = pytest.StashKey[list[str]]()
_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "browser: drives the Airflow web UI in headless Chromium (needs /usr/bin/chromium and "
        "/usr/bin/chromedriver; skipped without them)",
    )
    config.stash[_NOTES] = []


def missing_browser_prerequisite() -> str | None:
    """Why the browser tests cannot run on this machine, or None when they can."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        return f"headless browser test needs {' and '.join(missing)}; install with: {APT_INSTALL}"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed in this environment (dev/setup-venv.sh installs it)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = missing_browser_prerequisite()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    notes = terminalreporter.config.stash.get(_NOTES, [])
    if notes:
        terminalreporter.write_sep("-", "browser test notes")
        for line in notes:
            terminalreporter.write_line(line)


@pytest.fixture
def note(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Print a line now and repeat it in the terminal summary (so ``-q`` runs show it too)."""

    def add(line: str) -> None:
        print(line)
        request.config.stash[_NOTES].append(f"[{request.node.name}] {line}")

    return add


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


# -- the Airflow web server -------------------------------------------------------------------------


@dataclass
class AirflowUI:
    """A running Airflow web UI and how to log in to it."""

    base_url: str
    username: str
    password: str
    home: Path
    log_path: Path
    startup_seconds: float

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


@dataclass
class _ServerProcess:
    """One server command in its own process group (session), logging to a file."""

    command: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the server and its workers share a process group = our pid
            )

    def wait_until_healthy(self, url: str, timeout: float) -> float:
        """Poll ``url`` until it answers 200; fail early (with the log) if the server exits."""
        assert self.process is not None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        started = time.monotonic()
        while True:
            if (code := self.process.poll()) is not None:
                raise RuntimeError(f"{self.command[2:4]} exited with {code}:\n{_tail(self.log_path)}")
            try:
                with opener.open(url, timeout=2) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f} s:\n{_tail(self.log_path)}")
            time.sleep(0.2)  # poll interval of the readiness check, not a wait for a UI state

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL what is left after a grace period, and check it is empty."""
        if self.process is None:
            return
        pgid = self.process.pid
        _signal_group(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # Workers (gunicorn on Airflow 2) may still be shutting down after the leader exited.
        deadline = time.monotonic() + SERVER_STOP_TIMEOUT
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if leftovers := _group_members(pgid):
            _signal_group(pgid, signal.SIGKILL)
            raise RuntimeError(f"processes {leftovers} of group {pgid} survived SIGTERM; killed them")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already gone
        os.killpg(pgid, sig)


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the process group ``pgid``, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _ppid, group = text.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env(home: Path) -> dict[str, str]:
    """The environment of the server: none of the pytest process's Airflow settings, a fresh home."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIRFLOW") and key != "BACKEND_AI_TESTS_AIRFLOW_HOME"
    }
    (home / "dags").mkdir()
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",  # default "Disabled" greys out the Test button
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    return env


def _airflow_cli(*args: str, env: dict[str, str], cwd: Path, log_path: Path) -> None:
    with log_path.open("ab") as log:
        log.write(f"$ airflow {' '.join(args)}\n".encode())
        log.flush()
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=CLI_TIMEOUT,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"airflow {args[0]} failed ({result.returncode}):\n{_tail(log_path)}")


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowUI]:
    """
    The web UI of the Airflow installed in this interpreter, with the provider installed.

    Airflow 3: ``airflow api-server`` with the default SimpleAuthManager; the generated ``admin``
    password is read from ``simple_auth_manager_passwords.json.generated``.
    Airflow 2: ``airflow webserver`` (FAB) with an ``admin`` user made by ``airflow users create``.
    """
    home = tmp_path_factory.mktemp(f"airflow{AIRFLOW_MAJOR}-ui-home")
    env = _server_env(home)
    log_path = home / "server.log"
    port = _free_port()
    _airflow_cli("db", "migrate", env=env, cwd=home, log_path=log_path)
    if AIRFLOW_MAJOR >= 3:
        username, password = "admin", ""  # read from the generated file once the server is up
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{username}:admin"
        command = ["api-server", "-H", "127.0.0.1", "-p", str(port), "--workers", "1"]
        health_path = "/api/v2/monitor/health"
        log_name = "airflow3-api-server.log"
    else:
        username, password = "admin", secrets.token_urlsafe(16)
        env["AIRFLOW__WEBSERVER__SECRET_KEY"] = secrets.token_hex(16)
        _airflow_cli(
            # --password=...: a random password may start with "-", which argparse would take for an option
            "users", "create", "--username", username, f"--password={password}", "--role", "Admin",
            "--firstname", "Browser", "--lastname", "Test", "--email", "browser-test@example.invalid",
            env=env, cwd=home, log_path=log_path,
        )  # fmt: skip
        command = ["webserver", "-H", "127.0.0.1", "-p", str(port), "--workers", "1"]
        health_path = "/health"
        log_name = "airflow2-webserver.log"

    server = _ServerProcess([sys.executable, "-m", "airflow", *command], env, home, log_path)
    base_url = f"http://127.0.0.1:{port}"
    try:
        server.start()
        startup = server.wait_until_healthy(base_url + health_path, SERVER_START_TIMEOUT)
        if AIRFLOW_MAJOR >= 3:
            password = _generated_password(home, username)
            assert password, f"no generated password for {username!r} in {home}"
        yield AirflowUI(base_url, username, password, home, log_path, startup)
    finally:
        try:
            server.stop()
        finally:
            if AIRFLOW_MAJOR >= 3 and not password:
                password = _generated_password(home, username)
            _keep_log(log_path, ARTIFACTS_DIR / log_name, redact=password)


def _generated_password(home: Path, username: str) -> str:
    try:
        return json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())[username]
    except (OSError, ValueError, KeyError):
        return ""


def _keep_log(source: Path, target: Path, *, redact: str) -> None:
    """Copy the server log next to the screenshots, without the (throw-away) UI password."""
    text = source.read_text(errors="replace")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.replace(redact, "***") if redact else text)


# -- the browser ------------------------------------------------------------------------------------


@pytest.fixture
def chrome(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WebDriver]:
    """
    Headless Chromium from /usr/bin through /usr/bin/chromedriver (Selenium Manager is never used).

    When the test fails, the page as it was is kept as ``artifacts/browser/<test>-FAILED.{png,html}``.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1300",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-proxy-server",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    # The network log lets a test read what the page really sent to and got from the server.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
        report = request.node.stash.get(_CALL_REPORT, None)
        if report is not None and report.failed:
            ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
            stem = ARTIFACTS_DIR / f"{request.node.name}-FAILED"
            driver.save_screenshot(f"{stem}.png")
            Path(f"{stem}.html").write_text(driver.page_source)
            print(f"page at the failure: {stem}.png, {stem}.html ({driver.current_url})")
    finally:
        driver.quit()
