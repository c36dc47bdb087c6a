"""The emulator's WinRM listener: HTTP(S), Basic/Negotiate/NTLM auth, WinRM message encryption.

``WSManServer`` puts ``wsman.service.WSManService`` behind a ``ThreadingHTTPServer`` on loopback so
the real pypsrp client can talk to it. ``/wsman`` reaches the first host, ``/<host>/wsman`` any host.

NTLM credentials: see ``wsman/auth.py`` (one process-wide ``NTLM_USER_FILE`` that pyspnego's
acceptor reads; each server accepts only its own principal).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import logging
import os
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from spnego.channel_bindings import GssChannelBindings

from hyperv_emulator.counters import Counters
from hyperv_emulator.faults import FaultPlan
from hyperv_emulator.host_runtime import CommandHost
from hyperv_emulator.quotas import WinRMQuotas
from hyperv_emulator.wsman import encryption, soap
from hyperv_emulator.wsman.auth import NTLM_USERS, Authenticator, ConnectionAuth, split_user
from hyperv_emulator.wsman.service import WSManService

log = logging.getLogger(__name__)
SOAP_TYPE = "application/soap+xml;charset=UTF-8"


def _self_signed(directory: str) -> tuple[str, str, bytes]:
    """A CA-flagged self-signed cert for 127.0.0.1/localhost; returns cert path, key path, DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hyperv-emulator")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)


