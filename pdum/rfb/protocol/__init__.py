"""Sans-I/O RFB protocol core: bytes in, events out; events in, bytes out. No sockets here."""

from .connection import AuthenticationFailed, ClientInit, ServerConnection, State
from .errors import LimitExceeded, ProtocolError, Refused
from .messages import Encoding, Limits
from .pixelformat import BGR233, RGB565, SERVER_DEFAULT, PixelFormat, UnsupportedPixelFormat
from .security import Credentials, SecurityType

__all__ = [
    "AuthenticationFailed",
    "BGR233",
    "ClientInit",
    "Credentials",
    "Encoding",
    "LimitExceeded",
    "Limits",
    "PixelFormat",
    "ProtocolError",
    "RGB565",
    "Refused",
    "SERVER_DEFAULT",
    "SecurityType",
    "ServerConnection",
    "State",
    "UnsupportedPixelFormat",
]
