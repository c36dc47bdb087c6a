"""Errors a Hyper-V host can raise, classified from what the ErrorRecord carries.

We match on FullyQualifiedErrorId, category and exception type, never on the message: messages are
localized and differ between servers. The one exception is a Win32 error code (``0x80070070``) that
Hyper-V appends to a message: a number, not prose, so no locale changes it. Where two failures share
an id (Checkpoint-VM reports "checkpoints disabled" and "production checkpoints cannot be created"
both as OperationFailed), the caller refines with what it knows (``means_production_impossible``).
What each real host emits, with sources: docs/emulator.md, Conformance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HRESULT = re.compile(r"\(0x([0-9a-fA-F]{8})\)")
# Win32 errors a full volume produces, as HRESULTs: ERROR_DISK_FULL (112), ERROR_HANDLE_DISK_FULL (39).
DISK_FULL_HRESULTS = frozenset({0x80070070, 0x80070027})


@dataclass(frozen=True)
class ErrorInfo:
    """The parts of a PowerShell ErrorRecord that identify a failure."""

    fully_qualified_error_id: str = ""
    category: str = ""  # ErrorCategory name, e.g. "ObjectNotFound"
    exception_type: str = ""  # full .NET type name
    reason: str = ""
    target_name: str = ""
    message: str = ""  # the category line ("ObjectNotFound: (x:String) [Get-VM], ..."): for humans only
    exception_message: str = ""  # the Hyper-V reason (Exception.Message): for humans only

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

    @property
    def win32_codes(self) -> frozenset[int]:
        """HRESULTs written into the text as ``(0x8007xxxx)``: numbers, the same in every locale."""
        text = f"{self.exception_message}\n{self.message}"
        return frozenset(int(code, 16) for code in _HRESULT.findall(text))

    def describe(self) -> str:
        """The Hyper-V reason (the exception's message), with the FQID that identifies it."""
        where = f" [{self.fully_qualified_error_id}]" if self.fully_qualified_error_id else ""
        return f"{(self.exception_message or self.message).strip()}{where}"


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
    """The volume ran out of space (Win32 ERROR_DISK_FULL in the host's answer)."""


class PermissionDeniedError(HyperVError):
    """The account may not do this on the host (PermissionDenied / AccessDenied). Never read as "not
    found": the VM may well exist. Grant the rights (Hyper-V Administrators, or the JEA role)."""


class PathNotFoundError(HyperVError):
    """A file or folder on the host does not exist (file cmdlets: ItemNotFoundException, PathNotFound)."""


class ScriptRefusedError(HyperVError):
    """The endpoint runs no script text (a NoLanguage / JEA session)."""


class CommandFailedError(HyperVError):
    """A host error that fits no narrower class; its ErrorInfo says what happened."""


class TransportError(HyperVError):
    pass


class TransientTransportError(TransportError):
    """Connection reset, WS-Man timeout or busy: safe to retry (reads) or re-check then retry (writes)."""

    retryable = True


class WinRMQuotaError(TransientTransportError):
    """The host's WinRM refused a new shell or operation because a quota is exhausted (a
    ``wsman:QuotaLimit`` fault: too many shells, users or operations for this user). Transient: it
    passes once another shell of the user ends (Delete, or the host's idle timeout for a disconnected
    one), so the hook retries it with backoff; never a credentials problem. ``quota`` names the quota
    (e.g. "MaxShellsPerUser (winrm/config/winrs)"), ``code`` is the WS-Man fault code."""

    def __init__(self, message: str, *, quota: str, code: int | str) -> None:
        super().__init__(message)
        self.quota = quota
        self.code = code

    def after_retries(self, attempts: int, seconds: float) -> WinRMQuotaError:
        """The same refusal, saying the hook's bounded retries did not get past it."""
        return WinRMQuotaError(
            f"{self} [still refused after {attempts} attempt(s) over {seconds:.1f}s of backoff; "
            "the task's own retries may try later]",
            quota=self.quota,
            code=self.code,
        )


class AuthenticationFailedError(TransportError):
    """Credentials rejected. Never retried: retries lock accounts out."""


# (error id, category, exception name, command class suffix) -> class; "" matches anything; first
# match wins. Sources for each row: docs/emulator.md, Conformance ("States, dates, names, errors").
_RULES: list[tuple[str, str, str, str, type[HyperVError]]] = [
    ("ScriptsNotAllowed", "", "", "", ScriptRefusedError),
    ("CommandNotFoundException", "", "", "", CommandFailedError),
    ("", "PermissionDenied", "", "", PermissionDeniedError),
    ("AccessDenied", "", "", "", PermissionDeniedError),
    ("", "", "UnauthorizedAccessException", "", PermissionDeniedError),
    ("", "", "ItemNotFoundException", "", PathNotFoundError),
    ("", "", "DriveNotFoundException", "", PathNotFoundError),
    ("PathNotFound", "", "", "", PathNotFoundError),
    ("", "ObjectNotFound", "", ".GetVHD", PathNotFoundError),  # a disk file, not a VM
    # Get-VM -Name with no match: InvalidArgument / InvalidParameter (minikube#8970, PS-AutoLab-Env#133).
    ("InvalidParameter", "InvalidArgument", "VirtualizationException", ".GetVM", VMNotFoundError),
    # -VMName cmdlets and Get-VM -Id with no match; Get-VMSnapshot filters (Lability#294, multipass#3748).
    ("", "ObjectNotFound", "VirtualizationException", "", VMNotFoundError),
    ("", "ResourceBusy", "", "", OperationInProgressError),
    ("", "InvalidOperation", "VirtualizationException", "", InvalidStateError),
]


def classify(info: ErrorInfo) -> HyperVError:
    """Map an error record to the narrowest class its identifiers justify."""
    if info.win32_codes & DISK_FULL_HRESULTS:
        return StorageFullError(info.describe(), info)
    for error_id, category, exception, command, cls in _RULES:
        if error_id and info.error_id != error_id:
            continue
        if category and info.category != category:
            continue
        if exception and info.exception_name != exception:
            continue
        if command and not info.command.lower().endswith(command.lower()):
            continue
        if cls is VMNotFoundError and _is_snapshot_command(info.command):
            cls = CheckpointNotFoundError
        return cls(info.describe(), info)
    return CommandFailedError(info.describe(), info)


# Below this much free space on the volume of a VM's disks, a failed checkpoint is a full volume, not a
# guest that could not quiesce: real hosts report both as the same plain failed job (OperationFailed),
# and the full-disk text does not always carry the Win32 code (minishift/minishift#1607).
NEARLY_FULL_BYTES = 1 << 30


def means_production_impossible(error: HyperVError) -> bool:
    """Whether a failed ProductionOnly Checkpoint-VM says "the guest could not quiesce". Real hosts
    report that as a plain failed job (OperationFailed, VirtualizationException): anything narrower
    (full disk, no permission, VM gone, busy, wrong state) is the host's problem, not the guest's,
    and a standard attempt would fail the same way."""
    return (
        type(error) is CommandFailedError
        and error.info is not None
        and error.info.error_id
        in (
            "OperationFailed",
            "",
        )
    )


def _is_snapshot_command(command: str) -> bool:
    tail = command.rsplit(".", 1)[-1].lower()
    return "snapshot" in tail or ("checkpoint" in tail and not tail.endswith("checkpointvm"))


def is_rejected_login(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from, is a rejected login."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, AuthenticationFailedError):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
