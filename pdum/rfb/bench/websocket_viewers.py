"""The ``websocket`` section: what WebSocket viewers (noVNC, the widget) cost, one and sixteen.

usage: ``python -m pdum.rfb.bench.websocket_viewers serve NCLIENTS NFRAMES FPS PATH TIMEOUT_S``
and ``python -m pdum.rfb.bench.websocket_viewers client PORT``

The scaling tables measure libvncclient over TCP; a browser viewer comes through the WebSocket
bridge instead, with its own framing and its own way from a publish to the socket. Here a server
process publishes the seed scene (320x240) on a clock, as the demo does, to websockify-style
clients that ask for one Tight update after another: minimal Python clients that parse just
enough of Tight to find where an update ends (one browser per viewer would take the machine, and
the clients' CPU is not the server's). The server reads ``getrusage(RUSAGE_SELF)`` around the run
like the other benchmark servers and prints one JSON line, with how many updates each viewer got.

PATH says how the session meets the socket: ``direct``, the default (the viewer's bytes are handed
over from websockets' frame callback, ``WebSocketStream.set_receiver``, and in-step updates are
written from the event loop, ``WebSocketStream.write_now``), or ``recv-send``, what a session
does when the installed websockets lacks what those use (its reader task awaits ``recv()``, its
writer task ``send()``), or ``floor``: the same bridge and streams with no VNC server behind them
(:func:`_serve_floor`: a scripted handshake, then one pre-built Tight update of fill rectangles,
about the seed scene's size, written to every viewer on the same clock; the viewers' requests
are taken from the frame callback and dropped). The floor is what one more viewer costs
websockets, the bridge and the event loop before any Session or Display work. All three run in
the same section, so the table compares them on the same machine at the same moment.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..display import serve
from ..encodings.tight import FILL, read_compact_length
from ..protocol import messages as m
from ..protocol.pixelformat import SERVER_DEFAULT
from ..testing import seed_scene
from ..transports import websocket
from ..transports.websocket import WebSocketBridge, WebSocketStream
from .pdum_server import CpuWindow, on_clock, run_bounded
from .peer import median_by_cpu, stop_processes

WIDTH, HEIGHT = 320, 240
FPS = 10.0  # the demo's rate
PATHS = ("direct", "recv-send", "floor")
#: Extra wait once every viewer holds frame 0 and asks for more (start-up updates settle).
SETTLE_S = 0.3
TIGHT = 7


# -- the server ---------------------------------------------------------------------------------------
async def _serve(nclients: int, nframes: int, fps: float, path: str) -> dict[str, Any]:
    if path == "floor":
        return await _serve_floor(nclients, nframes, fps)
    if path == "recv-send":  # benchmark-only switches: the paths taken without websockets' internals
        websocket._can_write_direct = lambda connection: False  # type: ignore[assignment]
        websocket._ROUTABLE = False
    frames = [np.ascontiguousarray(seed_scene(WIDTH, HEIGHT, t)) for t in range(nframes + 1)]
    display = await serve(WIDTH, HEIGHT, host="127.0.0.1", port=0, vnc_port=None)
    try:
        display.publish(frames[0])
        print(f"READY {display.port}", flush=True)
        sessions = display.server.sessions

        def everyone_waiting() -> bool:
            return len(sessions) >= nclients and all(
                s.ready and s.stats.updates_sent >= 1 and s.request is not None for s in sessions.values()
            )

        while not everyone_waiting():  # start-up only, not measured
            await asyncio.sleep(0.01)
        await asyncio.sleep(SETTLE_S)
        sent0 = {cid: s.stats.updates_sent for cid, s in sessions.items()}
        window = CpuWindow()
        await on_clock(fps, nframes, lambda k: display.publish(frames[k + 1]))
        return {
            **window.numbers(),
            "frames": nframes,
            "clients": len(sessions),
            "updates": [s.stats.updates_sent - sent0.get(cid, 0) for cid, s in sessions.items()],
            "direct": all(_direct(s.stream) for s in sessions.values()),
        }
    finally:
        await display.aclose()


#: The floor's update: five Tight fill rectangles (84 bytes, the seed scene's is 83).
FLOOR_UPDATE = m.framebuffer_update_header(5) + b"".join(
    m.rect_header(64 * i, 0, 64, 64, TIGHT) + bytes((FILL, i, 2 * i, 3 * i)) for i in range(5)
)


async def _serve_floor(nclients: int, nframes: int, fps: float) -> dict[str, Any]:
    """The ``floor`` path: the WebSocket bridge and its streams, no Session and no Display. Each
    viewer gets a scripted RFB 3.8 handshake (security None, a 320x240 ServerInit), its first
    request answered with :data:`FLOOR_UPDATE`; from then on its bytes go to a receiver that drops
    them, and the clock writes :data:`FLOOR_UPDATE` to every viewer with ``write_now``, NFRAMES
    times: websockets' framing and frame parsing, the bridge's inbox and the event loop's
    wake-ups, the per-viewer work of the direct path minus pdum.rfb's own."""
    streams: list[WebSocketStream] = []
    everyone = asyncio.Event()
    done = asyncio.Event()
    server_init = m.server_init(WIDTH, HEIGHT, SERVER_DEFAULT, b"floor")

    async def serve_stream(stream: WebSocketStream) -> None:
        pending = bytearray()

        async def read_exactly(n: int) -> None:
            while len(pending) < n:
                chunk = await stream.read()
                if not chunk:
                    raise ConnectionError("viewer left during the handshake")
                pending.extend(chunk)
            del pending[:n]

        try:
            await stream.write(b"RFB 003.008\n")
            await read_exactly(12)
            await stream.write(b"\x01\x01")  # one security type: None
            await read_exactly(1)
            await stream.write(bytes(4))  # SecurityResult OK
            await read_exactly(1)  # ClientInit
            await stream.write(server_init)
            await read_exactly(8 + 10)  # SetEncodings (one) and the first FramebufferUpdateRequest
            await stream.write(FLOOR_UPDATE)
            assert stream.set_receiver is not None, "the floor needs websockets' frame callback"
            stream.set_receiver(lambda data: None)
            streams.append(stream)
            if len(streams) == nclients:
                everyone.set()
            await done.wait()
        finally:
            await stream.close()

    async def no_http(path: str, headers: Any) -> None:
        return None

    bridge = WebSocketBridge(serve_stream, no_http)
    port = await bridge.listen("127.0.0.1", 0)
    try:
        print(f"READY {port}", flush=True)
        await everyone.wait()
        await asyncio.sleep(SETTLE_S)
        sent = [0] * nclients

        def publish(k: int) -> None:
            for i, stream in enumerate(streams):
                assert stream.write_now is not None
                stream.write_now(FLOOR_UPDATE)
                sent[i] += 1

        window = CpuWindow()
        await on_clock(fps, nframes, publish)
        numbers = window.numbers()
        return {**numbers, "frames": nframes, "clients": len(streams), "updates": sent, "direct": True}
    finally:
        done.set()
        await bridge.aclose()


