"""WinRM message encryption framing (MS-WSMV 2.2.9.1), server side.

The mirror image of ``pypsrp.encryption.WinRMEncryption`` for a single NTLM/SPNEGO context: a
``multipart/encrypted`` body with two parts split by ``--Encrypted Boundary``; the first names the
protocol and the plaintext length, the second is ``application/octet-stream`` holding a 4-byte
little-endian signature length, the signature, then the sealed SOAP message.
"""

from __future__ import annotations

import re
import struct
from typing import Any, Protocol

SPNEGO = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = "Encrypted Boundary"
CONTENT_TYPE = f'multipart/encrypted;protocol="{SPNEGO}";boundary="{BOUNDARY}"'

_MARK = b"--" + BOUNDARY.encode()
_OCTET = b"\tContent-Type: application/octet-stream\r\n"
_LENGTH = re.compile(rb"Length=(\d+)")


class EncryptionError(Exception):
    """The body is not a WinRM-encrypted message this context can open."""


class WinRMContext(Protocol):
    """What a completed pyspnego context offers for WinRM sealing."""

    def wrap_winrm(self, data: bytes) -> Any: ...

    def unwrap_winrm(self, header: bytes, data: bytes) -> bytes: ...


def is_encrypted(content_type: str) -> bool:
    return content_type.lower().startswith(("multipart/encrypted", "multipart/x-multi-encrypted"))


def unwrap(context: WinRMContext, content_type: str, body: bytes) -> bytes:
    """Open one encrypted request body; raise ``EncryptionError`` when it is malformed or forged."""
    if (
        not content_type.lower().startswith("multipart/encrypted")
        or SPNEGO.lower() not in content_type.lower()
    ):
        raise EncryptionError(f"unsupported encrypted content type {content_type!r}")
    first = body.find(_MARK + b"\r\n")
    second = body.find(_MARK + b"\r\n", first + 1)
    if first != 0 or second < 0:
        raise EncryptionError("missing --Encrypted Boundary parts")
    length = _LENGTH.search(body[first:second])
    if length is None:
        raise EncryptionError("missing OriginalContent Length")
    part = body[second + len(_MARK) + 2 :]
    if not part.startswith(_OCTET):
        raise EncryptionError("second part is not application/octet-stream")
    part = part[len(_OCTET) :]
    trailer = _MARK + b"--\r\n"
    if part.endswith(trailer):
        part = part[: -len(trailer)]
    if len(part) < 4:
        raise EncryptionError("truncated signature length")
    sig_len = struct.unpack("<i", part[:4])[0]
    if sig_len < 0 or len(part) < 4 + sig_len:
        raise EncryptionError("truncated signature")
    try:
        plain = context.unwrap_winrm(part[4 : 4 + sig_len], part[4 + sig_len :])
    except Exception as exc:  # pyspnego raises its own error types for a bad signature
        raise EncryptionError(f"cannot unseal the message: {exc}") from exc
    if len(plain) != int(length.group(1)):
        raise EncryptionError(f"unsealed {len(plain)} bytes, header announced {length.group(1).decode()}")
    return plain


def wrap(context: WinRMContext, message: bytes) -> tuple[str, bytes]:
    """Seal a response body; returns the Content-Type header value and the body."""
    result = context.wrap_winrm(message)
    header, sealed, padding = result.header, result.data, result.padding_length
    head = "\r\n".join(
        [
            f"--{BOUNDARY}",
            f"\tContent-Type: {SPNEGO}",
            f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={len(message) + padding}",
            f"--{BOUNDARY}",
            "\tContent-Type: application/octet-stream",
            "",
        ]
    ).encode()
    body = head + struct.pack("<i", len(header)) + header + sealed + f"--{BOUNDARY}--\r\n".encode()
    return CONTENT_TYPE, body
