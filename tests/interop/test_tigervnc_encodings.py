"""TigerVNC's viewer (under Xvfb) decodes our Tight, ZRLE and Hextile pixel-exact, in full colour
and in its three 8 bpp true-colour formats; round-trips the clipboard (UTF-8, extended clipboard)
with the X selections of its display, and survives a clipboard over our limit; and its
SetDesktopSize (``-RemoteResize``) resizes the Display only with ``resize_policy="accept"``.

TigerVNC 1.12 never asks for 16 bpp: ``-FullColor=0`` selects one of three 8 bpp *true-colour*
formats by ``-LowColorLevel`` (0: RGB111, 8 colours; 1: RGB222, 64 colours; 2: RGB332, 256
colours; see ``CConn.cxx``), never a colour map, so every mode it has is testable here. Its
decoders convert those pixels to the 24-bit X visual with ``v * 255 // max`` per channel
(``PixelFormat.cxx``'s up-conversion table), and we quantise with ``(v * max + 128) // 255``, so
the expected screen colour of every frame is computed from both rules below, independently of
pdum.rfb.

The viewer runs with an empty ``-MenuKey`` so it shows no "Press F8" banner over the frame.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator

import numpy as np
import pytest

import pdum.rfb as rfb
from pdum.rfb.encodings import ENCODERS
from pdum.rfb.protocol.messages import Encoding, Limits
from pdum.rfb.protocol.pixelformat import PixelFormat
from pdum.rfb.testing import checkerboard, counter, gradient, noise, solid, text_like

from ..support import LoopThread, wait_until
from .clients import Xvfb, find_subimage, require, stop_process, tigervnc

WIDTH, HEIGHT = 333, 250  # not a multiple of 16 or 64: partial edge tiles in every encoding
NO_BANNER = "-MenuKey="

ENCODINGS = {"Tight": Encoding.TIGHT, "ZRLE": Encoding.ZRLE, "Hextile": Encoding.HEXTILE}
#: -LowColorLevel -> (red, green, blue) maxima and shifts of the 8 bpp format TigerVNC asks for
LOW_COLOUR = {0: ((1, 1, 1), (2, 1, 0)), 1: ((3, 3, 3), (4, 2, 0)), 2: ((7, 7, 3), (5, 2, 0))}


def as_seen(frame: np.ndarray, level: int | None) -> np.ndarray:
    """What TigerVNC puts on a 24-bit X screen for ``frame`` in colour mode ``level``."""
    if level is None:
        return frame
    out = np.empty_like(frame)
    for channel, mx in enumerate(LOW_COLOUR[level][0]):
        v = frame[..., channel].astype(np.uint32)
        out[..., channel] = (v * mx + 128) // 255 * 255 // mx
    return out


def frames() -> Iterator[np.ndarray]:
    """Whole frames of every kind, then partial changes over text (few damaged 64x64 tiles each)."""
    yield noise(WIDTH, HEIGHT, seed=81)
    yield gradient(WIDTH, HEIGHT)
    yield solid(WIDTH, HEIGHT, (40, 90, 200))
    frame = text_like(WIDTH, HEIGHT, seed=82)
    yield frame
    for i in range(8):
        frame = frame.copy()
        x, y = (i * 41) % (WIDTH - 50), (i * 29) % (HEIGHT - 40)
        frame[y : y + 40, x : x + 50] = noise(50, 40, seed=90 + i)
        if i % 2:
            frame[128:192, 64:192] = checkerboard(128, 64, 3, ((250, 250, 240), (20, 30, 40)))
        else:
            frame[64:128, 256:320] = (200 - 20 * i, 30 * i, 90)
        frame[HEIGHT - 30 :, : 4 * 3 * 2 + 8] = counter(4 * 3 * 2 + 8, 30, n=i, scale=2)
        frame[HEIGHT - 1, WIDTH - 1] = (255, 255, 255) if i % 2 else (0, 0, 0)  # the last partial tile
        yield frame


def screen_shows(xvfb: Xvfb, at: tuple[int, int], image: np.ndarray, timeout: float = 10.0) -> None:
    """Screenshots until ``image`` is on screen exactly: where the first frame was (``at``), or
    anywhere should the viewer's window have moved since."""
    x, y = at
    h, w = image.shape[:2]
    last: dict[str, np.ndarray] = {}

    def matches() -> bool:
        last["screen"] = screen = xvfb.screenshot()
        return np.array_equal(screen[y : y + h, x : x + w], image) or find_subimage(screen, image) is not None

    try:
        wait_until(matches, timeout=timeout, interval=0.2)
    except AssertionError:
        differ = int(np.any(last["screen"][y : y + h, x : x + w] != image, axis=2).sum())
        raise AssertionError(f"TigerVNC never showed the frame ({differ} pixels differ at {at})") from None


