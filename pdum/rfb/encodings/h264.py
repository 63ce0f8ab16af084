"""H.264 encoding (50), as noVNC 1.5+ decodes it, encoded on the CPU by libx264 through PyAV.

Wire format (noVNC's ``core/decoders/h264.js``; no rfbproto text exists): after the rectangle
header, a U32 payload length, a U32 flags word and that many bytes of H.264 Annex B stream
(start codes, SPS and PPS in-band before every IDR). The client keeps one decoder *context* per
rectangle ``(x, y, width, height)``; flag 1 resets that context, flag 2 resets every context.
Each payload must hold whole frames, and noVNC treats every slice NAL as the end of a frame, so
frames must have exactly one slice (no sliced threads). A new context decodes nothing until a
keyframe arrives. The decoder draws the top-left ``width x height`` of each decoded frame over
the whole rectangle, so a frame may be larger than its rectangle: odd sizes are padded to even
(yuv420p needs it) by repeating the last column/row.

One stream per client (:class:`H264State`, in ``EncodeContext.h264``): a libx264 encoder for one
rectangle, ultrafast preset, zerolatency tune (no B-frames, no lookahead: one packet out for each
frame in), one thread, CRF from the client's quality level. A new stream (first use, another
rectangle, a resize) starts with an IDR frame and flag 2, which also drops the client's decoders
for rectangles we no longer use; :meth:`H264State.request_keyframe` (a non-incremental update
request) makes the next frame an IDR with flag 1.

The policy (:meth:`H264State.choose`) sends a rectangle as H.264 only when it pays off: large
(``MIN_AREA`` damaged pixels, a quarter of the rectangle at least) and changing for consecutive
updates. Other encodings may paint
over parts of the H.264 rectangle between H.264 frames; that is safe because every H.264 frame
repaints its whole rectangle from the decoder's state, which matches the encoder's.

PyAV is the optional extra ``h264`` (``pip install 'habemus-papadum-rfb[h264]'``); it is imported
only when a client that announced H.264 meets a Display with ``lossy=True``.
"""

from __future__ import annotations

import functools
import logging
import struct
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from ..framebuffer import TILE
from ..protocol.messages import Encoding

log = logging.getLogger(__name__)

#: Flags word: reset this rectangle's decoder context / every context of the client.
RESET_CONTEXT = 1
RESET_ALL_CONTEXTS = 2

#: Damaged pixels an update needs before H.264 is considered (a 256x256 area).
MIN_AREA = 16 * TILE * TILE
#: Consecutive large updates of the same area before a new stream starts: a one-off repaint
#: (a new page, a dialog) is better sent once with Tight.
MIN_STREAK = 2
#: The damage must cover this fraction of the H.264 rectangle (its bounding box, or the open
#: stream's rectangle): H.264 repaints the whole rectangle, so sparse damage is cheaper as Tight.
KEEP_FRACTION = 0.25

#: libx264 CRF for quality levels 0-9 (lower is better). Level 6 (noVNC's default) is CRF 23,
#: x264's own default: 37.5 dB on the panning photo at 720p, 39.8 dB at 1080p.
CRF_BY_QUALITY: tuple[int, ...] = (40, 36, 33, 30, 28, 26, 23, 21, 19, 17)
DEFAULT_CRF = 23
PRESET = "ultrafast"
#: Frames between IDR frames: bounds how long a client that lost its decoder waits.
GOP = 300


@functools.cache
def unavailable_reason() -> str | None:
    """``None`` when PyAV with libx264 is importable, else why not (for ``pdum-rfb doctor``)."""
    try:
        import av
    except ImportError:
        return "PyAV is not installed (pip install 'habemus-papadum-rfb[h264]')"
    try:
        av.codec.Codec("libx264", "w")
    except Exception as exc:  # av raises its own UnknownCodecError
        return f"PyAV {av.__version__} has no libx264 encoder ({exc})"
    return None


def available() -> bool:
    return unavailable_reason() is None


def crf_for(quality_level: int | None) -> int:
    return DEFAULT_CRF if quality_level is None else CRF_BY_QUALITY[max(0, min(9, quality_level))]


class H264Stream:
    """One libx264 encoder for one rectangle; frames in, Annex B access units out."""

    def __init__(self, rect: tuple[int, int, int, int], crf: int) -> None:
        import av

        self.rect = rect
        self.crf = crf
        _, _, w, h = rect
        self.width, self.height = w + (w & 1), h + (h & 1)
        cc: Any = av.CodecContext.create("libx264", "w")
        cc.width, cc.height = self.width, self.height
        cc.pix_fmt = "yuv420p"
        cc.time_base = Fraction(1, 30)
        cc.gop_size = GOP
        cc.max_b_frames = 0
        cc.thread_count = 1  # frame threads delay output; sliced threads make several slices
        # BT.709, limited range, said in the VUI too: Chromium's WebCodecs decoder converts with
        # BT.709 (a BT.601 stream came out at 34 instead of 38 dB in noVNC).
        cc.colorspace = cc.color_primaries = cc.color_trc = 1  # AVCOL_SPC/PRI/TRC_BT709
        cc.color_range = 1  # AVCOL_RANGE_MPEG (limited)
        cc.options = {"preset": PRESET, "tune": "zerolatency", "crf": str(crf), "forced-idr": "1"}
        cc.open()
        self.codec = cc
        self.frames = 0

    def encode(self, rgb: np.ndarray, keyframe: bool) -> bytes:
        import av

        h, w = rgb.shape[:2]
        if (w, h) != (self.width, self.height):
            rgb = np.pad(rgb, ((0, self.height - h), (0, self.width - w), (0, 0)), mode="edge")
        # Wraps the array without a copy (from_ndarray copies: 1.5 ms at 1080p).
        frame = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709")
        frame.pts = self.frames
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        self.frames += 1
        packets = self.codec.encode(frame)
        return b"".join(bytes(p) for p in packets)

    def close(self) -> None:
        self.codec = None  # PyAV frees the encoder with its last reference


