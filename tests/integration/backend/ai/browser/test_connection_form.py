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
The ``backend_ai`` connection form in a real Airflow UI, driven by headless Chromium.

Both tests play what a user does: log in, add a Backend.AI connection, check the form follows
``provider.yaml`` (labels, placeholders, hidden fields, the extra fields and their defaults), save it
pointing at the local emulator, press Test (success, and the emulator saw the signed request), then put
a wrong secret key in and press Test again (a clear "Authentication failed" message).

Screenshots land in ``artifacts/browser/airflow{3,2}-{connection-form,test-success,test-failure}.png``.
Run with the interpreter of the line to check: ``.venv-airflow3/bin/python -m pytest tests/integration/backend/ai/browser``
(Airflow 3 React UI) or ``.venv-airflow2/bin/python -m pytest tests/integration/backend/ai/browser`` (Airflow 2 FAB UI).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest
import yaml  # type: ignore[import-untyped]

pytest.importorskip("selenium", reason="selenium is not installed (dev/setup-venv.sh installs it)")

from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

if TYPE_CHECKING:
    from collections.abc import Callable

    from selenium.webdriver.chrome.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

    from backend_ai_emulator import EmulatorHandle
    from integration.backend.ai.browser.conftest import AirflowUI

pytestmark = pytest.mark.browser

AIRFLOW_VERSION = version("apache-airflow")
AIRFLOW_MAJOR = int(AIRFLOW_VERSION.split(".")[0])
PROVIDER_YAML = Path(__file__).resolve().parents[5] / "provider.yaml"

CONN_ID = "backend_ai_browser_test"
WRONG_SECRET_KEY = "WrongSecretKey/NotTheEmulatorsKey000001"
WAIT_SECONDS = 30  # upper bound of every explicit wait; the steps themselves take well under 1 s


# -- what the form must show, read from provider.yaml -------------------------------------------------


@dataclass(frozen=True)
class FormSpec:
    """The ``backend_ai`` entry of ``connection-types`` in provider.yaml."""

    hook_name: str
    relabeling: dict[str, str]
    placeholders: dict[str, str]
    hidden_fields: list[str]
    extra_fields: dict[str, dict[str, Any]]

    @classmethod
    def load(cls) -> FormSpec:
        info = yaml.safe_load(PROVIDER_YAML.read_text())
        (entry,) = (item for item in info["connection-types"] if item["connection-type"] == "backend_ai")
        behaviour = entry["ui-field-behaviour"]
        return cls(
            hook_name=entry["hook-name"],
            relabeling=behaviour["relabeling"],
            placeholders=behaviour["placeholders"],
            hidden_fields=behaviour["hidden-fields"],
            extra_fields=entry["conn-fields"],
        )

    @staticmethod
    def is_boolean(spec: dict[str, Any]) -> bool:
        types = spec["schema"]["type"]
        return "boolean" in (types if isinstance(types, list) else [types])

    @classmethod
    def default_shown(cls, spec: dict[str, Any]) -> bool | str:
        """What the widget shows before the user touches it: checked state or the input's text."""
        default = spec["schema"].get("default")
        if cls.is_boolean(spec):
            return bool(default)
        return "" if default is None else str(default)


# -- what the page sent to the connection-test endpoint (Chromium's network log) ----------------------


@dataclass
class ConnectionTestCall:
    """One request to ``POST /api/v{1,2}/connections/test`` and its answer."""

    request: dict[str, Any]
    status: int
    response: dict[str, Any]


