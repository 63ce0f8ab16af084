// pdum.rfb viewer: an anywidget ESM module around noVNC's RFB client.
//
// noVNC does all the decoding; this file only wires it to the widget model (traits), draws a
// toolbar and a stats overlay, and reconnects when the Display comes back. The same module
// powers the full-page viewer served at "/" (with a tiny stand-in model, see page.js).
import RFB from "@novnc/novnc";

const STYLE = `
.pdum-rfb { position: relative; font: 12px system-ui, sans-serif; background: #202124; color: #eee;
  display: flex; flex-direction: column; border-radius: 4px; overflow: hidden; }
.pdum-rfb-bar { display: flex; gap: 4px; align-items: center; padding: 3px 6px; background: #303134; }
.pdum-rfb-bar button { background: #45474a; color: #eee; border: 0; border-radius: 3px; padding: 2px 8px;
  cursor: pointer; font: inherit; }
.pdum-rfb-bar button:hover { background: #5f6368; }
.pdum-rfb-bar .pdum-rfb-state { margin-left: auto; opacity: 0.8; }
.pdum-rfb-screen { position: relative; flex: 1 1 auto; min-height: 60px; outline: none; }
.pdum-rfb-stats { position: absolute; top: 4px; right: 4px; background: rgba(0,0,0,0.6); color: #9f9;
  font: 11px ui-monospace, monospace; padding: 2px 6px; border-radius: 3px; pointer-events: none;
  white-space: pre; z-index: 2; }
.pdum-rfb-message { position: absolute; inset: 0; display: flex; align-items: center; justify-content: center;
  text-align: center; padding: 12px; background: rgba(32,33,36,0.92); z-index: 3; white-space: pre-line; }
.pdum-rfb-snapshot { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: contain; z-index: 1; }
.pdum-rfb-screen.pdum-rfb-has-snapshot .pdum-rfb-message { inset: auto 0 0 0; padding: 4px 8px;
  background: rgba(32,33,36,0.8); }
`;

function injectStyle(root) {
  const doc = root.ownerDocument || document;
  if (doc.getElementById("pdum-rfb-style")) return;
  const style = doc.createElement("style");
  style.id = "pdum-rfb-style";
  style.textContent = STYLE;
  doc.head.appendChild(style);
}

/** Resolve the WebSocket URL: an explicit url, else base_path on the page's own origin. */
export function resolveUrl(url, basePath, location = globalThis.location) {
  if (url) return url;
  if (basePath != null && location) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let path = basePath.endsWith("/") ? basePath : basePath + "/";
    if (!path.startsWith("/")) path = "/" + path;
    return `${scheme}//${location.host}${path}websockify`;
  }
  return "";
}

function formatRate(bitsPerSecond) {
  if (bitsPerSecond >= 1e6) return (bitsPerSecond / 1e6).toFixed(1) + " Mbit/s";
  if (bitsPerSecond >= 1e3) return (bitsPerSecond / 1e3).toFixed(0) + " kbit/s";
  return bitsPerSecond.toFixed(0) + " bit/s";
}

/** Text of the stats overlay from the server-truth stats dict (the client this widget is). */
export function formatStats(stats) {
  if (!stats || typeof stats !== "object") return "";
  const fps = Number(stats.fps ?? 0);
  const rtt = stats.rtt_ms == null ? "–" : Number(stats.rtt_ms).toFixed(1) + " ms";
  const rate = formatRate(Number(stats.bitrate ?? 0));
  return `${fps.toFixed(1)} fps  rtt ${rtt}  ${rate}`;
}

/**
 * A WebSocket-like channel carrying the RFB byte stream over the widget's own comm messages
 * (binary buffers), for hosts where no port of the kernel is reachable (Colab, VS Code).
 * noVNC accepts any object with this shape instead of a URL.
 */
function commChannel(model) {
  let handler = null;
  const channel = {
    binaryType: "arraybuffer",
    protocol: "",
    readyState: "connecting",
    onopen: null,
    onmessage: null,
    onclose: null,
    onerror: null,
    send(data) {
      const view = data instanceof ArrayBuffer ? new Uint8Array(data) : data;
      const copy = view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
      model.send({ type: "rfb-data" }, undefined, [copy]);
    },
    close() {
      if (channel.readyState === "closed") return;
      model.send({ type: "rfb-close" });
      finish(true);
    },
  };
  function finish(clean) {
    channel.readyState = "closed";
    if (handler) model.off("msg:custom", handler);
    handler = null;
    if (channel.onclose) channel.onclose({ code: clean ? 1000 : 1006, reason: "", wasClean: clean });
  }
  handler = (msg, buffers) => {
    if (!msg || typeof msg.type !== "string" || !msg.type.startsWith("rfb-")) return;
    if (msg.type === "rfb-opened") {
      channel.readyState = "open";
      if (channel.onopen) channel.onopen();
    } else if (msg.type === "rfb-data" && channel.onmessage) {
      for (const b of buffers || []) {
        const view = b instanceof ArrayBuffer ? new Uint8Array(b) : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
        channel.onmessage({ data: view.slice().buffer });
      }
    } else if (msg.type === "rfb-closed") {
      finish(true);
    }
  };
  model.on("msg:custom", handler);
  model.send({ type: "rfb-open" });
  return channel;
}