class H264State:
    """A client's H.264 stream and the bookkeeping that decides when to use it."""

    def __init__(self) -> None:
        self.stream: H264Stream | None = None
        self.keyframe = False
        #: The damage bounding box of recent large updates, and for how many updates in a row.
        self.candidate: tuple[int, int, int, int] | None = None
        self.streak = 0
        self.rects_sent = 0
        self.keyframes_sent = 0
        self.failed = False
        #: A rectangle whose encoding failed after it was promised: the session damages it again.
        self.lost: tuple[int, int, int, int] | None = None
        self.frame_size: tuple[int, int] | None = None

    def request_keyframe(self) -> None:
        self.keyframe = True

    def choose(
        self,
        rects: list[tuple[int, int, int, int]],
        clip: tuple[int, int, int, int],
        frame_size: tuple[int, int],
    ) -> tuple[int, int, int, int] | None:
        """The rectangle to send as H.264 for this update's damaged ``rects``, or ``None``."""
        if frame_size != self.frame_size:  # resized: start again (with a keyframe)
            self.frame_size = frame_size
            self.close()
        if self.failed or not rects:  # an empty update (a wake-up without damage) changes nothing
            return None
        area = sum(w * h for _, _, w, h in rects)
        x0 = min(x for x, _, _, _ in rects)
        y0 = min(y for _, y, _, _ in rects)
        x1 = max(x + w for x, _, w, _ in rects)
        y1 = max(y + h for _, y, _, h in rects)
        stream = self.stream
        if stream is not None:
            sx, sy, sw, sh = stream.rect
            cx, cy, cw, ch = clip
            inside = sx <= x0 and sy <= y0 and x1 <= sx + sw and y1 <= sy + sh
            in_clip = cx <= sx and cy <= sy and sx + sw <= cx + cw and sy + sh <= cy + ch
            if inside and in_clip and area >= KEEP_FRACTION * sw * sh and area >= MIN_AREA // 4:
                return stream.rect
        box = (x0, y0, x1 - x0, y1 - y0)
        if area < MIN_AREA or area < KEEP_FRACTION * box[2] * box[3]:  # small, or sparse in its box
            self.streak = 0
            self.candidate = None
            return None
        self.streak = self.streak + 1 if box == self.candidate else 1
        self.candidate = box
        return box if self.streak >= MIN_STREAK else None

    def encode(
        self, rgb: np.ndarray, rect: tuple[int, int, int, int], quality_level: int | None
    ) -> bytes | None:
        """The payload (length, flags, stream) for the pixels ``rgb`` of ``rect``, or ``None``
        when encoding failed (H.264 is then off for this client)."""
        crf = crf_for(quality_level)
        flags = 0
        try:
            stream = self.stream
            if stream is None or stream.rect != rect or stream.crf != crf:
                # A new stream: IDR, and the client drops every other context it holds.
                self.close()
                stream = self.stream = H264Stream(rect, crf)
                flags = RESET_ALL_CONTEXTS
                self.keyframe = True
            elif self.keyframe:
                flags = RESET_CONTEXT
            data = stream.encode(rgb, self.keyframe)
        except Exception:
            log.exception("H.264 encoding failed; this client falls back to its other encodings")
            self.failed = True
            self.close()
            return None
        if not data:  # cannot happen with zerolatency (no frame delay), but never send nothing
            self.failed = True
            self.close()
            return None
        if self.keyframe:
            self.keyframes_sent += 1
        self.keyframe = False
        self.rects_sent += 1
        return struct.pack(">II", len(data), flags) + data

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None


class H264Job:
    """The encoder of one update's H.264 rectangle, in the shape the session's encode jobs call.

    The quality level is fixed when the job is made: the session passes the client's requested
    level, so that adapting the JPEG level to the link does not restart the stream (a new CRF
    needs a new encoder, hence an IDR frame).
    """

    encoding: ClassVar[int] = Encoding.H264
    max_width: ClassVar[int | None] = None
    max_area: ClassVar[int | None] = None

    def __init__(self, state: H264State, rect: tuple[int, int, int, int], quality_level: int | None) -> None:
        self.state = state
        self.rect = rect
        self.quality_level = quality_level

    def encode(self, rgb: np.ndarray, pixel_format: Any, ctx: Any) -> bytes:
        payload = self.state.encode(rgb, self.rect, self.quality_level)
        if payload is None:  # the header is out already: send an empty frame, damage it again
            self.state.lost = self.rect
            return struct.pack(">II", 0, 0)
        return payload


def close(ctx: Any) -> None:
    """Release a context's H.264 encoder (session end, or the client stopped offering H.264)."""
    state = getattr(ctx, "h264", None)
    if state is not None:
        state.close()


def configure(state: H264State | None, wanted: bool) -> H264State | None:
    """The state a client should have: kept or created when ``wanted`` (the client announced
    H.264 and the Display allows lossy output) and PyAV has libx264, else closed."""
    if wanted and available():
        return state if state is not None else H264State()
    if state is not None:
        state.close()
    return None
