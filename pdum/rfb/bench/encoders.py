"""Encoder throughput: how long each encoder takes for one whole frame, and how big the result is.

Each measurement encodes full frames exactly as a session does for a full update: the frame is
cut with :func:`encode_order` (Tight's solid areas become fills, the rest is cut to the encoder's
limits; the cut is timed, as it is part of a session's encode), every piece is encoded with one long-lived
:class:`EncodeContext` (so zlib streams carry state from frame to frame, as they do for a real
client), and each piece costs a 12-byte rectangle header on the wire. Rendering the scene is not
timed. The pixel format is libvncclient's default (32 bpp, depth 24, R,G,B,x bytes), the same one
the peer benchmark's client asks for, so these numbers line up with the wire numbers there.
"""

from __future__ import annotations

import functools
import io
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import simplejpeg

from ..encodings import EncodeContext, Encoder, h264
from ..encodings.h264 import H264State
from ..encodings.hextile import HextileEncoder
from ..encodings.raw import RawEncoder
from ..encodings.solid import encode_order
from ..encodings.tight import TightEncoder, TightPngEncoder, read_compact_length
from ..encodings.zlib import ZlibEncoder
from ..encodings.zrle import ZRLEEncoder
from ..protocol.pixelformat import PixelFormat
from .scenes import ANIMATED, SCENES

#: libvncclient's default pixel format: what the peer benchmark's client (and most viewers) use.
CLIENT_FORMAT = PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16)

RECT_HEADER = 12


class H264WholeFrame:
    """H.264 (encodings/h264.py) behind the :class:`Encoder` interface: each call is the next
    frame of one stream for the whole (unsplit) frame; the payload includes length and flags."""

    encoding: ClassVar[int] = 50
    max_width: ClassVar[int | None] = None
    max_area: ClassVar[int | None] = None

    def encode(self, rgb: np.ndarray, pixel_format: PixelFormat, ctx: EncodeContext) -> bytes:
        h, w = rgb.shape[:2]
        payload = ctx.h264.encode(rgb, (0, 0, w, h), ctx.quality_level)
        if payload is None:
            raise RuntimeError("H.264 encoding failed")
        return bytes(payload)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _tight_jpeg_decoder() -> Callable[[bytes, int, int], np.ndarray | None]:
    """Decodes a Tight rect made only of JPEG or fill (a photo); None for anything else."""

    def decode(payload: bytes, w: int, h: int) -> np.ndarray | None:
        control = payload[0] >> 4 << 4
        if control == 0x80:  # fill, 3-byte TPIXEL at 24-in-32
            return np.broadcast_to(np.frombuffer(payload[1:4], np.uint8), (h, w, 3))
        if control != 0x90:
            return None
        rest = io.BytesIO(payload[1:])
        jpeg = rest.read(read_compact_length(rest.read))
        return np.asarray(simplejpeg.decode_jpeg(jpeg, colorspace="RGB"))

    return decode


def _h264_decoder() -> Callable[[bytes, int, int], np.ndarray | None]:
    """FFmpeg's H.264 decoder (through PyAV) fed the stream in order, as noVNC's would be."""
    import av

    codec: Any = av.CodecContext.create("h264", "r")

    def decode(payload: bytes, w: int, h: int) -> np.ndarray | None:
        frames = codec.decode(av.Packet(payload[8:]))
        return np.asarray(frames[-1].to_ndarray(format="rgb24"))[:h, :w] if frames else None

    return decode


#: Decoders of the lossy cases (label prefix): their rows get the PSNR of what a client shows.
PSNR_DECODERS: dict[str, Callable[[], Callable[[bytes, int, int], np.ndarray | None]]] = {
    "Tight JPEG": _tight_jpeg_decoder,
    "H.264": _h264_decoder,
}

#: (label, encoder, context factory): Tight appears twice, lossless and JPEG at quality level 8.
ENCODER_CASES: tuple[tuple[str, Encoder, Callable[[], EncodeContext]], ...] = (
    ("Raw", RawEncoder(), EncodeContext),
    ("Zlib", ZlibEncoder(), EncodeContext),
    ("ZRLE", ZRLEEncoder(), EncodeContext),
    ("Hextile", HextileEncoder(), EncodeContext),
    ("Tight", TightEncoder(), EncodeContext),
    ("Tight JPEG q8", TightEncoder(), lambda: EncodeContext(quality_level=8)),
    ("Tight JPEG q6", TightEncoder(), lambda: EncodeContext(quality_level=6)),  # JPEG quality 79
    ("TightPNG", TightPngEncoder(), EncodeContext),
    ("H.264 q6", H264WholeFrame(), lambda: EncodeContext(quality_level=6, h264=H264State())),  # CRF 23
    ("H.264 q8", H264WholeFrame(), lambda: EncodeContext(quality_level=8, h264=H264State())),  # CRF 19
)