def session_of(served: LoopThread, display: rfb.Display) -> tuple[tuple[int, ...], int, PixelFormat, int]:
    """(encodings, chosen encoder, pixel format, rects sent) of the display's only client."""

    def get() -> tuple[tuple[int, ...], int, PixelFormat, int]:
        (session,) = display.server.sessions.values()
        return (
            session.encodings,
            session._choose_encoder().encoding,
            session.pixel_format,
            session.stats.rects_sent,
        )

    return served.call(get)


@pytest.mark.parametrize("level", [None, 2, 1, 0], ids=["full", "rgb332", "rgb222", "rgb111"])
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_tigervnc_encoding_pixel_exact(
    served: LoopThread, xvfb: Xvfb, encoding: str, level: int | None
) -> None:
    display = served.serve(WIDTH, HEIGHT)
    sequence = iter(frames())
    first = next(sequence)
    served.publish(display, first)
    with tigervnc(xvfb, display.vnc_port, NO_BANNER, encoding=encoding, low_color_level=level) as viewer:
        at = wait_until(
            lambda: find_subimage(xvfb.screenshot(), as_seen(first, level)), timeout=20, interval=0.3
        )
        for frame in sequence:
            served.publish(display, frame)
            screen_shows(xvfb, at, as_seen(frame, level))
        assert viewer.poll() is None, "the viewer exited (decoding error?)"
        encodings, chosen, pixel_format, rects = session_of(served, display)
    # The preferred encoding is the first data encoding TigerVNC lists (its cursor, desktop-size
    # etc. pseudo-encodings come before it), and the session really encoded with it.
    assert [e for e in encodings if e in ENCODERS][0] == ENCODINGS[encoding]
    assert chosen == ENCODINGS[encoding]
    assert rects > 0
    if level is None:
        assert (pixel_format.bits_per_pixel, pixel_format.depth) == (32, 24)
    else:
        (rmax, gmax, bmax), (rs, gs, bs) = LOW_COLOUR[level]
        assert pixel_format == PixelFormat(8, rmax.bit_length() + gmax.bit_length() + bmax.bit_length(),
                                           False, True, rmax, gmax, bmax, rs, gs, bs)  # fmt: skip


# -- clipboard -----------------------------------------------------------------------------------------
def read_selection(xvfb: Xvfb, selection: str) -> str:
    result = subprocess.run(
        ["xclip", "-o", "-selection", selection], env=xvfb.env, capture_output=True, timeout=5
    )
    return result.stdout.decode("utf-8", errors="replace") if result.returncode == 0 else ""


