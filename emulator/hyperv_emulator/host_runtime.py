"""The seam between the emulator's protocol layer and its Hyper-V host.

The WS-Man/PSRP layer decodes a CreatePipeline message into ``Statement`` objects and hands them to a
``CommandHost`` in a worker thread, with a ``PipelineSink`` that turns what the host writes into PSRP
messages. The host never sees XML or sockets; the protocol never sees a virtual machine.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class BoundParameter:
    """One parameter as the client bound it. ``name`` is None for a positional argument."""

    name: str | None
    value: Any


@dataclass(frozen=True)
class CommandInvocation:
    """One command of a statement, as sent by the client (``add_cmdlet`` or ``add_script``)."""

    name: str
    is_script: bool
    parameters: tuple[BoundParameter, ...] = ()

    def parameter_names(self) -> list[str]:
        return [p.name for p in self.parameters if p.name is not None]


# One statement is a pipeline of commands (``a | b | c``); a PSRP pipeline carries one or more.
Statement = tuple[CommandInvocation, ...]


@dataclass(frozen=True)
class ErrorSpec:
    """Everything PowerShell puts in an ErrorRecord that a client may match on."""

    message: str
    fully_qualified_error_id: str
    category: str  # a System.Management.Automation.ErrorCategory name, e.g. "ObjectNotFound"
    exception_type: str  # full .NET type name, e.g. "Microsoft.HyperV.PowerShell.VirtualizationException"
    activity: str = ""  # the cmdlet, e.g. "Checkpoint-VM"
    reason: str = ""  # short exception name, e.g. "VirtualizationException"
    target_name: str = ""
    target_type: str = ""
    hresult: int = -2146233088


class TerminatingError(Exception):
    """Raised by a host to end the pipeline in the Failed state with this error record."""

    def __init__(self, error: ErrorSpec) -> None:
        super().__init__(error.message)
        self.error = error


class PipelineSink(Protocol):
    """Where a running pipeline writes. Implemented by the protocol layer; thread-safe."""

    def write_output(self, obj: Any) -> None:
        """Write one object (a psrpcore PSObject or a primitive) to the output stream."""

    def write_error(self, error: ErrorSpec, target_object: Any = None) -> None:
        """Write a non-terminating error record."""

    def write_warning(self, message: str) -> None: ...

    def write_verbose(self, message: str) -> None: ...


@dataclass(frozen=True)
class PipelineContext:
    """Who runs the pipeline and where; ``cancelled`` is set when the client stops it."""

    host_name: str
    user: str
    pool_id: uuid.UUID
    pipeline_id: uuid.UUID
    cancelled: threading.Event = field(default_factory=threading.Event)


class CommandHost(Protocol):
    """A PowerShell host that runs cmdlets: one per emulated Hyper-V host."""

    name: str

    def run(self, statements: Sequence[Statement], sink: PipelineSink, ctx: PipelineContext) -> None:
        """Run every statement in order, in the calling (worker) thread.

        May block while an emulated operation takes its time. Raises ``TerminatingError`` to fail the
        pipeline; anything else it raises is a bug in the emulator and becomes a Failed pipeline too.
        """
