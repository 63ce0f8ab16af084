"""Who may open the browser-facing endpoints: a shared token and an allow-list of origins.

RFB's own security types protect the RFB stream, but a WebSocket on localhost is also reachable
by any web page the user visits (cross-site WebSocket hijacking): a page on another site can open
``ws://127.0.0.1:8765`` and watch or drive the display. Two checks close that door for the
WebSocket bridge and the ASGI app alike:

* ``token``: the WebSocket URL must carry ``?token=<token>`` (or the client offers the subprotocol
  ``token.<token>``); ``/metrics`` needs it too. The widget and the viewer page pass it along.
* ``origins``: a browser's ``Origin`` header must be in the list (``"*"`` allows any). Clients
  that send no ``Origin`` (native VNC-over-WebSocket clients, websockify users) are not browsers
  and are let through; the token still applies to them.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class AccessPolicy:
    token: str | None = None
    origins: tuple[str, ...] | None = None

    @classmethod
    def build(cls, token: str | None, origins: Sequence[str] | None) -> AccessPolicy:
        if token is not None and not token:
            raise ValueError("token must be a non-empty string (or None)")
        if isinstance(origins, str):
            raise TypeError("origins must be a list of origins such as ['http://localhost:8888']")
        return cls(token, tuple(o.rstrip("/") for o in origins) if origins is not None else None)

    def _token_ok(self, path: str, subprotocols: Sequence[str]) -> bool:
        if self.token is None:
            return True
        offered = parse_qs(urlsplit(path).query).get("token", [])
        offered += [p[len("token.") :] for p in subprotocols if p.startswith("token.")]
        return any(hmac.compare_digest(t.encode(), self.token.encode()) for t in offered)

    def check_websocket(
        self, path: str, headers: Mapping[str, str], subprotocols: Sequence[str]
    ) -> str | None:
        """``None`` when the WebSocket may open, else the reason for refusing it."""
        origin = headers.get("origin") or headers.get("Origin")
        if self.origins is not None and origin is not None and "*" not in self.origins:
            if origin.rstrip("/") not in self.origins:
                return f"origin {origin!r} is not allowed"
        if not self._token_ok(path, subprotocols):
            return "missing or wrong token"
        return None

    def check_http(self, path: str) -> str | None:
        """``/metrics`` tells who is connected: it needs the token too."""
        if urlsplit(path).path.rstrip("/").endswith("/metrics") or urlsplit(path).path == "/metrics":
            if not self._token_ok(path, ()):
                return "missing or wrong token"
        return None