class WSManServer:
    """A loopback WinRM endpoint for one or more emulated hosts. Start it, point pypsrp at ``url``."""

    def __init__(
        self,
        hosts: Mapping[str, CommandHost],
        *,
        username: str,
        password: str,
        auth: Literal["ntlm", "basic"] = "ntlm",
        tls: bool = False,
        bind: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
        counters: Counters | None = None,
        idle_timeout: float = 7200.0,
        receive_wait_cap: float = 1.0,
        quotas: Mapping[str, WinRMQuotas] | None = None,
    ) -> None:
        if auth not in ("ntlm", "basic"):
            raise ValueError(f"auth must be 'ntlm' or 'basic', not {auth!r}")
        if auth == "ntlm" and (":" in username or ":" in password):
            raise ValueError("NTLM credentials cannot contain ':' (NTLM_USER_FILE format)")
        self.hosts = dict(hosts)
        self.username, self.password, self.auth, self.tls = username, password, auth, tls
        self.faults = faults if faults is not None else FaultPlan()
        self.counters = counters if counters is not None else Counters()
        self.service = WSManService(
            self.hosts,
            faults=self.faults,
            counters=self.counters,
            idle_timeout=idle_timeout,
            receive_wait_cap=receive_wait_cap,
            quotas=quotas,
        )
        self._bind, self._port = bind, port
        self._httpd: _HTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._tmp: str | None = None
        self._cert_path: str | None = None
        self._ntlm_line = ":".join([*split_user(username), password])
        self._lock = threading.Lock()
        self._started = False
        self.authenticator = Authenticator(
            username, password, basic=auth == "basic" or tls, negotiate=auth == "ntlm", faults=self.faults
        )

    @property
    def requires_encryption(self) -> bool:
        """Plain HTTP with NTLM: bodies must be WinRM-encrypted (AllowUnencrypted=false)."""
        return not self.tls and self.auth == "ntlm"

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> WSManServer:
        with self._lock:
            if self._started:
                return self
            httpd = _HTTPServer((self._bind, self._port), _Handler)
            httpd.owner = self
            if self.tls:
                self._tmp = tempfile.mkdtemp(prefix="hyperv-emulator-tls-")
                cert, key, der = _self_signed(self._tmp)
                self._cert_path = cert
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(cert, key)
                httpd.socket = context.wrap_socket(
                    httpd.socket, server_side=True, do_handshake_on_connect=False
                )
                # RFC 5929 tls-server-end-point, as pypsrp computes it for NTLM channel binding.
                self.authenticator.channel_bindings = GssChannelBindings(
                    application_data=b"tls-server-end-point:" + hashlib.sha256(der).digest()
                )
            if self.auth == "ntlm":
                NTLM_USERS.add(self._ntlm_line)
            self._httpd = httpd
            self._stopping.clear()
            serve = threading.Thread(target=httpd.serve_forever, name="wsman-listener", daemon=True)
            reaper = threading.Thread(target=self._reap, name="wsman-idle-reaper", daemon=True)
            self._threads = [serve, reaper]
            for t in self._threads:
                t.start()
            self._started = True
            return self

    def stop(self) -> None:
        """Stop listening, cut open connections, stop every pipeline. Safe to call twice."""
        with self._lock:
            if not self._started or self._httpd is None:
                return
            self._started = False
            self._stopping.set()
            httpd, self._httpd = self._httpd, None
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        self.service.close_all()
        for t in self._threads:
            t.join(timeout=5)
        if self.auth == "ntlm":
            NTLM_USERS.remove(self._ntlm_line)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = self._cert_path = None

    def __enter__(self) -> WSManServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _reap(self) -> None:
        interval = min(max(self.service.idle_timeout / 4, 0.05), 1.0)
        while not self._stopping.wait(interval):
            try:
                self.service.reap()
            except Exception:
                log.exception("idle reaper failed")

    # -- addresses -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return int(self._httpd.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self._bind}:{self.port}/wsman"

    def url_for(self, host_name: str) -> str:
        if host_name not in self.hosts:
            raise KeyError(host_name)
        return f"{self.scheme}://{self._bind}:{self.port}/{host_name}/wsman"

    @property
    def ca_cert_path(self) -> str | None:
        """PEM of the self-signed certificate (pass as pypsrp ``cert_validation``); None without TLS."""
        return self._cert_path

    def pypsrp_kwargs(self, host_name: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``pypsrp.wsman.WSMan`` that reach ``host_name`` (default: first host)."""
        kwargs: dict[str, Any] = {
            "server": self._bind,
            "port": self.port,
            "path": f"{host_name}/wsman" if host_name else "wsman",
            "username": self.username,
            "password": self.password,
            "ssl": self.tls,
            "auth": "negotiate" if self.auth == "ntlm" else "basic",
            "no_proxy": True,
        }
        if self.tls:
            kwargs["cert_validation"] = self._cert_path
        elif self.auth == "basic":
            kwargs["encryption"] = "never"
        return kwargs

    def route(self, path: str) -> str | None:
        """URL path -> host name, or None (404)."""
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        if parts == ["wsman"]:
            return next(iter(self.hosts))
        if len(parts) == 2 and parts[1].lower() == "wsman":
            return next((name for name in self.hosts if name.lower() == parts[0].lower()), None)
        return None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: WSManServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def close_connections(self) -> None:
        with self.connections_lock:
            for conn in list(self.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """One TCP connection (HTTP/1.1 keep-alive): its auth state lives as long as the connection."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    auth: ConnectionAuth

    # Headers and body leave in one segment: with Nagle's algorithm and the client's delayed ACK,
    # a separate small body write waits ~40 ms per response.
    disable_nagle_algorithm = True
    wbufsize = -1

    def setup(self) -> None:
        self.handshake_failed = False
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.settimeout(10)
                self.request.do_handshake()
                self.request.settimeout(None)
            except (OSError, ssl.SSLError) as exc:
                log.debug("TLS handshake failed: %s", exc)
                self.handshake_failed = True
        super().setup()
        owner = self.server.owner
        self.auth = owner.authenticator.connection()
        with self.server.connections_lock:
            self.server.connections.add(self.request)

    def handle(self) -> None:
        if not self.handshake_failed:
            super().handle()

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.request)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _answer(
        self, status: int, body: bytes = b"", content_type: str = SOAP_TYPE, headers: Any = ()
    ) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _drop(self) -> None:
        """Close the TCP connection without an answer (DROP_* faults)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        self.server.owner.counters.count_http()
        self._answer(405, headers=[("Allow", "POST")])

    def do_POST(self) -> None:
        owner = self.server.owner
        owner.counters.count_http()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        host = owner.route(self.path)
        if host is None:
            self._answer(404)
            return
        if not getattr(owner.hosts[host], "reachable", True):
            self._drop()  # a node that is down: nothing answers at its address
            return
        try:
            self._post(owner, host, body)
        except Exception as exc:  # never drop the connection on our own bug: answer a fault
            log.exception("request handling failed")
            self._answer(500, soap.internal_error(f"{type(exc).__name__}: {exc}").to_xml("", host))

    def _post(self, owner: WSManServer, host: str, body: bytes) -> None:
        result = self.auth.authenticate(self.headers.get("Authorization"))
        if result.user is None:
            if result.rejected_login:
                owner.counters.count_rejected_login(host)
            self._answer(result.status, headers=result.headers)
            return
        content_type = self.headers.get("Content-Type", "")
        sealing = None
        if encryption.is_encrypted(content_type):
            sealing = self.auth.sealing
            if sealing is None:
                self._answer(401, headers=owner.authenticator.challenges())
                return
            try:
                body = encryption.unwrap(sealing, content_type, body)
            except encryption.EncryptionError as exc:
                # Sealed by a context this connection does not share (e.g. re-authenticated after a drop).
                log.debug("cannot decrypt request: %s", exc)
                self.auth.forget()
                self._answer(400, headers=[("Connection", "close")])
                self.close_connection = True
                return
        elif body and owner.requires_encryption:
            # WinRM with AllowUnencrypted=false answers a plaintext body over HTTP with 401 (jborean93's
            # capture in hashicorp/packer#6205); pypsrp then raises AuthenticationError.
            self.auth.forget()
            self._answer(401, headers=owner.authenticator.challenges())
            return
        if not body:
            self._answer(200, headers=result.headers)  # pypsrp's empty POST that sets up encryption
            return
        outcome = owner.service.handle(host, body, result.user)
        if outcome.drop:
            self._drop()
            return
        payload, kind = outcome.body, SOAP_TYPE
        if sealing is not None:
            kind, payload = encryption.wrap(sealing, payload)
        self._answer(outcome.status, payload, kind, result.headers)