def own_selection(xvfb: Xvfb, selection: str, text: str) -> subprocess.Popen[bytes]:
    """xclip owning ``selection`` with ``text`` (in the foreground, so that we can stop it)."""
    proc = subprocess.Popen(
        ["xclip", "-quiet", "-i", "-selection", selection],
        env=xvfb.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    proc.stdin.write(text.encode("utf-8"))
    proc.stdin.close()
    return proc


def test_tigervnc_clipboard_round_trip(served: LoopThread, xvfb: Xvfb) -> None:
    """Both directions through the extended clipboard (UTF-8; the legacy messages are Latin-1, so
    the characters outside Latin-1 below could not survive them).

    TigerVNC only moves the clipboard while its window has focus, which its full-screen keyboard
    grab gives it under Xvfb (no window manager needed). Server to client: we Notify, it Requests,
    we Provide, and it sets both X selections (``-SetPrimary``, on by default). Client to server:
    it sends changes of CLIPBOARD and of PRIMARY (``-SendPrimary``, on by default) as an
    unsolicited Provide, because our Caps say we accept text up to ``max_cut_text`` that way.
    """
    require("xclip")
    display = served.serve(WIDTH, HEIGHT)
    first = noise(WIDTH, HEIGHT, seed=83)
    served.publish(display, first)
    with tigervnc(xvfb, display.vnc_port, NO_BANNER, view_only=False) as viewer:
        wait_until(lambda: find_subimage(xvfb.screenshot(), first), timeout=20, interval=0.3)
        extended = served.call(
            lambda: [
                (Encoding.EXTENDED_CLIPBOARD in s.encodings, s.clipboard_caps is not None)
                for s in display.server.sessions.values()
            ]
        )
        assert extended == [(True, True)]  # TigerVNC negotiated the extended clipboard
        served.call(display.poll_events)  # drop the pointer event the viewer sends on connect

        # server -> X selections
        text = "text with ünïcödé € ☃\nsecond line"
        served.call(setattr, display, "clipboard", text)
        wait_until(lambda: read_selection(xvfb, "clipboard") == text, timeout=10)
        assert read_selection(xvfb, "primary") == text

        # X selections -> server
        received: list[str] = []

        def clipboard_event(expected: str) -> bool:
            received.extend(e.event["text"] for e in served.call(display.poll_events)
                            if e.event["type"] == "clipboard")  # fmt: skip
            return expected in received

        for selection, sent in (("clipboard", "from X ✓ ß\n日本"), ("primary", "primary ∑\nselection")):
            owner = own_selection(xvfb, selection, sent)
            try:
                wait_until(lambda sent=sent: clipboard_event(sent), timeout=10)
            finally:
                stop_process(owner)
        assert viewer.poll() is None


def test_tigervnc_oversize_clipboard_is_dropped_not_fatal(
    served: LoopThread, xvfb: Xvfb, caplog: pytest.LogCaptureFixture
) -> None:
    """A clipboard over our limit: TigerVNC sees it exceeds our Caps size and sends Notify instead,
    we Request, it Provides all of it, and we drop it, keeping the client (as TigerVNC's own server
    does). TigerVNC 1.12 itself crashes on X selections over ~1 MiB, hence the smaller limit here."""
    require("xclip")
    caplog.set_level(logging.WARNING, logger="pdum.rfb.session")
    display = served.serve(WIDTH, HEIGHT, limits=Limits(max_cut_text=100_000))
    first = noise(WIDTH, HEIGHT, seed=86)
    served.publish(display, first)
    with tigervnc(xvfb, display.vnc_port, NO_BANNER, view_only=False) as viewer:
        wait_until(lambda: find_subimage(xvfb.screenshot(), first), timeout=20, interval=0.3)
        owner = own_selection(xvfb, "clipboard", "y" * 150_000)
        try:
            wait_until(lambda: "150001-byte clipboard dropped" in caplog.text, timeout=10)
        finally:
            stop_process(owner)
        received: list[str] = []

        def clipboard_events() -> list[str]:
            events = served.call(display.poll_events)
            received.extend(e.event["text"] for e in events if e.event["type"] == "clipboard")
            return received

        owner = own_selection(xvfb, "clipboard", "small ✓")
        try:
            assert wait_until(clipboard_events, timeout=10) == ["small ✓"]
        finally:
            stop_process(owner)
        assert viewer.poll() is None
        assert served.call(lambda: (display.client_count, display.stats["protocol_errors"])) == (1, 0)


# -- SetDesktopSize from TigerVNC ----------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["accept", "reject"])
def test_tigervnc_set_desktop_size(served: LoopThread, xvfb: Xvfb, policy: str) -> None:
    """With ``-RemoteResize`` a full-screen TigerVNC asks (once, after our ExtendedDesktopSize) for
    the size of its screen; the Display follows only with ``resize_policy="accept"``, and the event
    arrives either way."""
    display = served.serve(320, 240, resize_policy=policy)
    first = noise(320, 240, seed=84)
    served.publish(display, first)
    screen = (xvfb.width, xvfb.height)
    with tigervnc(xvfb, display.vnc_port, NO_BANNER, "-RemoteResize=1") as viewer:
        events = wait_until(
            lambda: [e.event for e in served.call(display.poll_events) if e.event["type"] == "resize"],
            timeout=20,
        )
        accepted = policy == "accept"
        assert events == [{"type": "resize", "width": screen[0], "height": screen[1], "accepted": accepted}]
        size = screen if accepted else (320, 240)
        assert served.call(lambda: (display.width, display.height)) == size
        frame = noise(*size, seed=85)
        served.publish(display, frame)
        wait_until(lambda: find_subimage(xvfb.screenshot(), frame), timeout=20, interval=0.3)
        assert viewer.poll() is None
        assert not [e for e in served.call(display.poll_events) if e.event["type"] == "resize"]
