"""Who may connect: credential checks, principals, view-only access and the failure lockout.

The sans-I/O connection (:mod:`pdum.rfb.protocol.connection`) hands the credentials a client
presented to :meth:`Authenticator.verify`; this module decides. ``serve(authenticate=fn)``
plugs an application callable in::

    def authenticate(ctx: AuthContext) -> object | None:
        if ctx.username == "alice" and ctx.check_password(ALICE_PASSWORD):
            return Principal("alice")
        if ctx.check_password(GUEST_PASSWORD):
            return Principal("guest", view_only=True)
        return None  # refused

Whatever it returns (other than ``None``/``False``) becomes the session's principal and is
carried by every :class:`~pdum.rfb.events.InputEvent` from that client; ``True`` means "accept,
principal = the username". A principal that is view-only (a :class:`Principal` with
``view_only=True``, any object with a true ``view_only`` attribute, or a mapping with a true
``"view_only"`` key) gets the frames but its input is dropped.

Without ``authenticate`` the password given to ``serve`` must match (compared in constant time)
and the principal is the username the client sent, or ``None``.

Brute force: like TigerVNC's blacklist, a peer address that failed ``threshold`` (5) times in a
row is refused outright -- an empty security-type list with the reason "too many security
failures", no challenge -- for ``timeout`` seconds (10), doubling with each further failure; a
success clears it. Secrets never reach a log line.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .protocol import rsaaes, vencrypt
from .protocol.errors import AuthenticationFailed
from .protocol.security import RSA_AES, Credentials, SecurityType, security_name

log = logging.getLogger(__name__)

TOO_MANY_FAILURES = "too many security failures"


@dataclass(frozen=True)
class Principal:
    """A convenient principal: a name, and whether its input is to be dropped."""

    name: str | None = None
    view_only: bool = False


def is_view_only(principal: Any) -> bool:
    """Whether ``principal`` may only watch (see the module docstring for the forms)."""
    if isinstance(principal, Mapping):
        return bool(principal.get("view_only", False))
    return bool(getattr(principal, "view_only", False))


@dataclass(frozen=True)
class AuthContext:
    """What ``authenticate`` gets for one attempt. ``password`` is ``None`` under VncAuth (the
    client only proves it knows it): use :meth:`check_password` there, which works for every
    security type. The password is left out of ``repr``."""

    peer: str
    transport: str
    security: str
    security_type: int
    username: str | None
    password: str | None = field(repr=False)
    credentials: Credentials = field(repr=False, compare=False)

    def check_password(self, candidate: str) -> bool:
        """Constant-time: did the client present (or, for VncAuth, prove) ``candidate``?"""
        return self.credentials.check_password(candidate)


def peer_host(peer: str) -> str:
    """The address part of a ``host:port`` peer string (what the lockout counts by)."""
    host, sep, port = peer.rpartition(":")
    return host.strip("[]") if sep and port.isdigit() else peer


@dataclass
class _Record:
    failures: int = 0
    blocked_until: float = 0.0
    timeout: float = 0.0


class Lockout:
    """Failure counting per peer address, TigerVNC style (``BlacklistThreshold`` /
    ``BlacklistTimeout``): ``threshold`` consecutive failures block the address for ``timeout``
    seconds; each failure after that blocks it again for twice as long; a success forgets it.
    ``threshold=0`` disables it. ``clock`` is injectable for tests."""

    #: Forget addresses that are not blocked once this many are tracked (bounded memory).
    MAX_TRACKED = 10_000

    def __init__(
        self, threshold: int = 5, timeout: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if threshold < 0 or timeout < 0:
            raise ValueError("lockout threshold and timeout must not be negative")
        self.threshold = threshold
        self.timeout = timeout
        self.clock = clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def retry_after(self, host: str) -> float:
        """Seconds until ``host`` may try again (0 when it may try now)."""
        with self._lock:
            record = self._records.get(host)
            if record is None or not self.threshold:
                return 0.0
            return max(0.0, record.blocked_until - self.clock())

    def failure(self, host: str) -> None:
        if not self.threshold:
            return
        with self._lock:
            record = self._records.get(host)
            if record is None:
                self._prune()
                record = self._records[host] = _Record(timeout=self.timeout)
            record.failures += 1
            if record.failures >= self.threshold:
                record.blocked_until = self.clock() + record.timeout
                log.warning("locking out %s for %.0f s (%d failures)", host, record.timeout, record.failures)
                record.timeout *= 2

    def success(self, host: str) -> None:
        with self._lock:
            self._records.pop(host, None)

    def _prune(self) -> None:
        if len(self._records) < self.MAX_TRACKED:
            return
        now = self.clock()
        for host in [h for h, r in self._records.items() if r.blocked_until <= now]:
            del self._records[host]


class Authenticator:
    """The per-Display authentication policy the sessions consult (see the module docstring).

    ``rsa_key`` is the RSA private key for the RSA-AES types (a PEM path, PEM text or a
    pycryptodome key); without one a 2048-bit key is generated on first use (a Display does it
    in a thread before it starts listening). RSA-AES asks for a username only when
    ``authenticate`` is given (the default check has no use for one). ``tls_cert`` / ``tls_key``
    (PEM paths) are the certificate for the VeNCrypt X509 subtypes.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        authenticate: Callable[[AuthContext], Any] | None = None,
        lockout: Lockout | None = None,
        rsa_key: Any = None,
        ask_username: bool | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
    ) -> None:
        if authenticate is not None and not callable(authenticate):
            raise TypeError("authenticate must be a callable taking an AuthContext")
        if authenticate is not None and inspect.iscoroutinefunction(authenticate):
            raise TypeError("authenticate must be a plain (synchronous) function")
        self.password = password
        self.authenticate = authenticate
        self.lockout = lockout if lockout is not None else Lockout()
        self.ask_username = authenticate is not None if ask_username is None else ask_username
        self._rsa_key = rsaaes.load_key(rsa_key) if rsa_key is not None else None
        if tls_key is not None and tls_cert is None:
            raise ValueError("tls_key= needs tls_cert=")
        self.tls_context = vencrypt.certificate_context(tls_cert, tls_key) if tls_cert is not None else None
        self._key_lock = threading.Lock()

    def server_key(self) -> Any:
        """The RSA key for RSA-AES, generated the first time it is needed."""
        with self._key_lock:
            if self._rsa_key is None:
                self._rsa_key = rsaaes.generate_key()
                log.info("generated an RSA key, fingerprint %s", self.fingerprint)
            return self._rsa_key

    @property
    def fingerprint(self) -> str | None:
        """The server key's fingerprint as TigerVNC shows it (``None`` before there is a key)."""
        return rsaaes.fingerprint(self._rsa_key) if self._rsa_key is not None else None

    def refusal(self, peer: str) -> str | None:
        """The reason to turn ``peer`` away before it may authenticate, or ``None``."""
        wait = self.lockout.retry_after(peer_host(peer))
        return TOO_MANY_FAILURES if wait > 0 else None

    def connection_options(
        self, peer: str, transport: str, security_types: Sequence[SecurityType]
    ) -> dict[str, Any]:
        """Keyword arguments for a :class:`~pdum.rfb.protocol.connection.ServerConnection`."""
        needs_key = any(t in RSA_AES for t in security_types)
        return {
            "verify": partial(self.verify, peer, transport),
            "rsa_key": self.server_key() if needs_key else None,
            "ask_username": self.ask_username,
            "refuse": self.refusal(peer),
            "tls_context": self.tls_context,
        }

    def verify(self, peer: str, transport: str, credentials: Credentials) -> Any:
        """The principal for these credentials, or :class:`AuthenticationFailed`."""
        host = peer_host(peer)
        if self.lockout.retry_after(host) > 0:
            # Locked out while this connection was already open: refuse without looking.
            raise AuthenticationFailed(TOO_MANY_FAILURES)
        name = security_name(credentials.security_type)
        accepted, principal = False, None
        if self.authenticate is None:
            accepted = self.password is not None and credentials.check_password(self.password)
            principal = credentials.username
        else:
            ctx = AuthContext(
                peer=peer,
                transport=transport,
                security=name,
                security_type=int(credentials.security_type),
                username=credentials.username,
                password=credentials.password,
                credentials=credentials,
            )
            try:
                result = self.authenticate(ctx)
            except Exception as exc:  # an application bug must not let anyone in
                log.error("authenticate() raised %s for %s; refusing", type(exc).__name__, peer)
                result = None
            if inspect.isawaitable(result):
                log.error("authenticate() must be synchronous; refusing %s", peer)
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                result = None
            accepted = result is not None and result is not False
            principal = credentials.username if result is True else result
        if not accepted:
            self.lockout.failure(host)  # the session logs the failure itself
            raise AuthenticationFailed("authentication failed")
        self.lockout.success(host)
        return principal
