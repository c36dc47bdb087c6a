"""Model objects to psrpcore PSObjects with the real .NET type names and enum-typed properties.

The schemas (type names, properties, declared types) are in ``cmdlets/psobject_schemas.py``; here is
how each is filled from the model, and ``SERIALIZERS``, the one table of emitted type -> serialiser.
Real remoting serialises one level deep: anything nested (a VM's hard drives, a snapshot's drives)
reaches the client as a string, so nested values here are strings too.
"""

from __future__ import annotations

import stat
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from psrpcore.types import PSChar, PSObject
from psrpcore.types import _serializer as _psrp_serializer

from hyperv_emulator.cmdlets.output_views import (
    ClusterGroupView,
    ClusterNodeView,
    DriveInfoView,
    DriveView,
    FileHashView,
    FileItem,
    HostView,
    IntegrationView,
    NetworkAdapterView,
    VolumeView,
)
from hyperv_emulator.cmdlets.psobject_schemas import (
    CLUSTER_GROUP_TYPE,
    CLUSTER_NODE_TYPE,
    DIR_TYPE,
    DRIVE_TYPE,
    EVENT_RECORD_TYPE,
    FILE_TYPE,
    HASH_TYPE,
    HOST_TYPE,
    INTEGRATION_TYPE,
    NETWORK_ADAPTER_TYPE,
    PSDRIVE_TYPE,
    SNAPSHOT_TYPE,
    VHD_TYPE,
    VM_TYPE,
    VOLUME_TYPE,
    ps_enum,
)
from hyperv_emulator.model.checkpoint import Checkpoint
from hyperv_emulator.model.clock import to_datetime
from hyperv_emulator.model.culture import HostDateTime
from hyperv_emulator.model.enums import GroupType, VhdFormat
from hyperv_emulator.model.eventlog import EventRecord
from hyperv_emulator.model.host import HostModel
from hyperv_emulator.model.importing import ADAPTER_NAME, switch_of
from hyperv_emulator.model.vhd import VhdInfo
from hyperv_emulator.model.vm import VirtualMachine

_ZERO = uuid.UUID(int=0)

# --- dates ---------------------------------------------------------------------------------------------

_psrp_serialize_datetime = _psrp_serializer._serialize_datetime


def _serialize_host_datetime(value: Any) -> str:
    """psrpcore writes six fractional digits, untrimmed; a real host writes .NET's round-trip form
    (0-7 digits, trailing zeros trimmed, local offset). A ``HostDateTime`` carries that exact text."""
    text = getattr(value, "clixml", None) if isinstance(value, HostDateTime) else None
    return text if text is not None else _psrp_serialize_datetime(value)


_psrp_serializer._serialize_datetime = _serialize_host_datetime

# --- filling each schema -------------------------------------------------------------------------------


def fill(obj: PSObject, values: dict[str, Any]) -> PSObject:
    """Set a new schema object's properties."""
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


