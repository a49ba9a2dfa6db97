"""A minimal headless-Chromium driver for tests: the DevTools protocol over --remote-debugging-pipe.

No third-party package: Chromium reads NUL-terminated JSON messages on fd 3 and writes them on fd 4.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
         # any request that leaves the machine fails instead of waiting on the network
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost"]


def find_chromium() -> str | None:
    explicit = os.environ.get("EMBEDPERF_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else shutil.which(explicit)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    pass


class Chromium:
    """One headless browser process; `call` sends a command and waits for its answer, events are kept."""

    def __init__(self, binary: str, user_data_dir: Path, log: Path):
        self.log = log
        self._log = open(log, "wb")
        cmd = ["sh", "-c", 'exec "$@" 3<&0 4>&1 </dev/null >/dev/null', "sh", binary, *FLAGS,
               f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     start_new_session=True)
        self._next = 0
        self._answers: dict[int, dict] = {}
        self.events: list[dict] = []
        self._inbox: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(1 << 16) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(1)
            if not chunk:
                self._inbox.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                self._inbox.put(json.loads(msg))

    def _pump(self, timeout: float) -> bool:
        try:
            msg = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return False
        if msg is None:
            raise CDPError(f"chromium exited (code {self.proc.poll()}); log: {self.log}")
        if "id" in msg:
            self._answers[msg["id"]] = msg
        else:
            self.events.append(msg)
        return True

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.proc.stdin.write(json.dumps(msg).encode() + b"\0")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while self._next not in self._answers:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"no answer to {method} in {timeout} s")
            self._pump(min(left, 0.5))
        answer = self._answers.pop(self._next)
        if "error" in answer:
            raise CDPError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def wait_event(self, method: str, session: str | None = None, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for ev in self.events[seen:]:
                if ev.get("method") == method and (session is None or ev.get("sessionId") == session):
                    return ev
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"no {method} event in {timeout} s")
            self._pump(min(left, 0.5))

    def drain(self, seconds: float) -> None:
        """Collect events for a while (late console messages, failed requests)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._pump(max(0.0, min(0.1, deadline - time.monotonic())))

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close", timeout=10)
                except CDPError:
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, 9)  # the process group this driver started, nothing else
                    self.proc.wait(timeout=10)
        finally:
            self._log.close()


FIGURES_JS = """
(() => {
  const figures = [...document.querySelectorAll('figure.plot')].map(f => {
    const svg = f.querySelector('svg');
    const paths = svg ? [...svg.querySelectorAll('path')].filter(p => (p.getAttribute('d') || '').trim().length > 0) : [];
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    const refs = svg ? [...svg.querySelectorAll('use')].map(u => u.getAttribute('xlink:href') || u.getAttribute('href')) : [];
    const dangling = refs.filter(r => r && r.startsWith('#') && !document.getElementById(r.slice(1)));
    let drawn = 0;
    for (const p of paths.slice(0, 400)) { const b = p.getBBox(); if (b.width > 0 || b.height > 0) drawn++; }
    return {name: f.dataset.figure, paths: paths.length, drawn, width: box.width, height: box.height,
            dangling: dangling.length};
  });
  return {figures, sections: [...document.querySelectorAll('section')].map(s => s.id),
          scripts: document.scripts.length, height: document.documentElement.scrollHeight,
          tables: document.querySelectorAll('table').length};
})()
"""


def inspect_page(binary: str, page: Path, workdir: Path, screenshot: Path, width: int = 1280) -> dict:
    """Open `page`, wait for load, and return figures, errors, requests; save a full-page PNG."""
    import base64

    workdir.mkdir(parents=True, exist_ok=True)
    browser = Chromium(binary, workdir / "profile", workdir / "chromium.log")
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", {}, session)
        browser.call("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
        browser.call("Page.navigate", {"url": page.resolve().as_uri()}, session)
        browser.wait_event("Page.loadEventFired", session)
        browser.drain(1.0)
        info = browser.call("Runtime.evaluate", {"expression": FIGURES_JS, "returnByValue": True},
                            session)["result"]["value"]
        height = min(int(info["height"]) + 20, 16000)
        browser.call("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        png = browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                           session)["data"]
        screenshot.write_bytes(base64.b64decode(png))
        browser.drain(0.3)
        events = [e for e in browser.events if e.get("sessionId") == session]
    finally:
        browser.close()
    errors = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            errors.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            errors.append(f"console.{p.get('type')}: {[a.get('value') for a in p.get('args', [])]}")
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
            errors.append(f"log {p['entry']['level']}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
    failed = [f"{e['params'].get('errorText')} ({e['params'].get('requestId')})" for e in events
              if e.get("method") == "Network.loadingFailed"]
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    return {**info, "errors": errors, "failed_requests": failed, "requests": requests,
            "screenshot": str(screenshot)}


LAYOUT_JS = """
(() => {
  const wide = [...document.querySelectorAll('div.fit')].filter(d => d.scrollWidth > d.clientWidth + 1)
    .map(d => ({id: (d.closest('section') || {}).id || '', width: d.scrollWidth, room: d.clientWidth,
                head: (d.querySelector('th') || {}).textContent || ''}));
  const heat = document.querySelector('table.heat');
  const firstHeat = heat ? heat.getBoundingClientRect().top + window.scrollY : null;
  return {pageWidth: document.documentElement.scrollWidth, viewWidth: window.innerWidth, wide,
          firstHeatTop: firstHeat, verdictsTop: (document.getElementById('verdicts') || {getBoundingClientRect: () => ({top: null})}).getBoundingClientRect().top};
})()
"""


def screenshots(binary: str, page: Path, workdir: Path, shots: dict[str, str | None], width: int = 1366,
                height: int = 768) -> dict:
    """Viewport screenshots of `page` at a laptop's size: for each name, the screen that starts at the element
    the CSS selector finds (None: the first screen). Returns the layout facts (tables wider than their room,
    page wider than the window) and the PNG paths."""
    import base64

    workdir.mkdir(parents=True, exist_ok=True)
    browser = Chromium(binary, workdir / "profile", workdir / "chromium.log")
    out: dict = {"png": {}}
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime"):
            browser.call(f"{domain}.enable", {}, session)
        browser.call("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        browser.call("Page.navigate", {"url": page.resolve().as_uri()}, session)
        browser.wait_event("Page.loadEventFired", session)
        browser.drain(0.5)
        out["layout"] = browser.call("Runtime.evaluate", {"expression": LAYOUT_JS, "returnByValue": True},
                                     session)["result"]["value"]
        for name, selector in shots.items():
            top = 0
            if selector:
                js = f"(() => {{const e = document.querySelector({json.dumps(selector)}); " \
                     f"return e ? e.getBoundingClientRect().top + window.scrollY : -1;}})()"
                top = browser.call("Runtime.evaluate", {"expression": js, "returnByValue": True},
                                   session)["result"]["value"]
                if top < 0:
                    raise CDPError(f"no element matches {selector}")
            png = browser.call("Page.captureScreenshot",
                               {"format": "png", "captureBeyondViewport": True,
                                "clip": {"x": 0, "y": top, "width": width, "height": height, "scale": 1}},
                               session)["data"]
            path = workdir / f"{name}.png"
            path.write_bytes(base64.b64decode(png))
            out["png"][name] = str(path)
    finally:
        browser.close()
    return out
