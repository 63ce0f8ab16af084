"""The benchmark harness behind ``pdum-rfb benchmark``.

Sections (``--only`` picks some):

* ``encoders``: each encoder alone on whole frames of each scene and size (ms per frame, MB/s of
  RGB input, bytes per frame), see :mod:`.encoders`;
* ``peer``: pdum.rfb against libvncserver, the C reference, serving the same frames to the same
  libvncclient client (bytes on the wire, server CPU per frame), see :mod:`.peer`;
* ``latency``: publish-to-decoded time per frame for both servers (libvncclient), 320x240 and
  1280x720;
* ``scaling``: server CPU per published frame with 1, 4 and 16 clients, both servers (lock-step);
* ``paced``: the same with 1 and 16 clients at a real frame rate: each server publishes on its
  own clock at 30 frames/s, as a notebook's ``publish_loop`` does, and idles between frames;
  both scaling tables are followed by their floors, asyncio and C (:func:`scaling_floor`);
* ``websocket``: server CPU per frame with 1 and 16 WebSocket viewers (websockify-style Tight
  clients) at the demo's 10 frames/s, served from websockets' callbacks or through its
  ``recv()``/``send()``, and the bridge with no VNC server behind it (the floor), see
  :mod:`.websocket_viewers`;
* ``browser``: noVNC in headless Chromium: publish-to-canvas latency of our server, and the
  CPU of ``pdum-rfb demo`` with one viewer, see :mod:`.browser`.

It lives in the package (not only in ``benchmarks/``) so the CLI can run it from any checkout;
the C peer programs stay in ``benchmarks/peer/`` and are compiled at run time. Tables print as
Markdown, progress goes to stderr, and ``--json`` writes every number plus the machine facts.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import browser, encoders, peer, report, websocket_viewers

SECTIONS = ("encoders", "peer", "latency", "scaling", "paced", "websocket", "browser")
#: The encodings of the scaling tables that get floors (asyncio and C): the smallest update (Tight) and
#: the largest (Raw). The floor writes as many bytes a frame as pdum.rfb's client 0 received.
FLOOR_ENCODINGS = ("Tight", "Raw")


def _loadavg() -> float | None:
    """The 1-minute load average: numbers taken on a busy machine say so."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(sections: Sequence[str] = SECTIONS, *, quick: bool = False) -> tuple[dict[str, Any], str]:
    """Run the chosen sections; return (JSON-ready results, Markdown report)."""
    started = time.perf_counter()
    info = report.machine()
    info["loadavg_start"] = _loadavg()
    results: dict[str, Any] = {"machine": info, "quick": quick, "sections": list(sections)}
    parts = ["### Machine\n", report.machine_text(info), ""]
    if "encoders" in sections:
        rows = encoders.run_encoders(
            sizes=encoders.QUICK_SIZES if quick else encoders.FULL_SIZES,
            scenes=encoders.QUICK_SCENES if quick else encoders.FULL_SCENES,
            budget_s=0.1 if quick else 0.5,
            min_frames=2 if quick else 5,
            max_frames=20 if quick else 50,
            progress=_progress,
        )
        results["encoders"] = [r.as_dict() for r in rows]
        parts += ["### Encoder throughput (one whole frame per call, 32 bpp RGBX client format)\n",
                  encoders_note(), "", report.encoders_text(rows)]  # fmt: skip
    peer_sections = [
        ("peer", peer.peer_cases, report.peer_text, "Peer comparison with libvncserver (1 client)"),
        ("latency", peer.latency_cases, report.latency_text, "Publish-to-client latency (1 client)"),
        ("scaling", peer.scaling_cases, report.scaling_text, "Scaling with the number of clients"),
        (
            "paced",
            peer.paced_cases,
            report.scaling_text,
            f"Scaling at {peer.PACED_FPS:g} frames/s (published on a clock, idle between frames)",
        ),
    ]
    wanted = [section for section in peer_sections if section[0] in sections]
    with tempfile.TemporaryDirectory(prefix="pdum-rfb-bench-") as tmp:
        workdir = Path(tmp)
        programs: peer.Programs | peer.Skip = peer.Skip("no peer section asked for")
        if wanted:
            try:
                programs = peer.build(workdir)  # compiled once for every section
            except peer.Skip as exc:
                programs = exc  # every peer section reports why
        for name, cases, render, title in wanted:
            try:
                if isinstance(programs, peer.Skip):
                    raise programs
                repeats = 1 if quick else 3 if name in ("latency", "paced") else 5  # CPU ratios: medians of 5
                runs = peer.run_cases(programs, workdir, cases(quick), repeats=repeats, progress=_progress)
            except peer.Skip as exc:
                results[name] = {"skipped": str(exc)}
                parts += [f"### {title}\n", f"skipped: {exc}", ""]
                continue
            results[name] = [r.as_dict() for r in runs]
            parts += [f"### {title}\n", render(runs), ""]
            if name in ("scaling", "paced"):
                parts += scaling_floor(results, name, runs, programs, quick)
    if "websocket" in sections:
        viewers = websocket_viewers.run(quick, progress=_progress)
        results["websocket"] = [r.as_dict() for r in viewers]
        title = f"WebSocket viewers at {websocket_viewers.FPS:g} frames/s (seed scene 320x240, Tight)"
        parts += [f"### {title}\n", websocket_note(), "", report.websocket_text(viewers), ""]
    if "browser" in sections:
        parts += browser_section(results, quick)
    results["seconds"] = time.perf_counter() - started
    results["loadavg_end"] = _loadavg()
    parts.append(
        f"(benchmark took {results['seconds']:.0f} s; 1-minute load average {info['loadavg_start']} at the "
        f"start, {results['loadavg_end']} at the end: other work on the machine disturbs the numbers)"
    )
    return results, "\n".join(parts)


