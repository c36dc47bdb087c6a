"""HTTP authentication of a WinRM listener, per TCP connection, without sockets.

Basic is checked on every request. Negotiate (SPNEGO wrapping NTLM, or raw NTLM inside a
``Negotiate`` header as pypsrp sends with ``auth="ntlm"``) and ``NTLM`` are multi-leg and
connection-oriented: once a connection completed the handshake, later requests on it carry no
Authorization header and the completed context seals/unseals WinRM-encrypted bodies.

pyspnego's NTLM acceptor reads credentials only from the file named by ``NTLM_USER_FILE``
(``spnego/_ntlm.py``, ``_get_credential_file``), so ``NTLM_USERS`` keeps one process-wide file with a
``DOMAIN:USER:PASSWORD`` line per NTLM-enabled server; each server then accepts only its own principal.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import shutil
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import spnego
from spnego.channel_bindings import GssChannelBindings

from hyperv_emulator.faults import Fault, FaultPlan


class NtlmUserFile:
    """The process-wide NTLM_USER_FILE; the previous value of the variable is restored when empty."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: Counter[str] = Counter()
        self._dir: str | None = None
        self._previous: str | None = None

    def add(self, line: str) -> None:
        with self._lock:
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="hyperv-emulator-ntlm-")
                self._previous = os.environ.get("NTLM_USER_FILE")
            self._lines[line] += 1
            self._write()

    def remove(self, line: str) -> None:
        with self._lock:
            self._lines[line] -= 1
            if self._lines[line] <= 0:
                del self._lines[line]
            if self._dir is None:
                return
            if self._lines:
                self._write()
                return
            if self._previous is None:
                os.environ.pop("NTLM_USER_FILE", None)
            else:
                os.environ["NTLM_USER_FILE"] = self._previous
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _write(self) -> None:
        assert self._dir is not None
        path = os.path.join(self._dir, "users")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("".join(f"{line}\n" for line in self._lines))
        os.environ["NTLM_USER_FILE"] = path


NTLM_USERS = NtlmUserFile()


def split_user(username: str) -> tuple[str, str]:
    """``DOMAIN\\user`` -> (``DOMAIN``, ``user``); no domain -> ("", user)."""
    domain, _, user = username.rpartition("\\")
    return domain, user


@dataclass
class AuthResult:
    """``user`` is set when the request may proceed; otherwise answer ``status`` with ``headers``.

    ``rejected_login`` marks a 401 for credentials the client did present (a wrong password, an NTLM
    token that does not verify, the REJECT_CREDENTIALS fault): what a domain controller counts
    towards an account's lockout. A bare challenge (no Authorization header, or a Negotiate leg that
    needs another round) is not a rejected login.
    """

    user: str | None
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    rejected_login: bool = False


@dataclass
class Authenticator:
    """The listener's auth configuration; ``connection()`` makes the per-connection state machine."""

    username: str
    password: str
    basic: bool
    negotiate: bool
    faults: FaultPlan
    channel_bindings: GssChannelBindings | None = None

    def challenges(self) -> list[tuple[str, str]]:
        headers = []
        if self.negotiate:
            headers.append(("WWW-Authenticate", "Negotiate"))
        if self.basic:
            headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        return headers

    def connection(self) -> ConnectionAuth:
        return ConnectionAuth(self)

    def rejected(self) -> bool:
        """REJECT_CREDENTIALS: the next authentication fails however right the credentials are."""
        return self.faults.take(Fault.REJECT_CREDENTIALS, detail="authentication") is not None


class ConnectionAuth:
    """Authentication state of one TCP connection."""

    def __init__(self, config: Authenticator) -> None:
        self.config = config
        self.context: Any = None  # a pyspnego acceptor; complete once authenticated
        self.user: str | None = None

    @property
    def sealing(self) -> Any:
        """The completed NTLM/SPNEGO context that seals messages, or None."""
        return self.context if self.user is not None and self.context is not None else None

    def forget(self) -> None:
        self.context = None
        self.user = None

    def deny(self, token: str | None = None, scheme: str = "Negotiate") -> AuthResult:
        self.forget()
        headers = [("WWW-Authenticate", f"{scheme} {token}")] if token else self.config.challenges()
        return AuthResult(None, 401, headers)

    def reject(self) -> AuthResult:
        """Refuse credentials the client presented: a 401 that counts as a rejected login."""
        result = self.deny()
        result.rejected_login = True
        return result

    def authenticate(self, authorization: str | None) -> AuthResult:
        scheme, _, value = (authorization or "").strip().partition(" ")
        kind = scheme.lower()
        if kind == "basic" and self.config.basic:
            return self._basic(value.strip())
        if kind in ("negotiate", "ntlm") and self.config.negotiate:
            return self._negotiate(scheme, value.strip())
        if not authorization and self.user is not None and self.context is not None:
            return AuthResult(self.user)  # connection-oriented auth already done on this connection
        return self.deny()

    def _basic(self, value: str) -> AuthResult:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return self.reject()
        ok = hmac.compare_digest(user.lower(), self.config.username.lower()) and hmac.compare_digest(
            password, self.config.password
        )
        if not ok or self.config.rejected():
            return self.reject()
        return AuthResult(self.config.username)

    def _negotiate(self, scheme: str, value: str) -> AuthResult:
        try:
            token = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return self.deny()
        if self.context is None or self.user is not None:
            self.user = None  # a new handshake on this connection replaces the old one
            self.context = spnego.server(protocol="negotiate", channel_bindings=self.config.channel_bindings)
        try:
            out = self.context.step(token)
        except Exception:  # wrong password, bad MIC, bad channel binding, garbage token
            return self.reject()
        encoded = base64.b64encode(out).decode() if out else None
        if not self.context.complete:
            return AuthResult(None, 401, [("WWW-Authenticate", f"{scheme} {encoded}")])
        _, user = split_user(str(self.context.client_principal or ""))
        if user.lower() != split_user(self.config.username)[1].lower() or self.config.rejected():
            return self.reject()
        self.user = self.config.username
        # SPNEGO ends with the acceptor's mechListMIC; pypsrp needs it on the successful answer.
        return AuthResult(self.user, 200, [("WWW-Authenticate", f"{scheme} {encoded}")] if encoded else [])
