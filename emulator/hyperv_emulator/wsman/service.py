"""Maps WS-Man requests to shell operations for every emulated host; no sockets, no HTTP.

``WSManService.handle`` takes a decrypted SOAP request and returns an ``Outcome``: the HTTP status and
SOAP body to answer, or ``drop=True`` when a transport fault says the connection dies unanswered.
Any exception becomes a WS-Man fault here, so a handler bug never costs the client its connection.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hyperv_emulator.counters import Counters
from hyperv_emulator.faults import Fault, FaultPlan
from hyperv_emulator.host_runtime import CommandHost
from hyperv_emulator.quotas import ShellCensus, WinRMQuotas, max_operations, refuse_new_shell
from hyperv_emulator.wsman import soap
from hyperv_emulator.wsman.pipeline import CommandState, Pipeline
from hyperv_emulator.wsman.shell import Shell, ShellState

log = logging.getLogger(__name__)

SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
COMMAND_URI = SHELL_URI + "/Command"
CMD_DONE = SHELL_URI + "/CommandState/Done"
CMD_RUNNING = SHELL_URI + "/CommandState/Running"
DEFAULT_OPERATION_TIMEOUT = 60.0


@dataclass
class Outcome:
    """What to answer: ``drop`` closes the connection without any answer."""

    status: int = 200
    body: bytes = b""
    drop: bool = False
    cmdlets: list[str] = field(default_factory=list)
    vms: list[str] = field(default_factory=list)


@dataclass
class _Host:
    host: CommandHost
    shells: dict[str, Shell] = field(default_factory=dict)
    quotas: WinRMQuotas = field(default_factory=WinRMQuotas)


def _b64(text: str | None) -> bytes:
    try:
        return base64.b64decode(text or "", validate=True)
    except (binascii.Error, ValueError):
        raise soap.invalid_parameter("The request carries data that is not valid base64.") from None


class WSManService:
    """The WinRM service of every emulated host (one shell table per host)."""

    def __init__(
        self,
        hosts: Mapping[str, CommandHost],
        *,
        faults: FaultPlan | None = None,
        counters: Counters | None = None,
        idle_timeout: float = 7200.0,
        receive_wait_cap: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        quotas: Mapping[str, WinRMQuotas] | None = None,
    ) -> None:
        """``quotas``: each host's WinRM quotas (hosts not named get the defaults, docs/emulator.md)."""
        if not hosts:
            raise ValueError("at least one CommandHost is needed")
        quotas = quotas or {}
        self.hosts = {
            name: _Host(host, quotas=quotas.get(name, WinRMQuotas())) for name, host in hosts.items()
        }
        self.faults = faults if faults is not None else FaultPlan()
        self.counters = counters if counters is not None else Counters()
        self.idle_timeout = idle_timeout
        self.receive_wait_cap = receive_wait_cap
        self.clock = clock
        self._lock = threading.Lock()  # guards the shell tables; each shell has its own lock

    # -- entry points ----------------------------------------------------------------------------

    def handle(self, host_name: str, data: bytes, user: str) -> Outcome:
        relates_to = ""
        try:
            request = soap.parse_request(data)
            relates_to = request.message_id
            short = soap.ACTIONS.get(request.action)
            if short is None:
                raise soap.action_not_supported(request.action)
            self.counters.count_action(short)
            outcome: Outcome = getattr(self, f"_{short.lower()}")(self.hosts[host_name], request, user)
        except soap.WSManFault as fault:
            outcome = Outcome(500, fault.to_xml(relates_to, host_name))
        except Exception as exc:
            log.exception("WS-Man handler failed")
            outcome = Outcome(
                500, soap.internal_error(f"{type(exc).__name__}: {exc}").to_xml(relates_to, host_name)
            )
        rule = self.faults.take(Fault.LATENCY, cmdlets=outcome.cmdlets, vms=outcome.vms, detail="latency")
        if rule is not None:
            time.sleep(rule.seconds)
        return outcome

    def shells(self, host_name: str) -> list[Shell]:
        with self._lock:
            return list(self.hosts[host_name].shells.values())

    def reap(self, now: float | None = None) -> list[str]:
        """Delete shells past their idle timeout (stopping their pipelines); returns their ids."""
        now = self.clock() if now is None else now
        gone: list[str] = []
        with self._lock:
            for entry in self.hosts.values():
                for shell_id, shell in list(entry.shells.items()):
                    if shell.expired(now):
                        shell.close()
                        del entry.shells[shell_id]
                        gone.append(shell_id)
        return gone

    def close_all(self) -> None:
        with self._lock:
            for entry in self.hosts.values():
                for shell in entry.shells.values():
                    if shell.state is not ShellState.CLOSED:
                        shell.close()
                entry.shells.clear()

    # -- helpers ---------------------------------------------------------------------------------

    def _shell(self, entry: _Host, request: soap.Request, user: str) -> Shell:
        shell_id = request.shell_id
        if not shell_id:
            raise soap.WSManFault(
                2150858843,
                "w:InvalidSelectors",
                "The Windows Remote Shell cannot process the request because it requires the following selector: "
                "ShellId. Retry with the correct selector.",
                sender=True,
            )
        with self._lock:
            shell = entry.shells.get(shell_id)
        if shell is None or shell.state is ShellState.CLOSED or shell.owner.lower() != user.lower():
            raise soap.shell_not_found(shell_id)
        return shell

    def _timeout(self, request: soap.Request) -> float:
        return min(request.operation_timeout or DEFAULT_OPERATION_TIMEOUT, self.receive_wait_cap)

    def _shell_element(self, shell: Shell) -> ET.Element:
        el = soap.element("rsp", "Shell")
        soap.sub(el, "rsp", "ShellId", shell.shell_id)
        soap.sub(el, "rsp", "ResourceUri", shell.resource_uri)
        soap.sub(el, "rsp", "Owner", shell.owner)
        soap.sub(el, "rsp", "ClientIP", "127.0.0.1")
        soap.sub(el, "rsp", "IdleTimeOut", soap.seconds_to_duration(shell.idle_timeout))
        soap.sub(el, "rsp", "InputStreams", "stdin pr")
        soap.sub(el, "rsp", "OutputStreams", "stdout")
        soap.sub(
            el, "rsp", "State", "Disconnected" if shell.state is ShellState.DISCONNECTED else "Connected"
        )
        soap.sub(el, "rsp", "ShellRunTime", soap.seconds_to_duration(time.time() - shell.created))
        soap.sub(el, "rsp", "ShellInactivity", soap.seconds_to_duration(self.clock() - shell.last_activity))
        return el

    def _launch(
        self, entry: _Host, shell: Shell, pipeline: Pipeline, user: str, request: soap.Request
    ) -> bool:
        """Apply the transport faults armed for this pipeline, then start it. False: connection drops."""
        names, vms = pipeline.cmdlets, pipeline.vms
        detail = f"{request.short_action}: {', '.join(names)}"

        def take(fault: Fault) -> bool:
            return self.faults.take(fault, cmdlets=names, vms=vms, detail=detail) is not None

        if take(Fault.DROP_BEFORE_RUN):
            shell.discard(pipeline)
            return False
        if take(Fault.WSMAN_BUSY):
            shell.discard(pipeline)
            self.counters.count_quota_fault(entry.host.name)
            raise soap.quota_exceeded()
        if take(Fault.WSMAN_TIMEOUT):
            # The service gave up on the operation: it waits its OperationTimeout, then says so.
            shell.discard(pipeline)
            time.sleep(self._timeout(request))
            raise soap.timed_out()
        limit = entry.quotas.max_concurrent_operations_per_user
        running = self._running_commands(entry, user)
        if running >= limit:
            shell.discard(pipeline)
            self.counters.count_quota_refusal("MaxConcurrentOperationsPerUser", entry.host.name)
            raise soap.quota_limit(max_operations(limit))
        pipeline.drop_final = take(Fault.DROP_AFTER_RUN)
        shell.start(pipeline, entry.host, user)
        self.counters.note_operations(entry.host.name, user, running + 1)
        self.counters.count_pipeline(len(names))
        return True

    # -- actions ---------------------------------------------------------------------------------

    def _create(self, entry: _Host, request: soap.Request, user: str) -> Outcome:
        shell_el = request.body.find("rsp:Shell", soap.NS)
        creation = shell_el.find("pwsh:creationXml", soap.NS) if shell_el is not None else None
        if shell_el is None or creation is None:
            raise soap.invalid_parameter(
                "Only PowerShell shells (rsp:Shell with pwsh:creationXml) are emulated."
            )
        shell_id = (shell_el.attrib.get("ShellId") or str(uuid.uuid4())).upper()
        idle = (
            soap.parse_duration(shell_el.findtext("rsp:IdleTimeOut", namespaces=soap.NS)) or self.idle_timeout
        )
        shell = Shell(
            shell_id,
            host_name=entry.host.name,
            owner=user,
            session_id=request.session_id,
            resource_uri=request.resource_uri,
            idle_timeout=idle,
            clock=self.clock,
        )
        self.reap()  # a shell past its idle timeout no longer holds a slot
        with self._lock:
            if shell_id in entry.shells:
                raise soap.invalid_parameter(f"A shell with ShellId {shell_id} already exists.")
            refusal = refuse_new_shell(entry.quotas, user, self._census(entry, user, request.resource_uri))
            if refusal is not None:
                self.counters.count_quota_refusal(refusal.quota, entry.host.name)
                raise soap.quota_limit(refusal)
            entry.shells[shell_id] = shell
            self.counters.note_shells(entry.host.name, self._held(entry, user), user)
        try:
            shell.open(_b64(creation.text))
        except Exception:
            with self._lock:
                entry.shells.pop(shell_id, None)
            raise
        if shell.state is ShellState.OPENED:
            self.counters.count_pool()
        created = soap.element("wst", "ResourceCreated")
        soap.sub(created, "wsa", "Address", "http://127.0.0.1/wsman")
        params = soap.sub(created, "wsa", "ReferenceParameters")
        soap.sub(params, "wsman", "ResourceURI", request.resource_uri)
        soap.sub(soap.sub(params, "wsman", "SelectorSet"), "wsman", "Selector", shell_id, Name="ShellId")
        return Outcome(
            body=soap.response(request.action, request.message_id, [created, self._shell_element(shell)])
        )

    def _get(self, entry: _Host, request: soap.Request, user: str) -> Outcome:
        shell = self._shell(entry, request, user)
        return Outcome(body=soap.response(request.action, request.message_id, [self._shell_element(shell)]))

    def _delete(self, entry: _Host, request: soap.Request, user: str) -> Outcome:
        shell = self._shell(entry, request, user)
        shell.close()
        with self._lock:
            entry.shells.pop(shell.shell_id, None)
        return Outcome(body=soap.response(request.action, request.message_id))

    def _command(self, entry: _Host, request: soap.Request, user: str) -> Outcome:
        shell = self._shell(entry, request, user)
        line = request.body.find("rsp:CommandLine", soap.NS)
        if line is None:
            raise soap.invalid_parameter("Command needs an rsp:CommandLine.")
        command_id = (line.attrib.get("CommandId") or str(uuid.uuid4())).upper()
        pipeline = shell.command(command_id, _b64(line.findtext("rsp:Arguments", namespaces=soap.NS)))
        outcome = Outcome(cmdlets=pipeline.cmdlets, vms=pipeline.vms)
        if pipeline.ready and not self._launch(entry, shell, pipeline, user, request):
            outcome.drop = True
            return outcome
        answer = soap.element("rsp", "CommandResponse")
        soap.sub(answer, "rsp", "CommandId", command_id)
        outcome.body = soap.response(request.action, request.message_id, [answer])
        return outcome

    def _send(self, entry: _Host, request: soap.Request, user: str) -> Outcome:
        shell = self._shell(entry, request, user)
        stream = request.body.find("rsp:Send/rsp:Stream", soap.NS)
        if stream is None:
            raise soap.invalid_parameter("Send needs an rsp:Stream.")
        command_id = stream.attrib.get("CommandId")
        ready = shell.send(stream.attrib.get("Name", ""), _b64(stream.text), command_id)
        outcome = Outcome()
        if ready is not None:
            outcome.cmdlets, outcome.vms = ready.cmdlets, ready.vms
            if not self._launch(entry, shell, ready, user, request):
                outcome.drop = True
                return outcome
        outcome.body = soap.response(
            request.action, request.message_id, [soap.element("rsp", "SendResponse")]
        )
        return outcome

    def _receive(self, entry: _Host, request: soap.Request, user: str) -> Outcome:
        shell = self._shell(entry, request, user)
        desired = request.body.find("rsp:Receive/rsp:DesiredStream", soap.NS)
        if desired is None or (desired.text or "").split() != ["stdout"]:
            raise soap.invalid_parameter("Receive must ask for the stdout stream of a PowerShell shell.")
        command_id = desired.attrib.get("CommandId")
        messages, pipeline = shell.receive(command_id, self._timeout(request))
        outcome = Outcome()
        if pipeline is not None:
            outcome.cmdlets, outcome.vms = pipeline.cmdlets, pipeline.vms
            if pipeline.drop_final and pipeline.delivered:
                outcome.drop = True  # DROP_AFTER_RUN: the end of the pipeline never reaches the client
                return outcome
            if pipeline.state is CommandState.RUNNING and self.faults.take(
                Fault.DROP_WHILE_RUNNING,
                cmdlets=pipeline.cmdlets,
                vms=pipeline.vms,
                detail=f"Receive while running: {', '.join(pipeline.cmdlets)}",
            ):
                outcome.drop = True  # the client loses this answer and its connection; the host runs on
                return outcome
        answer = soap.element("rsp", "ReceiveResponse")
        attrs = {"Name": "stdout"} | ({"CommandId": command_id.upper()} if command_id else {})
        for message in messages:
            soap.sub(answer, "rsp", "Stream", base64.b64encode(message).decode(), **attrs)
        if pipeline is not None:
            done = pipeline.state is CommandState.DONE
            state = soap.sub(
                answer,
                "rsp",
                "CommandState",
                CommandId=pipeline.command_id,
                State=CMD_DONE if done else CMD_RUNNING,
            )
            if done:
                soap.sub(state, "rsp", "ExitCode", "0")
        outcome.body = soap.response(request.action, request.message_id, [answer])
        return outcome

    def _signal(self, entry: _Host, request: soap.Request, user: str) -> Outcome:
        shell = self._shell(entry, request, user)
        signal = request.body.find("rsp:Signal", soap.NS)
        if signal is None or not signal.attrib.get("CommandId"):
            raise soap.invalid_parameter("Signal needs an rsp:Signal with a CommandId.")
        pipeline = shell.get_pipeline(signal.attrib["CommandId"])
        shell.signal(pipeline.command_id, (signal.findtext("rsp:Code", namespaces=soap.NS) or "").strip())
        outcome = Outcome(cmdlets=pipeline.cmdlets, vms=pipeline.vms)
        outcome.body = soap.response(
            request.action, request.message_id, [soap.element("rsp", "SignalResponse")]
        )
        return outcome

    def _disconnect(self, entry: _Host, request: soap.Request, user: str) -> Outcome:
        shell = self._shell(entry, request, user)
        idle = soap.parse_duration(
            request.body.findtext("rsp:Disconnect/rsp:IdleTimeOut", namespaces=soap.NS)
        )
        shell.disconnect(idle)
        answer = soap.element("rsp", "DisconnectResponse")
        return Outcome(body=soap.response(request.action, request.message_id, [answer]))

    def _reconnect(self, entry: _Host, request: soap.Request, user: str) -> Outcome:
        shell = self._shell(entry, request, user)
        shell.reconnect(request.session_id)
        answer = soap.element("rsp", "ReconnectResponse")
        return Outcome(body=soap.response(request.action, request.message_id, [answer]))

    def _connect(self, entry: _Host, request: soap.Request, user: str) -> Outcome:
        shell = self._shell(entry, request, user)
        connect = request.body.find("rsp:Connect", soap.NS)
        if connect is None:
            raise soap.invalid_parameter("Connect needs an rsp:Connect.")
        answer = soap.element("rsp", "ConnectResponse")
        outcome = Outcome()
        if connect.attrib.get("CommandId"):
            pipeline = shell.connect_command(connect.attrib["CommandId"])
            outcome.cmdlets, outcome.vms = pipeline.cmdlets, pipeline.vms
        else:
            xml = connect.find("pwsh:connectXml", soap.NS)
            if xml is None:
                raise soap.invalid_parameter("Connect to a shell needs pwsh:connectXml.")
            payload = shell.connect(_b64(xml.text), request.session_id)
            soap.sub(answer, "pwsh", "connectResponseXml", base64.b64encode(payload).decode())
        outcome.body = soap.response(request.action, request.message_id, [answer])
        return outcome

    def _enumerate(self, entry: _Host, request: soap.Request, user: str) -> Outcome:
        items = soap.element("wsman", "Items")
        uri = request.resource_uri.rstrip("/")
        if uri == SHELL_URI:
            for shell in self.shells_of(entry, user):
                items.append(self._shell_element(shell))
        elif uri == COMMAND_URI:
            selector = request.body.find(
                "wsen:Enumerate/wsman:Filter/wsman:SelectorSet/wsman:Selector[@Name='ShellId']", soap.NS
            )
            if selector is None or not selector.text:
                raise soap.invalid_parameter("Enumerating commands needs a ShellId selector filter.")
            shell = self._shell(
                entry, soap.Request(**{**request.__dict__, "selectors": {"ShellId": selector.text}}), user
            )
            with shell.cond:
                for pipeline in shell.pipelines.values():
                    command = soap.sub(items, "rsp", "Command")
                    soap.sub(command, "rsp", "CommandId", pipeline.command_id)
        else:
            raise soap.invalid_parameter(f"Cannot enumerate the resource {request.resource_uri}.")
        answer = soap.element("wsen", "EnumerateResponse")
        answer.append(items)
        soap.sub(answer, "wsman", "EndOfSequence")
        return Outcome(body=soap.response(request.action, request.message_id, [answer]))

    @staticmethod
    def _live(entry: _Host) -> list[Shell]:
        """Shells that hold a quota slot: open (or opening) and disconnected ones. Call with the lock."""
        return [s for s in entry.shells.values() if s.state is not ShellState.CLOSED]

    def _held(self, entry: _Host, user: str) -> int:
        return sum(1 for s in self._live(entry) if s.owner.lower() == user.lower())

    def _census(self, entry: _Host, user: str, resource_uri: str) -> ShellCensus:
        """The live shells a new one for ``user`` on the endpoint ``resource_uri`` counts against."""
        live = self._live(entry)
        plugin = [s for s in live if s.resource_uri.lower() == resource_uri.lower()]
        me = user.lower()
        return ShellCensus(
            user_shells=sum(1 for s in live if s.owner.lower() == me),
            users=frozenset(s.owner.lower() for s in live),
            plugin_user_shells=sum(1 for s in plugin if s.owner.lower() == me),
            plugin_users=frozenset(s.owner.lower() for s in plugin),
            plugin_shells=len(plugin),
        )

    def _running_commands(self, entry: _Host, user: str) -> int:
        """Commands of ``user`` still running on this host (what MaxConcurrentOperationsPerUser counts
        here; a real host also counts requests in flight)."""
        with self._lock:
            mine = [s for s in self._live(entry) if s.owner.lower() == user.lower()]
        running = 0
        for shell in mine:
            with shell.cond:
                running += sum(1 for p in shell.pipelines.values() if p.state is CommandState.RUNNING)
        return running

    def shells_of(self, entry: _Host, user: str) -> list[Shell]:
        with self._lock:
            return [
                s
                for s in entry.shells.values()
                if s.owner.lower() == user.lower() and s.state is not ShellState.CLOSED
            ]