def _direct(stream: Any) -> bool:
    """Whether a session's stream takes the direct path (bytes pushed, updates written now)."""
    return all(getattr(stream, name, None) is not None for name in ("write_now", "set_receiver"))


# -- the client ---------------------------------------------------------------------------------------
class _WsBytes:
    """The server's binary WebSocket messages as one byte stream (client frames masked)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: binary\r\n\r\n".encode()
        )
        raw = b""
        while b"\r\n\r\n" not in raw:
            raw += self._recv()
        head, self.raw = raw.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"no WebSocket upgrade: {head[:80]!r}")
        self.data = bytearray()

    def _recv(self) -> bytes:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise SystemExit(0)  # the server closed: the run is over
        return chunk

    def _next_frame(self) -> None:
        while True:
            raw = self.raw
            if len(raw) >= 2:
                n, start = raw[1] & 127, 2
                if n == 126:
                    n, start = (struct.unpack(">H", raw[2:4])[0], 4) if len(raw) >= 4 else (-1, 0)
                elif n == 127:
                    n, start = (struct.unpack(">Q", raw[2:10])[0], 10) if len(raw) >= 10 else (-1, 0)
                if n >= 0 and len(raw) >= start + n:
                    if raw[0] & 0x0F in (0x0, 0x2):  # binary data or its continuation
                        self.data += raw[start : start + n]
                    self.raw = raw[start + n :]
                    return
            self.raw += self._recv()

    def read(self, n: int) -> bytes:
        while len(self.data) < n:
            self._next_frame()
        out = bytes(self.data[:n])
        del self.data[:n]
        return out

    def send(self, payload: bytes) -> None:
        header = bytes([0x82, 0x80 | len(payload)])  # RFB client messages here are < 126 bytes
        self.sock.sendall(header + b"\0\0\0\0" + payload)  # a zero mask leaves the payload as is


def _skip_tight(ws: _WsBytes, width: int, height: int) -> None:
    """Read one Tight rectangle's payload (32 bpp depth 24: 3-byte TPIXELs) without decoding it."""
    control = ws.read(1)[0] >> 4
    if control == 0x8:  # fill
        ws.read(3)
        return
    if control == 0x9:  # JPEG
        ws.read(read_compact_length(ws.read))
        return
    filter_id = ws.read(1)[0] if control & 0x4 else 0
    row = width * 3
    if filter_id == 1:  # palette
        colours = ws.read(1)[0] + 1
        ws.read(colours * 3)
        row = (width + 7) // 8 if colours <= 2 else width
    size = row * height
    ws.read(size if size < 12 else read_compact_length(ws.read))


