"""Exceptions raised by the sans-I/O protocol core."""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer sent bytes that break the RFB protocol; the connection must be closed.

    The message is meant for a log line (and, where the protocol has a place for it, for the
    client as a failure reason); it never contains secrets.
    """


class LimitExceeded(ProtocolError):
    """The peer went over one of the configured :class:`~pdum.rfb.protocol.messages.Limits`."""


class AuthenticationFailed(ProtocolError):
    """The client did not prove it knows the secret (or was refused before it could try)."""


class Refused(AuthenticationFailed):
    """The client was turned away before authenticating, e.g. after too many failures."""
