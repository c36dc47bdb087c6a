"""The WS-Man state machines in memory: no sockets, no HTTP."""

from __future__ import annotations

import base64
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psrpcore
import pytest
import spnego
from pypsrp.encryption import WinRMEncryption

from hyperv_emulator.counters import Counters
from hyperv_emulator.faults import Fault, FaultPlan
from hyperv_emulator.host_runtime import PipelineContext, PipelineSink, Statement
from hyperv_emulator.wsman import encryption, soap
from hyperv_emulator.wsman.auth import Authenticator
from hyperv_emulator.wsman.service import SHELL_URI, WSManService
from hyperv_emulator.wsman.shell import InvalidShellState, Shell, ShellState, split_messages

PS_URI = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"


class NullHost:
    name = "hv1"

    def run(self, statements: Sequence[Statement], sink: PipelineSink, ctx: PipelineContext) -> None:
        sink.write_output("ok")


def envelope(
    short: str, body: ET.Element | None = None, shell_id: str | None = None, uri: str = PS_URI
) -> bytes:
    env = ET.Element(soap.q("s", "Envelope"))
    hdr = soap.sub(env, "s", "Header")
    soap.sub(hdr, "wsa", "Action", soap.SHORT_TO_URI.get(short, short))
    soap.sub(hdr, "wsa", "MessageID", "uuid:" + str(uuid.uuid4()).upper())
    soap.sub(hdr, "wsman", "ResourceURI", uri)
    soap.sub(hdr, "wsman", "OperationTimeout", "PT0.2S")
    soap.sub(hdr, "wsmv", "SessionId", "uuid:11111111-1111-1111-1111-111111111111")
    if shell_id:
        soap.sub(soap.sub(hdr, "wsman", "SelectorSet"), "wsman", "Selector", shell_id, Name="ShellId")
    b = soap.sub(env, "s", "Body")
    if body is not None:
        b.append(body)
    return ET.tostring(env)


def creation_bytes() -> tuple[psrpcore.ClientRunspacePool, bytes]:
    client = psrpcore.ClientRunspacePool()
    client.open()
    payload = client.data_to_send()
    assert payload is not None
    return client, payload.data


def parse(body: bytes) -> ET.Element:
    return ET.fromstring(body)  # noqa: S314 - our own server's answer


def fault_of(body: bytes) -> tuple[int, str]:
    fault = parse(body).find("s:Body/s:Fault/s:Detail/f:WSManFault", soap.NS)
    assert fault is not None
    return int(fault.attrib["Code"]), fault.findtext("f:Message", namespaces=soap.NS) or ""


@pytest.fixture
def service() -> WSManService:
    return WSManService({"hv1": NullHost()}, faults=FaultPlan(), counters=Counters(), receive_wait_cap=0.2)


def create_shell(service: WSManService) -> str:
    _, data = creation_bytes()
    shell = soap.element("rsp", "Shell")
    soap.sub(shell, "rsp", "InputStreams", "stdin pr")
    soap.sub(shell, "pwsh", "creationXml", base64.b64encode(data).decode())
    outcome = service.handle("hv1", envelope("Create", shell), "alice")
    assert outcome.status == 200
    shell_id = parse(outcome.body).findtext("s:Body/rsp:Shell/rsp:ShellId", namespaces=soap.NS)
    assert shell_id
    return shell_id


def test_unknown_action_is_a_fault_not_an_exception(service: WSManService) -> None:
    outcome = service.handle("hv1", envelope("http://example.com/Frobnicate"), "alice")
    assert outcome.status == 500 and fault_of(outcome.body)[0] == 2150858771


def test_garbage_body_is_a_fault(service: WSManService) -> None:
    outcome = service.handle("hv1", b"<not-xml", "alice")
    assert outcome.status == 500 and fault_of(outcome.body)[0] == 2147942487


def test_unknown_shell_is_invalid_selectors(service: WSManService) -> None:
    receive = soap.element("rsp", "Receive")
    soap.sub(receive, "rsp", "DesiredStream", "stdout")
    outcome = service.handle("hv1", envelope("Receive", receive, shell_id=str(uuid.uuid4())), "alice")
    code, message = fault_of(outcome.body)
    assert code == 2150858843 and "shell was not found" in message


