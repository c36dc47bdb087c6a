"""SOAP envelopes and WS-Man faults, the way a Windows WinRM service writes them.

Only what pypsrp sends and reads is modelled: the addressing headers, selectors, options, the
operation timeout, and ``s:Fault`` with an ``f:WSManFault`` detail whose ``Code`` pypsrp turns into
``WSManFaultError.code``. Fault codes are the real ``wsmerror.h`` values so client code that matches
on them (pypsrp swallows 2150858793 on Receive) behaves as against Windows.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

from hyperv_emulator import quotas

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "wsmv": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "wsen": "http://schemas.xmlsoap.org/ws/2004/09/enumeration",
    "wst": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "pwsh": "http://schemas.microsoft.com/powershell",
    "xml": "http://www.w3.org/XML/1998/namespace",
}
for _prefix, _uri in NS.items():
    if _prefix != "xml":
        ET.register_namespace(_prefix, _uri)

_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
_ENUM = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/"

# Action URI -> short name (the name the counters use).
ACTIONS: dict[str, str] = {
    _TRANSFER + "Create": "Create",
    _TRANSFER + "Delete": "Delete",
    _TRANSFER + "Get": "Get",
    _ENUM + "Enumerate": "Enumerate",
    _SHELL + "Command": "Command",
    _SHELL + "Send": "Send",
    _SHELL + "Receive": "Receive",
    _SHELL + "Signal": "Signal",
    _SHELL + "Disconnect": "Disconnect",
    _SHELL + "Reconnect": "Reconnect",
    _SHELL + "Connect": "Connect",
}
SHORT_TO_URI = {short: uri for uri, short in ACTIONS.items()}
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"


def q(prefix: str, tag: str) -> str:
    """Clark notation for ``prefix:tag``."""
    return f"{{{NS[prefix]}}}{tag}"


class WSManFault(Exception):
    """A WS-Man fault answer (HTTP 500 + ``s:Fault``); raise it anywhere in request handling."""

    def __init__(self, code: int, subcode: str, reason: str, *, sender: bool = False) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.sender = sender  # s:Sender (client's fault) or s:Receiver

    def to_xml(self, relates_to: str, machine: str) -> bytes:
        env = ET.Element(q("s", "Envelope"))
        hdr = ET.SubElement(env, q("s", "Header"))
        ET.SubElement(hdr, q("wsa", "Action")).text = FAULT_ACTION
        ET.SubElement(hdr, q("wsa", "MessageID")).text = f"uuid:{str(uuid.uuid4()).upper()}"
        if relates_to:
            ET.SubElement(hdr, q("wsa", "RelatesTo")).text = relates_to
        ET.SubElement(hdr, q("wsa", "To")).text = ANONYMOUS
        fault = ET.SubElement(ET.SubElement(env, q("s", "Body")), q("s", "Fault"))
        code = ET.SubElement(fault, q("s", "Code"))
        ET.SubElement(code, q("s", "Value")).text = "s:Sender" if self.sender else "s:Receiver"
        ET.SubElement(ET.SubElement(code, q("s", "Subcode")), q("s", "Value")).text = self.subcode
        reason = ET.SubElement(fault, q("s", "Reason"))
        ET.SubElement(reason, q("s", "Text"), {q("xml", "lang"): "en-US"}).text = self.reason
        detail = ET.SubElement(fault, q("s", "Detail"))
        wsf = ET.SubElement(detail, q("f", "WSManFault"), {"Code": str(self.code), "Machine": machine})
        ET.SubElement(wsf, q("f", "Message")).text = self.reason
        return ET.tostring(env, encoding="utf-8")


# --- The faults the emulator answers with (codes from wsmerror.h) -------------------------------


def timed_out() -> WSManFault:
    """ERROR_WSMAN_OPERATION_TIMEDOUT 0x80338029: a Receive with nothing to say; pypsrp re-polls."""
    return WSManFault(
        2150858793,
        "w:TimedOut",
        "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.",
    )


def shell_not_found(shell_id: str) -> WSManFault:
    """ERROR_WSMAN_INVALID_SELECTORS 0x8033805B, the text Windows sends for a deleted/unknown shell."""
    return WSManFault(
        2150858843,
        "w:InvalidSelectors",
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not "
        "found on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer "
        "exists on the server. Provide the correct ShellId or create a new shell and retry the operation.",
        sender=True,
    )


def action_not_supported(action: str) -> WSManFault:
    """ERROR_WSMAN_ACTION_NOT_SUPPORTED 0x80338013 (wsa:ActionNotSupported)."""
    return WSManFault(
        2150858771,
        "a:ActionNotSupported",
        f"The WS-Management service does not support the action specified in the request: {action}",
        sender=True,
    )


def invalid_parameter(message: str) -> WSManFault:
    """E_INVALIDARG 0x80070057, used for unknown streams, signals, command ids and malformed bodies."""
    return WSManFault(2147942487, "w:InvalidParameter", message, sender=True)


def quota_exceeded() -> WSManFault:
    """ERROR_WSMAN_QUOTA_MAX_OPERATIONS 0x803381A6: what a busy WinRM answers to a new command.

    Text as reported by real hosts (masterzen/winrm#129, WinRb users' "WSMAN ERROR CODE: 2150859174");
    subcode wsman:QuotaLimit per [MS-WSMV] 3.1.4.5.2.1. ansible/ansible#83656 retries on it.
    """
    return quota_limit(quotas.max_operations(1500))


def quota_limit(refusal: quotas.QuotaRefusal) -> WSManFault:
    """A ``w:QuotaLimit`` fault for the quota that refused the request ([MS-WSMV] 3.1.4.5.2.1: "A
    wsman:QuotaLimit fault SHOULD be returned by the wst:Create operation when a quota limit is
    exceeded"); ``f:WSManFault`` carries the quota's wsmerror.h code and Windows' message."""
    return WSManFault(refusal.code, "w:QuotaLimit", refusal.message)


def internal_error(message: str) -> WSManFault:
    """E_FAIL 0x80004005 (w:InternalError): the emulator itself failed; never a dropped connection."""
    return WSManFault(2147500037, "w:InternalError", message)


# --- Requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """The parts of a WS-Man request envelope the service acts on."""

    action: str
    message_id: str
    resource_uri: str
    session_id: str
    operation_timeout: float | None
    selectors: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    body: ET.Element = field(default_factory=lambda: ET.Element(q("s", "Body")))

    @property
    def short_action(self) -> str:
        return ACTIONS.get(self.action, self.action.rsplit("/", 1)[-1])

    @property
    def shell_id(self) -> str | None:
        value = self.selectors.get("ShellId")
        return value.upper() if value else None


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?$")


def parse_duration(text: str | None) -> float | None:
    """xs:duration as WinRM uses it (``PT20S``, ``PT7200.000S``) -> seconds."""
    if not text:
        return None
    m = _DURATION.match(text.strip())
    if not m:
        raise invalid_parameter(f"Invalid xs:duration value {text!r}.")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def parse_request(data: bytes) -> Request:
    """Parse a request envelope; malformed XML becomes a fault, never an exception escaping."""
    try:
        # Loopback traffic from authenticated clients; expat resolves no external entities.
        env = ET.fromstring(data)  # noqa: S314
    except ET.ParseError as exc:
        raise invalid_parameter(f"The request is not well-formed XML: {exc}") from None
    hdr = env.find("s:Header", NS)
    body = env.find("s:Body", NS)
    if env.tag != q("s", "Envelope") or hdr is None or body is None:
        raise invalid_parameter("The request is not a SOAP 1.2 envelope with a Header and a Body.")
    action = hdr.findtext("wsa:Action", default="", namespaces=NS).strip()
    selectors = {
        s.attrib.get("Name", ""): (s.text or "").strip()
        for s in hdr.findall("wsman:SelectorSet/wsman:Selector", NS)
    }
    options = {
        o.attrib.get("Name", ""): (o.text or "").strip()
        for o in hdr.findall("wsman:OptionSet/wsman:Option", NS)
    }
    return Request(
        action=action,
        message_id=hdr.findtext("wsa:MessageID", default="", namespaces=NS).strip(),
        resource_uri=hdr.findtext("wsman:ResourceURI", default="", namespaces=NS).strip(),
        session_id=hdr.findtext("wsmv:SessionId", default="", namespaces=NS).strip(),
        operation_timeout=parse_duration(hdr.findtext("wsman:OperationTimeout", namespaces=NS)),
        selectors=selectors,
        options=options,
        body=body,
    )


def response(action: str, relates_to: str, body: Iterable[ET.Element] = ()) -> bytes:
    """A response envelope; ``action`` is the request's action URI (``Response`` is appended)."""
    env = ET.Element(q("s", "Envelope"))
    hdr = ET.SubElement(env, q("s", "Header"))
    ET.SubElement(hdr, q("wsa", "Action")).text = action + "Response"
    ET.SubElement(hdr, q("wsa", "MessageID")).text = f"uuid:{str(uuid.uuid4()).upper()}"
    ET.SubElement(hdr, q("wsa", "RelatesTo")).text = relates_to
    ET.SubElement(hdr, q("wsa", "To")).text = ANONYMOUS
    b = ET.SubElement(env, q("s", "Body"))
    for child in body:
        b.append(child)
    return ET.tostring(env, encoding="utf-8")


def element(prefix: str, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    el = ET.Element(q(prefix, tag), attrib)
    el.text = text
    return el


def sub(parent: ET.Element, prefix: str, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, q(prefix, tag), attrib)
    el.text = text
    return el


def seconds_to_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"
