"""Byte transports: each turns one kind of connection into a :class:`ByteStream` for a Session."""

from .base import ByteStream

__all__ = ["ByteStream"]