@dataclass
class ConnectionTestTraffic:
    """Collects the connection-test calls from Chromium's performance (DevTools network) log."""

    driver: WebDriver
    calls: list[ConnectionTestCall] = field(default_factory=list)
    _pending: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _read_log(self) -> None:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            method, params = message["method"], message.get("params", {})
            if method == "Network.requestWillBeSent":
                request = params["request"]
                if request["method"] == "POST" and request["url"].endswith("/connections/test"):
                    self._pending[params["requestId"]] = {"body": request.get("postData", "{}")}
            elif method == "Network.responseReceived" and params["requestId"] in self._pending:
                self._pending[params["requestId"]]["status"] = params["response"]["status"]
            elif method == "Network.loadingFinished" and params["requestId"] in self._pending:
                pending = self._pending.pop(params["requestId"])
                body = self.driver.execute_cdp_cmd(
                    "Network.getResponseBody", {"requestId": params["requestId"]}
                )
                self.calls.append(
                    ConnectionTestCall(
                        json.loads(pending["body"]), pending["status"], json.loads(body["body"])
                    )
                )

    def wait_for_call(self, number: int) -> ConnectionTestCall:
        """Wait until the ``number``-th (1-based) test call has been answered and return it."""

        def answered(_: WebDriver) -> ConnectionTestCall | Literal[False]:
            self._read_log()
            return self.calls[number - 1] if len(self.calls) >= number else False

        return _wait(self.driver).until(answered, f"connection test call #{number} was not answered")


# -- helpers shared by both UIs ------------------------------------------------------------------------


def _wait(driver: WebDriver, timeout: float = WAIT_SECONDS) -> WebDriverWait:
    return WebDriverWait(
        driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    )


def _type_into(element: WebElement, text: str) -> None:
    """Replace an input's content the way a user does (select all, type), so React sees the change."""
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(text)


def _screenshot(driver: WebDriver, path: Path, note: Callable[[str], None], what: str) -> None:
    """Save the whole page, also what is scrolled out of the window (Airflow 2's message sits on top)."""
    driver.execute_script("window.scrollTo(0, 0)")  # fixed headers are drawn where the page is scrolled
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    note(f"screenshot of {what}: {path}")


def _assert_emulator_saw_test(emu: EmulatorHandle, *, access_key: str, accepted: bool) -> None:
    """The hook's test made its authenticated GraphQL request, and the emulator accepted/refused it."""
    gql = [r for r in emu.requests if r.route == "gql" and r.access_key == access_key]
    assert emu.request_count(route="gql") >= 1, f"no GraphQL request reached the emulator: {emu.requests}"
    assert gql, f"no GraphQL request with access key {access_key}: {emu.requests}"
    statuses = {r.status for r in gql}
    if accepted:
        assert statuses & {200, 400}, f"the emulator refused the signed request: {gql}"
    else:
        assert statuses == {401}, f"the emulator did not refuse the wrong signature: {gql}"


# -- Airflow 3: the React UI served by ``airflow api-server`` -----------------------------------------

#: Airflow 3.3.1/3.3.2 bug: the Test button of the connections list posts ``port: Number(null)`` = 0 for a
#: connection without a port, and the API's "same destination as the stored connection?" check treats 0
#: as a different port than NULL and answers 400 "Bad Request" (fixed upstream in apache/airflow#73298,
#: after 3.3.2). Until then this script, injected before any page script runs, rewrites ``"port": 0`` to
#: ``null`` in that one request (XHR or fetch) and counts the rewrites in ``window.__portZeroRewrites``.
PORT_ZERO_WORKAROUND_JS = """
(() => {
  window.__portZeroRewrites = 0;
  const isTest = (url) => String(url).split("?")[0].endsWith("/api/v2/connections/test");
  const fix = (url, body) => {
    if (!isTest(url) || typeof body !== "string") return body;
    let data;
    try { data = JSON.parse(body); } catch (e) { return body; }
    if (data === null || data.port !== 0) return body;
    data.port = null;
    window.__portZeroRewrites += 1;
    return JSON.stringify(data);
  };
  const open = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    this.__url = url;
    return open.call(this, method, url, ...rest);
  };
  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function (body) {
    return send.call(this, fix(this.__url, body));
  };
  const originalFetch = window.fetch;
  window.fetch = function (input, init) {
    const url = typeof input === "string" ? input : input && input.url;
    if (init && typeof init.body === "string") init = { ...init, body: fix(url, init.body) };
    return originalFetch.call(this, input, init);
  };
})();
"""

_TOAST = "[data-scope='toast'][data-part='root']"


