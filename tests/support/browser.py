"""Headless Chromium driven over the Chrome DevTools Protocol (a websocket; no Selenium): what the
browser tests need and nothing more. Chromium comes from Debian's packages (scripts/chromium.sh,
run by `make test`); ``chromium()`` is None where it is not installed, and the tests skip saying so.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import requests
from websockets.sync.client import ClientConnection, connect

from tests.support.airflow_stack import free_port

# The flags that work in a container as root: no sandbox, no GPU, nothing fetched in the background.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip
INSTALL_HINT = "Chromium is not installed: scripts/chromium.sh (run by make test) installs Debian's chromium"


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Page:
    """One browser tab: send a DevTools command, evaluate JavaScript, wait for a condition, click."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        # The DevTools events that arrived in between answers (the latest few hundred): a failing test
        # can say which requests the page made and what the server answered.
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:  # events arrive in between; only the answer to this call matters
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("method") in ("Network.requestWillBeSent", "Network.responseReceived"):
                self.events.append(message)
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return dict(message.get("result") or {})

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def text(self) -> str:
        return str(self.js("document.body ? document.body.innerText : ''"))

    def wait(self, expression: str, *, what: str, timeout: float = 90.0) -> Any:
        """Evaluate ``expression`` until it is truthy (an exception counts as not yet) and return it."""
        guarded = f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(guarded)
            if value:
                return value
            time.sleep(0.3)
        raise AssertionError(f"{what}: not seen within {timeout:.0f}s; the page says:\n{self.text()[:2000]}")

    def click(self, element: str, *, timeout: float = 30.0) -> None:
        """A real mouse click (DevTools input events, which the UI's components listen to) in the
        middle of the element the JavaScript ``element`` finds.

        The point is taken only once the element is what the browser would hit there (a hit test),
        asked twice in a row: a dialog that is still scrolling or animating moves its buttons, and a
        click on the point measured a moment earlier lands on whatever is there now."""
        where = (
            f"(() => {{ const e = ({element}); if (!e) return null; e.scrollIntoView({{block: 'center'}}); "
            "const r = e.getBoundingClientRect(); const x = r.x + r.width / 2, y = r.y + r.height / 2; "
            "const hit = document.elementFromPoint(x, y); "
            "return hit && (hit === e || e.contains(hit)) ? [x, y] : null; })()"
        )
        deadline = time.monotonic() + timeout
        last = None
        while True:
            point = self.js(where)
            if point is not None and point == last:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{element}: not where a click would hit it within {timeout:.0f}s")
            last = point
            time.sleep(0.2)
        x, y = point
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def requests_sent(self, url_part: str) -> list[str]:
        """``METHOD url`` for each request the page sent whose URL contains ``url_part``."""
        return [
            f"{e['params']['request']['method']} {e['params']['request']['url']}"
            for e in self.events
            if e["method"] == "Network.requestWillBeSent" and url_part in e["params"]["request"]["url"]
        ]

    def responses(self, url_part: str) -> list[str]:
        """``METHOD url -> status`` for each response seen whose URL contains ``url_part``."""
        methods = {
            e["params"]["requestId"]: e["params"]["request"]["method"]
            for e in self.events
            if e["method"] == "Network.requestWillBeSent"
        }
        return [
            f"{methods.get(e['params']['requestId'], '?')} {e['params']['response']['url']} -> "
            f"{e['params']['response']['status']}"
            for e in self.events
            if e["method"] == "Network.responseReceived" and url_part in e["params"]["response"]["url"]
        ]

    def type(self, text: str) -> None:
        self.send("Input.insertText", text=text)


@contextlib.contextmanager
def headless_chromium(binary: str) -> Iterator[Page]:
    """Chromium with a new empty profile, and its first tab; ended (and its profile removed) after."""
    port = free_port()
    # Chromium's helper processes may still be writing the profile for a moment after they are told to
    # end: a leftover file there is not this test's concern.
    with tempfile.TemporaryDirectory(prefix="chromium-profile-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
             "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                    break
                except requests.RequestException:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"Chromium did not start (exit {proc.poll()})") from None
                    time.sleep(0.2)
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            with connect(url, max_size=2**26) as ws:
                page = Page(ws)
                page.send("Page.enable")
                page.send("Network.enable")
                yield page
        finally:
            # The whole process group (its own session): the browser and its renderer, GPU and
            # crash-handler children, which write into the profile too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
