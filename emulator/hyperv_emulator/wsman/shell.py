"""A WinRS shell carrying a PSRP runspace pool: an explicit state machine with no sockets.

    Opening --(creationXml opens the pool)--> Opened --Disconnect--> Disconnected
    Disconnected --Reconnect (same client) / Connect (new client)--> Opened
    any state but Closed --Delete / idle timeout--> Closed

Every operation checks the state and raises ``InvalidShellState`` (a WS-Man fault naming the state)
when it does not apply. Outgoing PSRP messages are kept per target (pool or pipeline) until a Receive
for that target takes them, so a disconnected pipeline keeps buffering for whoever connects next.
"""

from __future__ import annotations

import enum
import logging
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable

import psrpcore
from psrpcore.types import PSInvocationState, RunspacePoolState

from hyperv_emulator.host_runtime import CommandHost, PipelineContext, TerminatingError
from hyperv_emulator.wsman import soap
from hyperv_emulator.wsman.pipeline import (
    CommandState,
    Pipeline,
    PipelineStoppedError,
    Sink,
    error_record,
    internal_error_record,
    statements_from,
)

log = logging.getLogger(__name__)

SIGNAL_TERMINATE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/Terminate"
SIGNAL_PS_CTRL_C = "powershell/signal/ctrl_c"
SIGNAL_CTRL_C = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c"
INPUT_STREAMS = ("stdin", "pr")
# Extra time a Receive that has output waits for the pipeline to finish, so a quick pipeline costs a
# single Receive (real WinRM also batches what is ready).
FLUSH_DELAY = 0.05


class ShellState(enum.Enum):
    OPENING = "Opening"
    OPENED = "Opened"
    DISCONNECTED = "Disconnected"
    CLOSED = "Closed"


# Codes from wsmerror.h for an operation that the shell's state does not allow.
_NOT_VALID_CODES = {
    "disconnect": 2150859215,  # ERROR_WINRS_SHELL_DISCONNECT_OPERATION_NOT_VALID
    "reconnect": 2150859216,  # ERROR_WINRS_SHELL_RECONNECT_OPERATION_NOT_VALID
    "connect": 2150859216,
    "connect a command": 2150859219,  # ERROR_WINRS_SHELLCOMMAND_RECONNECT_OPERATION_NOT_VALID
}
SHELL_DISCONNECTED = 2150859204  # ERROR_WINRS_SHELL_DISCONNECTED
SESSION_MISMATCH = 2150859206  # ERROR_WINRS_SHELL_CLIENTSESSIONID_MISMATCH


class InvalidShellState(soap.WSManFault):
    """An operation the shell's current state does not allow; the message names that state."""

    def __init__(self, shell_id: str, operation: str, state: ShellState) -> None:
        if state is ShellState.CLOSED:
            base = soap.shell_not_found(shell_id)
            super().__init__(base.code, base.subcode, base.reason, sender=True)
        else:
            code = _NOT_VALID_CODES.get(
                operation, SHELL_DISCONNECTED if state is ShellState.DISCONNECTED else 2147500037
            )
            super().__init__(
                code,
                "w:InvalidState" if code != SHELL_DISCONNECTED else "w:ShellDisconnected",
                f"Cannot {operation}: the shell {shell_id} is in the {state.value} state.",
                sender=True,
            )
        self.state = state
        self.operation = operation


def split_messages(data: bytes) -> list[bytes]:
    """Cut a PSRP payload into whole messages (fragments up to each end flag)."""
    out: list[bytes] = []
    start = pos = 0
    while pos < len(data):
        flags = data[pos + 16]
        length = struct.unpack(">I", data[pos + 17 : pos + 21])[0]
        pos += 21 + length
        if flags & 0x2:
            out.append(data[start:pos])
            start = pos
    if start < len(data):
        out.append(data[start:])
    return out