@dataclass
class Airflow3ConnectionsPage:
    """The Admin > Connections page of the Airflow 3 UI (Chakra UI and react-select widgets)."""

    driver: WebDriver
    ui: AirflowUI

    def login(self) -> None:
        self.driver.get(self.ui.url("/"))
        username = _wait(self.driver).until(ec.visibility_of_element_located((By.NAME, "username")))
        username.send_keys(self.ui.username)
        self.driver.find_element(By.NAME, "password").send_keys(self.ui.password, Keys.ENTER)
        _wait(self.driver).until(lambda d: "/auth/login" not in d.current_url, "login did not complete")

    def open(self) -> None:
        self.driver.get(self.ui.url("/connections"))
        _wait(self.driver).until(
            ec.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Add Connection']"))
        )

    def dialog(self, title: str) -> WebElement:
        return _wait(self.driver).until(
            ec.visibility_of_element_located(
                (By.XPATH, f"//*[@role='dialog'][.//h2[normalize-space()='{title}']]")
            )
        )

    def open_add_form(self) -> WebElement:
        self.driver.find_element(By.XPATH, "//button[normalize-space()='Add Connection']").click()
        return self.dialog("Add Connection")

    def choose_connection_type(self, hook_name: str) -> None:
        combobox = self.driver.find_element(
            By.XPATH,
            "//*[@data-part='root'][.//label[starts-with(normalize-space(), 'Connection Type')]]"
            "//input[@role='combobox']",
        )
        combobox.send_keys(hook_name)
        _wait(self.driver).until(
            ec.element_to_be_clickable((By.XPATH, f"//*[@role='option'][normalize-space()='{hook_name}']"))
        ).click()
        _wait(self.driver).until(ec.visibility_of_element_located((By.NAME, "host")))

    @staticmethod
    def field_root(element: WebElement) -> WebElement:
        return element.find_element(By.XPATH, "./ancestor::*[@data-scope='field' and @data-part='root'][1]")

    def label_of(self, element: WebElement) -> str:
        return self.field_root(element).find_element(By.CSS_SELECTOR, "label[data-part='label']").text.strip()

    def help_text_of(self, element: WebElement) -> str:
        helper = self.field_root(element).find_elements(By.CSS_SELECTOR, "[data-part='helper-text']")
        return helper[0].text.strip() if helper else ""

    def expand_section(self, title: str) -> None:
        trigger = self.driver.find_element(
            By.XPATH, f"//button[@data-part='item-trigger'][normalize-space()='{title}']"
        )
        if trigger.get_attribute("aria-expanded") != "true":
            trigger.click()

    def extra_input(self, name: str) -> WebElement:
        return self.driver.find_element(By.NAME, f"element_{name}")

    def save(self, dialog: WebElement) -> None:
        _wait(self.driver).until(
            ec.element_to_be_clickable((By.XPATH, "//*[@role='dialog']//button[normalize-space()='Save']"))
        ).click()
        _wait(self.driver).until(ec.invisibility_of_element(dialog), "the connection dialog did not close")

    def row_button(self, conn_id: str, label: str) -> WebElement:
        return _wait(self.driver).until(
            ec.element_to_be_clickable(
                (By.XPATH, f"//tr[td[normalize-space()='{conn_id}']]//button[@aria-label='{label}']")
            )
        )

    def press_test(self, conn_id: str) -> tuple[str, str, str]:
        """Press the row's Test button; return the new test toast's (type, title, description)."""
        seen = {toast.get_attribute("id") for toast in self.driver.find_elements(By.CSS_SELECTOR, _TOAST)}
        self.row_button(conn_id, "Test Connection").click()

        def new_test_toast(driver: WebDriver) -> WebElement | Literal[False]:
            for toast in driver.find_elements(By.CSS_SELECTOR, _TOAST):
                title = toast.find_element(By.CSS_SELECTOR, "[data-part='title']").text
                if toast.get_attribute("id") not in seen and title.startswith("Test Connection"):
                    return toast
            return False

        toast = _wait(self.driver).until(new_test_toast, "no Test Connection toast appeared")
        # Screenshot it fully drawn: wait for its entrance animation to finish.
        _wait(self.driver).until(
            lambda d: d.execute_script(
                "return arguments[0].getAnimations({subtree: true}).every(a => a.playState !== 'running')",
                toast,
            )
        )
        return (
            toast.get_attribute("data-type") or "",
            toast.find_element(By.CSS_SELECTOR, "[data-part='title']").text.strip(),
            toast.find_element(By.CSS_SELECTOR, "[data-part='description']").text.strip(),
        )


