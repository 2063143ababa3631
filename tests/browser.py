"""Drive a real headless Chromium from the standard library, for the report's browser test.

Chromium speaks the Chrome DevTools Protocol over a pipe when started with
`--remote-debugging-pipe`: it reads JSON commands, each ending in a NUL byte, from file
descriptor 3 and writes replies and events to descriptor 4. That needs no websocket client
and no open port. `inspect_page(path)` loads a file, records console errors, uncaught
exceptions, failed loads and every network request, checks every <img> and returns a
full-page screenshot.

Run alone to save a screenshot: `python tests/browser.py report.html shot.png [width height]`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    images: list[dict[str, Any]] = field(default_factory=list)  # src (cut), complete, width
    # every <section>: id, class, heading, rendered height and text (cut), as laid out
    sections: list[dict[str, Any]] = field(default_factory=list)
    tables: int = 0  # rendered <table> elements
    # every <table> as laid out: its section, the right edge of the box that shows it (its
    # nearest .scroll wrapper, else itself) and of the section's content, whether it is in a
    # .scroll wrapper and whether that wrapper scrolls
    table_boxes: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""
    height: int = 0
    screenshot: bytes = b""  # PNG


class Chromium:
    """A headless Chromium and one CDP connection over its debugging pipe."""

    def __init__(self, binary: str | None = None, timeout: float = 30.0):
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise BrowserError(
                "no Chromium found (looked for " + ", ".join(CANDIDATES) + " and $CHROMIUM); "
                "install Debian's chromium: apt-get install -y chromium"
            )
        self.timeout = timeout
        self._next_id = 0
        self._buf = b""
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        self.profile = tempfile.mkdtemp(prefix="rashomon-chromium-")
        to_chrome_r, self._to_chrome_w = os.pipe()
        self._from_chrome_r, from_chrome_w = os.pipe()

        def wire_pipes() -> None:  # in the child: the protocol's fixed descriptors 3 and 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [
            self.binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--hide-scrollbars",
            "--mute-audio",
            "--remote-debugging-pipe",
            f"--user-data-dir={self.profile}",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            args,
            close_fds=False,
            preexec_fn=wire_pipes,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_chrome_w, self._from_chrome_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    # --- protocol ---------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_chrome_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_chrome_r, 1 << 20)
            if not chunk:
                err = (
                    self.proc.stderr.read().decode(errors="replace")[-800:]
                    if self.proc.poll() is not None and self.proc.stderr
                    else ""
                )
                raise BrowserError(f"Chromium closed the debugging pipe. {err}")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        for ev in self.events:
            if ev.get("method") == method and ev.get("sessionId") == session:
                return ev
        while True:
            ev = self._read_message(deadline)
            self.events.append(ev)
            if ev.get("method") == method and ev.get("sessionId") == session:
                return ev

    def drain(self, seconds: float) -> None:
        """Collect events for a while (late console messages)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except BrowserError:
            return


def _console_errors(events: list[dict[str, Any]], session: str) -> list[str]:
    out = []
    for ev in events:
        if ev.get("sessionId") != session:
            continue
        m, p = ev.get("method"), ev.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(
                "console: "
                + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            )
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("exception: " + str(d.get("exception", {}).get("description", d)))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            out.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}")
        elif m == "Network.loadingFailed":
            out.append(f"load failed: {p.get('errorText')}")
    return out


