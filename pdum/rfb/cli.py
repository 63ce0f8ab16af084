"""The ``pdum-rfb`` command: ``demo`` and ``serve`` (more sub-commands arrive with their issues)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from .bench import SECTIONS
from .display import Display, serve
from .notebook import publish_loop
from .testing import ANIMATED, PATTERNS, render_pattern


def _add_server_args(parser: argparse.ArgumentParser, *, width: int, height: int, fps: float) -> None:
    parser.add_argument("--width", type=int, default=width)
    parser.add_argument("--height", type=int, default=height)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--vnc-port", type=int, default=5900, help="raw RFB TCP port (0 = any free port)")
    parser.add_argument(
        "--port",
        type=int,
        default=6080,
        help="WebSocket + browser viewer port (0 = any free port, -1 = off)",
    )
    parser.add_argument("--fps", type=float, default=fps, help="frames published per second")
    parser.add_argument(
        "--password",
        default=os.environ.get("VNC_PASSWORD"),
        help="VncAuth password (default: $VNC_PASSWORD; required off loopback)",
    )
    parser.add_argument(
        "--allow-insecure", action="store_true", help="serve a non-loopback host without a password"
    )
    parser.add_argument("--name", default="pdum.rfb", help="desktop name shown by viewers")
    parser.add_argument(
        "--frames", type=int, default=0, help="stop after this many frames (0 = run until Ctrl-C)"
    )
    parser.add_argument("-v", "--verbose", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pdum-rfb", description="A NumPy framebuffer served over RFB (VNC)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="serve the seed scene: an orange block moving over a changing background"
    )
    _add_server_args(demo, width=320, height=240, fps=10)
    srv = sub.add_parser("serve", help="serve a test pattern until Ctrl-C")
    _add_server_args(srv, width=640, height=480, fps=10)
    srv.add_argument("--pattern", default="test_card", choices=sorted(PATTERNS))
    srv.add_argument(
        "--script",
        metavar="APP.py[:FUNC] | MODULE:FUNC",
        help="serve frames from your own function (default name 'render'), called once per frame as "
        "render() or render(t); it returns an HxWx3/HxWx4 uint8 array",
    )
    sub.add_parser(
        "doctor", help="check the installation: versions, extras, viewer bundle, a loopback handshake"
    )
    bench = sub.add_parser("benchmark", help="encoder throughput and a comparison with libvncserver")
    bench.add_argument("--quick", action="store_true", help="fewer sizes, scenes and frames (about a minute)")
    bench.add_argument("--json", metavar="OUT", help="also write every number to this JSON file")
    bench.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="repeatable",
    )
    return parser


def _load_script(spec: str) -> Callable[[int], Any]:
    """``app.py``, ``app.py:func`` or ``package.module:func`` -> ``render(t)`` (default name ``render``)."""
    import importlib
    import importlib.util
    import inspect

    target, _, name = spec.partition(":")
    if target.endswith(".py") or os.sep in target:
        path = os.path.abspath(target)
        module_spec = importlib.util.spec_from_file_location("pdum_rfb_script", path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"cannot load script {target!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.path.insert(0, os.path.dirname(path))
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ValueError(f"--script {spec}: {exc}") from exc
    fn = getattr(module, name or "render", None)
    if not callable(fn):
        raise ValueError(f"--script {spec}: no function {name or 'render'!r} in {target!r}")
    if not inspect.signature(fn).parameters:
        return lambda t: fn()
    return fn


async def _publish_until(
    display: Display, next_frame: Callable[[], Any], fps: float, stop: asyncio.Event
) -> None:
    """Publish ``next_frame()`` at ``fps`` (notebook.publish_loop's drift-free schedule) until
    ``stop`` is set; an error of ``next_frame`` is raised here.

    Between frames the loop sleeps on one timer. Waiting on ``stop`` with a timeout every frame
    instead (``asyncio.wait_for``) made a new task and about four more callbacks a frame, and
    its schedule drifted by each frame's own time.
    """
    publisher = publish_loop(display, next_frame, fps=fps)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({publisher, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        publisher.cancel()
        await asyncio.wait({publisher})  # its cancellation completes (never raises)
    if not publisher.cancelled():
        publisher.result()  # next_frame's error, if it failed


async def _serve_pattern(args: argparse.Namespace, pattern: str) -> int:
    script = getattr(args, "script", None)
    render = _load_script(script) if script else None
    pattern = script or pattern
    display = await serve(
        args.width,
        args.height,
        host=args.host,
        port=None if args.port < 0 else args.port,
        vnc_port=args.vnc_port,
        password=args.password,
        name=args.name,
        allow_insecure=args.allow_insecure,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    port = display.vnc_port
    print(
        f"pdum-rfb {__version__}: serving '{pattern}' {args.width}x{args.height} at {display.vnc_url}",
        flush=True,
    )
    print(f"  TigerVNC:  vncviewer {args.host}::{port}", flush=True)
    if port is not None and 5900 <= port < 6000:
        print(f"  display :{port - 5900}  (e.g. gvncviewer {args.host}:{port - 5900})", flush=True)
    if display.http_url:
        print(f"  Browser:   {display.http_url}  (WebSocket {display.ws_url})", flush=True)
    print("  Ctrl-C to stop", flush=True)
    t = 0

    def next_frame() -> Any:
        nonlocal t
        frame = render(t) if render else render_pattern(pattern, args.width, args.height, t)
        t += 1
        if args.frames and t >= args.frames:
            stop.set()  # this frame is still published; the loop is stopped while it sleeps
        return frame

    try:
        if pattern not in ANIMATED and not args.frames and render is None:
            display.publish(next_frame())  # a still picture: once
            await stop.wait()
        else:
            await _publish_until(display, next_frame, args.fps if args.fps > 0 else 1.0, stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        await display.aclose()
    print(f"stopped after {t} frames", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        from .doctor import main as doctor

        return doctor()
    if args.command == "benchmark":
        from .bench import main as benchmark

        return benchmark(quick=args.quick, json_path=args.json, only=args.only)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    pattern = "seed_scene" if args.command == "demo" else args.pattern
    try:
        return asyncio.run(_serve_pattern(args, pattern))
    except OSError as exc:
        print(f"pdum-rfb: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"pdum-rfb: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
