"""pypsrp at arm's length: replay a domain ``Pipeline`` with bound parameters, read its streams, and
translate transport exceptions into the domain's classes. The only module that imports pypsrp."""

from __future__ import annotations

import errno
import http.client
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import Serializer
from spnego.exceptions import SpnegoError

from airflow_hyperv.hyperv.clixml import lean_object
from airflow_hyperv.hyperv.errors import (
    AuthenticationFailedError,
    ErrorInfo,
    HyperVError,
    TransientTransportError,
    TransportError,
    WinRMQuotaError,
)
from airflow_hyperv.hyperv.pipelines import SWITCH, Pipeline

log = logging.getLogger(__name__)

# WS-Man fault codes a client may retry: the operation timed out, or the service refused for load.
# 2150858793 ERROR_WSMAN_OPERATION_TIMEDOUT; 2150859046 ERROR_WSMAN_QUOTA_MAX_REQUESTS (server busy);
# the quota codes below are transient too (WinRMQuotaError).
TRANSIENT_WSMAN_CODES = frozenset({2150858793, 2150859046, 2150858843})
# wsmerror.h quota codes -> the quota and where an administrator raises it. A host answers them in a
# wsman:QuotaLimit fault ([MS-WSMV] 3.1.4.5.2.1); PowerShell's own CIM jobs sleep and retry on exactly
# these codes (CimChildJobBase.IsWsManQuotaReached).
QUOTA_FAULTS: dict[int, str] = {
    2150859173: "MaxShellsPerUser (winrm/config/winrs)",
    2150859174: "MaxConcurrentOperationsPerUser (winrm/config/service)",
    2150859175: "the user's load quota (winrm/config/service)",
    2150859176: "the system's load quota (winrm/config/service)",
    2150859179: "MaxConcurrentUsers (winrm/config/winrs)",
    2150859236: "MaxShellsPerUser of the PowerShell endpoint (New-PSTransportOption -MaxSessionsPerUser)",
    2150859237: "MaxConcurrentUsers of the PowerShell endpoint (New-PSTransportOption)",
    2150859238: "MaxShells of the PowerShell endpoint (New-PSTransportOption -MaxSessions)",
    2150859239: "MaxConcurrentOperations of the PowerShell endpoint",
    2150859240: "MaxConcurrentOperationsPerUser of the PowerShell endpoint",
    2150859241: "MaxConcurrentCommandsPerShell of the PowerShell endpoint",
    2150859242: "the PowerShell endpoint's minimum resources",
}
QUOTA_SUBCODE = "QuotaLimit"  # w:QuotaLimit; pypsrp reports it as the code when no number came with it
TRANSIENT_HTTP_STATUS = frozenset({502, 503, 504})


@dataclass
class PipelineResult:
    output: list[Any]
    errors: list[ErrorInfo]
    warnings: list[str] = field(default_factory=list)
    verbose: list[str] = field(default_factory=list)
    failed: bool = False  # the pipeline ended Failed (a terminating error)
    seconds: float = 0.0


def error_info(record: Any) -> ErrorInfo:
    """Read the identifying parts of a pypsrp ErrorRecord."""
    exception = getattr(record, "exception", None)
    types = list(getattr(exception, "types", None) or [])
    exception_type = types[0].removeprefix("Deserialized.") if types else ""
    category = getattr(record, "category", None)
    return ErrorInfo(
        fully_qualified_error_id=str(getattr(record, "fq_error", "") or ""),
        category=_category_name(category),
        exception_type=exception_type,
        reason=str(getattr(record, "reason", "") or ""),
        target_name=str(getattr(record, "target_name", "") or ""),
        message=str(getattr(record, "message", "") or record),
        exception_message=_exception_message(exception),
    )


def _exception_message(exception: Any) -> str:
    """Exception.Message: the host's own reason, which the category line leaves out."""
    for attr in ("adapted_properties", "extended_properties"):
        value = (getattr(exception, attr, None) or {}).get("Message")
        if value:
            return str(value)
    return ""


# System.Management.Automation.ErrorCategory: the record carries the integer.
_CATEGORIES = [
    "NotSpecified", "OpenError", "CloseError", "DeviceError", "DeadlockDetected", "InvalidArgument",
    "InvalidData", "InvalidOperation", "InvalidResult", "InvalidType", "MetadataError", "NotImplemented",
    "NotInstalled", "ObjectNotFound", "OperationStopped", "OperationTimeout", "SyntaxError", "ParserError",
    "PermissionDenied", "ResourceBusy", "ResourceExists", "ResourceUnavailable", "ReadError", "WriteError",
    "FromStdErr", "SecurityError", "ProtocolError", "ConnectionError", "AuthenticationError",
    "LimitsExceeded", "QuotaExceeded", "NotEnabled",
]  # fmt: skip


