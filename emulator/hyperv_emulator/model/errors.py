"""One exception class per FullyQualifiedErrorId family a real host produces.

Each carries what PowerShell puts in an ErrorRecord (error id, category, exception type, target) and
turns into a ``host_runtime.ErrorSpec`` once the cmdlet is known, because a real FQID is
``<ErrorId>,<cmdlet's .NET class>`` (``ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.CheckpointVM``).
Clients must match on FQID, category and exception type, never on the message text.
"""

from __future__ import annotations

from typing import ClassVar

from hyperv_emulator.host_runtime import ErrorSpec

VIRTUALIZATION_EXCEPTION = "Microsoft.HyperV.PowerShell.VirtualizationException"


class HyperVError(Exception):
    """Base: an error record waiting for its cmdlet. ``qualified=False`` ids stand alone (engine errors)."""

    error_id: ClassVar[str] = "OperationFailed"
    category: ClassVar[str] = "NotSpecified"
    exception_type: ClassVar[str] = VIRTUALIZATION_EXCEPTION
    qualified: ClassVar[bool] = True

    def __init__(self, message: str, *, target_name: str = "", target_type: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.target_name = target_name
        self.target_type = target_type

    def fqid(self, command_type: str) -> str:
        return f"{self.error_id},{command_type}" if self.qualified and command_type else self.error_id

    def to_spec(self, activity: str = "", command_type: str = "") -> ErrorSpec:
        return ErrorSpec(
            message=self.message,
            fully_qualified_error_id=self.fqid(command_type),
            category=self.category,
            exception_type=self.exception_type,
            activity=activity,
            reason=self.exception_type.rsplit(".", 1)[-1],
            target_name=self.target_name,
            target_type=self.target_type,
        )


# --- Hyper-V module (Microsoft.HyperV.PowerShell.VirtualizationException) -------------------------


class VMNotFoundError(HyperVError):
    """-VMName (and Get-VM -Id) that matches no VM: ObjectNotFound. Text, category and id from
    VirtualEngine/Lability#294 (Checkpoint-VM) and jamesstringer90/Easy-GPU-PV#449 (-VMName cmdlets).
    ``Get-VM -Name`` answers differently: ``GetVMNameNotFoundError``."""

    error_id = "ObjectNotFound"
    category = "ObjectNotFound"

    @classmethod
    def by_name(cls, name: str) -> VMNotFoundError:
        return cls(
            f'Hyper-V was unable to find a virtual machine with name "{name}".',
            target_name=name,
            target_type="String",
        )

    @classmethod
    def by_id(cls, vm_id: str) -> VMNotFoundError:
        return cls(
            f'Hyper-V was unable to find a virtual machine with id "{vm_id}".',
            target_name=vm_id,
            target_type="Guid",
        )


class GetVMNameNotFoundError(HyperVError):
    """``Get-VM -Name`` that matches no VM. Unlike the -VMName cmdlets, Get-VM answers InvalidArgument /
    ``InvalidParameter,…GetVM`` (minikube#8970, pluralsight/PS-AutoLab-Env#133)."""

    error_id = "InvalidParameter"
    category = "InvalidArgument"

    def __init__(self, name: str) -> None:
        super().__init__(
            f'Hyper-V was unable to find a virtual machine with name "{name}".',
            target_name=name,
            target_type="String",
        )


class AccessDeniedError(HyperVError):
    """The caller is no Hyper-V administrator. Message seen in pawelgnatowski/WSL2-Network-Fix#4;
    id ``AccessDenied`` and category PermissionDenied *unconfirmed*."""

    error_id = "AccessDenied"
    category = "PermissionDenied"

    def __init__(self, host_name: str) -> None:
        super().__init__(
            "You do not have the required permission to complete this task. Contact the administrator of "
            f"the authorization policy for the computer '{host_name}'.",
            target_name=host_name,
            target_type="String",
        )


class SnapshotNotFoundError(HyperVError):
    """Checkpoint filter matching nothing. Text and category seen in canonical/multipass#3748."""

    error_id = "ObjectNotFound"
    category = "ObjectNotFound"

    def __init__(self, target: str = "") -> None:
        super().__init__("Unable to find a snapshot matching the given criteria.", target_name=target)


class VhdNotFoundError(HyperVError):
    """Get-VHD on a path that is not a virtual disk (ObjectNotFound); wording *unconfirmed*."""

    error_id = "ObjectNotFound"
    category = "ObjectNotFound"

    def __init__(self, path: str) -> None:
        super().__init__(
            f"Getting the mounted storage instance for the path '{path}' failed.\nThe operation failed as the "
            "file could not be found or is not a virtual hard disk.",
            target_name=path,
            target_type="String",
        )


class CheckpointsDisabledError(HyperVError):
    """CheckpointType Disabled. Text from hashicorp/vagrant#9977; id/category *unconfirmed*."""

    error_id = "OperationFailed"
    category = "NotSpecified"

    def __init__(self, vm_name: str, vm_id: str) -> None:
        uid = vm_id.upper()
        super().__init__(
            f"Checkpoint operation failed.\nCheckpoints have been disabled.\nCheckpoint operation for "
            f"'{vm_name}' failed. (Virtual machine ID {uid})\nCheckpoints have been disabled for "
            f"'{vm_name}'. (Virtual machine ID {uid})",
            target_name=vm_name,
            target_type="VirtualMachine",
        )


class ProductionCheckpointError(HyperVError):
    """ProductionOnly and the guest cannot quiesce. Text seen on real hosts (home-assistant/operating-system#1996); id/category *unconfirmed*."""

    error_id = "OperationFailed"
    category = "NotSpecified"

    def __init__(self, vm_name: str, vm_id: str) -> None:
        uid = vm_id.upper()
        super().__init__(
            f"Checkpoint operation failed.\nProduction checkpoints cannot be created.\nProduction checkpoints "
            f"cannot be created for '{vm_name}'. (Virtual machine ID {uid})\nCheckpoint operation for "
            f"'{vm_name}' failed. (Virtual machine ID {uid})",
            target_name=vm_name,
            target_type="VirtualMachine",
        )


class CheckpointNoSpaceError(HyperVError):
    """Checkpoint-VM with no room for the differencing disks on their volume: a plain failed job, the
    shape of a real host's full-volume failure (New-VHD on a full disk: OperationFailed, no Win32 code
    in the text, minishift/minishift#1607). The checkpoint's own text is *unconfirmed*."""

    error_id = "OperationFailed"
    category = "NotSpecified"

    def __init__(self, vm_name: str, vm_id: str, volume: str) -> None:
        uid = vm_id.upper()
        super().__init__(
            f"Checkpoint operation failed.\nCheckpoint operation for '{vm_name}' failed. (Virtual machine ID "
            f"{uid})\nThere is not enough space on the disk '{volume}'.",
            target_name=vm_name,
            target_type="VirtualMachine",
        )


class InvalidStateError(HyperVError):
    """An operation the VM's current state forbids (e.g. a checkpoint while disks merge). *unconfirmed* id."""

    error_id = "InvalidState"
    category = "InvalidOperation"


class NotEnoughSpaceError(HyperVError):
    """Export target out of space (Win32 0x80070070). Id/category *unconfirmed*; real ones say OperationFailed."""

    error_id = "OperationFailed"
    category = "NotSpecified"


class ExportExistsError(HyperVError):
    """Export onto an existing export: hashicorp/vagrant export_vm.ps1 capture, 'The file exists. (0x80070050)'."""

    error_id = "OperationFailed"
    category = "NotSpecified"


class OperationFailedError(HyperVError):
    """Any other failed Hyper-V operation (OperationFailed,…StartVM in public captures)."""

    error_id = "OperationFailed"
    category = "NotSpecified"


# --- PowerShell engine -------------------------------------------------------------------------------


class ParameterBindingError(HyperVError):
    """NamedParameterNotFound, AmbiguousParameter, MissingArgument, CannotConvertArgumentNoMessage…"""

    category = "InvalidArgument"
    exception_type = "System.Management.Automation.ParameterBindingException"

    def __init__(self, error_id: str, message: str, *, target_name: str = "") -> None:
        super().__init__(message, target_name=target_name)
        self.error_id = error_id  # type: ignore[misc]

    @classmethod
    def not_found(cls, name: str) -> ParameterBindingError:
        return cls(
            "NamedParameterNotFound", f"A parameter cannot be found that matches parameter name '{name}'."
        )

    @classmethod
    def ambiguous(cls, name: str, matches: list[str]) -> ParameterBindingError:
        return cls(
            "AmbiguousParameter",
            f"Parameter cannot be processed because the parameter name '{name}' is ambiguous. "
            f"Possible matches include: {' '.join('-' + m for m in matches)}.",
        )

    @classmethod
    def missing_argument(cls, name: str, type_name: str) -> ParameterBindingError:
        return cls(
            "MissingArgument",
            f"Missing an argument for parameter '{name}'. Specify a parameter of type '{type_name}' and try again.",
        )

    @classmethod
    def cannot_convert(cls, name: str, value: object, type_name: str, why: str = "") -> ParameterBindingError:
        text = f'Cannot bind parameter \'{name}\'. Cannot convert value "{value}" to type "{type_name}".'
        if why:
            text += f' Error: "{why}"'
        return cls("CannotConvertArgumentNoMessage", text)

    @classmethod
    def parameter_set(cls) -> ParameterBindingError:
        return cls(
            "AmbiguousParameterSet", "Parameter set cannot be resolved using the specified named parameters."
        )

    @classmethod
    def input_not_bound(cls) -> ParameterBindingError:
        return cls(
            "InputObjectNotBound",
            "The input object cannot be bound to any parameters for the command either because the command "
            "does not take pipeline input or the input and its properties do not match any of the parameters "
            "that take pipeline input.",
        )

    @classmethod
    def missing_mandatory(cls, names: list[str]) -> ParameterBindingError:
        return cls(
            "MissingMandatoryParameter",
            f"Cannot process command because of one or more missing mandatory parameters: {' '.join(names)}.",
        )


class CommandNotFoundError(HyperVError):
    """Unknown cmdlet: PowerShell's own wording, FQID ``CommandNotFoundException`` (no cmdlet suffix)."""

    error_id = "CommandNotFoundException"
    category = "ObjectNotFound"
    exception_type = "System.Management.Automation.CommandNotFoundException"
    qualified = False

    def __init__(self, name: str) -> None:
        super().__init__(
            f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable "
            "program. Check the spelling of the name, or if a path was included, verify that the path is "
            "correct and try again.",
            target_name=name,
            target_type="String",
        )


class ScriptsNotAllowedError(HyperVError):
    """Script text on a NoLanguage (JEA) endpoint: ParserError / ParseException / ScriptsNotAllowed
    (about_Language_Modes, PowerShell's CommandProcessor source)."""

    error_id = "ScriptsNotAllowed"
    category = "ParserError"
    exception_type = "System.Management.Automation.ParseException"
    qualified = False

    def __init__(self, script: str) -> None:
        super().__init__(
            "The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode.",
            target_name=script[:40],
            target_type="String",
        )


class ConfirmationRequiredError(HyperVError):
    """A prompting cmdlet (Restore-VMSnapshot) without ``-Confirm:$false`` on a host that cannot prompt.
    Wording follows PowerShell's HostException for non-interactive hosts; *unconfirmed* for remoting."""

    error_id = "HostFunctionNotImplemented"
    category = "NotImplemented"
    exception_type = "System.Management.Automation.Host.HostException"

    def __init__(self, action: str, target: str) -> None:
        super().__init__(
            "A command that prompts the user failed because the host program or the command type does not "
            "support user interaction. The host was attempting to request confirmation with the following "
            f'message: Are you sure you want to perform this action? Performing the operation "{action}" on '
            f'target "{target}".',
            target_name=target,
        )


class PathNotFoundError(HyperVError):
    """File-system path that does not exist: ``PathNotFound,…`` / ItemNotFoundException."""

    error_id = "PathNotFound"
    category = "ObjectNotFound"
    exception_type = "System.Management.Automation.ItemNotFoundException"

    def __init__(self, path: str) -> None:
        super().__init__(
            f"Cannot find path '{path}' because it does not exist.", target_name=path, target_type="String"
        )


class ItemExistsError(HyperVError):
    """New-Item on an existing directory: ``DirectoryExist,…NewItemCommand`` / IOException."""

    error_id = "DirectoryExist"
    category = "ResourceExists"
    exception_type = "System.IO.IOException"

    def __init__(self, path: str) -> None:
        super().__init__(
            f"An item with the specified name {path} already exists.", target_name=path, target_type="String"
        )


class DriveNotFoundError(HyperVError):
    """A drive letter the host does not have: DriveNotFoundException."""

    error_id = "DriveNotFound"
    category = "ObjectNotFound"
    exception_type = "System.Management.Automation.DriveNotFoundException"

    def __init__(self, drive: str) -> None:
        super().__init__(
            f"Cannot find drive. A drive with the name '{drive}' does not exist.",
            target_name=drive,
            target_type="String",
        )


class InvalidPathError(HyperVError):
    """A path Windows would refuse (illegal characters, UNC shares the host does not serve)."""

    error_id = "ItemExistsNotSupportedError"
    category = "InvalidArgument"
    exception_type = "System.ArgumentException"

    def __init__(self, path: str, why: str = "Illegal characters in path.") -> None:
        super().__init__(why, target_name=path, target_type="String")


class WildcardPatternError(HyperVError):
    """A malformed wildcard (unterminated ``[``): WildcardPatternException."""

    error_id = "RuntimeException"
    category = "InvalidArgument"
    exception_type = "System.Management.Automation.WildcardPatternException"

    def __init__(self, pattern: str) -> None:
        super().__init__(
            f"The specified wildcard character pattern is not valid: {pattern}",
            target_name=pattern,
            target_type="String",
        )


# --- a JEA proxy command (restricted mode, cmdlets/jea.py) ------------------------------------------------


class ParameterValidationError(HyperVError):
    """A value outside a role's ValidateSet / ValidatePattern: ParameterArgumentValidationError."""

    error_id = "ParameterArgumentValidationError"
    category = "InvalidData"
    exception_type = "System.Management.Automation.ParameterBindingValidationException"


# --- file system provider (Microsoft.PowerShell.Commands.*ItemCommand, Get-Content) ---------------------


class FileInUseError(HyperVError):
    """A VM's open disk: IOException, like Windows' sharing violation."""

    error_id = "RemoveFileSystemItemIOError"
    category = "WriteError"
    exception_type = "System.IO.IOException"

    def __init__(self, path: str) -> None:
        super().__init__(
            f"The process cannot access the file '{path}' because it is being used by another process.",
            target_name=path,
            target_type="String",
        )


class FileExistsError_(HyperVError):
    """New-Item -ItemType File (no -Force) on an existing file: the provider opens it with
    FileMode.CreateNew and reports the IOException as ``NewItemIOError`` / WriteError (PowerShell's
    FileSystemProvider.NewItem; see docs/emulator.md, Leases)."""

    error_id = "NewItemIOError"
    category = "WriteError"
    exception_type = "System.IO.IOException"

    def __init__(self, path: str) -> None:
        super().__init__(f"The file '{path}' already exists.", target_name=path, target_type="String")


class UnauthorizedAccessError(HyperVError):
    """Get-Content on a directory: ``GetContentReaderUnauthorizedAccessError`` (PermissionDenied)."""

    error_id = "GetContentReaderUnauthorizedAccessError"
    category = "PermissionDenied"
    exception_type = "System.UnauthorizedAccessException"

    def __init__(self, path: str) -> None:
        super().__init__(f"Access to the path '{path}' is denied.", target_name=path, target_type="String")


# --- Storage module (Get-Volume, a CDXML function) -------------------------------------------------------


class VolumeNotFoundError(HyperVError):
    """The CDXML query found no MSFT_Volume: CmdletizationQuery_NotFound_<Property>."""

    category = "ObjectNotFound"
    exception_type = "Microsoft.PowerShell.Cmdletization.Cim.CimJobException"

    def __init__(self, prop: str, value: str) -> None:
        super().__init__(
            f"No MSFT_Volume objects found with property '{prop}' equal to '{value}'.  "
            "Verify the value of the property and retry.",
            target_name=value,
            target_type="String",
        )
        self.error_id = f"CmdletizationQuery_NotFound_{prop}"  # type: ignore[misc]


# --- Get-WinEvent (Microsoft.PowerShell.Commands.GetWinEventCommand) -------------------------------------


class NoMatchingEventsError(HyperVError):
    """A query that matches no event: the non-terminating ``NoMatchingEventsFound``."""

    error_id = "NoMatchingEventsFound"
    category = "ObjectNotFound"
    exception_type = "System.Exception"

    def __init__(self) -> None:
        super().__init__("No events were found that match the specified selection criteria.")


class LogNotFoundError(HyperVError):
    """-LogName of a log the host does not have: ``NoMatchingLogsFound``."""

    error_id = "NoMatchingLogsFound"
    category = "ObjectNotFound"
    exception_type = "System.Exception"

    def __init__(self, name: str) -> None:
        super().__init__(f'There is not an event log on the localhost computer that matches "{name}".')


class InvalidQueryError(HyperVError):
    """-FilterXPath outside the subset a host accepts (model/event_query.py): EventLogException."""

    error_id = "System.Diagnostics.Eventing.Reader.EventLogException"
    category = "NotSpecified"
    exception_type = "System.Diagnostics.Eventing.Reader.EventLogException"

    def __init__(self, query: str) -> None:
        super().__init__(f"The specified query is invalid: {query}")


# --- FailoverClusters module (Microsoft.FailoverClusters.PowerShell) --------------------------------------


class ClusterObjectNotFoundError(HyperVError):
    """Get-ClusterGroup / Get-ClusterNode for a name or VM Id the cluster does not have. Category
    ObjectNotFound; the error id, exception type and wording are *unconfirmed* (no public capture found)."""

    error_id = "ClusterObjectNotFound"
    category = "ObjectNotFound"
    exception_type = "Microsoft.FailoverClusters.PowerShell.ClusterCmdletException"

    def __init__(self, kind: str, what: str) -> None:
        super().__init__(
            f"The cluster {kind} '{what}' was not found.", target_name=what, target_type="String"
        )


class ClusterUnreachableError(HyperVError):
    """``-Cluster`` naming a cluster this node cannot open (another cluster; from a remote session the
    node would also need to reach it as a second hop). Wording and id *unconfirmed*."""

    error_id = "ClusterCmdletException"
    category = "ConnectionError"
    exception_type = "Microsoft.FailoverClusters.PowerShell.ClusterCmdletException"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Failed to connect to the cluster '{name}' from this node.",
            target_name=name,
            target_type="String",
        )
