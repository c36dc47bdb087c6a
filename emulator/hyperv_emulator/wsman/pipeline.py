"""One PSRP pipeline on the server: what the client asked for, and the sink a host writes into.

The host runs in a worker thread; everything it writes goes through ``Sink`` into psrpcore under the
shell's lock. Once the client stopped the pipeline (or the shell is gone) a write raises
``PipelineStoppedError`` the way PowerShell throws ``PipelineStoppedException`` into a cmdlet.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psrpcore
from psrpcore.types import ErrorCategory, ErrorCategoryInfo, ErrorRecord, NETException

from hyperv_emulator.host_runtime import (
    BoundParameter,
    CommandInvocation,
    ErrorSpec,
    PipelineContext,
    Statement,
)


class PipelineStoppedError(Exception):
    """Raised into the host when it writes to a pipeline that was stopped or whose shell was closed."""


class CommandState(enum.Enum):
    """The WinRS view of a command (rsp:CommandState), not the PSRP invocation state."""

    PENDING = "Pending"  # Command received; the CreatePipeline message is not complete yet
    RUNNING = "Running"  # the host runs it in a worker thread
    DONE = "Done"  # the final PipelineState is queued for the client


@dataclass
class Pipeline:
    """A WinRS command carrying one PSRP pipeline."""

    command_id: str
    ps: psrpcore.ServerPipeline
    state: CommandState = CommandState.PENDING
    statements: tuple[Statement, ...] = ()
    ctx: PipelineContext | None = None
    unsupported: str | None = None  # why the request cannot run (e.g. GetCommandMetadata)
    drop_final: bool = False  # DROP_AFTER_RUN armed: the Receive carrying the end is dropped
    delivered: bool = False  # the client has received the final state

    @property
    def pipeline_id(self) -> uuid.UUID:
        return self.ps.pipeline_id

    @property
    def ready(self) -> bool:
        """The whole CreatePipeline arrived; the pipeline can start."""
        return self.state is CommandState.PENDING and (bool(self.statements) or self.unsupported is not None)

    @property
    def cmdlets(self) -> list[str]:
        return [c.name for s in self.statements for c in s]

    @property
    def vms(self) -> list[str]:
        """VM names bound in the pipeline, so transport faults can be narrowed to one VM."""
        names: list[str] = []
        for cmd in (c for s in self.statements for c in s):
            for p in cmd.parameters:
                if p.name is None:
                    continue
                key = p.name.lower()
                if key == "vmname" or (key == "name" and cmd.name.lower().endswith("-vm")):
                    values = p.value if isinstance(p.value, list | tuple) else [p.value]
                    names.extend(str(v) for v in values if isinstance(v, str))
        return names


def statements_from(ps: psrpcore.PowerShell) -> tuple[Statement, ...]:
    """Split psrpcore's flat command list into statements at each ``end_of_statement``."""
    statements: list[Statement] = []
    current: list[CommandInvocation] = []
    for cmd in ps.commands:
        params = tuple(BoundParameter(name, value) for name, value in cmd.parameters)
        current.append(
            CommandInvocation(name=str(cmd.command_text), is_script=bool(cmd.is_script), parameters=params)
        )
        if cmd.end_of_statement:
            statements.append(tuple(current))
            current = []
    if current:
        statements.append(tuple(current))
    return tuple(statements)


def _category(name: str) -> ErrorCategory:
    try:
        return ErrorCategory[name]
    except KeyError:
        return ErrorCategory.NotSpecified


def exception_for(spec: ErrorSpec) -> NETException:
    """A .NET exception whose type names make the client see ``spec.exception_type``."""
    exc = NETException(Message=spec.message, HResult=spec.hresult)
    names = [spec.exception_type] if spec.exception_type else []
    if spec.exception_type != "System.Exception":
        names.append("System.Exception")
    exc.PSObject.type_names = [*names, "System.Object"]
    return exc


def category_for(spec: ErrorSpec) -> ErrorCategoryInfo:
    return ErrorCategoryInfo(
        Category=_category(spec.category),
        Activity=spec.activity or None,
        Reason=spec.reason or spec.exception_type.rsplit(".", 1)[-1],
        TargetName=spec.target_name or None,
        TargetType=spec.target_type or None,
    )


def error_record(spec: ErrorSpec, target_object: Any = None) -> ErrorRecord:
    return ErrorRecord(
        Exception=exception_for(spec),
        CategoryInfo=category_for(spec),
        TargetObject=target_object,
        FullyQualifiedErrorId=spec.fully_qualified_error_id,
    )


def internal_error_record(exc: BaseException) -> ErrorRecord:
    """What the client sees when the emulator's host itself crashed."""
    return error_record(
        ErrorSpec(
            message=f"The emulated host failed: {type(exc).__name__}: {exc}",
            fully_qualified_error_id="EmulatorHostFailure",
            category="NotSpecified",
            exception_type="System.Management.Automation.RuntimeException",
            reason="RuntimeException",
        )
    )


Writer = Callable[[Pipeline, Callable[[psrpcore.ServerPipeline], None]], None]


@dataclass
class Sink:
    """``host_runtime.PipelineSink`` for one pipeline; ``write`` locks the shell and checks it still runs."""

    pipeline: Pipeline
    write: Writer = field(repr=False)

    def write_output(self, obj: Any) -> None:
        self.write(self.pipeline, lambda ps: ps.write_output(obj))

    def write_error(self, error: ErrorSpec, target_object: Any = None) -> None:
        self.write(
            self.pipeline,
            lambda ps: ps.write_error(
                exception_for(error),
                category_info=category_for(error),
                target_object=target_object,
                fully_qualified_error_id=error.fully_qualified_error_id,
            ),
        )

    def write_warning(self, message: str) -> None:
        self.write(self.pipeline, lambda ps: ps.write_warning(message))

    def write_verbose(self, message: str) -> None:
        self.write(self.pipeline, lambda ps: ps.write_verbose(message))
