"""The PSObject schemas: for every object a cmdlet writes, its .NET type names and its properties with
their declared types, as a real host's serialiser writes them; and the Hyper-V enum types.

Only the shapes live here; ``cmdlets/serialize.py`` fills them from the model (its one table says which
schema each emitted type gets).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from psrpcore.types import (
    PSChar,
    PSEnumBase,
    PSGuid,
    PSInt,
    PSInt64,
    PSNoteProperty,
    PSObject,
    PSString,
    PSType,
    PSUInt,
    PSUInt16,
    PSUInt64,
)

from hyperv_emulator.model.enums import ENUM_TYPE_NAMES

HV = "Microsoft.HyperV.PowerShell."
CIM = "Microsoft.Management.Infrastructure.CimInstance"
# DateTime properties stay untyped: a typed property would coerce a HostDateTime into a PSDateTime and
# lose the host's exact text; any datetime still goes out as <DT>.
UNTYPED_DATETIME = None

# --- enums ---------------------------------------------------------------------------------------------

_PS_ENUMS: dict[type[IntEnum], Any] = {}
for _enum, _type_name in ENUM_TYPE_NAMES.items():
    _cls: Any = PSEnumBase(_enum.__name__, {m.name: m.value for m in _enum})  # type: ignore[arg-type]
    _PS_ENUMS[_enum] = PSType([_type_name], rehydrate=False)(_cls)


def ps_enum(value: IntEnum | None) -> Any:
    """An enum-typed value (``<Obj><I32>2</I32><TN>Microsoft.HyperV.PowerShell.VMState…``) or None."""
    if value is None:
        return None
    return _PS_ENUMS[type(value)][value.name]


# --- object types ----------------------------------------------------------------------------------------


def ps_type(class_name: str, type_names: Sequence[str], props: Sequence[tuple[str, Any]]) -> type[PSObject]:
    """A PSObject class with these .NET type names and (note) properties, each with its declared type
    (None: untyped, the value's own type goes out)."""
    cls = type(class_name, (PSObject,), {})
    return PSType(
        list(type_names),
        adapted_properties=[PSNoteProperty(n, ps_type=t) for n, t in props],
        skip_inheritance=True,
        rehydrate=False,
    )(cls)


VM_TYPE = ps_type(
    "VirtualMachineObj",
    [HV + "VirtualMachine", HV + "VirtualMachineBase", HV + "VirtualizationObject", "System.Object"],
    [
        ("Name", PSString),
        ("Id", PSGuid),
        ("VMId", PSGuid),
        ("VMName", PSString),
        ("State", None),
        ("Status", PSString),
        ("Heartbeat", None),
        ("CheckpointType", None),
        ("AutomaticCheckpointsEnabled", None),
        ("ParentSnapshotId", PSGuid),
        ("ParentSnapshotName", PSString),
        ("Path", PSString),
        ("ConfigurationLocation", PSString),
        ("SnapshotFileLocation", PSString),
        ("Generation", PSInt),
        ("Version", PSString),
        ("ProcessorCount", PSInt64),
        ("MemoryStartup", PSInt64),
        ("MemoryAssigned", PSInt64),
        ("Uptime", PSString),
        ("CreationTime", UNTYPED_DATETIME),
        ("Notes", PSString),
        ("HardDrives", None),
        ("ComputerName", PSString),
        ("IsDeleted", None),
    ],
)
SNAPSHOT_TYPE = ps_type(
    "VMSnapshotObj",
    [HV + "VMSnapshot", HV + "VirtualMachineBase", HV + "VirtualizationObject", "System.Object"],
    [
        ("Name", PSString),
        ("Id", PSGuid),
        ("VMId", PSGuid),
        ("VMName", PSString),
        ("SnapshotType", None),
        ("IsAutomaticCheckpoint", None),
        ("State", None),
        ("ParentSnapshotId", PSGuid),
        ("ParentSnapshotName", PSString),
        ("CreationTime", UNTYPED_DATETIME),
        ("Path", PSString),
        ("Generation", PSInt),
        ("Version", PSString),
        ("Notes", PSString),
        ("SizeOfSystemFiles", PSInt64),
        ("HardDrives", None),
        ("ComputerName", PSString),
        ("IsDeleted", None),
    ],
)
INTEGRATION_TYPE = ps_type(
    "VMIntegrationComponentObj",
    [HV + "VMIntegrationComponent", HV + "VMDevice", HV + "VirtualizationObject", "System.Object"],
    [
        ("Name", PSString),
        ("Id", PSString),
        ("VMId", PSGuid),
        ("VMName", PSString),
        ("Enabled", None),
        ("OperationalStatus", None),
        ("PrimaryOperationalStatus", None),
        ("PrimaryStatusDescription", PSString),
        ("SecondaryOperationalStatus", None),
        ("SecondaryStatusDescription", PSString),
        ("StatusDescription", None),
        ("ComputerName", PSString),
        ("IsDeleted", None),
    ],
)
DRIVE_TYPE = ps_type(
    "HardDiskDriveObj",
    [HV + "HardDiskDrive", HV + "Drive", HV + "VMDevice", HV + "VirtualizationObject", "System.Object"],
    [
        ("Name", PSString),
        ("Id", PSString),
        ("VMId", PSGuid),
        ("VMName", PSString),
        ("VMSnapshotId", PSGuid),
        ("VMSnapshotName", PSString),
        ("Path", PSString),
        ("ControllerType", None),
        ("ControllerNumber", PSInt),
        ("ControllerLocation", PSInt),
        ("DiskNumber", None),
        ("ComputerName", PSString),
        ("IsDeleted", None),
    ],
)
VHD_TYPE = ps_type(
    "VirtualHardDiskObj",
    ["Microsoft.Vhd.PowerShell.VirtualHardDisk", "System.Object"],
    [
        ("ComputerName", PSString),
        ("Path", PSString),
        ("VhdFormat", None),
        ("VhdType", None),
        ("FileSize", PSUInt64),
        ("Size", PSUInt64),
        ("MinimumSize", PSUInt64),
        ("LogicalSectorSize", None),
        ("PhysicalSectorSize", None),
        ("BlockSize", None),
        ("ParentPath", PSString),
        ("DiskIdentifier", PSString),
        ("FragmentationPercentage", None),
        ("Alignment", None),
        ("Attached", None),
        ("DiskNumber", None),
        ("IsPMEMCompatible", None),
        ("Number", None),
    ],
)
HOST_TYPE = ps_type(
    "VMHostObj",
    [HV + "VMHost", HV + "VirtualizationObject", "System.Object"],
    [
        ("ComputerName", PSString),
        ("Name", PSString),
        ("LogicalProcessorCount", PSInt),
        ("MemoryCapacity", PSInt64),
        ("VirtualHardDiskPath", PSString),
        ("VirtualMachinePath", PSString),
        ("FullyQualifiedDomainName", PSString),
        ("EnableEnhancedSessionMode", None),
    ],
)
_FILE_SYSTEM_ITEM_PROPS: list[tuple[str, Any]] = [
    ("Name", PSString),
    ("FullName", PSString),
    ("Extension", PSString),
    ("Attributes", PSString),
    ("Mode", PSString),
    ("CreationTimeUtc", UNTYPED_DATETIME),
    ("LastWriteTimeUtc", UNTYPED_DATETIME),
    ("LastWriteTime", UNTYPED_DATETIME),
    ("PSPath", PSString),
    ("PSParentPath", PSString),
    ("PSChildName", PSString),
    ("PSDrive", PSString),
    ("PSProvider", PSString),
    ("PSIsContainer", None),
]
FILE_TYPE = ps_type(
    "FileInfoObj",
    ["System.IO.FileInfo", "System.IO.FileSystemInfo", "System.MarshalByRefObject", "System.Object"],
    [*_FILE_SYSTEM_ITEM_PROPS, ("Length", PSInt64), ("DirectoryName", PSString), ("IsReadOnly", None)],
)
DIR_TYPE = ps_type(
    "DirectoryInfoObj",
    ["System.IO.DirectoryInfo", "System.IO.FileSystemInfo", "System.MarshalByRefObject", "System.Object"],
    [*_FILE_SYSTEM_ITEM_PROPS, ("Parent", PSString)],
)
HASH_TYPE = ps_type(
    "FileHashObj",
    ["Microsoft.Powershell.Utility.FileHash", "System.Management.Automation.PSCustomObject", "System.Object"],
    [("Algorithm", PSString), ("Hash", PSString), ("Path", PSString)],
)
PSDRIVE_TYPE = ps_type(
    "PSDriveInfoObj",
    ["System.Management.Automation.PSDriveInfo", "System.Object"],
    [
        ("Name", PSString),
        ("Root", PSString),
        ("Description", PSString),
        ("Provider", PSString),
        ("CurrentLocation", PSString),
        ("Used", PSInt64),
        ("Free", PSInt64),
        ("DisplayRoot", PSString),
    ],
)
EVENT_RECORD_TYPE = ps_type(
    "EventLogRecordObj",
    [
        "System.Diagnostics.Eventing.Reader.EventLogRecord",
        "System.Diagnostics.Eventing.Reader.EventRecord",
        "System.Object",
    ],
    [
        ("Id", PSInt),
        ("RecordId", PSInt64),
        ("LogName", PSString),
        ("ProviderName", PSString),
        ("Level", None),
        ("LevelDisplayName", PSString),
        ("TimeCreated", UNTYPED_DATETIME),
        ("MachineName", PSString),
        ("Message", PSString),
    ],
)


NETWORK_ADAPTER_TYPE = ps_type(
    "VMNetworkAdapterObj",
    [
        "Microsoft.HyperV.PowerShell.VMNetworkAdapter",
        "Microsoft.HyperV.PowerShell.VMNetworkAdapterBase",
        "Microsoft.HyperV.PowerShell.VirtualizationObject",
        "System.Object",
    ],
    [
        ("Name", PSString),
        ("VMName", PSString),
        ("VMId", PSGuid),
        ("SwitchName", PSString),
        ("Connected", None),
        ("IsManagementOs", None),
    ],
)


VOLUME_TYPE = ps_type(
    "MSFTVolumeObj",
    [
        f"{CIM}#ROOT/Microsoft/Windows/Storage/MSFT_Volume",
        f"{CIM}#MSFT_Volume",
        f"{CIM}#ROOT/Microsoft/Windows/Storage/MSFT_StorageObject",
        f"{CIM}#MSFT_StorageObject",
        CIM,
        "System.Object",
    ],
    [
        ("ObjectId", PSString),
        ("UniqueId", PSString),
        ("Path", PSString),
        ("DriveLetter", PSChar),
        ("DriveType", PSUInt),
        ("FileSystem", PSString),
        ("FileSystemLabel", PSString),
        ("FileSystemType", PSUInt16),
        ("HealthStatus", PSUInt16),
        ("OperationalStatus", PSUInt16),
        ("AllocationUnitSize", PSUInt),
        ("Size", PSUInt64),
        ("SizeRemaining", PSUInt64),
        ("PSComputerName", PSString),
    ],
)

# --- FailoverClusters: what Get-ClusterNode and Get-ClusterGroup write ------------------------------------
# Type and property names from the FailoverClusters docs (Get-ClusterNode: Name, State, ...; Get-ClusterGroup:
# Name, OwnerNode, State, GroupType). OwnerNode is a ClusterNode object on the host; over remoting it
# arrives as its name (a nested object past the serialisation depth is sent as its ToString(): *unconfirmed*
# for this type, the client reads both forms).
FC = "Microsoft.FailoverClusters.PowerShell."
CLUSTER_NODE_TYPE = ps_type(
    "ClusterNodeObj",
    [FC + "ClusterNode", FC + "ClusterObject", "System.Object"],
    [
        ("Name", PSString),
        ("NodeName", PSString),
        ("State", None),
        ("Id", PSString),
        ("Cluster", PSString),
    ],
)
CLUSTER_GROUP_TYPE = ps_type(
    "ClusterGroupObj",
    [FC + "ClusterGroup", FC + "ClusterObject", "System.Object"],
    [
        ("Name", PSString),
        ("OwnerNode", PSString),
        ("State", None),
        ("GroupType", None),
        ("Id", PSString),
        ("IsCoreGroup", None),
        ("Cluster", PSString),
    ],
)
