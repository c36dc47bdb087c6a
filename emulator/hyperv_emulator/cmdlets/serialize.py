"""Model objects to psrpcore PSObjects with the real .NET type names and enum-typed properties.

Real remoting serialises one level deep: anything nested (a VM's hard drives, a snapshot's drives)
reaches the client as a string, so nested values here are strings too.
"""

from __future__ import annotations

import stat
import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import IntEnum
from typing import Any

from psrpcore.types import (
    PSEnumBase,
    PSGuid,
    PSInt,
    PSInt64,
    PSNoteProperty,
    PSObject,
    PSString,
    PSType,
    PSUInt64,
)
from psrpcore.types import _serializer as _psrp_serializer

from hyperv_emulator.cmdlets.output_views import (
    DriveInfoView,
    DriveView,
    FileHashView,
    FileItem,
    HostView,
    IntegrationView,
)
from hyperv_emulator.model.checkpoint import Checkpoint
from hyperv_emulator.model.clock import to_datetime
from hyperv_emulator.model.culture import HostDateTime
from hyperv_emulator.model.enums import ENUM_TYPE_NAMES, VhdFormat
from hyperv_emulator.model.host import HostModel
from hyperv_emulator.model.vhd import VhdInfo
from hyperv_emulator.model.vm import VirtualMachine

HV = "Microsoft.HyperV.PowerShell."
_ZERO = uuid.UUID(int=0)

# --- dates ---------------------------------------------------------------------------------------------

_psrp_serialize_datetime = _psrp_serializer._serialize_datetime


def _serialize_host_datetime(value: Any) -> str:
    """psrpcore writes six fractional digits, untrimmed; a real host writes .NET's round-trip form
    (0-7 digits, trailing zeros trimmed, local offset). A ``HostDateTime`` carries that exact text."""
    text = getattr(value, "clixml", None) if isinstance(value, HostDateTime) else None
    return text if text is not None else _psrp_serialize_datetime(value)


_psrp_serializer._serialize_datetime = _serialize_host_datetime

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


def _pstype(class_name: str, type_names: Sequence[str], props: Sequence[tuple[str, Any]]) -> type[PSObject]:
    cls = type(class_name, (PSObject,), {})
    return PSType(
        list(type_names),
        adapted_properties=[PSNoteProperty(n, ps_type=t) for n, t in props],
        skip_inheritance=True,
        rehydrate=False,
    )(cls)


