"""The Jupyter widget: an anywidget whose front end is the committed noVNC bundle.

The browser side (``static/viewer.js``, built from ``viewer/src/widget.js``) connects straight to
the Display's WebSocket (or same-origin through ``base_path``); this class only carries traits.
Server-truth stats arrive through the ``stats`` trait, pushed by the Display every
``stats_interval``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

try:
    import anywidget
    import traitlets
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "display.widget() needs the anywidget extra: pip install 'habemus-papadum-rfb[anywidget]'"
    ) from exc

STATIC = Path(__file__).parent / "static"


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
    quality_level = traitlets.Int(6).tag(sync=True)
    compression_level = traitlets.Int(2).tag(sync=True)
    widget_id = traitlets.Unicode("").tag(sync=True)
    #: Set by the browser: "connecting", "connected", "disconnected" or "error".
    state = traitlets.Unicode("").tag(sync=True)
    last_error = traitlets.Unicode("").tag(sync=True)
    #: The last text the server put on this viewer's clipboard.
    clipboard = traitlets.Unicode("").tag(sync=True)
    #: Server-truth stats of this viewer's own connection (fps, bitrate, rtt_ms, ...).
    stats = traitlets.Dict({}).tag(sync=True)

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("widget_id", uuid.uuid4().hex)
        super().__init__(**kwargs)

    def reconnect(self) -> None:
        """Ask the browser side to reconnect now."""
        self.send({"type": "reconnect"})
