"""noVNC in headless Chromium: publish-to-canvas latency, and the seed demo's CPU with one viewer.

Two measurements, both with Playwright driving Debian's ``/usr/bin/chromium`` (the browser the
test suite uses):

* **Latency** (:func:`run_latency`): :mod:`.paced_server` publishes frames at a fixed rate, each
  with its number drawn in pixels (:func:`.paced_server.stamp`). The page runs noVNC's own
  ``core/rfb.js`` (npm ``@novnc/novnc`` from ``viewer/node_modules``) and wraps its display's
  ``flip()`` (the call that copies a finished update onto the visible canvas): after every flip it
  reads the counter back from the visible canvas and, when it changed, records
  ``performance.timeOrigin + performance.now()``. The server records ``time.time_ns()`` just
  before each publish. Both are wall-clock times on the same machine; their offset (Chromium
  derives its time origin from the system clock once) is measured before the run as the page's
  clock minus the midpoint of a Playwright round trip (the tightest of 20), and subtracted.
  A frame the page never showed (the server coalesced it into the next) counts as missed.
* **Demo CPU** (:func:`run_demo_cpu`): the real ``pdum-rfb demo`` (the seed scene at 320x240,
  10 frames/s) as its own process, with Chromium showing the bundled viewer page it serves;
  the demo's CPU (user + system, from ``/proc/PID/stat``, rendering included) over a fixed
  window, as a percentage of one core.

Both need Playwright (a dev dependency) and Chromium; latency also needs ``viewer/node_modules``
(``scripts/test.sh`` runs ``npm ci``). Without them the section says why it was skipped.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .peer import Skip, percentile

# The frame counter's layout, as drawn by :func:`.paced_server.stamp` (not imported here: the
# harness runs that module with ``python -m``, which warns when the package already imported it).
COUNTER_BITS = 16
BLOCK = 8

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip

#: label -> the encoding list the page sends (the data encoding, then DesktopSize,
#: ExtendedDesktopSize and LastRect). No quality level: exact pixels, as in the peer sections.
BROWSER_ENCODINGS: dict[str, tuple[int, ...]] = {
    "Tight": (7, -223, -308, -224),
    "ZRLE": (16, -223, -308, -224),
    "Raw": (0, -223, -308, -224),
}

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>pdum.rfb latency</title>
<style>body { margin: 0; } #screen { width: 2000px; height: 1200px; }</style></head>
<body><div id="screen"></div>
<script type="module">
import RFB from "/novnc/core/rfb.js";
const params = new URLSearchParams(location.search);
const list = params.get("encodings").split(",").map(Number);
const rfb = new RFB(document.getElementById("screen"), params.get("url"), { shared: true });
rfb._sendEncodings = function () { RFB.messages.clientEncodings(this._sock, list); };
window.rfbState = "connecting";
window.seen = [];  // [counter, page wall-clock ms] each time the visible counter changes
rfb.addEventListener("connect", () => { window.rfbState = "connected"; });
rfb.addEventListener("disconnect", () => { window.rfbState = "closed"; });
const BITS = @BITS@, BLOCK = @BLOCK@;
const display = rfb._display;
const flip = display.flip.bind(display);
let last = -1;
display.flip = function (fromQueue) {
  flip(fromQueue);
  if (!fromQueue && this._renderQ.length !== 0) return;  // queued: the real flip comes later
  const px = this._targetCtx.getImageData(0, 0, BITS * BLOCK, BLOCK).data;
  let n = 0;
  for (let i = 0; i < BITS; i++) {
    const at = ((BLOCK >> 1) * BITS * BLOCK + i * BLOCK + (BLOCK >> 1)) * 4 + 1;
    if (px[at] > 127) n |= 1 << i;
  }
  if (n !== last) { last = n; window.seen.push([n, performance.timeOrigin + performance.now()]); }
};
</script></body></html>
""".replace("@BITS@", str(COUNTER_BITS)).replace("@BLOCK@", str(BLOCK))


