"""The Jupyter widget: an anywidget whose front end is the committed noVNC bundle.

The browser side (``static/viewer.js``, built from ``viewer/src/widget.js``) connects straight to
the Display's WebSocket (or same-origin through ``base_path``); this class only carries traits.
Server-truth stats arrive through the ``stats`` trait, pushed by the Display every
``stats_interval``.

Saved notebooks: the widget's output also carries ``image/png`` (the frame at display time), which
is what nbconvert, GitHub and docs pages show when the notebook has no widget state; and the
``snapshot`` trait keeps the latest frame (refreshed at most every ``Display.snapshot_interval``),
which the viewer shows until it is connected, so a notebook saved *with* widget state shows it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from pathlib import Path
from typing import Any

from .transports.comm import CommStream

try:
    import anywidget
    import traitlets
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "display.widget() needs the anywidget extra: pip install 'habemus-papadum-rfb[anywidget]'"
    ) from exc

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


class RfbViewer(anywidget.AnyWidget):  # type: ignore[misc]
    """Live view of a :class:`~pdum.rfb.Display` (created by :meth:`Display.widget`)."""

    _esm = STATIC / "viewer.js"

    url = traitlets.Unicode("").tag(sync=True)
    base_path = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    fit = traitlets.Bool(True).tag(sync=True)
    height = traitlets.Int(480).tag(sync=True)
    show_toolbar = traitlets.Bool(True).tag(sync=True)
    show_stats = traitlets.Bool(True).tag(sync=True)
    password = traitlets.Unicode("").tag(sync=True)
    #: Sent as ``?token=`` on the WebSocket URL when the Display requires one (``serve(token=...)``).
    token = traitlets.Unicode("").tag(sync=True)
    #: JPEG quality 0..9 for Tight (lossy, fewer bytes), or None for lossless pixels (default).
    quality_level = traitlets.Int(None, allow_none=True).tag(sync=True)
    compression_level = traitlets.Int(2).tag(sync=True)
    widget_id = traitlets.Unicode("").tag(sync=True)
    #: Set by the browser: "connecting", "connected", "disconnected" or "error".
    state = traitlets.Unicode("").tag(sync=True)
    last_error = traitlets.Unicode("").tag(sync=True)
    #: The last text the server put on this viewer's clipboard.
    clipboard = traitlets.Unicode("").tag(sync=True)
    #: Server-truth stats of this viewer's own connection (fps, bitrate, rtt_ms, ...).
    stats = traitlets.Dict({}).tag(sync=True)
    #: "auto" (WebSocket, then the comm channel if the socket never opened), "websocket" or "comm".
    transport = traitlets.Enum(["auto", "websocket", "comm"], "auto").tag(sync=True)
    #: Set by the browser: which transport the current connection uses.
    active_transport = traitlets.Unicode("").tag(sync=True)
    #: The latest frame as a ``data:image/png;base64,...`` URL, shown while the viewer is not
    #: connected (a saved notebook, a docs page, a stopped Display).
    snapshot = traitlets.Unicode("").tag(sync=True)

    def __init__(self, display: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("widget_id", uuid.uuid4().hex)
        #: Generation of the frame in ``snapshot`` (-1: none).
        self._snapshot_generation = -1
        if display is not None and "snapshot" not in kwargs:
            generation = display.generation
            kwargs["snapshot"] = data_url(display.snapshot())
            self._snapshot_generation = generation
        super().__init__(**kwargs)
        self._display = display
        self._comm_stream: CommStream | None = None
        self.on_msg(self._on_custom_message)

    # -- comm transport -----------------------------------------------------------------------------
    def _send_rfb(self, content: dict[str, Any], buffers: list[bytes] | None) -> None:
        self.send(content, buffers=buffers)

    def _on_custom_message(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        if not isinstance(content, dict) or self._display is None:
            return
        kind = content.get("type")
        loop = self._display._loop
        if loop is None:
            return
        if kind == "rfb-open":
            loop.call_soon_threadsafe(self._open_comm_session)
        elif kind == "rfb-data" and self._comm_stream is not None:
            data = b"".join(bytes(b) for b in buffers or [])
            loop.call_soon_threadsafe(self._comm_stream.feed, data)
        elif kind == "rfb-close" and self._comm_stream is not None:
            loop.call_soon_threadsafe(self._comm_stream.feed_eof)

    def _open_comm_session(self) -> None:
        if self._comm_stream is not None:
            self._comm_stream.feed_eof()
        stream = CommStream(self._send_rfb, peer=f"comm:{self.widget_id[:8]}", tag=self.widget_id)
        self._comm_stream = stream
        self._display.server.spawn(self._display.server.serve_stream(stream))
        self.send({"type": "rfb-opened"})

    def close(self) -> None:
        if self._comm_stream is not None and self._display is not None and self._display._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._display._loop.call_soon_threadsafe(self._comm_stream.feed_eof)
        super().close()

    def reconnect(self) -> None:
        """Ask the browser side to reconnect now."""
        self.send({"type": "reconnect"})

    # -- saved notebooks ----------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget view, plus the current frame as ``image/png`` for anything without widgets.

        nbconvert's HTML exporter renders the widget view only when the notebook's metadata holds
        this widget's state, and otherwise falls back to ``image/png`` (it prefers ``text/html``
        and other rich types over both, so there are none here); GitHub and most static renderers
        show the PNG.
        """
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None or self._display is None:
            return bundle
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        generation = self._display.generation
        png = self._display.snapshot()
        self.show_snapshot(data_url(png), generation)
        return {**data, "image/png": base64.b64encode(png).decode("ascii")}, metadata

    def show_snapshot(self, url: str, generation: int) -> None:
        """Put the frame of ``generation`` into the ``snapshot`` trait, unless it already holds
        that frame or a newer one."""
        if generation > self._snapshot_generation:
            self.snapshot = url
            self._snapshot_generation = generation


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


async def push_snapshot(display: Any) -> bool:
    """Put the current frame into every open widget of ``display`` whose snapshot is older.

    Runs on the Display's loop; the PNG is encoded in one of the server's encode threads from a
    copy of the frame.
    Returns whether anything was encoded.
    """
    generation = display.generation
    views = [v for v in list(display._widgets) if v.comm is not None and v._snapshot_generation != generation]
    if not views:
        return False
    pixels = display._framebuffer.pixels.copy()
    # The server's encode threads: owned and joined by the Display, unlike asyncio's default pool.
    executor = display.server.encode_executor
    encode = display._encode_snapshot
    png = await asyncio.get_running_loop().run_in_executor(executor, encode, pixels, generation)
    url = data_url(png)
    for view in views:
        view.show_snapshot(url, generation)
    return True


async def refresh_snapshots(display: Any) -> None:
    """While ``display`` has widgets, keep their ``snapshot`` within ``snapshot_interval`` of the
    frame; the interval stretches to 20x the last encode time (a 1080p frame: every ~5 s)."""
    loop = asyncio.get_running_loop()
    cost = 0.0  # seconds the last encode took
    while display._widgets and display.snapshot_interval is not None:
        await asyncio.sleep(max(display.snapshot_interval, 20 * cost))
        started = loop.time()
        try:
            pushed = await push_snapshot(display)
        except Exception:
            log.exception("widget snapshots stop: encoding or sending one failed")
            return
        if pushed:
            cost = loop.time() - started
