"""CopyRect against libvncclient (vncdump): a scrolling document, with the caller's copies, with
scroll detection and with neither, at 32/16/8 bpp behind Raw and Zlib; pixel-exact after every
frame, CopyRects really sent, and fewer bytes than without them. Plus a client that stops reading
for a while (SIGSTOP) next to a fast one: it skips frames, and must still end exact. And TigerVNC's
viewer (which always announces CopyRect) on the same sequence."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

import pdum.rfb as rfb
from tests.scrolling import scrolling_steps

from ..support import LoopThread
from .clients import VncDump, Xvfb, in_client_format, tigervnc, wait_for_image_on_screen

WIDTH, HEIGHT = 400, 300  # not a multiple of the 64-pixel tiles


def client_stats(served: LoopThread, display: rfb.Display) -> list[dict[str, Any]]:
    stats: dict[str, Any] = served.call(lambda: display.stats)
    return [stats["clients"][cid] for cid in sorted(stats["clients"])]


def run_sequence(
    served: LoopThread, exe: Path, tmp: Path, encodings: str, bpp: int, mode: str
) -> dict[str, Any]:
    """Show every frame of the sequence on one vncdump (waiting for each); its server-side stats."""
    display = served.serve(WIDTH, HEIGHT)
    display.detect_scroll = mode == "detect"
    steps = scrolling_steps(WIDTH, HEIGHT, seed=5)
    served.publish(display, steps[0].frame)
    client = VncDump(exe, display.vnc_port, encodings, bpp, tmp)
    try:
        client.wait_for(in_client_format(steps[0].frame, bpp))
        for step in steps[1:]:
            served.call(display.publish, step.frame, step.copies if mode == "copies" else None)
            client.wait_for(in_client_format(step.frame, bpp))
        (stats,) = client_stats(served, display)
        return stats
    finally:
        client.close()


@pytest.mark.parametrize("bpp", [32, 16, 8])
@pytest.mark.parametrize("encoding", ["raw", "zlib"])
def test_scrolling_exact_and_smaller(served: LoopThread, vncdump_exe: Path, tmp_path: Path, encoding: str,
                                     bpp: int) -> None:  # fmt: skip
    encodings = f"copyrect {encoding}"
    baseline = run_sequence(served, vncdump_exe, tmp_path, encodings, bpp, "none")
    copies = run_sequence(served, vncdump_exe, tmp_path, encodings, bpp, "copies")
    detected = run_sequence(served, vncdump_exe, tmp_path, encodings, bpp, "detect")
    print(
        f"\n{encodings} {bpp}bpp bytes: none {baseline['bytes_sent']}, copies {copies['bytes_sent']} "
        f"({copies['copyrects_sent']} CopyRects), detected {detected['bytes_sent']} "
        f"({detected['copyrects_sent']} CopyRects)"
    )
    assert baseline["copyrects_sent"] == 0
    assert copies["copyrects_sent"] > 0 and detected["copyrects_sent"] > 0
    assert copies["bytes_sent"] < baseline["bytes_sent"] * 0.75
    assert detected["bytes_sent"] < baseline["bytes_sent"] * 0.75


def test_stopped_client_skips_frames_and_ends_exact(
    served: LoopThread, vncdump_exe: Path, tmp_path: Path
) -> None:
    display = served.serve(WIDTH, HEIGHT)
    steps = scrolling_steps(WIDTH, HEIGHT, seed=6)
    served.publish(display, steps[0].frame)
    fast = VncDump(vncdump_exe, display.vnc_port, "copyrect zlib", 32, tmp_path)
    slow = VncDump(vncdump_exe, display.vnc_port, "copyrect raw", 16, tmp_path)
    plain = VncDump(vncdump_exe, display.vnc_port, "raw", 8, tmp_path)  # no CopyRect at all
    try:
        for client in (fast, slow, plain):
            client.wait_for(in_client_format(steps[0].frame, client.bpp))
        for chunk, mode in ((steps[1:12], "copies"), (steps[12:], "detect")):
            display.detect_scroll = mode == "detect"
            os.kill(slow.proc.pid, signal.SIGSTOP)  # stops asking: latest frame wins, it skips
            try:
                for step in chunk:
                    served.call(display.publish, step.frame, step.copies if mode == "copies" else None)
                    fast.wait_for(in_client_format(step.frame, 32))
            finally:
                os.kill(slow.proc.pid, signal.SIGCONT)
            for client in (slow, plain):
                client.wait_for(in_client_format(chunk[-1].frame, client.bpp))
        # the three clients connect in any order: tell them apart by their pixel format
        by_bpp = served.call(
            lambda: {s.pixel_format.bits_per_pixel: s.stats for s in display.server.sessions.values()}
        )
        assert by_bpp[16].frames_skipped > 0
        assert by_bpp[32].copyrects_sent > 0 and by_bpp[16].copyrects_sent > 0
        assert by_bpp[8].copyrects_sent == 0
    finally:
        for client in (fast, slow, plain):
            client.close()


def test_tigervnc_scrolling(served: LoopThread, xvfb: Xvfb) -> None:
    display = served.serve(WIDTH, HEIGHT)
    steps = scrolling_steps(WIDTH, HEIGHT, seed=8)
    served.publish(display, steps[0].frame)
    assert display.vnc_port is not None
    with tigervnc(xvfb, display.vnc_port) as viewer:
        wait_for_image_on_screen(xvfb, steps[0].frame)
        for i, step in enumerate(steps[1:]):
            served.call(display.publish, step.frame, step.copies if i % 2 else None)  # else detection
            wait_for_image_on_screen(xvfb, step.frame, timeout=10)
        assert viewer.poll() is None
        (stats,) = client_stats(served, display)
        assert stats["copyrects_sent"] > 0