# DateTime properties stay untyped: a typed property would coerce a HostDateTime into a PSDateTime and
# lose the host's exact text; any datetime still goes out as <DT>.
S, G, DT, I64, U64, I32 = PSString, PSGuid, None, PSInt64, PSUInt64, PSInt
VM_TYPE = _pstype(
    "VirtualMachineObj",
    [HV + "VirtualMachine", HV + "VirtualMachineBase", HV + "VirtualizationObject", "System.Object"],
    [
        ("Name", S),
        ("Id", G),
        ("VMId", G),
        ("VMName", S),
        ("State", None),
        ("Status", S),
        ("Heartbeat", None),
        ("CheckpointType", None),
        ("AutomaticCheckpointsEnabled", None),
        ("ParentSnapshotId", G),
        ("ParentSnapshotName", S),
        ("Path", S),
        ("ConfigurationLocation", S),
        ("SnapshotFileLocation", S),
        ("Generation", I32),
        ("Version", S),
        ("ProcessorCount", I64),
        ("MemoryStartup", I64),
        ("MemoryAssigned", I64),
        ("Uptime", S),
        ("CreationTime", DT),
        ("Notes", S),
        ("HardDrives", None),
        ("ComputerName", S),
        ("IsDeleted", None),
    ],
)
SNAPSHOT_TYPE = _pstype(
    "VMSnapshotObj",
    [HV + "VMSnapshot", HV + "VirtualMachineBase", HV + "VirtualizationObject", "System.Object"],
    [
        ("Name", S),
        ("Id", G),
        ("VMId", G),
        ("VMName", S),
        ("SnapshotType", None),
        ("IsAutomaticCheckpoint", None),
        ("State", None),
        ("ParentSnapshotId", G),
        ("ParentSnapshotName", S),
        ("CreationTime", DT),
        ("Path", S),
        ("Generation", I32),
        ("Version", S),
        ("Notes", S),
        ("SizeOfSystemFiles", I64),
        ("HardDrives", None),
        ("ComputerName", S),
        ("IsDeleted", None),
    ],
)
INTEGRATION_TYPE = _pstype(
    "VMIntegrationComponentObj",
    [HV + "VMIntegrationComponent", HV + "VMDevice", HV + "VirtualizationObject", "System.Object"],
    [
        ("Name", S),
        ("Id", S),
        ("VMId", G),
        ("VMName", S),
        ("Enabled", None),
        ("OperationalStatus", None),
        ("PrimaryOperationalStatus", None),
        ("PrimaryStatusDescription", S),
        ("SecondaryOperationalStatus", None),
        ("SecondaryStatusDescription", S),
        ("StatusDescription", None),
        ("ComputerName", S),
        ("IsDeleted", None),
    ],
)
DRIVE_TYPE = _pstype(
    "HardDiskDriveObj",
    [HV + "HardDiskDrive", HV + "Drive", HV + "VMDevice", HV + "VirtualizationObject", "System.Object"],
    [
        ("Name", S),
        ("Id", S),
        ("VMId", G),
        ("VMName", S),
        ("VMSnapshotId", G),
        ("VMSnapshotName", S),
        ("Path", S),
        ("ControllerType", None),
        ("ControllerNumber", I32),
        ("ControllerLocation", I32),
        ("DiskNumber", None),
        ("ComputerName", S),
        ("IsDeleted", None),
    ],
)
VHD_TYPE = _pstype(
    "VirtualHardDiskObj",
    ["Microsoft.Vhd.PowerShell.VirtualHardDisk", "System.Object"],
    [
        ("ComputerName", S),
        ("Path", S),
        ("VhdFormat", None),
        ("VhdType", None),
        ("FileSize", U64),
        ("Size", U64),
        ("MinimumSize", U64),
        ("LogicalSectorSize", None),
        ("PhysicalSectorSize", None),
        ("BlockSize", None),
        ("ParentPath", S),
        ("DiskIdentifier", S),
        ("FragmentationPercentage", None),
        ("Alignment", None),
        ("Attached", None),
        ("DiskNumber", None),
        ("IsPMEMCompatible", None),
        ("Number", None),
    ],
)
HOST_TYPE = _pstype(
    "VMHostObj",
    [HV + "VMHost", HV + "VirtualizationObject", "System.Object"],
    [
        ("ComputerName", S),
        ("Name", S),
        ("LogicalProcessorCount", I32),
        ("MemoryCapacity", I64),
        ("VirtualHardDiskPath", S),
        ("VirtualMachinePath", S),
        ("FullyQualifiedDomainName", S),
        ("EnableEnhancedSessionMode", None),
    ],
)
_FS_PROPS: list[tuple[str, Any]] = [
    ("Name", S),
    ("FullName", S),
    ("Extension", S),
    ("Attributes", S),
    ("Mode", S),
    ("CreationTimeUtc", DT),
    ("LastWriteTimeUtc", DT),
    ("LastWriteTime", DT),
    ("PSPath", S),
    ("PSParentPath", S),
    ("PSChildName", S),
    ("PSDrive", S),
    ("PSProvider", S),
    ("PSIsContainer", None),
]
FILE_TYPE = _pstype(
    "FileInfoObj",
    ["System.IO.FileInfo", "System.IO.FileSystemInfo", "System.MarshalByRefObject", "System.Object"],
    [*_FS_PROPS, ("Length", I64), ("DirectoryName", S), ("IsReadOnly", None)],
)
DIR_TYPE = _pstype(
    "DirectoryInfoObj",
    ["System.IO.DirectoryInfo", "System.IO.FileSystemInfo", "System.MarshalByRefObject", "System.Object"],
    [*_FS_PROPS, ("Parent", S)],
)
HASH_TYPE = _pstype(
    "FileHashObj",
    ["Microsoft.Powershell.Utility.FileHash", "System.Management.Automation.PSCustomObject", "System.Object"],
    [("Algorithm", S), ("Hash", S), ("Path", S)],
)
PSDRIVE_TYPE = _pstype(
    "PSDriveInfoObj",
    ["System.Management.Automation.PSDriveInfo", "System.Object"],
    [
        ("Name", S),
        ("Root", S),
        ("Description", S),
        ("Provider", S),
        ("CurrentLocation", S),
        ("Used", I64),
        ("Free", I64),
        ("DisplayRoot", S),
    ],
)


def _fill(obj: PSObject, values: dict[str, Any]) -> PSObject:
    for key, value in values.items():
        obj[key] = value
    return obj


def _uptime(seconds: float) -> str:
    s = int(seconds)
    return (
        f"{s // 86400}.{(s % 86400) // 3600:02}:{(s % 3600) // 60:02}:{s % 60:02}"
        if s >= 86400
        else f"{s // 3600:02}:{(s % 3600) // 60:02}:{s % 60:02}"
    )


