"""``pdum-rfb doctor``: what is installed, what works, and what to do about what does not."""

from __future__ import annotations

import asyncio
import importlib.metadata
import platform
import struct
import sys

from . import __version__, web

CORE = ("numpy", "pycryptodome", "websockets", "simplejpeg")
EXTRAS = {
    "anywidget": ("anywidget", "traitlets"),
    "asgi": ("uvicorn", "starlette"),
    "h264": ("av",),
}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


async def _loopback_handshake() -> str:
    """Serve on free loopback ports and run a real RFB 3.8 handshake plus one update against it."""
    from .display import serve

    display = await serve(16, 8, port=0, vnc_port=0)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", display.vnc_port), 5)
        try:
            version = await asyncio.wait_for(reader.readexactly(12), 5)
            writer.write(b"RFB 003.008\n")
            count = (await reader.readexactly(1))[0]
            await reader.readexactly(count)
            writer.write(b"\x01")
            await reader.readexactly(4)
            writer.write(b"\x01")
            init = await reader.readexactly(24)
            await reader.readexactly(struct.unpack(">I", init[20:24])[0])
            writer.write(struct.pack(">BBHHHH", 3, 0, 0, 0, 16, 8))
            header = await asyncio.wait_for(reader.readexactly(4), 5)
            assert header[0] == 0, "no FramebufferUpdate"
        finally:
            writer.close()
        where = f"{display.vnc_url}; viewer on {display.http_url}"
        return f"{version.decode().strip()} handshake and first update on {where}"
    finally:
        await display.aclose()


def main() -> int:
    ok = True
    print(f"pdum.rfb {__version__} on Python {platform.python_version()} ({sys.executable})")
    for dist in CORE:
        version = _version(dist)
        print(f"  {dist:14} {version or 'MISSING'}")
        if version is None:
            ok = False
            print(
                f"    -> reinstall: pip install --force-reinstall habemus-papadum-rfb  ({dist} is required)"
            )
    for extra, dists in EXTRAS.items():
        missing = [d for d in dists if _version(d) is None]
        state = "installed" if not missing else f"not installed (missing {', '.join(missing)})"
        print(f"  extra [{extra}]: {state}")
        if missing:
            print(f"    -> pip install 'habemus-papadum-rfb[{extra}]'  (only needed for {extra})")
    from .encodings import h264

    why_not = h264.unavailable_reason()
    print(f"  H.264 encoding: {'available (libx264 through PyAV)' if why_not is None else why_not}")
    bundle = web.static_file("viewer.js")
    if bundle is None:
        ok = False
        print("  viewer bundle: MISSING -> reinstall the wheel (pdum/rfb/static/viewer.js ships inside it)")
    else:
        licence = "present" if web.static_file("noVNC-LICENSE.txt") else "MISSING"
        print(f"  viewer bundle: {len(bundle)} bytes; noVNC licence {licence}")
    try:
        print(f"  loopback: {asyncio.run(_loopback_handshake())}")
    except Exception as exc:  # report, never crash: this is the diagnostic tool
        ok = False
        print(f"  loopback: FAILED ({type(exc).__name__}: {exc})")
        print("    -> is another program holding the ports, or is loopback networking disabled?")
    print("all good" if ok else "problems found (see the hints above)")
    return 0 if ok else 1