function render({ model, el }) {
  injectStyle(el);
  const root = document.createElement("div");
  root.className = "pdum-rfb";
  const bar = document.createElement("div");
  bar.className = "pdum-rfb-bar";
  const screen = document.createElement("div");
  screen.className = "pdum-rfb-screen";
  // Keys typed into the viewer belong to the remote display: JupyterLab (Lumino) must not treat
  // them as notebook shortcuts ("a", "b", "dd", arrows...).
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  // Keep the host page (JupyterLab's notebook) from reacting to clicks and keys meant for the
  // remote display: its mousedown handler would move focus away from noVNC's canvas.
  for (const type of ["mousedown", "mouseup", "click", "dblclick", "pointerdown", "pointerup", "focusin",
    "focusout", "keydown", "keyup", "keypress", "wheel", "contextmenu"]) {
    screen.addEventListener(type, (ev) => ev.stopPropagation());
  }
  const stats = document.createElement("div");
  stats.className = "pdum-rfb-stats";
  const message = document.createElement("div");
  message.className = "pdum-rfb-message";
  message.style.display = "none";
  // The latest frame the kernel sent (the `snapshot` trait), shown while not connected: a saved
  // notebook or docs page without a kernel, or a Display that went away, still shows a picture.
  const snapshot = document.createElement("img");
  snapshot.className = "pdum-rfb-snapshot";
  snapshot.alt = "pdum.rfb snapshot";
  screen.append(snapshot, stats, message);
  root.append(bar, screen);
  el.appendChild(root);

  const button = (label, title, onClick) => {
    const b = document.createElement("button");
    b.textContent = label;
    b.title = title;
    b.addEventListener("click", onClick);
    bar.appendChild(b);
    return b;
  };
  const stateLabel = document.createElement("span");
  stateLabel.className = "pdum-rfb-state";

  let rfb = null;
  let retry = null;
  let attempts = 0;
  let destroyed = false;
  let everConnected = false;

  const showSnapshot = () => {
    const url = model.get("snapshot") || "";
    const visible = !!url && !(rfb && model.get("state") === "connected");
    if (url && snapshot.getAttribute("src") !== url) snapshot.src = url;
    snapshot.style.display = visible ? "block" : "none";
    snapshot.style.objectFit = model.get("fit") ? "contain" : "none";
    screen.classList.toggle("pdum-rfb-has-snapshot", visible);
  };

  const setState = (state, error = "") => {
    model.set("state", state);
    if (error !== undefined) model.set("last_error", error);
    model.save_changes();
    stateLabel.textContent = state;
    showSnapshot();
  };

  const showMessage = (text) => {
    message.textContent = text;
    message.style.display = text ? "flex" : "none";
  };

  const applyLayout = () => {
    const height = model.get("height");
    screen.style.height = height ? `${height}px` : "";
    bar.style.display = model.get("show_toolbar") ? "flex" : "none";
    stats.style.display = model.get("show_stats") ? "block" : "none";
    if (rfb) {
      rfb.scaleViewport = !!model.get("fit");
      rfb.clipViewport = !model.get("fit");
    }
    fitButton.textContent = model.get("fit") ? "1:1" : "Fit";
    showSnapshot();
  };

  const scheduleReconnect = () => {
    if (destroyed || retry) return;
    const delay = Math.min(5000, 500 * 2 ** Math.min(attempts, 4));
    attempts += 1;
    retry = setTimeout(() => {
      retry = null;
      connect();
    }, delay);
  };

  function connect() {
    if (destroyed) return;
    if (rfb) {
      try { rfb.disconnect(); } catch (e) { /* already closed */ }
      rfb = null;
    }
    let url = resolveUrl(model.get("url"), model.get("base_path"));
    const widgetId = model.get("widget_id");
    if (url && widgetId) url += (url.includes("?") ? "&" : "?") + "widget=" + encodeURIComponent(widgetId);
    const token = model.get("token");
    if (url && token) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
    if (!url && (model.get("transport") || "auto") !== "comm") {
      setState("error", "no url");
      showMessage("No WebSocket URL: call display.widget() on a served Display.");
      return;
    }
    setState("connecting", "");
    const transport = model.get("transport") || "auto";
    const useComm = transport === "comm" || (transport === "auto" && !everConnected && attempts >= 1);
    let client;
    try {
      const target = useComm ? commChannel(model) : url;
      client = new RFB(screen, target, { wsProtocols: ["binary"], shared: true });
      model.set("active_transport", useComm ? "comm" : "websocket");
    } catch (err) {
      setState("error", String(err));
      showMessage(`Cannot open ${url}: ${err}`);
      scheduleReconnect();
      return;
    }
    rfb = client;
    client.focusOnClick = true;
    const quality = model.get("quality_level");
    if (quality == null) {
      // Lossless by default: noVNC always announces a JPEG quality level, which lets the server
      // pick lossy Tight JPEG; leave the quality pseudo-encodings (-32..-23) out of its list.
      const sendEncodings = RFB.messages.clientEncodings;
      client._sendEncodings = function () {
        RFB.messages.clientEncodings = (sock, encs) => sendEncodings(sock, encs.filter((e) => e < -32 || e > -23));
        try { RFB.prototype._sendEncodings.call(this); } finally { RFB.messages.clientEncodings = sendEncodings; }
      };
    } else {
      client.qualityLevel = quality;
    }
    client.compressionLevel = model.get("compression_level") ?? 2;
    client.resizeSession = false;
    client.showDotCursor = true;
    client.background = "#202124";
    client.addEventListener("connect", () => {
      attempts = 0;
      everConnected = true;
      setState("connected", "");
      showMessage("");
      applyLayout();
    });
    client.addEventListener("disconnect", (ev) => {
      if (rfb !== client) return;
      rfb = null;
      const clean = ev.detail && ev.detail.clean;
      if (destroyed) return;
      setState("disconnected", clean ? "" : "connection lost");
      showMessage(
        everConnected
          ? "Disconnected from the Display. Reconnecting when it comes back…"
          : `Cannot reach ${url}.\nIs the Display running (await rfb.serve(...)) and is its port reachable ` +
            "from this browser? Behind JupyterHub or Binder use widget(base_path=...).",
      );
      scheduleReconnect();
    });
    client.addEventListener("securityfailure", (ev) => {
      setState("error", `security failure: ${ev.detail.reason || ev.detail.status}`);
    });
    client.addEventListener("credentialsrequired", () => {
      const password = model.get("password") || "";
      if (password) client.sendCredentials({ password });
      else showMessage("This Display needs a password: display.widget(password=...)");
    });
    client.addEventListener("clipboard", (ev) => {
      model.set("clipboard", ev.detail.text);
      model.save_changes();
      if (navigator.clipboard && document.hasFocus()) navigator.clipboard.writeText(ev.detail.text).catch(() => {});
    });
    applyLayout();
  }

  const fitButton = button("Fit", "Toggle scale-to-fit", () => {
    model.set("fit", !model.get("fit"));
    model.save_changes();
    applyLayout();
  });
  button("Full", "Fullscreen", () => {
    if (document.fullscreenElement) document.exitFullscreen();
    else root.requestFullscreen?.();
  });
  button("⟳", "Reconnect", () => {
    attempts = 0;
    if (retry) { clearTimeout(retry); retry = null; }
    connect();
  });
  button("PNG", "Save a PNG of the current frame", () => {
    if (!rfb) return;
    const a = document.createElement("a");
    a.href = rfb.toDataURL("image/png");
    a.download = "pdum-rfb.png";
    a.click();
  });
  bar.appendChild(stateLabel);

  // Paste: text typed into the browser clipboard goes to the server clipboard.
  screen.addEventListener("paste", (ev) => {
    const text = ev.clipboardData && ev.clipboardData.getData("text/plain");
    if (text && rfb) rfb.clipboardPasteFrom(text);
  });
  // No stuck keys: noVNC's keyboard releases every held key when its canvas loses focus.

  const onStats = () => { stats.textContent = formatStats(model.get("stats")); };
  const onChange = () => applyLayout();
  const onUrl = () => { attempts = 0; connect(); };
  model.on("change:stats", onStats);
  model.on("change:fit", onChange);
  model.on("change:height", onChange);
  model.on("change:show_toolbar", onChange);
  model.on("change:show_stats", onChange);
  model.on("change:url", onUrl);
  model.on("change:base_path", onUrl);
  model.on("change:snapshot", showSnapshot);
  model.on("msg:custom", (msg) => {
    if (msg && msg.type === "reconnect") onUrl();
    if (msg && msg.type === "clipboard" && rfb) rfb.clipboardPasteFrom(msg.text);
  });

  applyLayout();
  onStats();
  connect();

  return () => {
    destroyed = true;
    if (retry) clearTimeout(retry);
    if (rfb) rfb.disconnect();
    model.off("change:stats", onStats);
    model.off("change:fit", onChange);
    model.off("change:height", onChange);
    model.off("change:show_toolbar", onChange);
    model.off("change:show_stats", onChange);
    model.off("change:url", onUrl);
    model.off("change:base_path", onUrl);
    model.off("change:snapshot", showSnapshot);
  };
}

export default { render };