def _drive_strings(vm_name: str, drives: Sequence[tuple[str, str]]) -> list[str]:
    return [f"HardDiskDrive (Name = '{n}', VMName = '{vm_name}') [Path = '{p}']" for n, p in drives]


# Serialisers of view types that other cmdlet modules add (type -> fn(obj, host)).
EXTRA_SERIALIZERS: dict[type, Any] = {}


def serialize(obj: Any, host: HostModel) -> Any:
    """Turn whatever a cmdlet produced into what the sink sends. Primitives pass through."""
    if isinstance(obj, bool | int | str | PSObject) or obj is None:
        return obj
    for cls, fn in EXTRA_SERIALIZERS.items():
        if isinstance(obj, cls):
            return fn(obj, host)
    if isinstance(obj, VirtualMachine):
        return _vm(obj, host)
    if isinstance(obj, Checkpoint):
        return _snapshot(obj, host)
    if isinstance(obj, IntegrationView):
        return _integration(obj, host)
    if isinstance(obj, DriveView):
        return _drive(obj, host)
    if isinstance(obj, VhdInfo):
        return _vhd(obj, host)
    if isinstance(obj, HostView):
        return _fill(
            HOST_TYPE(),
            {
                "ComputerName": host.name,
                "Name": host.name,
                "LogicalProcessorCount": host.logical_processors,
                "MemoryCapacity": host.memory_capacity,
                "VirtualHardDiskPath": host.vhd_path,
                "VirtualMachinePath": host.vm_path,
                "FullyQualifiedDomainName": host.name,
                "EnableEnhancedSessionMode": False,
            },
        )
    if isinstance(obj, FileItem):
        return _file(obj)
    if isinstance(obj, FileHashView):
        return _fill(HASH_TYPE(), {"Algorithm": obj.algorithm, "Hash": obj.hash, "Path": obj.path})
    if isinstance(obj, DriveInfoView):
        used = host.fs.used(obj.volume.letter)
        return _fill(
            PSDRIVE_TYPE(),
            {
                "Name": obj.volume.letter,
                "Root": f"{obj.volume.letter}:\\",
                "Description": obj.volume.label,
                "Provider": "Microsoft.PowerShell.Core\\FileSystem",
                "CurrentLocation": "",
                "Used": used,
                "Free": max(0, obj.volume.capacity - used),
                "DisplayRoot": None,
            },
        )
    raise TypeError(f"no serialiser for {type(obj).__name__}")


def _vm(vm: VirtualMachine, host: HostModel) -> PSObject:
    now = host.clock.now()
    parent = vm.parent_checkpoint
    return _fill(
        VM_TYPE(),
        {
            "Name": vm.name,
            "Id": vm.id,
            "VMId": vm.id,
            "VMName": vm.name,
            "State": ps_enum(vm.state),
            "Status": host.culture.texts.merging_disks
            if vm.is_merging
            else host.culture.texts.operating_normally,
            "Heartbeat": ps_enum(vm.heartbeat),
            "CheckpointType": ps_enum(vm.checkpoint_type),
            "AutomaticCheckpointsEnabled": vm.automatic_checkpoints_enabled,
            "ParentSnapshotId": parent.id if parent else None,
            "ParentSnapshotName": parent.name if parent else None,
            "Path": vm.path,
            "ConfigurationLocation": vm.path,
            "SnapshotFileLocation": vm.snapshot_path,
            "Generation": vm.generation,
            "Version": "9.0",
            "ProcessorCount": vm.processor_count,
            "MemoryStartup": vm.memory_startup,
            "MemoryAssigned": vm.memory_startup if vm.state.name == "Running" else 0,
            "Uptime": _uptime(vm.uptime(now)),
            "CreationTime": host.culture.local_time(vm.creation_time),
            "Notes": vm.notes,
            "HardDrives": _drive_strings(vm.name, [(d.name, d.disk.path) for d in vm.hard_drives]),
            "ComputerName": host.name,
            "IsDeleted": False,
        },
    )


def _snapshot(cp: Checkpoint, host: HostModel) -> PSObject:
    vm_alive = any(v.checkpoint(cp.id) is cp for v in host.vms())
    return _fill(
        SNAPSHOT_TYPE(),
        {
            "Name": cp.name,
            "Id": cp.id,
            "VMId": cp.vm_id,
            "VMName": cp.vm_name,
            "SnapshotType": ps_enum(cp.snapshot_type),
            "IsAutomaticCheckpoint": cp.is_automatic,
            "State": ps_enum(cp.state),
            "ParentSnapshotId": cp.parent_id,
            "ParentSnapshotName": cp.parent_name or None,
            "CreationTime": host.culture.local_time(cp.creation_time),
            "Path": cp.path,
            "Generation": 2,
            "Version": "9.0",
            "Notes": "",
            "SizeOfSystemFiles": cp.memory_bytes,
            "HardDrives": _drive_strings(
                cp.vm_name, [(f"Hard Drive {i}", d.path) for i, d in sorted(cp.frozen.items())]
            ),
            "ComputerName": host.name,
            "IsDeleted": not vm_alive,
        },
    )