def _client(port: int) -> int:
    """Ask for one Tight update after another until the server closes; print how many came."""
    ws = _WsBytes(port)
    if ws.read(12) != b"RFB 003.008\n":
        raise SystemExit("not an RFB 3.8 server")
    ws.send(b"RFB 003.008\n")
    ws.read(ws.read(1)[0])
    ws.send(b"\x01")  # security None (the benchmark server has no password)
    ws.read(4)
    ws.send(b"\x01")  # shared
    width, height, bpp, depth, _, true_colour = struct.unpack(">HHBBBB", ws.read(8))
    if (bpp, depth, true_colour) != (32, 24, 1):
        raise SystemExit(f"unexpected pixel format {bpp} bpp depth {depth}")
    ws.read(12)
    ws.read(struct.unpack(">I", ws.read(4))[0])
    ws.send(struct.pack(">BxHi", 2, 1, TIGHT))
    ws.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
    incremental = struct.pack(">BBHHHH", 3, 1, 0, 0, width, height)
    updates = 0
    try:
        while True:
            kind = ws.read(1)[0]
            if kind == 0:
                (count,) = struct.unpack(">xH", ws.read(3))
                for _ in range(count):
                    _, _, w, h, encoding = struct.unpack(">HHHHi", ws.read(12))
                    if encoding != TIGHT:
                        raise SystemExit(f"unexpected encoding {encoding}")
                    _skip_tight(ws, w, h)
                updates += 1
                ws.send(incremental)
            elif kind == 2:  # Bell
                continue
            elif kind == 3:  # ServerCutText
                ws.read(3)
                ws.read(struct.unpack(">I", ws.read(4))[0])
            else:
                raise SystemExit(f"unexpected server message {kind}")
    finally:
        print(f"UPDATES {updates}", flush=True)


# -- the harness ----------------------------------------------------------------------------------------
@dataclass
class ViewerRun:
    """One server process with ``clients`` WebSocket viewers, served the ``path`` way."""

    path: str
    clients: int
    frames: int
    fps: float
    cpu_ms_per_frame: float = float("nan")
    sys_ms_per_frame: float = float("nan")
    every_frame: bool = False  # every viewer was sent every frame during the run
    direct: bool = False  # whether the sessions had set_receiver and write_now (must match ``path``)
    error: str | None = None
    repeats: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_once(clients: int, nframes: int, path: str, *, fps: float = FPS, timeout: int = 60) -> ViewerRun:
    run = ViewerRun(path, clients, nframes, fps)
    module = "pdum.rfb.bench.websocket_viewers"
    args = [str(clients), str(nframes), str(fps), path, str(timeout)]
    server = subprocess.Popen([sys.executable, "-m", module, "serve", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert server.stdout is not None
    viewers: list[subprocess.Popen[Any]] = []
    try:
        line = server.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"server did not start: {line!r}")
        port = line.split()[1]
        viewers = [
            subprocess.Popen(
                [sys.executable, "-m", module, "client", port],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for _ in range(clients)
        ]
        out, err = server.communicate(timeout=timeout + 10)
        if server.returncode != 0 or not out.strip():
            raise RuntimeError(f"server exited with {server.returncode}: {err[-300:]}")
        result = json.loads(out.strip().splitlines()[-1])
        run.cpu_ms_per_frame = result["cpu_s"] / nframes * 1000.0
        run.sys_ms_per_frame = result["cpu_sys_s"] / nframes * 1000.0
        run.every_frame = result["clients"] == clients and all(u == nframes for u in result["updates"])
        run.direct = bool(result["direct"])
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        run.error = str(exc)
    finally:
        stop_processes([*viewers, server])
    return run


def run(quick: bool, progress: Callable[[str], None] | None = None) -> list[ViewerRun]:
    """1 and 16 viewers, each path; the median of 3 runs by CPU (1 with ``quick``).
    The two ways alternate run by run, so a slow spell of the machine hits both."""
    nframes = 20 if quick else 60
    repeats = 1 if quick else 3
    collected: dict[tuple[str, int], list[ViewerRun]] = {}
    for _ in range(repeats):
        for clients in (1, 16):
            for path in PATHS:
                if progress is not None:
                    progress(f"websocket: {clients} viewers, {path}")
                collected.setdefault((path, clients), []).append(run_once(clients, nframes, path))
    chosen = []
    for runs in collected.values():
        pick = median_by_cpu(runs)
        pick.repeats = [r.cpu_ms_per_frame for r in runs]
        chosen.append(pick)
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 6 and args[0] == "serve" and args[4] in PATHS:
        nclients, nframes, fps, path = int(args[1]), int(args[2]), float(args[3]), args[4]
        return run_bounded("websocket_viewers", int(args[5]), lambda: _serve(nclients, nframes, fps, path))
    if len(args) == 2 and args[0] == "client":
        return _client(int(args[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
