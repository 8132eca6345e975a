"""A headless Chromium for tests, driven over the W3C WebDriver protocol.

Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs them). chromedriver
is a small HTTP server on 127.0.0.1, so plain ``requests`` calls drive it and no
browser-automation package (or browser download) is needed. Only what the web UI tests use:
open a page, click and type into elements found by XPath, run a script, wait.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import requests

from tests.standin_process import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# A fresh profile that talks to nothing but the pages it is sent to.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1200",
)  # fmt: skip
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"  # the W3C spec's element reference key
CONTROL, RELEASE_KEYS = "\ue009", "\ue000"  # the spec's key codes: Control, release modifiers

T = TypeVar("T")


def available() -> bool:
    return Path(CHROMIUM).exists() and shutil.which(CHROMEDRIVER) is not None


class WebDriverError(RuntimeError):
    """What chromedriver answered to a command that failed."""


class Browser:
    """One WebDriver session."""

    def __init__(self, session_url: str) -> None:
        self.session_url = session_url

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        response = requests.request(method, self.session_url + path, json=body, timeout=60)
        value = response.json()["value"]
        if response.status_code != 200:
            raise WebDriverError(f"{path}: {value['error']}: {value['message'][:300]}")
        return value

    def open(self, url: str) -> None:
        self.call("POST", "/url", {"url": url})

    def find(self, xpath: str) -> str:
        found = self.call("POST", "/element", {"using": "xpath", "value": xpath})
        return found[ELEMENT_KEY]

    def click(self, xpath: str) -> None:
        """Click the element, once the page has rendered it where it can be clicked."""

        def attempt() -> bool:
            self.call("POST", f"/element/{self.find(xpath)}/click", {})
            return True

        self.wait_for(attempt, f"click {xpath}")

    def fill(self, xpath: str, text: str) -> None:
        """Replace what the input holds with ``text``, once it can be typed into."""

        def attempt() -> bool:
            # Select all, then type: key events, which the page's form state sees (a WebDriver
            # "clear" empties the input behind the page's back, and the old value returns).
            keys = f"{CONTROL}a{RELEASE_KEYS}{text}"
            self.call("POST", f"/element/{self.find(xpath)}/value", {"text": keys})
            return True

        self.wait_for(attempt, f"type into {xpath}")

    def script(self, source: str, *args: Any) -> Any:
        return self.call("POST", "/execute/sync", {"script": source, "args": list(args)})

    def text(self) -> str:
        return self.script("return document.body.innerText")

    def wait_for(self, probe: Callable[[], T | None], what: str, timeout: float = 30) -> T:
        """Poll ``probe`` until it returns something truthy (a failed command counts as not
        yet); fail naming ``what`` with the page's text once ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(WebDriverError):
                result = probe()
                if result:
                    return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not after {timeout} s; page:\n{self.text()}")
            time.sleep(0.2)


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Browser]:
    """A headless Chromium with a fresh profile in ``profile``, until the block ends."""
    port = free_port()
    log = profile.parent / "chromedriver.log"
    driver = subprocess.Popen(
        [CHROMEDRIVER, f"--port={port}", f"--log-path={log}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    session = None
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/status", timeout=2).json()["value"]["ready"]:
                    break
            if driver.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromedriver did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        options = {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={profile}"]}
        capabilities = {"browserName": "chrome", "goog:chromeOptions": options}
        answer = requests.post(
            f"{base}/session", json={"capabilities": {"alwaysMatch": capabilities}}, timeout=120
        ).json()["value"]
        if "sessionId" not in answer:
            raise RuntimeError(f"chromedriver could not start Chromium: {answer}")
        session = f"{base}/session/{answer['sessionId']}"
        yield Browser(session)
    finally:
        if session is not None:
            with contextlib.suppress(requests.RequestException):
                requests.delete(session, timeout=30)
        driver.terminate()
        try:
            driver.wait(timeout=30)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait()