def _integration(view: IntegrationView, host: HostModel) -> PSObject:
    vm, svc = view.vm, view.service
    status = vm.service_status(svc)
    text = host.culture.status_text(status) if status is not None else None
    return _fill(
        INTEGRATION_TYPE(),
        {
            "Name": host.culture.service_name(svc.name),
            "Id": f"Microsoft:{str(vm.id).upper()}\\{svc.service_id}",
            "VMId": vm.id,
            "VMName": vm.name,
            "Enabled": svc.enabled,
            "OperationalStatus": [ps_enum(status)] if status is not None else [],
            "PrimaryOperationalStatus": ps_enum(status),
            "PrimaryStatusDescription": text,
            "SecondaryOperationalStatus": None,
            "SecondaryStatusDescription": None,
            "StatusDescription": [text] if text else [],
            "ComputerName": host.name,
            "IsDeleted": False,
        },
    )


def _drive(view: DriveView, host: HostModel) -> PSObject:
    vm, d = view.vm, view.drive
    return _fill(
        DRIVE_TYPE(),
        {
            "Name": d.name,
            "Id": f"Microsoft:{str(vm.id).upper()}\\83F8638B-8DCA-4152-9EDA-2CA8B33039B4\\{d.controller_number}\\"
            f"{d.controller_location}\\D",
            "VMId": vm.id,
            "VMName": vm.name,
            "VMSnapshotId": view.snapshot.id if view.snapshot is not None else _ZERO,
            "VMSnapshotName": view.snapshot.name if view.snapshot is not None else "",
            "Path": d.disk.path,
            "ControllerType": ps_enum(d.controller_type),
            "ControllerNumber": d.controller_number,
            "ControllerLocation": d.controller_location,
            "DiskNumber": None,
            "ComputerName": host.name,
            "IsDeleted": False,
        },
    )


def _vhd(info: VhdInfo, host: HostModel) -> PSObject:
    return _fill(
        VHD_TYPE(),
        {
            "ComputerName": host.name,
            "Path": info.path,
            "VhdFormat": ps_enum(VhdFormat[info.format_name]),
            "VhdType": ps_enum(info.vhd_type),
            "FileSize": info.file_size,
            "Size": info.size,
            "MinimumSize": info.size,
            "LogicalSectorSize": 512,
            "PhysicalSectorSize": 4096,
            "BlockSize": 0 if info.vhd_type.name == "Fixed" else 33554432,
            "ParentPath": info.parent_path or None,
            "DiskIdentifier": info.disk_id,
            "FragmentationPercentage": 0,
            "Alignment": 1,
            "Attached": info.attached,
            "DiskNumber": None,
            "IsPMEMCompatible": False,
            "Number": None,
        },
    )


def _file(item: FileItem) -> PSObject:
    fs, real = item.host.fs, item.real
    win = fs.to_windows(real)
    parent_win = win.rsplit("\\", 1)[0] if win.count("\\") > 1 else win[:3]
    st = real.stat()
    mtime: datetime = to_datetime(st.st_mtime)
    is_dir = stat.S_ISDIR(st.st_mode)
    common = {
        "Name": real.name if win[3:] else win,
        "FullName": win,
        "Extension": real.suffix,
        "Attributes": "Directory" if is_dir else "Archive",
        "Mode": "d-----" if is_dir else "-a----",
        "CreationTimeUtc": mtime,
        "LastWriteTimeUtc": mtime,
        "LastWriteTime": item.host.culture.local_time(st.st_mtime),
        "PSPath": f"Microsoft.PowerShell.Core\\FileSystem::{win}",
        "PSParentPath": f"Microsoft.PowerShell.Core\\FileSystem::{parent_win}",
        "PSChildName": real.name,
        "PSDrive": win[0],
        "PSProvider": "Microsoft.PowerShell.Core\\FileSystem",
        "PSIsContainer": is_dir,
    }
    if is_dir:
        return _fill(DIR_TYPE(), {**common, "Parent": parent_win.rsplit("\\", 1)[-1]})
    return _fill(
        FILE_TYPE(),
        {**common, "Length": fs.logical_size(real), "DirectoryName": parent_win, "IsReadOnly": False},
    )