def _category_name(category: Any) -> str:
    if category is None:
        return ""
    try:
        return _CATEGORIES[int(category)]
    except (ValueError, IndexError):
        return str(category)


def translate(exc: BaseException, endpoint: str) -> HyperVError:
    """A transport exception as a domain error. Messages name the endpoint, never the credentials.

    Every way a login can be refused becomes ``AuthenticationFailedError``, which nothing retries:
    pypsrp's ``AuthenticationError`` (HTTP 401 after the Basic or Negotiate/NTLM exchange, or no
    offered scheme matches), an HTTP 401 that reaches us as a transport error, and a pyspnego error
    raised while building or checking the NTLM/Kerberos tokens (wrong password on the client side,
    bad channel binding, no credential). pypsrp's message names the user, so it is not copied.
    """
    if isinstance(exc, HyperVError):
        return exc
    if isinstance(exc, AuthenticationError) or (isinstance(exc, WinRMTransportError) and exc.code == 401):
        return AuthenticationFailedError(
            f"{endpoint} rejected the credentials (HTTP 401, {type(exc).__name__})"
        )
    if isinstance(exc, SpnegoError):
        return AuthenticationFailedError(
            f"authenticating with {endpoint} failed ({type(exc).__name__}); the credentials were not accepted"
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return TransportError(_tls_failure(exc, endpoint))
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return TransientTransportError(f"connection to {endpoint} failed: {root_cause(exc, endpoint)}")
    if isinstance(exc, WSManFaultError):
        code = exc.code or 0
        text = f"WS-Man fault {code} from {endpoint}: {_first_line(exc.reason or exc.message)}"
        quota = quota_of(code)
        if quota is not None:
            return WinRMQuotaError(
                f"WinRM quota {quota} exceeded on {endpoint} (WS-Man fault {code}): "
                f"{_first_line(exc.reason or exc.message)} Another shell or operation of this user has to "
                "end first (close idle sessions; a disconnected one holds its slot until it is deleted or "
                "the host's idle timeout ends it), or raise the quota.",
                quota=quota,
                code=code,
            )
        if code in TRANSIENT_WSMAN_CODES:
            return TransientTransportError(text)
        return TransportError(text)
    if isinstance(exc, WinRMTransportError):
        text = f"HTTP {exc.code} from {endpoint}"
        return TransientTransportError(text) if exc.code in TRANSIENT_HTTP_STATUS else TransportError(text)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return TransientTransportError(f"connection to {endpoint} failed: {root_cause(exc, endpoint)}")
    return TransportError(f"unexpected {type(exc).__name__} talking to {endpoint}: {_first_line(exc)}")


def quota_of(code: int | str) -> str | None:
    """The quota a WS-Man fault code names, or None if it is no quota fault."""
    if isinstance(code, int):
        return QUOTA_FAULTS.get(code)
    if str(code).rpartition(":")[2] == QUOTA_SUBCODE:
        return "an unnamed WinRM quota (w:QuotaLimit)"
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps, outermost first: requests and urllib3 keep the cause in ``args`` and
    ``reason`` as well as in ``__cause__`` / ``__context__``."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [getattr(current, "reason", None), current.__cause__, current.__context__]
        inner += list(getattr(current, "args", ()) or ())
        todo.extend(e for e in inner if isinstance(e, BaseException))


def _where(endpoint: str) -> tuple[str, str]:
    """The host, and ``host:port``, of an endpoint URL."""
    parts = urlsplit(endpoint)
    host = parts.hostname or endpoint
    shown = f"[{host}]" if ":" in host else host
    return host, f"{shown}:{parts.port}" if parts.port else shown


def root_cause(exc: BaseException, endpoint: str) -> str:
    """Why a connection failed, in words (DNS, refused, reset, timeout, unreachable), not a class name."""
    import urllib3.exceptions as u3

    host, address = _where(endpoint)
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, socket.gaierror | u3.NameResolutionError):
            detail = next((c.strerror for c in causes if isinstance(c, socket.gaierror) and c.strerror), "")
            return f"cannot resolve host {host!r}" + (f" ({detail})" if detail else "")
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {address} (nothing listens there, or a firewall rejects it)"
        if isinstance(cause, http.client.RemoteDisconnected):  # a ConnectionResetError too
            return f"{address} closed the connection without answering"
        if isinstance(cause, ConnectionResetError):
            return f"connection reset by {address}"
        if isinstance(cause, BrokenPipeError | ConnectionAbortedError):
            return f"connection to {address} broke while sending ({type(cause).__name__})"
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"{address} is unreachable ({cause.strerror})"
    for cause in causes:
        # urllib3's NewConnectionError is a ConnectTimeoutError too, but a refusal or DNS failure
        if isinstance(cause, requests.exceptions.ConnectTimeout) or (
            isinstance(cause, u3.ConnectTimeoutError) and not isinstance(cause, u3.NewConnectionError)
        ):
            return f"no TCP connection to {address} within the connection timeout"
        if isinstance(cause, requests.exceptions.ReadTimeout | u3.ReadTimeoutError):
            return f"no answer from {address} within the read timeout"
    for cause in causes:
        if isinstance(cause, TimeoutError):
            return f"timed out talking to {address}"
    innermost = causes[-1]
    text = _first_line(innermost)
    return f"{type(innermost).__name__}: {text}" if text else type(innermost).__name__


