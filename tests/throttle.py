"""A TCP relay that limits the server-to-client direction to a fixed rate: a slow link for tests.

Like a real bottleneck it does not drop anything: bytes it may not forward yet stay in the
kernel's socket buffers between the server and the relay (megabytes on loopback), which is
exactly the queue a server must not fill if its client is to stay close to the latest frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

CHUNK = 4096


class ThrottledRelay:
    """Listens on 127.0.0.1; each connection goes to ``target`` with ``rate`` bytes/s downstream."""

    def __init__(self, target_host: str, target_port: int, rate: float) -> None:
        self.target = (target_host, target_port)
        self.rate = rate
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.forwarded = 0
        self._thread = threading.Thread(target=self.loop.run_forever, name="throttled-relay", daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.target)
        self._writers += [client_w, server_w]
        up = asyncio.create_task(self._pipe(client_r, server_w, None))
        down = asyncio.create_task(self._pipe(server_r, client_w, self.rate))
        self._tasks |= {up, down}
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for writer in (client_w, server_w):
            writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: float | None
    ) -> None:
        started = time.monotonic()
        sent = 0
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(CHUNK):
                if rate is not None:
                    # Token bucket with no burst: byte n leaves no earlier than n / rate.
                    delay = started + (sent + len(data)) / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    elif delay < -0.05:  # the link was idle: do not bank credit for it
                        started, sent = time.monotonic() - (sent + len(data)) / rate, sent
                    sent += len(data)
                    self.forwarded += len(data)
                writer.write(data)
                await writer.drain()

    def close(self) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for writer in self._writers:
                writer.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