def scaling_floor(
    results: dict[str, Any], section: str, runs: Sequence[peer.Run], programs: peer.Programs, quick: bool
) -> list[str]:
    """The floors under a scaling table (floor_server.py and floor_server.c, same schedule as the
    table): what one more client costs an asyncio server, and a C one, that do no VNC work at
    all, for updates the size of pdum.rfb's Tight and Raw ones; fills ``results[section + "_floor"]``."""
    paced = section == "paced"
    fps = peer.PACED_FPS if paced else 0.0
    floors: dict[str, list[peer.FloorRun]] = {}
    for encoding in FLOOR_ENCODINGS:
        ours = [r for r in runs if r.server == "pdum" and r.encoding == encoding]
        one = next((r for r in ours if r.clients == 1), None)
        if one is None or one.error is not None or math.isnan(one.bytes_per_frame):
            continue  # no measured update size to stand for
        clients = sorted({r.clients for r in ours})
        nframes = one.frames if paced else 100 if quick else 600
        floors[encoding] = [
            peer.run_floor(programs, n, nframes, round(one.bytes_per_frame), fps=fps,
                           repeats=1 if quick else 3 if paced else 5, server_kind=kind)
            for kind in peer.FLOOR_SERVERS
            for n in clients
        ]  # fmt: skip
    results[f"{section}_floor"] = {enc: [f.as_dict() for f in fl] for enc, fl in floors.items()}
    schedule = f"written at {fps:g} frames/s" if paced else "lock-step"
    note = (
        "Floors: servers with no VNC work, one write per client and frame of as many bytes as "
        f"pdum.rfb's client 0 received per frame in that encoding, {schedule} like the table above, "
        "to minimal C clients (`benchmarks/peer/floor_client.c`): an asyncio server "
        "(`pdum/rfb/bench/floor_server.py`) and the same in C with epoll "
        "(`benchmarks/peer/floor_server.c`); median of the runs. A server whose extra clients cost "
        "what the floor's do meets the target only with a one-client frame above \"least one-client "
        "ms/frame\"; the last number is pdum.rfb's one client plus only the floor's cost per extra client."
    )
    return [note, "", report.floor_text(floors, runs), ""]


def browser_section(results: dict[str, Any], quick: bool) -> list[str]:
    """noVNC latency and the demo's CPU; fills ``results["browser"]``, returns Markdown parts."""
    title = "noVNC in headless Chromium: publish-to-canvas latency and demo CPU"
    try:
        latency = browser.run_latency(quick, progress=_progress)
        demo = browser.run_demo_cpu(quick, progress=_progress)
    except peer.Skip as exc:
        results["browser"] = {"skipped": str(exc)}
        return [f"### {title}\n", f"skipped: {exc}", ""]
    results["browser"] = {"latency": [r.as_dict() for r in latency], "demo_cpu": demo.as_dict()}
    return [f"### {title}\n", report.browser_latency_text(latency), "", report.demo_cpu_text(demo), ""]


def websocket_note() -> str:
    return (
        "Minimal websockify-style clients (`pdum/rfb/bench/websocket_viewers.py`, Python, one Tight update "
        "request after another) through the WebSocket bridge; server CPU per published frame, median of "
        "the runs. 'direct': the viewer's bytes handed over from websockets' frame callback and in-step "
        "updates written from the event loop (`WebSocketStream.set_receiver`, `write_now`); 'recv-send': "
        "the session's tasks await websockets' `recv()` and `send()`, what happens when the installed "
        "websockets lacks what the direct path uses; 'floor': the same bridge with no VNC server behind it "
        "(a scripted handshake, then an 84-byte Tight update written to every viewer on the same clock, "
        "the viewers' requests dropped), what one more viewer costs websockets, the bridge and the event "
        "loop before any work of pdum.rfb's sessions."
    )


def encoders_note() -> str:
    return (
        "ms/frame is the median over the timed frames; MB/s is raw RGB input (3 bytes/pixel) per "
        "second; bytes/frame includes 12-byte rectangle headers; 'of Raw32' compares with 4 bytes/pixel."
    )


def _no_nan(value: Any) -> Any:
    """NaN (a measurement that could not be made) becomes null: JSON has no NaN."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def main(*, quick: bool = False, json_path: str | None = None, only: Sequence[str] | None = None) -> int:
    """``pdum-rfb benchmark``: print the Markdown report, optionally write the JSON."""
    sections = tuple(only) if only else SECTIONS
    results, text = run(sections, quick=quick)
    print(text, flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(_no_nan(results), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {json_path}", file=sys.stderr)
    return 0
