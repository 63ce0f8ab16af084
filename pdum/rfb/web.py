"""Plain-HTTP side of the bridge: the full-page viewer, its script, ``/health`` and ``/metrics``.

Shared by the in-process WebSocket bridge and the ASGI app, so both serve the same pages.
The full-page viewer runs the widget's own ESM module with a small stand-in for the widget
model, so the page and the notebook widget are one code path.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

STATIC_FILES = {
    "viewer.js": "text/javascript; charset=utf-8",
    "noVNC-LICENSE.txt": "text/plain; charset=utf-8",
    "noVNC-LICENSE.MPL-2.0.txt": "text/plain; charset=utf-8",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>html, body {{ margin: 0; height: 100%; background: #202124; }} #app {{ height: 100vh; }}
#app > .pdum-rfb {{ height: 100%; }}</style>
</head>
<body>
<div id="app"></div>
<script type="module">
import viewer from "./static/viewer.js";
const params = new URLSearchParams(location.search);
const state = {{
  url: params.get("url") || "",
  base_path: params.get("url") ? null : location.pathname.replace(/[^/]*$/, ""),
  fit: params.get("fit") !== "0", height: 0, show_toolbar: params.get("toolbar") !== "0",
  show_stats: params.get("stats") === "1", state: "", last_error: "", stats: {{}},
  password: params.get("password") || "", token: params.get("token") || "", widget_id: "", clipboard: "",
  quality_level: params.has("quality") ? Number(params.get("quality")) : null, compression_level: 2,
  transport: "websocket", active_transport: "",
}};
const handlers = {{}};
const model = {{
  get: (key) => state[key],
  set: (key, value) => {{ state[key] = value; (handlers["change:" + key] || []).forEach((cb) => cb()); }},
  on: (name, cb) => {{ (handlers[name] = handlers[name] || []).push(cb); }},
  off: (name, cb) => {{ handlers[name] = (handlers[name] || []).filter((h) => h !== cb); }},
  save_changes: () => {{}},
  send: () => {{}},
}};
window.pdumRfbModel = model;
viewer.render({{ model, el: document.getElementById("app") }});
</script>
</body>
</html>
"""


def static_file(name: str) -> bytes | None:
    if name not in STATIC_FILES:
        return None
    try:
        return resources.files("pdum.rfb").joinpath("static", name).read_bytes()
    except FileNotFoundError:
        return None


def page(title: str) -> bytes:
    safe = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return PAGE.format(title=safe).encode("utf-8")


def route(path: str, title: str, metrics: dict[str, Any]) -> tuple[int, str, bytes] | None:
    """Answer a GET for ``path`` (relative to the app's root) or ``None`` for 404."""
    path = path.split("?", 1)[0]
    if path in ("", "/", "/index.html", "/vnc.html"):
        return 200, "text/html; charset=utf-8", page(title)
    if path.startswith("/static/"):
        name = path[len("/static/") :]
        body = static_file(name)
        if body is None:
            return None
        return 200, STATIC_FILES[name], body
    if path == "/health":
        return 200, "application/json", json.dumps({"status": "ok"}).encode()
    if path == "/metrics":
        return 200, "application/json", json.dumps(metrics, default=str).encode()
    return None