#: Cases measured on animated scenes only: they code frame-to-frame changes, so a static scene
#: (the same frame again) would cost them next to nothing where every other encoder pays in full.
VIDEO_CASES = frozenset({"H.264 q6", "H.264 q8"})

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
    psnr: float | None = None  # lossy cases: mean PSNR (dB) of the decoded timed frames

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
    times: list[float] = []
    sizes: list[int] = []
    scores: list[float] = []
    make_decoder = next((d for prefix, d in PSNR_DECODERS.items() if label.startswith(prefix)), None)
    decode = make_decoder() if make_decoder is not None else None
    spent = 0.0
    t = 0
    while True:
        frame = render(width, height, t)
        started = time.perf_counter()
        size = 0
        pieces = []
        payloads = []
        for piece_encoder, batch in encode_order(encoder, frame, [(0, 0, width, height)]):
            for x, y, w, h in batch:
                payloads.append(piece_encoder.encode(frame[y : y + h, x : x + w], CLIENT_FORMAT, ctx))
                pieces.append((x, y, w, h))
                size += RECT_HEADER + len(payloads[-1])
        elapsed = time.perf_counter() - started
        if decode is not None:  # untimed; every frame, as a decoder needs the whole stream
            shown = np.zeros_like(frame)
            for (x, y, w, h), payload in zip(pieces, payloads, strict=True):
                got = decode(bytes(payload), w, h)
                if got is None:
                    decode = None
                    break
                shown[y : y + h, x : x + w] = got
            if decode is not None and t > 0:
                scores.append(_psnr(shown, frame))
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
        psnr=statistics.fmean(scores) if decode is not None and scores else None,
    )


def included(label: str, scene: str) -> bool:
    """Whether a case runs on a scene: video cases on animated scenes, and with PyAV installed."""
    return label not in VIDEO_CASES or (scene in ANIMATED and h264.available())


def _group(spec: dict[str, Any]) -> list[EncoderResult]:
    """Every selected encoder on one (size, scene), in :data:`ENCODER_CASES` order."""
    results = []
    for label, encoder, make_ctx in ENCODER_CASES:
        if spec["encoders"] is not None and label not in spec["encoders"]:
            continue
        if not included(label, spec["scene"]):
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


def h264_comparison(
    sizes: Sequence[tuple[int, int]] = ((1280, 720), (1920, 1080)), scene: str = "photo_pan", frames: int = 60
) -> str:
    """H.264 next to Tight JPEG at several quality levels on a moving scene, with the PSNR of
    what a client decodes, as a Markdown table (``python -m pdum.rfb.bench.encoders h264``)."""
    from .report import fmt, table

    cases: list[tuple[str, Encoder, Callable[[], EncodeContext]]] = []
    for q in (2, 4, 6, 8):
        cases.append((f"Tight JPEG q{q}", TightEncoder(), functools.partial(EncodeContext, quality_level=q)))
    for q in (6, 8):
        cases.append((f"H.264 q{q}", H264WholeFrame(), functools.partial(_h264_context, q)))
    rows = []
    for width, height in sizes:
        for label, encoder, make_ctx in cases:
            r = measure(label, encoder, make_ctx, width, height, scene,
                        budget_s=0.0, min_frames=frames, max_frames=frames)  # fmt: skip
            psnr = f"{r.psnr:.2f}" if r.psnr is not None else "-"
            rows.append([f"{width}x{height}", r.encoder, fmt(r.ms_per_frame), fmt(r.ms_min),
                         f"{r.bytes_per_frame:,.0f}", psnr])  # fmt: skip
    headers = ["size", "encoder", "ms/frame", "ms min", "bytes/frame", "PSNR dB"]
    return f"scene {scene}, {frames} timed frames per row\n\n" + table(headers, rows)


def _h264_context(quality_level: int) -> EncodeContext:
    return EncodeContext(quality_level=quality_level, h264=H264State())


if __name__ == "__main__":
    if sys.argv[1] == "h264":
        print(h264_comparison())
    else:  # one isolated (size, scene) group, see run_encoders
        print(json.dumps([r.as_dict() for r in _group(json.loads(sys.argv[1]))]))
