"""pdum.rfb: a pure-Python RFB (VNC) server for NumPy framebuffers.

>>> import pdum.rfb as rfb
>>> display = await rfb.serve(320, 240)          # doctest: +SKIP
>>> display.publish(frame)                       # doctest: +SKIP
"""

from ._version import __version__
from .auth import AuthContext, Principal
from .display import Display, serve
from .events import InputEvent
from .protocol.messages import Limits
from .server import Server

__all__ = ["AuthContext", "Display", "InputEvent", "Limits", "Principal", "Server", "__version__", "serve"]