def _tls_failure(exc: BaseException, endpoint: str) -> str:
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or cause.reason or _first_line(cause)
            return (
                f"TLS certificate verification failed for {endpoint}: {reason}; trust the host's CA with "
                "the ca_bundle extra (a PEM file), or turn cert_validation off on a test host only"
            )
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLError) and cause.reason:
            hint = (
                ": is that port the WinRM HTTPS listener, not the HTTP one?"
                if cause.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE")
                else ""
            )
            return f"TLS with {endpoint} failed ({cause.reason}){hint}"
    return f"TLS with {endpoint} failed: {_first_line(exc)}"


def _first_line(value: Any) -> str:
    return str(value).strip().splitlines()[0][:300] if str(value).strip() else ""


def build(pool: RunspacePool, pipeline: Pipeline) -> PowerShell:
    """A PowerShell object for ``pipeline``: cmdlets and bound parameters only, never script text."""
    ps = PowerShell(pool)
    for index, statement in enumerate(pipeline.statements):
        if index:
            ps.add_statement()
        for command in statement:
            ps.add_cmdlet(command.name)
            for name, value in command.parameters:
                if value is SWITCH:
                    ps.add_parameter(name)
                else:
                    ps.add_parameter(name, value)
    return ps


def collect(ps: PowerShell, output: list[Any], started: float) -> PipelineResult:
    from pypsrp.complex_objects import PSInvocationState

    return PipelineResult(
        output=list(output),
        errors=[error_info(r) for r in ps.streams.error],
        warnings=[str(w) for w in ps.streams.warning],
        verbose=[str(v) for v in ps.streams.verbose],
        failed=ps.state == PSInvocationState.FAILED,
        seconds=time.monotonic() - started,
    )


class LeanOutputSerializer(Serializer):
    """pypsrp's serializer, except that while ``keep`` is set (one pipeline's ``decode_only``), each
    output object is read with ``clixml.lean_object`` for those properties only, instead of being
    deserialized whole. Everything else (pool messages, error records, what is sent) is pypsrp's own.

    It runs where pypsrp parses a Receive's messages: in the thread that invokes the pipeline (for a
    trigger, the worker thread of ``asyncio.to_thread``), never on the event loop.
    """

    keep: frozenset[str] = frozenset()

    def deserialize(self, element: Any, metadata: Any = None, clear: bool = True) -> Any:
        # PIPELINE_OUTPUT is the one message pypsrp deserializes from its text without metadata
        # (pypsrp.messages.Message.unpack); nested values come as elements, with clear=False.
        if self.keep and metadata is None and clear and isinstance(element, str):
            return lean_object(element, self.keep)
        return super().deserialize(element, metadata, clear)


def runspace_pool(wsman: Any, **kwargs: Any) -> RunspacePool:
    """A ``RunspacePool`` (not opened) whose output objects a pipeline may ask to decode lean
    (``Pipeline.decode_only``). Should a pypsrp release keep its serializer elsewhere, the pool is
    pypsrp's own and every object is decoded whole (slower, the same answers)."""
    pool = RunspacePool(wsman, **kwargs)
    fragmenter = getattr(pool, "_fragmenter", None)
    if isinstance(getattr(pool, "_serializer", None), Serializer) and fragmenter is not None:
        serializer = LeanOutputSerializer()
        pool._serializer = serializer
        fragmenter.serializer = serializer
    return pool


@contextmanager
def _decoding_only(pool: RunspacePool, keep: frozenset[str]) -> Iterator[None]:
    serializer = getattr(pool, "_serializer", None)
    if not keep or not isinstance(serializer, LeanOutputSerializer):
        yield
        return
    serializer.keep = keep
    try:
        yield
    finally:
        serializer.keep = frozenset()


def invoke(pool: RunspacePool, pipeline: Pipeline) -> PipelineResult:
    started = time.monotonic()
    ps = build(pool, pipeline)
    with _decoding_only(pool, pipeline.decode_only):
        output = ps.invoke()
    return collect(ps, output, started)