def novnc_core() -> Path | None:
    """noVNC's npm package in the source checkout's ``viewer/node_modules``, if installed."""
    candidate = Path(__file__).resolve().parents[3] / "viewer" / "node_modules" / "@novnc" / "novnc"
    return candidate if (candidate / "core" / "rfb.js").is_file() else None


@contextmanager
def _browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise Skip("playwright is not installed (it is a dev dependency)") from exc
    if not Path(CHROMIUM).exists():
        raise Skip(f"{CHROMIUM} not found (scripts/test.sh installs Debian's chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def _static_server(novnc: Path) -> Iterator[str]:
    page = PAGE.encode("utf-8")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            path = path.split("?", 1)[0]
            if path.startswith("/novnc/"):
                return str(novnc / path[len("/novnc/") :])
            return str(novnc / "__missing__")

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?", 1)[0] == "/latency.html":
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def clock_offset_ms(page: Any, tries: int = 20) -> tuple[float, float]:
    """(page clock - our ``time.time()``, half the round trip it was measured within), in ms."""
    best: tuple[float, float] | None = None
    for _ in range(tries):
        t0 = time.time_ns()
        value = float(page.evaluate("performance.timeOrigin + performance.now()"))
        t1 = time.time_ns()
        half = (t1 - t0) / 2e6
        if best is None or half < best[1]:
            best = (value - (t0 + t1) / 2e6, half)
    assert best is not None
    return best


@dataclass
class BrowserLatency:
    """One paced run of our server to noVNC in Chromium."""

    scene: str
    width: int
    height: int
    encoding: str
    fps: float
    frames: int = 0
    shown: int = 0  # frames the page showed (the rest were coalesced into a later one)
    latency_ms_median: float = float("nan")
    latency_ms_p95: float = float("nan")
    latency_ms_p99: float = float("nan")
    latency_ms_max: float = float("nan")
    clock_uncertainty_ms: float = float("nan")  # half the round trip the clock offset was read in
    server_cpu_percent: float = float("nan")  # our server process, % of one core, over the run
    error: str | None = None
    latencies_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _latency_once(browser: Any, base: str, case: BrowserLatency, nframes: int, timeout: int) -> None:
    cmd = [sys.executable, "-m", "pdum.rfb.bench.paced_server", str(case.width), str(case.height),
           str(nframes), str(case.fps), case.scene, str(timeout)]  # fmt: skip
    server = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdin is not None and server.stdout is not None
    context = browser.new_context(viewport={"width": max(800, case.width), "height": max(600, case.height)})
    try:
        ready = server.stdout.readline()
        if not ready.startswith("READY "):
            raise RuntimeError(f"server did not start: {ready!r}")
        ws_url = ready.split()[1]
        page = context.new_page()
        encodings = ",".join(str(e) for e in BROWSER_ENCODINGS[case.encoding])
        page.goto(f"{base}/latency.html?url={ws_url}&encodings={encodings}")
        shown0 = "!!window.seen && window.seen.length > 0 && window.seen.at(-1)[0] === 0"
        _wait(lambda: page.evaluate(shown0), 15, "noVNC to show frame 0")
        offset, case.clock_uncertainty_ms = clock_offset_ms(page)
        page.evaluate("window.seen = []")
        server.stdin.write("go\n")
        server.stdin.flush()
        out = server.stdout.read()
        server.wait(timeout=10)
        if server.returncode != 0 or not out.strip():
            raise RuntimeError(f"server exited with {server.returncode}")
        result = json.loads(out.strip().splitlines()[-1])
        seen: list[list[float]] = page.evaluate("window.seen")
    except Exception as exc:  # noqa: BLE001 (Playwright's errors too: one failed row, not the run)
        case.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return
    finally:
        context.close()
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stdout.close()
        server.stdin.close()
    publish_ms = [ns / 1e6 for ns in result["publish_ns"]]  # frame k is publish_ms[k - 1]
    shown_at = {int(n): t - offset for n, t in seen}
    latencies = [shown_at[k] - publish_ms[k - 1] for k in range(1, nframes) if k in shown_at]
    case.frames = nframes - 1
    case.shown = len(latencies)
    case.latencies_ms = [round(v, 3) for v in latencies]
    if latencies:
        case.latency_ms_median = statistics.median(latencies)
        case.latency_ms_p95 = percentile(latencies, 95)
        case.latency_ms_p99 = percentile(latencies, 99)
        case.latency_ms_max = max(latencies)
    case.server_cpu_percent = 100.0 * result["cpu_s"] / result["wall_s"]


def latency_cases(quick: bool) -> list[tuple[str, int, int, str, float, int]]:
    """(scene, width, height, encoding, fps, frames)."""
    if quick:
        return [("seed_scene", 320, 240, "Tight", 20.0, 40)]
    return [
        ("seed_scene", 320, 240, "Tight", 20.0, 301),
        ("seed_scene", 320, 240, "ZRLE", 20.0, 301),
        ("seed_scene", 320, 240, "Raw", 20.0, 301),
        ("seed_scene", 1280, 720, "Tight", 10.0, 101),
    ]


def run_latency(quick: bool, progress: Callable[[str], None] | None = None) -> list[BrowserLatency]:
    novnc = novnc_core()
    if novnc is None:
        raise Skip("viewer/node_modules/@novnc/novnc not found: run scripts/test.sh (it runs npm ci)")
    results: list[BrowserLatency] = []
    with _browser() as browser, _static_server(novnc) as base:
        for scene, width, height, encoding, fps, nframes in latency_cases(quick):
            case = BrowserLatency(scene, width, height, encoding, fps)
            _latency_once(browser, base, case, nframes, timeout=int(60 + nframes / fps))
            results.append(case)
            if progress is not None:
                progress(
                    f"noVNC latency {scene} {width}x{height} {encoding:5} p50 {case.latency_ms_median:6.2f} "
                    f"p99 {case.latency_ms_p99:6.2f} ms, shown {case.shown}/{case.frames}, "
                    f"server {case.server_cpu_percent:.1f}% {case.error or ''}"
                )
    return results


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (every thread), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class DemoCpu:
    """``pdum-rfb demo`` (320x240, 10 frames/s) with one noVNC viewer, measured from outside."""

    width: int = 320
    height: int = 240
    fps: float = 10.0
    seconds: float = float("nan")
    cpu_percent: float = float("nan")  # of one core: the demo process, rendering included
    idle_cpu_percent: float = float("nan")  # the same process before any viewer connected
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_demo_cpu(quick: bool, progress: Callable[[str], None] | None = None) -> DemoCpu:
    result = DemoCpu()
    window = 5.0 if quick else 20.0
    cmd = [sys.executable, "-m", "pdum.rfb.cli", "demo", "--vnc-port", "0", "--port", "0"]
    demo = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert demo.stdout is not None
    try:
        url = None
        for _ in range(10):
            line = demo.stdout.readline()
            if "Browser:" in line:
                url = line.split()[1]
                break
        if url is None:
            raise RuntimeError("the demo printed no browser URL")
        time.sleep(2.0)  # past start-up
        c0, t0 = _proc_cpu_s(demo.pid), time.monotonic()
        time.sleep(window / 4)
        result.idle_cpu_percent = 100.0 * (_proc_cpu_s(demo.pid) - c0) / (time.monotonic() - t0)
        with _browser() as browser:
            context = browser.new_context(viewport={"width": 800, "height": 600})
            page = context.new_page()
            page.goto(url)
            state = "window.pdumRfbModel && window.pdumRfbModel.get('state')"
            _wait(lambda: page.evaluate(state) == "connected", 15, "the viewer to connect")
            time.sleep(2.0)  # past the first full update
            c0, t0 = _proc_cpu_s(demo.pid), time.monotonic()
            time.sleep(window)
            c1, t1 = _proc_cpu_s(demo.pid), time.monotonic()
            context.close()
        result.seconds = t1 - t0
        result.cpu_percent = 100.0 * (c1 - c0) / (t1 - t0)
    except Exception as exc:  # noqa: BLE001 (Playwright's errors too)
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        demo.terminate()
        try:
            demo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
        demo.stdout.close()
    if progress is not None:
        note = result.error or ""
        progress(f"demo CPU with one noVNC viewer: {result.cpu_percent:.2f}% of one core {note}")
    return result
