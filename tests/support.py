"""Shared test helpers: a Display running on a background event loop, ports, and waiting."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pdum.rfb as rfb

T = TypeVar("T")


class LoopThread:
    """An asyncio loop in a daemon thread, so tests can drive a Display while blocking on clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-display-loop", daemon=True)
        self.thread.start()
        self.displays: list[rfb.Display] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        async def wrapper() -> T:
            return fn(*args)

        return self.run(wrapper())

    def serve(self, width: int, height: int, **kwargs: Any) -> rfb.Display:
        kwargs.setdefault("port", None)
        display = self.run(rfb.serve(width, height, **kwargs))
        self.displays.append(display)
        return display

    def publish(self, display: rfb.Display, frame: Any) -> None:
        self.call(display.publish, frame)

    def close_displays(self) -> None:
        for display in self.displays:
            self.run(display.aclose())
        self.displays.clear()

    def stop(self) -> None:
        self.close_displays()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def free_display_port() -> int:
    """A free TCP port in 5900..5999, for clients that only take a display number."""
    for port in range(5911, 6000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 5911..5999")


def wait_until(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy; raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {last!r})")
        time.sleep(interval)
        last = predicate()
    return last


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
    """``asyncio.run`` in a fresh thread: works even when this thread has a running loop (the
    browser tests' Playwright keeps one on the main thread)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name="test-asyncio-run")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"coroutine did not finish within {timeout}s")
    if "error" in result:
        raise result["error"]
    return result["value"]  # type: ignore[no-any-return]


async def rfb_connect(
    port: int, *, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw RFB 3.8 connection with security None, read up to the end of ServerInit.

    ``rcvbuf`` shrinks the socket's receive window, so a client that stops reading backs the
    server up quickly.
    """
    if rcvbuf is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    else:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
    assert await reader.readexactly(12) == b"RFB 003.008\n"
    writer.write(b"RFB 003.008\n")
    count = (await reader.readexactly(1))[0]
    await reader.readexactly(count)
    writer.write(b"\x01")
    assert await reader.readexactly(4) == b"\0\0\0\0"
    writer.write(b"\x01")
    header = await reader.readexactly(24)
    await reader.readexactly(int.from_bytes(header[20:24], "big"))
    return reader, writer


# -- blocking raw-socket clients (hostile-input tests) ------------------------------------------------
def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "server closed early"
        data += chunk
    return data


def recv_all(sock: socket.socket, timeout: float = 5.0, *, reset_ok: bool = False) -> bytes:
    """Everything the server sends until it closes the connection (a reset ends it too if
    ``reset_ok``)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            if not reset_ok:
                raise
            data = b""
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def rfb_handshake(sock: socket.socket) -> None:
    """RFB 3.8, security None, shared, read up to the end of ServerInit (blocking socket)."""
    assert recv_exactly(sock, 12) == b"RFB 003.008\n"
    sock.sendall(b"RFB 003.008\n")
    count = recv_exactly(sock, 1)[0]
    recv_exactly(sock, count)
    sock.sendall(b"\x01")
    assert recv_exactly(sock, 4) == b"\0\0\0\0"
    sock.sendall(b"\x01")
    header = recv_exactly(sock, 24)
    recv_exactly(sock, int.from_bytes(header[20:24], "big"))
