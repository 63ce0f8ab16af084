"""Encoders, one module each; :data:`ENCODERS` is the registry the session chooses from.

A new encoding is one new module plus one line here.
"""

from __future__ import annotations

from .base import EncodeContext, Encoder
from .hextile import HextileEncoder
from .raw import RawEncoder
from .tight import TightEncoder, TightPngEncoder
from .zlib import ZlibEncoder
from .zrle import ZRLEEncoder

ENCODERS: dict[int, Encoder] = {
    enc.encoding: enc
    for enc in (
        RawEncoder(),
        TightEncoder(),
        TightPngEncoder(),
        ZlibEncoder(),
        HextileEncoder(),
        ZRLEEncoder(),
    )
}

__all__ = ["ENCODERS", "EncodeContext", "Encoder", "RawEncoder", "ZlibEncoder"]
