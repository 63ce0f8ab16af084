"""Markdown tables and machine facts for benchmark results.

The tables are Markdown so that one run's output can be pasted into ``docs/performance.md``
unchanged; numbers are printed as measured (a fixed number of significant digits, nothing
rounded towards anyone).
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
import sys
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .browser import BrowserLatency, DemoCpu
from .encoders import EncoderResult
from .peer import FloorRun, Run
from .websocket_viewers import ViewerRun


def machine() -> dict[str, Any]:
    """What a reader needs to compare numbers across machines."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def command(*args: str) -> str | None:
        if shutil.which(args[0]) is None:
            return None
        done = subprocess.run(args, capture_output=True, text=True)
        return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None

    checkout = Path(__file__).resolve().parents[3]
    git = (
        command("git", "-C", str(checkout), "describe", "--always", "--dirty")
        if (checkout / ".git").exists()
        else None
    )
    return {
        "git": git,
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "pdum_rfb": __version__,
        "libvncserver": command("pkg-config", "--modversion", "libvncserver"),
        "gcc": command("gcc", "--version"),
    }


def fmt(value: float, digits: int = 3) -> str:
    """``digits`` significant digits, no scientific notation for ordinary magnitudes."""
    if math.isnan(value):
        return "n/a"
    if value == 0:
        return "0"
    if math.isinf(value):
        return "inf"
    magnitude = int(math.floor(math.log10(abs(value))))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def ratio(ours: float, theirs: float) -> str:
    if any(math.isnan(v) for v in (ours, theirs)) or theirs == 0:
        return "n/a"
    return f"{ours / theirs:.2f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_text(info: dict[str, Any]) -> str:
    return "\n".join(f"- {key}: {value}" for key, value in info.items())


def encoders_text(results: Sequence[EncoderResult]) -> str:
    out: list[str] = []
    sizes = list(dict.fromkeys((r.width, r.height) for r in results))
    for width, height in sizes:
        rows = [
            [r.scene, r.encoder, fmt(r.ms_per_frame), fmt(r.mb_per_s), f"{r.bytes_per_frame:,.0f}",
             f"{100 * r.ratio:.2f}%", str(r.frames)]
            for r in results
            if (r.width, r.height) == (width, height)
        ]  # fmt: skip
        out.append(f"#### {width}x{height} (raw input {width * height * 3 / 1e6:.2f} MB per frame)\n")
        headers = ["scene", "encoder", "ms/frame", "MB/s", "bytes/frame", "of Raw32", "frames"]
        out.append(table(headers, rows))
        out.append("")
    return "\n".join(out)


def _pairs(runs: Sequence[Run]) -> list[tuple[Run, Run]]:
    """(pdum, libvncserver) runs of the same case, in order."""
    by_key: dict[tuple[Any, ...], dict[str, Run]] = {}
    for r in runs:
        by_key.setdefault((r.scene, r.width, r.height, r.encoding, r.clients), {})[r.server] = r
    return [(v["pdum"], v["libvncserver"]) for v in by_key.values() if {"pdum", "libvncserver"} <= v.keys()]


def _status(a: Run, b: Run) -> str:
    notes = []
    for r in (a, b):
        if r.error:
            notes.append(f"{r.server}: {r.error}")
        elif not r.verified:
            notes.append(f"{r.server}: frames not verified")
        elif r.min_updates < r.frames:
            notes.append(f"{r.server}: a client missed frames")
    return "; ".join(notes) or "yes"


def _best_cpu(run: Run) -> float:
    """The least CPU per frame over a case's repetitions: other tenants of a shared machine only
    ever add to a run's CPU time, so the best run is the one they disturbed least."""
    return min((r["cpu_ms_per_frame"] for r in run.repeats), default=run.cpu_ms_per_frame)


def peer_text(runs: Sequence[Run]) -> str:
    rows = [
        [f"{a.scene} {a.width}x{a.height}", a.encoding,
         f"{a.bytes_per_frame:,.0f}", f"{b.bytes_per_frame:,.0f}",
         ratio(a.bytes_per_frame, b.bytes_per_frame),
         fmt(a.cpu_ms_per_frame), fmt(b.cpu_ms_per_frame), ratio(a.cpu_ms_per_frame, b.cpu_ms_per_frame),
         fmt(_best_cpu(a)), fmt(_best_cpu(b)), ratio(_best_cpu(a), _best_cpu(b)),
         fmt(a.sys_ms_per_frame), fmt(b.sys_ms_per_frame), fmt(a.faults_per_frame), fmt(b.faults_per_frame),
         fmt(a.wall_ms_per_frame), fmt(b.wall_ms_per_frame), _status(a, b)]
        for a, b in _pairs(runs)
    ]  # fmt: skip
    headers = ["scene", "encoding", "bytes/frame pdum", "bytes/frame lvs", "ratio",
               "CPU ms/frame pdum", "CPU ms/frame lvs", "ratio",
               "best run pdum", "best run lvs", "best ratio", "kernel ms pdum", "kernel ms lvs",
               "page faults/frame pdum", "page faults/frame lvs", "wall ms/frame pdum", "wall ms/frame lvs",
               "all frames verified"]  # fmt: skip
    return table(headers, rows)


