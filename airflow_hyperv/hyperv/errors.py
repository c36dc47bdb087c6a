"""Errors a Hyper-V host can raise, classified from what the ErrorRecord carries.

We match on FullyQualifiedErrorId, category and exception type, never on the message: messages are
localized and differ between servers. Where two failures share an id (Checkpoint-VM reports
"checkpoints disabled" and "production checkpoints cannot be created" both as OperationFailed), the
caller refines with what it knows (the VM's checkpoint type) via ``refine``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorInfo:
    """The parts of a PowerShell ErrorRecord that identify a failure."""

    fully_qualified_error_id: str = ""
    category: str = ""  # ErrorCategory name, e.g. "ObjectNotFound"
    exception_type: str = ""  # full .NET type name
    reason: str = ""
    target_name: str = ""
    message: str = ""  # for humans only

    @property
    def error_id(self) -> str:
        """The part of the FQID before the comma, e.g. "ObjectNotFound"."""
        return self.fully_qualified_error_id.partition(",")[0]

    @property
    def command(self) -> str:
        """The command class after the comma, e.g. "Microsoft.HyperV.PowerShell.Commands.GetVM"."""
        return self.fully_qualified_error_id.partition(",")[2]

    @property
    def exception_name(self) -> str:
        return self.exception_type.rsplit(".", 1)[-1].removeprefix("Deserialized.")

    def describe(self) -> str:
        where = f" [{self.fully_qualified_error_id}]" if self.fully_qualified_error_id else ""
        return f"{self.message}{where}"


class HyperVError(Exception):
    """Base of every error this provider raises about a host or its input."""

    retryable = False  # only transport faults are retried by the hook

    def __init__(self, message: str, info: ErrorInfo | None = None) -> None:
        super().__init__(message)
        self.info = info


class InvalidInputError(HyperVError, ValueError):
    """Input that must be refused before anything on the host changes."""


class WildcardNameError(InvalidInputError):
    """A name that PowerShell would treat as a pattern where an exact name is meant."""


class VMNotFoundError(HyperVError):
    pass


class AmbiguousVMNameError(HyperVError):
    """More than one VM has this exact name; act by Id instead."""


class CheckpointNotFoundError(HyperVError):
    pass


class CheckpointsDisabledError(HyperVError):
    pass


class ProductionCheckpointImpossibleError(HyperVError):
    """The guest could not quiesce (VSS / fsfreeze); only a crash-consistent checkpoint is possible."""


class OperationInProgressError(HyperVError):
    """The VM or checkpoint is busy (a merge, another checkpoint, a state change)."""


class InvalidStateError(HyperVError):
    """The VM is not in a state that allows the operation."""


class StorageFullError(HyperVError):
    pass


class ScriptRefusedError(HyperVError):
    """The endpoint runs no script text (a NoLanguage / JEA session)."""


class CommandFailedError(HyperVError):
    """A host error that fits no narrower class; its ErrorInfo says what happened."""


class TransportError(HyperVError):
    pass


class TransientTransportError(TransportError):
    """Connection reset, WS-Man timeout or busy: safe to retry (reads) or re-check then retry (writes)."""

    retryable = True


class AuthenticationFailedError(TransportError):
    """Credentials rejected. Never retried: retries lock accounts out."""


# (error id, category, exception name) -> class; "" matches anything. First match wins.
_RULES: list[tuple[str, str, str, type[HyperVError]]] = [
    ("ScriptsNotAllowed", "", "", ScriptRefusedError),
    ("CommandNotFoundException", "", "", CommandFailedError),
    ("", "ObjectNotFound", "VirtualizationException", VMNotFoundError),
    ("InvalidParameter", "InvalidArgument", "VirtualizationException", VMNotFoundError),
    ("", "ResourceBusy", "", OperationInProgressError),
    ("", "ResourceUnavailable", "", StorageFullError),
    ("", "InvalidOperation", "VirtualizationException", InvalidStateError),
    ("", "", "IOException", StorageFullError),
]


def classify(info: ErrorInfo) -> HyperVError:
    """Map an error record to the narrowest class its identifiers justify."""
    for error_id, category, exception, cls in _RULES:
        if error_id and info.error_id != error_id:
            continue
        if category and info.category != category:
            continue
        if exception and info.exception_name != exception:
            continue
        if cls is VMNotFoundError and _is_snapshot_command(info.command):
            cls = CheckpointNotFoundError
        return cls(info.describe(), info)
    return CommandFailedError(info.describe(), info)


def _is_snapshot_command(command: str) -> bool:
    tail = command.rsplit(".", 1)[-1].lower()
    return "snapshot" in tail or ("checkpoint" in tail and not tail.endswith("checkpointvm"))