@pytest.mark.skipif(
    AIRFLOW_MAJOR < 3, reason=f"Airflow 3 UI test; this environment has Airflow {AIRFLOW_VERSION}"
)
def test_connection_form_airflow3(
    airflow_ui: AirflowUI,
    chrome: WebDriver,
    backend_ai_emulator: EmulatorHandle,
    artifacts_dir: Path,
    note: Callable[[str], None],
) -> None:
    started = time.monotonic()
    spec, emu, driver = FormSpec.load(), backend_ai_emulator, chrome
    note(
        f"Airflow {AIRFLOW_VERSION} api-server healthy after {airflow_ui.startup_seconds:.1f} s at {airflow_ui.base_url}"
    )
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PORT_ZERO_WORKAROUND_JS})
    traffic = ConnectionTestTraffic(driver)
    page = Airflow3ConnectionsPage(driver, airflow_ui)
    page.login()
    page.open()
    dialog = page.open_add_form()
    page.choose_connection_type(spec.hook_name)

    # Standard fields: relabelled, with placeholders; schema and port are not shown at all.
    for name, label in spec.relabeling.items():
        element = driver.find_element(By.NAME, name)
        assert element.is_displayed(), f"{name} is hidden"
        assert page.label_of(element) == label
        assert element.get_attribute("placeholder") == spec.placeholders[name]
    for name in spec.hidden_fields:
        assert not [e for e in driver.find_elements(By.NAME, name) if e.is_displayed()], f"{name} is shown"

    _type_into(driver.find_element(By.NAME, "connection_id"), CONN_ID)
    _type_into(driver.find_element(By.NAME, "host"), emu.endpoint)
    _type_into(driver.find_element(By.NAME, "login"), emu.access_key)
    _type_into(driver.find_element(By.NAME, "password"), emu.secret_key)
    _screenshot(driver, artifacts_dir / "airflow3-connection-form.png", note, "the filled-in form")

    # Extra fields (conn-fields): label, description and default value of each. The accordion shows one
    # section at a time, so opening this one folds the standard fields away.
    page.expand_section("Extra Fields")
    for name, field_spec in spec.extra_fields.items():
        element = page.extra_input(name)
        _wait(driver).until(ec.visibility_of(page.field_root(element)), f"{name} is not shown")
        assert page.label_of(element) == field_spec["label"]
        assert page.help_text_of(element) == field_spec["description"]
        if FormSpec.is_boolean(field_spec):
            assert element.is_selected() is FormSpec.default_shown(field_spec), name
        else:  # the enum select keeps its value in a hidden input of the same name
            assert element.get_attribute("value") == FormSpec.default_shown(field_spec), name
    _screenshot(driver, artifacts_dir / "airflow3-connection-form-extra-fields.png", note, "the extra fields")
    page.save(dialog)

    # Test the saved connection: success, and the emulator saw the hook's signed request.
    kind, title, message = page.press_test(CONN_ID)
    _screenshot(driver, artifacts_dir / "airflow3-test-success.png", note, "the successful test")
    call = traffic.wait_for_call(1)
    rewrites = driver.execute_script("return window.__portZeroRewrites")
    if rewrites:
        note(
            f'WORKAROUND for an Airflow {AIRFLOW_VERSION} UI bug: the Test button sent "port": 0 for a '
            'connection without a port (API answers 400 "Bad Request"); the test rewrote it to null in '
            f"{rewrites} request(s) (fixed upstream by apache/airflow#73298)"
        )
    else:
        note("the Test button did not send port 0: the port-0 workaround was not needed and can go")

    assert (kind, title) == ("success", "Test Connection Successful"), (kind, title, message)
    assert message.startswith("Connected to Backend.AI manager "), message
    assert emu.access_key in message, message
    assert call.status == 200, call
    assert call.response["status"] is True, call
    assert call.request.get("port") is None, call.request  # see PORT_ZERO_WORKAROUND_JS
    _assert_emulator_saw_test(emu, access_key=emu.access_key, accepted=True)

    # Put a wrong secret key in, save, and test again: a clear authentication failure.
    emu.reset()
    page.row_button(CONN_ID, "Edit Connection").click()
    dialog = page.dialog("Edit Connection")
    _type_into(driver.find_element(By.NAME, "password"), WRONG_SECRET_KEY)
    page.save(dialog)
    kind, title, message = page.press_test(CONN_ID)
    _screenshot(driver, artifacts_dir / "airflow3-test-failure.png", note, "the failed test")
    call = traffic.wait_for_call(2)
    assert (kind, title) == ("error", "Test Connection Failed"), (kind, title, message)
    assert message.startswith("Authentication failed"), message
    assert call.status == 200, call
    assert call.response["status"] is False, call
    _assert_emulator_saw_test(emu, access_key=emu.access_key, accepted=False)
    note(f"test failure message: {message}")
    note(f"browser scenario took {time.monotonic() - started:.1f} s (server start not included)")