def latency_text(runs: Sequence[Run]) -> str:
    rows = [
        [f"{a.scene} {a.width}x{a.height}", a.encoding, f"{a.bytes_per_frame:,.0f}",
         fmt(a.latency_ms_median), fmt(a.latency_ms_p99), fmt(b.latency_ms_median), fmt(b.latency_ms_p99),
         ratio(a.latency_ms_median, b.latency_ms_median), str(a.frames), _status(a, b)]
        for a, b in _pairs(runs)
    ]  # fmt: skip
    headers = ["scene", "encoding", "bytes/frame pdum", "p50 ms pdum", "p99 ms pdum", "p50 ms lvs",
               "p99 ms lvs", "p50 ratio", "frames", "all frames verified"]  # fmt: skip
    return table(headers, rows)


def browser_latency_text(results: Sequence[BrowserLatency]) -> str:
    rows = [
        [f"{r.scene} {r.width}x{r.height}", r.encoding, fmt(r.fps), f"{r.shown}/{r.frames}",
         fmt(r.latency_ms_median), fmt(r.latency_ms_p95), fmt(r.latency_ms_p99), fmt(r.latency_ms_max),
         fmt(r.clock_uncertainty_ms, 2), fmt(r.server_cpu_percent), r.error or "ok"]
        for r in results
    ]  # fmt: skip
    headers = ["scene", "encoding", "frames/s", "frames shown", "p50 ms", "p95 ms", "p99 ms", "max ms",
               "clock ± ms", "server CPU % of a core", "status"]  # fmt: skip
    return table(headers, rows)


def demo_cpu_text(result: DemoCpu) -> str:
    headers = ["demo", "window s", "CPU % of one core, one noVNC viewer", "CPU % before any viewer", "status"]
    row = [f"seed_scene {result.width}x{result.height} at {fmt(result.fps)} frames/s", fmt(result.seconds),
           fmt(result.cpu_percent), fmt(result.idle_cpu_percent), result.error or "ok"]  # fmt: skip
    return table(headers, [row])


def scaling_text(runs: Sequence[Run]) -> str:
    pairs = _pairs(runs)
    one = {(a.scene, a.width, a.height, a.encoding): (a, b) for a, b in pairs if a.clients == 1}

    def vs_one(run: Run, side: int) -> str:
        """This many clients' CPU per frame over one client's (the same case and server)."""
        base = one.get((run.scene, run.width, run.height, run.encoding))
        return "" if base is None else ratio(run.cpu_ms_per_frame, base[side].cpu_ms_per_frame)

    rows = [
        [f"{a.scene} {a.width}x{a.height}", a.encoding, str(a.clients),
         fmt(a.cpu_ms_per_frame), fmt(b.cpu_ms_per_frame), ratio(a.cpu_ms_per_frame, b.cpu_ms_per_frame),
         vs_one(a, 0), vs_one(b, 1),
         fmt(a.cpu_ms_per_frame / a.clients), fmt(b.cpu_ms_per_frame / b.clients),
         f"{a.bytes_per_frame:,.0f}", f"{b.bytes_per_frame:,.0f}",
         fmt(a.wall_ms_per_frame), fmt(b.wall_ms_per_frame), _status(a, b)]
        for a, b in pairs
    ]  # fmt: skip
    headers = ["scene", "encoding", "clients", "CPU ms/frame pdum", "CPU ms/frame lvs", "ratio",
               "pdum x one client", "lvs x one client", "per client pdum", "per client lvs",
               "bytes/frame client 0 pdum", "bytes/frame client 0 lvs",
               "wall ms/frame pdum", "wall ms/frame lvs", "every client got every frame"]  # fmt: skip
    return table(headers, rows)


def per_extra_us(cpu_ms: float, one_cpu_ms: float, clients: int) -> float:
    """What each client beyond the first added to the CPU per frame, in microseconds."""
    return (cpu_ms - one_cpu_ms) / (clients - 1) * 1000.0 if clients > 1 else float("nan")