def _vm(vm: VirtualMachine, host: HostModel) -> PSObject:
    now = host.clock.now()
    parent = vm.parent_checkpoint
    return fill(
        VM_TYPE(),
        {
            "Name": vm.name,
            "Id": vm.id,
            "VMId": vm.id,
            "VMName": vm.name,
            "State": ps_enum(vm.state),
            "Status": host.culture.texts.migrating
            if vm.busy == "migrating"
            else host.culture.texts.merging_disks
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
    return fill(
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
    return fill(
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
    return fill(
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
    return fill(
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


def _file(item: FileItem, host: HostModel) -> PSObject:
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
        return fill(DIR_TYPE(), {**common, "Parent": parent_win.rsplit("\\", 1)[-1]})
    return fill(
        FILE_TYPE(),
        {**common, "Length": fs.logical_size(real), "DirectoryName": parent_win, "IsReadOnly": False},
    )


def _host(view: HostView, host: HostModel) -> PSObject:
    return fill(
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


def _file_hash(view: FileHashView, host: HostModel) -> PSObject:
    return fill(HASH_TYPE(), {"Algorithm": view.algorithm, "Hash": view.hash, "Path": view.path})


def _psdrive(view: DriveInfoView, host: HostModel) -> PSObject:
    used = host.fs.used(view.volume.letter)
    return fill(
        PSDRIVE_TYPE(),
        {
            "Name": view.volume.letter,
            "Root": f"{view.volume.letter}:\\",
            "Description": view.volume.label,
            "Provider": "Microsoft.PowerShell.Core\\FileSystem",
            "CurrentLocation": "",
            "Used": used,
            "Free": max(0, view.volume.capacity - used),
            "DisplayRoot": None,
        },
    )


def _event_record(rec: EventRecord, host: HostModel) -> PSObject:
    return fill(
        EVENT_RECORD_TYPE(),
        {
            "Id": rec.event_id,
            "RecordId": rec.record_id,
            "LogName": rec.log_name,
            "ProviderName": rec.provider,
            "Level": rec.level,
            "LevelDisplayName": rec.level_name,
            "TimeCreated": to_datetime(rec.time_created),
            "MachineName": host.name,
            "Message": rec.message,
        },
    )


def _network_adapter(view: NetworkAdapterView, host: HostModel) -> PSObject:
    switch = switch_of(host, view.vm)
    return fill(
        NETWORK_ADAPTER_TYPE(),
        {
            "Name": ADAPTER_NAME,
            "VMName": view.vm.name,
            "VMId": view.vm.id,
            "SwitchName": switch,
            "Connected": bool(switch),
            "IsManagementOs": False,
        },
    )


# MSFT_Volume.FileSystemType values (Storage Management API, MSFT_Volume class): NTFS 14, ReFS 15,
# CSVFS_NTFS 32768.
_FS_TYPE = {"NTFS": 14, "ReFS": 15, "CSVFS": 32768}


def _volume(view: VolumeView, host: HostModel) -> PSObject:
    vol = view.volume
    path = vol.device_path(host.name)
    return fill(
        VOLUME_TYPE(),
        {
            "ObjectId": f'{{1}}\\\\{host.name}\\root/Microsoft/Windows/Storage/Providers_v2\\WSP_Volume.ObjectId="{path}"',
            "UniqueId": path,
            "Path": path,
            "DriveLetter": PSChar(vol.letter) if vol.letter else None,
            "DriveType": 3,  # Fixed
            "FileSystem": vol.file_system,
            "FileSystemLabel": vol.label,
            "FileSystemType": _FS_TYPE.get(vol.file_system, 0),
            "HealthStatus": 0,  # Healthy
            "OperationalStatus": 2,  # OK
            "AllocationUnitSize": 4096,
            "Size": vol.capacity,
            "SizeRemaining": host.fs.free(vol),
            "PSComputerName": None,
        },
    )


def _cluster_node(view: ClusterNodeView, host: HostModel) -> PSObject:
    cluster = view.cluster
    index = list(cluster.nodes).index(view.name) + 1
    return fill(
        CLUSTER_NODE_TYPE(),
        {
            "Name": view.name,
            "NodeName": view.name,
            "State": ps_enum(cluster.node_state[view.name]),
            "Id": str(index),  # node ids are small numbers in node order
            "Cluster": cluster.name,
        },
    )


def _cluster_group(view: ClusterGroupView, host: HostModel) -> PSObject:
    cluster, group = view.cluster, view.group
    return fill(
        CLUSTER_GROUP_TYPE(),
        {
            "Name": group.name,
            "OwnerNode": group.owner,
            "State": ps_enum(cluster.group_state(group)),
            "GroupType": ps_enum(GroupType.VirtualMachine),
            "Id": str(group.id),
            "IsCoreGroup": False,
            "Cluster": cluster.name,
        },
    )


# --- the one table: each type a cmdlet emits -> the function that fills its schema ---------------------

Serializer = Callable[[Any, HostModel], PSObject]
SERIALIZERS: dict[type, Serializer] = {
    VirtualMachine: _vm,  # VM_TYPE
    Checkpoint: _snapshot,  # SNAPSHOT_TYPE
    IntegrationView: _integration,  # INTEGRATION_TYPE
    DriveView: _drive,  # DRIVE_TYPE
    VhdInfo: _vhd,  # VHD_TYPE
    HostView: _host,  # HOST_TYPE
    FileItem: _file,  # FILE_TYPE or DIR_TYPE
    FileHashView: _file_hash,  # HASH_TYPE
    DriveInfoView: _psdrive,  # PSDRIVE_TYPE
    EventRecord: _event_record,  # EVENT_RECORD_TYPE
    NetworkAdapterView: _network_adapter,  # NETWORK_ADAPTER_TYPE
    VolumeView: _volume,  # VOLUME_TYPE
    ClusterNodeView: _cluster_node,  # CLUSTER_NODE_TYPE
    ClusterGroupView: _cluster_group,  # CLUSTER_GROUP_TYPE
}


def serialize(obj: Any, host: HostModel) -> Any:
    """Turn whatever a cmdlet produced into what the sink sends. Primitives pass through."""
    if isinstance(obj, bool | int | str | PSObject) or obj is None:
        return obj
    for cls in type(obj).__mro__:
        fn = SERIALIZERS.get(cls)
        if fn is not None:
            return fn(obj, host)
    raise TypeError(f"no serialiser for {type(obj).__name__}")