IMAGES_JS = """JSON.stringify({
  title: document.title,
  height: Math.ceil(document.documentElement.scrollHeight),
  images: Array.from(document.images).map(im => ({
    src: im.currentSrc.slice(0, 40), complete: im.complete,
    naturalWidth: im.naturalWidth, naturalHeight: im.naturalHeight, alt: im.alt})),
  sections: Array.from(document.querySelectorAll("section")).map(s => ({
    id: s.id, cls: s.className, title: (s.querySelector("h2") || {}).innerText || "",
    height: s.getBoundingClientRect().height, text: s.innerText.slice(0, 8000)})),
  tables: document.querySelectorAll("table").length,
  table_boxes: Array.from(document.querySelectorAll("table")).map(t => {
    const s = t.closest("section"), wrap = t.closest(".scroll");
    const box = (wrap || t).getBoundingClientRect();
    const content = s
      ? s.getBoundingClientRect().right - parseFloat(getComputedStyle(s).paddingRight)
      : document.documentElement.clientWidth;
    return {section: s ? s.id : "", in_scroll: !!wrap, box_right: box.right,
            section_right: content, scrolls: !!wrap && wrap.scrollWidth > wrap.clientWidth};
  })
})"""


def inspect_page(
    path: Path, width: int = 1280, height: int | None = None, binary: str | None = None
) -> PageResult:
    """Load `path` in headless Chromium; screenshot the whole page (or the top `height` px)."""
    url = Path(path).resolve().as_uri()
    result = PageResult()
    with Chromium(binary) as br:
        target = br.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = br.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            br.send(f"{domain}.enable", session=session)
        br.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height or 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        br.send("Page.navigate", {"url": url}, session=session)
        br.wait_event("Page.loadEventFired", session)
        br.drain(0.5)
        info = json.loads(
            br.send(
                "Runtime.evaluate",
                {"expression": IMAGES_JS, "returnByValue": True},
                session=session,
            )["result"]["value"]
        )
        result.title, result.height, result.images = info["title"], info["height"], info["images"]
        result.sections, result.tables = info["sections"], info["tables"]
        result.table_boxes = info["table_boxes"]
        shot_h = height or result.height
        br.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": shot_h, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        shot = br.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "clip": {"x": 0, "y": 0, "width": width, "height": shot_h, "scale": 1},
            },
            session=session,
            timeout=60,
        )
        result.screenshot = base64.b64decode(shot["data"])
        br.drain(0.2)
        result.console_errors = _console_errors(br.events, session)
        result.requests = [
            ev["params"]["request"]["url"]
            for ev in br.events
            if ev.get("method") == "Network.requestWillBeSent" and ev.get("sessionId") == session
        ]
    return result


def inspect_self_contained(path: Path, width: int = 1280, height: int | None = None) -> PageResult:
    """`inspect_page`, then the checks every rashomon page must pass: no console errors, nothing
    requested but the file itself and its embedded data, every image decoded. Raises
    AssertionError (or BrowserError when Chromium is missing or fails)."""
    if find_chromium() is None:
        raise BrowserError(
            "headless Chromium is required for this test and was not found; install "
            "Debian's chromium (apt-get install -y chromium) or set $CHROMIUM"
        )
    page = inspect_page(path, width=width, height=height)
    assert page.console_errors == [], page.console_errors
    assert all(u.startswith(("file:", "data:")) for u in page.requests), page.requests
    broken = [im for im in page.images if not im["complete"] or im["naturalWidth"] == 0]
    assert broken == [], broken
    return page


def screenshot_stats(png: bytes) -> tuple[int, float]:
    """(distinct colours, share of non-white pixels) of a PNG."""
    import io

    import numpy as np
    from matplotlib.image import imread

    img = imread(io.BytesIO(png), format="png")
    rgb = (img[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3)
    packed = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
    return int(len(np.unique(packed))), float((rgb.min(axis=1) < 245).mean())


if __name__ == "__main__":
    page, out = Path(sys.argv[1]), Path(sys.argv[2])
    w = int(sys.argv[3]) if len(sys.argv) > 3 else 1280
    h = int(sys.argv[4]) if len(sys.argv) > 4 else None
    res = inspect_page(page, w, h)
    out.write_bytes(res.screenshot)
    print(
        json.dumps(
            {
                "errors": res.console_errors,
                "images": len(res.images),
                "height": res.height,
                "requests": [u[:60] for u in res.requests[:3]],
            },
            indent=1,
        )
    )