def test_create_receive_timeout_and_bad_stream_and_signal(service: WSManService) -> None:
    shell_id = create_shell(service)
    receive = soap.element("rsp", "Receive")
    soap.sub(receive, "rsp", "DesiredStream", "stdout")
    opened = service.handle("hv1", envelope("Receive", receive, shell_id), "alice")
    assert opened.status == 200 and service.counters.snapshot().pools_opened == 1
    # nothing more to say: the long poll ends with the TimedOut fault pypsrp swallows
    assert (
        fault_of(service.handle("hv1", envelope("Receive", receive, shell_id), "alice").body)[0] == 2150858793
    )
    send = soap.element("rsp", "Send")
    soap.sub(send, "rsp", "Stream", "AAAA", Name="stderr")
    assert fault_of(service.handle("hv1", envelope("Send", send, shell_id), "alice").body)[0] == 2147942487
    signal = soap.element("rsp", "Signal", CommandId=str(uuid.uuid4()))
    soap.sub(signal, "rsp", "Code", "bogus")
    assert service.handle("hv1", envelope("Signal", signal, shell_id), "alice").status == 500
    # another user does not see the shell
    listing = service.handle(
        "hv1", envelope("Enumerate", soap.element("wsen", "Enumerate"), uri=SHELL_URI), "bob"
    )
    assert parse(listing.body).find(".//rsp:Shell", soap.NS) is None
    assert service.handle("hv1", envelope("Delete", shell_id=shell_id), "alice").status == 200
    assert service.counters.snapshot().by_action == {
        "Create": 1,
        "Receive": 2,
        "Send": 1,
        "Signal": 1,
        "Enumerate": 1,
        "Delete": 1,
    }


def new_shell() -> Shell:
    return Shell(
        str(uuid.uuid4()),
        host_name="hv1",
        owner="alice",
        session_id="s1",
        resource_uri=PS_URI,
        idle_timeout=1,
    )


def test_invalid_transitions_name_the_state() -> None:
    shell = new_shell()
    with pytest.raises(InvalidShellState, match="Opening") as err:
        shell.disconnect()
    assert err.value.code == 2150859215
    _, data = creation_bytes()
    shell.open(data)
    assert shell.state is ShellState.OPENED
    with pytest.raises(InvalidShellState, match="Opened"):
        shell.reconnect("s1")
    shell.disconnect()
    with pytest.raises(InvalidShellState, match="Disconnected") as err:
        shell.command(str(uuid.uuid4()), b"")
    assert err.value.code == 2150859204
    with pytest.raises(soap.WSManFault) as mismatch:
        shell.reconnect("someone-else")
    assert mismatch.value.code == 2150859206
    shell.reconnect("s1")
    shell.close()
    with pytest.raises(InvalidShellState) as err:
        shell.receive(None, 0.1)
    assert err.value.code == 2150858843 and err.value.state is ShellState.CLOSED


def test_idle_expiry_only_counts_while_idle() -> None:
    now = [0.0]
    shell = Shell(
        "S",
        host_name="hv1",
        owner="a",
        session_id="s",
        resource_uri=PS_URI,
        idle_timeout=5,
        clock=lambda: now[0],
    )
    _, data = creation_bytes()
    shell.open(data)
    shell.disconnect()
    now[0] = 4.0
    assert not shell.expired(now[0])
    now[0] = 5.5
    assert shell.expired(now[0])


def test_split_messages_keeps_fragments_of_one_message_together() -> None:
    _, data = creation_bytes()
    assert len(split_messages(data)) == 2  # SESSION_CAPABILITY + INIT_RUNSPACEPOOL
    assert b"".join(split_messages(data)) == data


def contexts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Any, Any]:
    users = tmp_path / "users"
    users.write_text(":alice:Secret1\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    client = spnego.client(
        "alice", "Secret1", protocol="ntlm", options=spnego.NegotiateOptions.wrapping_winrm
    )
    server = spnego.server(protocol="negotiate")
    token = client.step()
    while token is not None:
        answer = server.step(token)
        token = client.step(answer) if answer else None
    return client, server


def test_encryption_framing_round_trip_and_tamper(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    client, server = contexts(monkeypatch, tmp_path)
    pyp = WinRMEncryption(client, WinRMEncryption.SPNEGO)
    kind, body = pyp.wrap_message(b"<s:Envelope/>")
    assert encryption.unwrap(server, kind + ';protocol="' + encryption.SPNEGO + '"', body) == b"<s:Envelope/>"
    ctype, reply = encryption.wrap(server, b"<answer/>")
    assert ctype == encryption.CONTENT_TYPE
    assert pyp.unwrap_message(reply, encryption.BOUNDARY) == b"<answer/>"
    _, body = pyp.wrap_message(b"<again/>")
    tampered = body[:-40] + bytes([body[-40] ^ 1]) + body[-39:]
    with pytest.raises(encryption.EncryptionError):
        encryption.unwrap(server, encryption.CONTENT_TYPE, tampered)


def test_basic_auth_state_machine_and_reject_fault() -> None:
    faults = FaultPlan()
    config = Authenticator("alice", "Secret1", basic=True, negotiate=False, faults=faults)
    conn = config.connection()
    good = "Basic " + base64.b64encode(b"alice:Secret1").decode()
    assert conn.authenticate(good).user == "alice"
    assert conn.authenticate("Basic " + base64.b64encode(b"alice:nope").decode()).status == 401
    assert conn.authenticate(None).status == 401  # Basic is not connection-oriented
    faults.inject(Fault.REJECT_CREDENTIALS)
    assert conn.authenticate(good).status == 401
    assert conn.authenticate(good).user == "alice"