# -- Airflow 2: the FAB UI served by ``airflow webserver`` --------------------------------------------


@dataclass
class Airflow2ConnectionForm:
    """The Flask-AppBuilder connection add/edit pages of Airflow 2 (select2, jQuery connection_form.js)."""

    driver: WebDriver
    ui: AirflowUI

    def login(self) -> None:
        self.driver.get(self.ui.url("/login/"))
        _wait(self.driver).until(ec.visibility_of_element_located((By.ID, "username"))).send_keys(
            self.ui.username
        )
        self.driver.find_element(By.ID, "password").send_keys(self.ui.password, Keys.ENTER)
        _wait(self.driver).until(lambda d: "/login" not in d.current_url, "login did not complete")

    def open_add_form(self) -> None:
        self.driver.get(self.ui.url("/connection/add"))
        _wait(self.driver).until(ec.presence_of_element_located((By.ID, "conn_type")))

    def choose_connection_type(self, hook_name: str) -> None:
        self.driver.find_element(By.CSS_SELECTOR, "[aria-labelledby='select2-conn_type-container']").click()
        search = _wait(self.driver).until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, ".select2-search__field"))
        )
        search.send_keys(hook_name)
        _wait(self.driver).until(
            ec.element_to_be_clickable(
                (
                    By.XPATH,
                    f"//li[contains(@class, 'select2-results__option')][normalize-space()='{hook_name}']",
                )
            )
        ).click()
        _wait(self.driver).until(
            ec.text_to_be_present_in_element((By.ID, "select2-conn_type-container"), hook_name)
        )

    def label_of(self, element_id: str) -> str:
        return (
            self.driver.find_element(By.CSS_SELECTOR, f"label[for='{element_id}']")
            .text.replace("*", "")
            .strip()
        )

    def press_test(self, expected_text: str) -> str:
        """Press Test; return the message connection_form.js shows above the form."""
        self.driver.find_element(By.ID, "test-connection").click()  # hides the old message at once

        def shown_message(driver: WebDriver) -> str | Literal[False]:
            for alert in driver.find_elements(By.CSS_SELECTOR, ".container .row .alert"):
                if alert.is_displayed() and expected_text in alert.text:
                    return alert.text.lstrip("\u00d7").strip()  # without the close button's "x"
            return False

        return _wait(self.driver).until(shown_message, f"no message containing {expected_text!r} appeared")


