"""Encoder throughput: how long each encoder takes for one whole frame, and how big the result is.

Each measurement encodes full frames exactly as a session does for a full update: the frame is
cut with :func:`split_rect` to the encoder's limits, every piece is encoded with one long-lived
:class:`EncodeContext` (so zlib streams carry state from frame to frame, as they do for a real
client), and each piece costs a 12-byte rectangle header on the wire. Rendering the scene is not
timed. The pixel format is libvncclient's default (32 bpp, depth 24, R,G,B,x bytes), the same one
the peer benchmark's client asks for, so these numbers line up with the wire numbers there.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..encodings import EncodeContext, Encoder
from ..encodings.base import split_rect
from ..encodings.hextile import HextileEncoder
from ..encodings.raw import RawEncoder
from ..encodings.tight import TightEncoder, TightPngEncoder
from ..encodings.zlib import ZlibEncoder
from ..encodings.zrle import ZRLEEncoder
from ..protocol.pixelformat import PixelFormat
from .scenes import SCENES

#: libvncclient's default pixel format: what the peer benchmark's client (and most viewers) use.
CLIENT_FORMAT = PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16)

RECT_HEADER = 12

#: (label, encoder, context factory): Tight appears twice, lossless and JPEG at quality level 8.
ENCODER_CASES: tuple[tuple[str, Encoder, Callable[[], EncodeContext]], ...] = (
    ("Raw", RawEncoder(), EncodeContext),
    ("Zlib", ZlibEncoder(), EncodeContext),
    ("ZRLE", ZRLEEncoder(), EncodeContext),
    ("Hextile", HextileEncoder(), EncodeContext),
    ("Tight", TightEncoder(), EncodeContext),
    ("Tight JPEG q8", TightEncoder(), lambda: EncodeContext(quality_level=8)),
    ("TightPNG", TightPngEncoder(), EncodeContext),
)

FULL_SIZES: tuple[tuple[int, int], ...] = ((320, 240), (1280, 720), (1920, 1080))
QUICK_SIZES: tuple[tuple[int, int], ...] = ((320, 240), (1280, 720))
FULL_SCENES: tuple[str, ...] = ("seed_scene", "bouncing_box", "text_like", "gradient", "noise", "photo")
QUICK_SCENES: tuple[str, ...] = ("seed_scene", "text_like", "photo")


@dataclass
class EncoderResult:
    """One (encoder, size, scene) cell: times are per whole frame, bytes include rect headers."""

    encoder: str
    width: int
    height: int
    scene: str
    frames: int
    ms_per_frame: float  # median over the timed frames
    ms_min: float
    mb_per_s: float  # raw RGB input (width * height * 3 bytes) per second at the median time
    bytes_per_frame: float  # mean
    ratio: float  # bytes_per_frame / (width * height * 4), i.e. relative to Raw at 32 bpp

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    label: str,
    encoder: Encoder,
    make_ctx: Callable[[], EncodeContext],
    width: int,
    height: int,
    scene: str,
    *,
    budget_s: float,
    min_frames: int,
    max_frames: int,
) -> EncoderResult:
    """Encode frames of ``scene`` until ``budget_s`` seconds and ``min_frames`` frames are spent.

    One untimed warm-up frame comes first (it creates the zlib streams and fills caches, which a
    long-running session pays once).
    """
    render = SCENES[scene]
    ctx = make_ctx()
    pieces = split_rect(0, 0, width, height, encoder.max_width, encoder.max_area)
    times: list[float] = []
    sizes: list[int] = []
    spent = 0.0
    t = 0
    while True:
        frame = render(width, height, t)
        started = time.perf_counter()
        size = 0
        for x, y, w, h in pieces:
            size += RECT_HEADER + len(encoder.encode(frame[y : y + h, x : x + w], CLIENT_FORMAT, ctx))
        elapsed = time.perf_counter() - started
        if t > 0:
            times.append(elapsed)
            sizes.append(size)
            spent += elapsed
        t += 1
        if len(times) >= max_frames or (len(times) >= min_frames and spent >= budget_s):
            break
    median = statistics.median(times)
    raw_bytes = width * height * 3
    return EncoderResult(
        encoder=label,
        width=width,
        height=height,
        scene=scene,
        frames=len(times),
        ms_per_frame=median * 1000.0,
        ms_min=min(times) * 1000.0,
        mb_per_s=raw_bytes / median / 1e6 if median > 0 else float("inf"),
        bytes_per_frame=statistics.fmean(sizes),
        ratio=statistics.fmean(sizes) / (width * height * 4),
    )


def _group(spec: dict[str, Any]) -> list[EncoderResult]:
    """Every selected encoder on one (size, scene), in :data:`ENCODER_CASES` order."""
    results = []
    for label, encoder, make_ctx in ENCODER_CASES:
        if spec["encoders"] is not None and label not in spec["encoders"]:
            continue
        results.append(
            measure(label, encoder, make_ctx, spec["width"], spec["height"], spec["scene"],
                    budget_s=spec["budget_s"], min_frames=spec["min_frames"], max_frames=spec["max_frames"])
        )  # fmt: skip
    return results


def _group_in_subprocess(spec: dict[str, Any]) -> list[EncoderResult]:
    done = subprocess.run(
        [sys.executable, "-m", "pdum.rfb.bench.encoders", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [EncoderResult(**row) for row in json.loads(done.stdout)]


def run_encoders(
    *,
    sizes: Sequence[tuple[int, int]] = FULL_SIZES,
    scenes: Sequence[str] = FULL_SCENES,
    encoders: Sequence[str] | None = None,
    budget_s: float = 0.5,
    min_frames: int = 3,
    max_frames: int = 50,
    isolate: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[EncoderResult]:
    """Every (size, scene, encoder) combination; ``encoders`` filters by label.

    With ``isolate`` each (size, scene) runs in a fresh Python process. That makes the numbers
    independent of what ran before: glibc's malloc raises its mmap threshold after large frees,
    so whether NumPy's frame-sized temporaries cost fresh pages (page faults, kernel time) on
    every call depends on the process's allocation history, and that alone moved some of these
    timings by a factor of two within one process.
    """
    results: list[EncoderResult] = []
    for width, height in sizes:
        for scene in scenes:
            spec = {"width": width, "height": height, "scene": scene, "encoders": encoders,
                    "budget_s": budget_s, "min_frames": min_frames, "max_frames": max_frames}  # fmt: skip
            group = _group_in_subprocess(spec) if isolate else _group(spec)
            results.extend(group)
            if progress is not None:
                for result in group:
                    progress(
                        f"encoders: {result.encoder:14} {width}x{height} {scene:12} "
                        f"{result.ms_per_frame:8.2f} ms {result.bytes_per_frame:10.0f} B"
                    )
    return results


if __name__ == "__main__":  # one isolated (size, scene) group, see run_encoders
    print(json.dumps([r.as_dict() for r in _group(json.loads(sys.argv[1]))]))