def floor_bound(one_cpu_ms: float, floor_cpu_ms: float, floor_one_cpu_ms: float) -> str:
    """The best ratio to its own one client a server can reach if its extra clients cost only what
    a floor's do: (its one client + the floor's growth) over its one client."""
    return ratio(one_cpu_ms + floor_cpu_ms - floor_one_cpu_ms, one_cpu_ms)


def floor_text(floors: Mapping[str, Sequence[FloorRun]], pdum_runs: Sequence[Run]) -> str:
    """The floors (floor_server.py, floor_server.c) per encoding they stand for, floor server and
    client count, next to pdum.rfb's rows of that encoding.

    Two columns bound the scaling target. "least one-client ms/frame for < 2x": a server whose
    extra clients cost what this floor's do meets "N clients cost less than 2x one" only if its
    one-client frame costs more than N - 1 times that; under the C floor no server on this
    machine, whatever it is written in, escapes it. The last numeric column: pdum.rfb's one
    client plus only what the floor pays per extra client, over pdum.rfb's one client; a ratio
    target below it cannot be met by any amount of work on pdum.rfb's own code."""
    rows = []
    for encoding, runs in floors.items():
        ours = {r.clients: r for r in pdum_runs if r.server == "pdum" and r.encoding == encoding}
        pdum_one = ours.get(1)
        for kind in dict.fromkeys(f.server for f in runs):
            same = [f for f in runs if f.server == kind]
            floor_one = next((f for f in same if f.clients == 1), None)
            for f in same:
                pdum = ours.get(f.clients)
                extra = (
                    per_extra_us(f.cpu_ms_per_frame, floor_one.cpu_ms_per_frame, f.clients)
                    if floor_one is not None
                    else float("nan")
                )
                bound = (
                    floor_bound(pdum_one.cpu_ms_per_frame, f.cpu_ms_per_frame, floor_one.cpu_ms_per_frame)
                    if pdum_one is not None and floor_one is not None
                    else ""
                )
                rows.append([encoding, kind, str(f.clients), f"{f.update_bytes:,}", fmt(f.cpu_ms_per_frame),
                             fmt(f.sys_ms_per_frame),
                             ratio(f.cpu_ms_per_frame, floor_one.cpu_ms_per_frame) if floor_one else "",
                             fmt(extra), fmt((f.clients - 1) * extra / 1000.0),
                             fmt(pdum.cpu_ms_per_frame) if pdum else "",
                             ratio(pdum.cpu_ms_per_frame, pdum_one.cpu_ms_per_frame) if pdum and pdum_one
                             else "", bound, f.error or "ok"])  # fmt: skip
    headers = ["stands for", "floor", "clients", "bytes an update", "floor CPU ms/frame", "floor kernel ms",
               "floor x one client", "floor us per extra client", "least one-client ms/frame for < 2x",
               "pdum CPU ms/frame", "pdum x one client",
               "pdum x one client if extra clients cost only the floor", "status"]  # fmt: skip
    return table(headers, rows)


def websocket_text(runs: Sequence[ViewerRun]) -> str:
    """WebSocket viewers: CPU per frame with 1 and 16 of them, for each path between session and
    socket (and the floor: the bridge with no VNC server behind it), each count's cost over one
    viewer's (same path), the direct path over recv/send, and the bound the floor puts on the
    direct path: its one viewer plus only what the floor pays per extra viewer, over its one."""
    by = {(r.path, r.clients): r for r in runs}
    rows = []
    for r in runs:
        one = by.get((r.path, 1))
        other = by.get(("recv-send", r.clients))
        extra = per_extra_us(r.cpu_ms_per_frame, one.cpu_ms_per_frame, r.clients) if one else float("nan")
        took_path = r.direct == (r.path != "recv-send")  # (the floor takes the direct path too)
        status = r.error or ("wrong path" if not took_path else "ok" if r.every_frame else "not all frames")
        versus = ratio(r.cpu_ms_per_frame, other.cpu_ms_per_frame) if other and r.path == "direct" else ""
        floor, floor_one = by.get(("floor", r.clients)), by.get(("floor", 1))
        bound = ""
        if r.path == "direct" and one and floor and floor_one:
            bound = floor_bound(one.cpu_ms_per_frame, floor.cpu_ms_per_frame, floor_one.cpu_ms_per_frame)
        rows.append([str(r.clients), r.path, fmt(r.cpu_ms_per_frame), fmt(r.sys_ms_per_frame),
                     ratio(r.cpu_ms_per_frame, one.cpu_ms_per_frame) if one else "", fmt(extra), versus,
                     bound, status])  # fmt: skip
    headers = ["viewers", "path", "CPU ms/frame", "kernel ms", "x one viewer", "us per extra viewer",
               "direct / recv-send", "direct x one viewer if extra viewers cost only the floor",
               "status"]  # fmt: skip
    return table(headers, rows)