@pytest.mark.skipif(
    AIRFLOW_MAJOR >= 3, reason=f"Airflow 2 UI test; this environment has Airflow {AIRFLOW_VERSION}"
)
def test_connection_form_airflow2(
    airflow_ui: AirflowUI,
    chrome: WebDriver,
    backend_ai_emulator: EmulatorHandle,
    artifacts_dir: Path,
    note: Callable[[str], None],
) -> None:
    started = time.monotonic()
    spec, emu, driver = FormSpec.load(), backend_ai_emulator, chrome
    note(
        f"Airflow {AIRFLOW_VERSION} webserver healthy after {airflow_ui.startup_seconds:.1f} s at {airflow_ui.base_url}"
    )
    traffic = ConnectionTestTraffic(driver)
    form = Airflow2ConnectionForm(driver, airflow_ui)
    form.login()
    form.open_add_form()
    # Backend.AI sorts first and is preselected: pick another type first, so that the form has to react
    # to the user choosing Backend.AI (connection_form.js applies the hook's field behaviour on change).
    form.choose_connection_type("HTTP")
    assert form.label_of("host") != spec.relabeling["host"]
    form.choose_connection_type(spec.hook_name)

    # Standard fields (get_ui_field_behaviour): relabelled, with placeholders; schema and port hidden.
    for name, label in spec.relabeling.items():
        element = driver.find_element(By.ID, name)
        assert element.is_displayed(), f"{name} is hidden"
        assert form.label_of(name) == label
        assert element.get_attribute("placeholder") == spec.placeholders[name]
    for name in spec.hidden_fields:
        assert not driver.find_element(By.ID, name).is_displayed(), f"{name} is shown"

    # Extra fields (get_connection_form_widgets): label and default value of each.
    for name, field_spec in spec.extra_fields.items():
        element_id = f"extra__backend_ai__{name}"
        element = driver.find_element(By.ID, element_id)
        assert element.is_displayed(), f"{name} is hidden"
        assert form.label_of(element_id) == field_spec["label"]
        if FormSpec.is_boolean(field_spec):
            assert element.is_selected() is FormSpec.default_shown(field_spec), name
        else:
            assert element.get_attribute("value") == FormSpec.default_shown(field_spec), name

    _type_into(driver.find_element(By.ID, "conn_id"), CONN_ID)
    _type_into(driver.find_element(By.ID, "host"), emu.endpoint)
    _type_into(driver.find_element(By.ID, "login"), emu.access_key)
    _type_into(driver.find_element(By.ID, "password"), emu.secret_key)
    _screenshot(driver, artifacts_dir / "airflow2-connection-form.png", note, "the filled-in form")
    driver.find_element(By.CSS_SELECTOR, "form#model_form button[type='submit']").click()
    _wait(driver).until(
        ec.visibility_of_element_located(
            (By.XPATH, "//*[contains(@class, 'alert')][contains(., 'Added Row')]")
        ),
        "saving the connection was not confirmed",
    )
    driver.get(airflow_ui.url("/connection/list/"))
    edit_link = _wait(driver).until(
        ec.element_to_be_clickable(
            (By.XPATH, f"//tr[td[normalize-space()='{CONN_ID}']]//a[contains(@href, '/connection/edit/')]")
        ),
        "the saved connection is not in the list",
    )

    # Airflow 2's Test posts the form's values, and the edit form never sends the stored secret back to
    # the browser: type the secret key again, as a user has to.
    edit_link.click()
    password = _wait(driver).until(ec.visibility_of_element_located((By.ID, "password")))
    assert password.get_attribute("value") == "", "the edit form revealed the stored secret key"
    assert driver.find_element(By.ID, "host").get_attribute("value") == emu.endpoint
    _type_into(password, emu.secret_key)
    message = form.press_test("Connected to Backend.AI manager")
    _screenshot(driver, artifacts_dir / "airflow2-test-success.png", note, "the successful test")
    call = traffic.wait_for_call(1)
    assert emu.access_key in message, message
    assert call.status == 200, call
    assert call.response["status"] is True, call
    _assert_emulator_saw_test(emu, access_key=emu.access_key, accepted=True)

    emu.reset()
    _type_into(driver.find_element(By.ID, "password"), WRONG_SECRET_KEY)
    message = form.press_test("Authentication failed")
    _screenshot(driver, artifacts_dir / "airflow2-test-failure.png", note, "the failed test")
    call = traffic.wait_for_call(2)
    assert message.startswith("Authentication failed"), message
    assert call.status == 200, call
    assert call.response["status"] is False, call
    _assert_emulator_saw_test(emu, access_key=emu.access_key, accepted=False)
    note(f"test failure message: {message}")
    note(
        "Airflow 2 UI quirk (nothing to work around): connection_form.js shows a failed test exactly like "
        "a successful one (same alert box and styling), so the test tells them apart by the message and "
        'the API\'s "status" field'
    )
    note(f"browser scenario took {time.monotonic() - started:.1f} s (server start not included)")