class Shell:
    """One shell (= remote runspace pool) with its pipelines. Thread-safe through ``cond``."""

    def __init__(
        self,
        shell_id: str,
        *,
        host_name: str,
        owner: str,
        session_id: str,
        resource_uri: str,
        idle_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shell_id = shell_id.upper()
        self.host_name = host_name
        self.owner = owner
        self.session_id = session_id
        self.resource_uri = resource_uri
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.cond = threading.Condition(threading.RLock())
        self.state = ShellState.OPENING
        self.pool = psrpcore.ServerRunspacePool()
        self.pipelines: dict[str, Pipeline] = {}
        self.outbox: dict[uuid.UUID | None, deque[bytes]] = {}
        self.created = time.time()
        self.last_activity = clock()

    # -- helpers ---------------------------------------------------------------------------------

    def _require(self, operation: str, *states: ShellState) -> None:
        if self.state not in states:
            raise InvalidShellState(self.shell_id, operation, self.state)

    def touch(self) -> None:
        self.last_activity = self.clock()

    def _pump(self) -> None:
        while (payload := self.pool.data_to_send()) is not None:
            self.outbox.setdefault(payload.pipeline_id, deque()).extend(split_messages(payload.data))
        self.cond.notify_all()

    def _feed(self, data: bytes, pipeline_id: uuid.UUID | None) -> None:
        """Give client PSRP data to psrpcore and act on every event it produces."""
        try:
            self.pool.receive_data(psrpcore.PSRPPayload(data, psrpcore.StreamType.default, pipeline_id))
            while (event := self.pool.next_event()) is not None:
                self._on_event(event)
        except soap.WSManFault:
            raise
        except Exception as exc:  # psrpcore rejects a malformed or out-of-order message
            raise soap.invalid_parameter(f"Invalid PSRP data: {exc}") from exc
        self._pump()

    def _on_event(self, event: psrpcore.PSRPEvent) -> None:
        if isinstance(event, psrpcore.CreatePipelineEvent):
            self._pipeline_for(event.pipeline_id).statements = statements_from(event.pipeline)
        elif isinstance(event, psrpcore.GetCommandMetadataEvent):
            self._pipeline_for(
                event.pipeline_id
            ).unsupported = "GetCommandMetadata is not supported by the emulator"
        elif isinstance(
            event,
            psrpcore.SetMaxRunspacesEvent | psrpcore.SetMinRunspacesEvent | psrpcore.ResetRunspaceStateEvent,
        ):
            self.pool.runspace_availability_response(event.ci, True)
        elif isinstance(event, psrpcore.GetAvailableRunspacesEvent):
            self.pool.runspace_availability_response(event.ci, self.pool.max_runspaces)
        elif isinstance(
            event,
            psrpcore.SessionCapabilityEvent
            | psrpcore.InitRunspacePoolEvent
            | psrpcore.ConnectRunspacePoolEvent
            | psrpcore.PublicKeyEvent,  # psrpcore queued the EncryptedSessionKey answer itself
        ):
            pass
        else:
            raise soap.invalid_parameter(f"The emulator does not accept {type(event).__name__} messages.")

    def _pipeline_for(self, pipeline_id: uuid.UUID | None) -> Pipeline:
        pipeline = self.pipelines.get(str(pipeline_id).upper()) if pipeline_id else None
        if pipeline is None:
            raise soap.invalid_parameter(f"No command {pipeline_id} in shell {self.shell_id}.")
        return pipeline

    def get_pipeline(self, command_id: str) -> Pipeline:
        pipeline = self.pipelines.get(command_id.upper())
        if pipeline is None:
            raise soap.invalid_parameter(
                f"The request for the Windows Remote Shell with ShellId {self.shell_id} failed because the command "
                f"with CommandId {command_id.upper()} was not found."
            )
        return pipeline

    # -- pool lifecycle --------------------------------------------------------------------------

    def open(self, creation: bytes) -> None:
        """Process creationXml (SESSION_CAPABILITY + INIT_RUNSPACEPOOL); Opening -> Opened."""
        with self.cond:
            self._require("open the runspace pool", ShellState.OPENING)
            self._feed(creation, None)
            if self.pool.state is RunspacePoolState.Opened:
                self.state = ShellState.OPENED

    def disconnect(self, idle_timeout: float | None = None) -> None:
        with self.cond:
            self._require("disconnect", ShellState.OPENED)
            self.pool.disconnect()
            self.state = ShellState.DISCONNECTED
            if idle_timeout is not None:
                self.idle_timeout = idle_timeout
            self.touch()
            self.cond.notify_all()

    def reconnect(self, session_id: str) -> None:
        """Same client (same wsmv:SessionId) resumes; no PSRP traffic is involved."""
        with self.cond:
            self._require("reconnect", ShellState.DISCONNECTED)
            if session_id.upper() != self.session_id.upper():
                raise soap.WSManFault(
                    SESSION_MISMATCH,
                    "w:InvalidParameter",
                    f"The shell {self.shell_id} was created by another client session; use Connect instead.",
                    sender=True,
                )
            self.pool.reconnect()
            self._pump()
            self.outbox.pop(None, None)  # psrpcore queues an Opened state that Reconnect does not carry
            self.state = ShellState.OPENED
            self.touch()

    def connect(self, data: bytes, session_id: str) -> bytes:
        """A new client takes the pool over (connectXml); returns the connectResponseXml payload.

        The response carries SESSION_CAPABILITY and RUNSPACEPOOL_INIT_DATA ([MS-PSRP] 3.1.4.11); the
        application private data and the Opened state wait for the client's next pool Receive, which
        pypsrp sends right away.
        """
        with self.cond:
            self._require("connect", ShellState.DISCONNECTED)
            self._pump()
            self.outbox.pop(None, None)  # whatever the old client left unread is gone with it
            self.pool.connect()
            self.pool.prepare_message(self.pool.our_capability)
            self._feed(data, None)
            if self.pool.state is not RunspacePoolState.Opened:
                raise soap.invalid_parameter(
                    "connectXml did not carry SESSION_CAPABILITY and CONNECT_RUNSPACEPOOL."
                )
            box = self.outbox.get(None, deque())
            answer = b"".join(box.popleft() for _ in range(min(2, len(box))))
            self.session_id = session_id
            self.state = ShellState.OPENED
            self.touch()
            return answer

    def close(self) -> None:
        """Delete: stop every pipeline and forget the pool."""
        with self.cond:
            self._require("delete", ShellState.OPENING, ShellState.OPENED, ShellState.DISCONNECTED)
            for pipeline in self.pipelines.values():
                self._stop(pipeline)
            self.pipelines.clear()
            self.outbox.clear()
            self.state = ShellState.CLOSED
            self.cond.notify_all()

    def expired(self, now: float) -> bool:
        """Idle timeout: a disconnected shell always counts down; a connected one only when idle."""
        with self.cond:
            if self.state is ShellState.DISCONNECTED:
                return now - self.last_activity > self.idle_timeout
            if self.state is ShellState.OPENED and not any(
                p.state is CommandState.RUNNING for p in self.pipelines.values()
            ):
                return now - self.last_activity > self.idle_timeout
            return False

    # -- commands --------------------------------------------------------------------------------

    def command(self, command_id: str, fragment: bytes) -> Pipeline:
        """Command: create the pipeline and feed the first CreatePipeline fragment."""
        with self.cond:
            self._require("start a command", ShellState.OPENED)
            command_id = command_id.upper()
            if command_id in self.pipelines:
                raise soap.invalid_parameter(f"A command with CommandId {command_id} already exists.")
            pipeline = Pipeline(command_id, psrpcore.ServerPipeline(self.pool, uuid.UUID(command_id)))
            self.pipelines[command_id] = pipeline
            try:
                self._feed(fragment, pipeline.pipeline_id)
            except Exception:
                self.discard(pipeline)
                raise
            self.touch()
            return pipeline

    def send(self, stream: str, data: bytes, command_id: str | None) -> Pipeline | None:
        """Send: more PSRP data for the pool or a pipeline; returns the pipeline if it became ready."""
        with self.cond:
            self._require("send input", ShellState.OPENED)
            if stream not in INPUT_STREAMS:
                raise soap.invalid_parameter(f"The stream {stream!r} is not an input stream of this shell.")
            pipeline = self.get_pipeline(command_id) if command_id else None
            self._feed(data, pipeline.pipeline_id if pipeline else None)
            self.touch()
            return pipeline if pipeline is not None and pipeline.ready else None

    def discard(self, pipeline: Pipeline) -> None:
        """Forget a pipeline that will never run (a fault was answered instead)."""
        with self.cond:
            self.pipelines.pop(pipeline.command_id, None)
            self.pool.pipeline_table.pop(pipeline.pipeline_id, None)
            self.outbox.pop(pipeline.pipeline_id, None)

    def start(self, pipeline: Pipeline, host: CommandHost, user: str) -> None:
        """Start the worker thread, dropping the Running state psrpcore queues (real servers send none)."""
        with self.cond:
            if not pipeline.ready:
                raise soap.internal_error(f"Pipeline {pipeline.command_id} is not ready to start.")
            self._pump()
            pipeline.ps.start()
            self.pool.data_to_send()  # the Running PipelineState
            pipeline.ctx = PipelineContext(host.name, user, self.pool.runspace_pool_id, pipeline.pipeline_id)
            pipeline.state = CommandState.RUNNING
            if pipeline.unsupported:
                self._finish(pipeline, soap.invalid_parameter(pipeline.unsupported))
                return
            worker = threading.Thread(
                target=self._run, args=(pipeline, host), name=f"psrp-{pipeline.command_id[:8]}", daemon=True
            )
            worker.start()

    def _run(self, pipeline: Pipeline, host: CommandHost) -> None:
        failure: BaseException | None = None
        assert pipeline.ctx is not None
        try:
            host.run(pipeline.statements, Sink(pipeline, self._write), pipeline.ctx)
        except PipelineStoppedError:
            pass
        except BaseException as exc:  # a terminating error or an emulator bug: both fail the pipeline
            if not isinstance(exc, TerminatingError):
                log.exception("host %s failed in pipeline %s", host.name, pipeline.command_id)
            failure = exc
        with self.cond:
            self._finish(pipeline, failure)

    def _finish(self, pipeline: Pipeline, failure: BaseException | None) -> None:
        if pipeline.ps.state is PSInvocationState.Running:
            if failure is None:
                pipeline.ps.complete()
            else:
                record = (
                    error_record(failure.error)
                    if isinstance(failure, TerminatingError)
                    else internal_error_record(failure)
                )
                # psrpcore has no public "fail" for a server pipeline; this is how it emits the state.
                pipeline.ps._change_state(PSInvocationState.Failed, record)
        pipeline.state = CommandState.DONE
        self._pump()

    def _write(self, pipeline: Pipeline, action: Callable[[psrpcore.ServerPipeline], None]) -> None:
        with self.cond:
            if self.state is ShellState.CLOSED or pipeline.ps.state is not PSInvocationState.Running:
                raise PipelineStoppedError("The pipeline has been stopped.")
            action(pipeline.ps)
            self._pump()

    def _stop(self, pipeline: Pipeline) -> None:
        if pipeline.ctx is not None:
            pipeline.ctx.cancelled.set()
        if pipeline.ps.state is PSInvocationState.Running:
            pipeline.ps.stop()
            pipeline.state = CommandState.DONE
            self._pump()

    def signal(self, command_id: str, code: str) -> None:
        """Signal: ctrl_c stops the pipeline; Terminate stops it and releases the command."""
        with self.cond:
            self._require("signal a command", ShellState.OPENED)
            pipeline = self.get_pipeline(command_id)
            if code == SIGNAL_TERMINATE:
                self._stop(pipeline)
                self.discard(pipeline)
            elif code in (SIGNAL_PS_CTRL_C, SIGNAL_CTRL_C):
                self._stop(pipeline)
            else:
                raise soap.invalid_parameter(f"The signal code {code!r} is not supported by this shell.")
            self.touch()

    def connect_command(self, command_id: str) -> Pipeline:
        """Connect to a command of a (re)connected pool; its buffered output flows on the next Receive."""
        with self.cond:
            self._require("connect a command", ShellState.OPENED)
            pipeline = self.get_pipeline(command_id)
            self.touch()
            return pipeline

    def receive(self, command_id: str | None, timeout: float) -> tuple[list[bytes], Pipeline | None]:
        """Receive: long-poll for output; raise the TimedOut fault when nothing came within ``timeout``.

        Returns the PSRP messages and, for a pipeline, the pipeline (its ``state`` says whether the
        answer carries the end).
        """
        with self.cond:
            deadline = self.clock() + timeout
            data_since: float | None = None
            while True:
                self._require("receive output", ShellState.OPENED)
                pipeline = self.get_pipeline(command_id) if command_id else None
                key = pipeline.pipeline_id if pipeline else None
                box = self.outbox.get(key)
                now = self.clock()
                done = pipeline is not None and pipeline.state is CommandState.DONE
                if box and data_since is None:
                    data_since = now
                flush = data_since is not None and (pipeline is None or now >= data_since + FLUSH_DELAY)
                if done or flush or now >= deadline:
                    messages = list(box) if box else []
                    if box:
                        box.clear()
                    if not messages and not done:
                        raise soap.timed_out()
                    if done and pipeline is not None:
                        pipeline.delivered = True
                    self.touch()
                    return messages, pipeline
                wake = deadline if data_since is None else min(deadline, data_since + FLUSH_DELAY)
                self.cond.wait(max(0.0, wake - now))
