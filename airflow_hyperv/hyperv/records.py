"""Typed records of what a Hyper-V host reports, decoded from remoting objects.

Remoting serialises one level deep: properties are primitives, enums or strings. ``Props`` reads both
adapted and extended properties of whatever the transport produced, so this module needs no pypsrp.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_hyperv.hyperv.enums import (
    CheckpointType,
    ClusterGroupState,
    ClusterNodeState,
    HeartbeatStatus,
    OperationalStatus,
    SnapshotType,
    VhdType,
    VMState,
)


class Props:
    """Case-insensitive read access to a remoting object's properties."""

    def __init__(self, obj: Any) -> None:
        merged: dict[str, Any] = {}
        if isinstance(obj, Mapping):
            merged.update(obj)
        for attr in ("adapted_properties", "extended_properties"):
            merged.update(getattr(obj, attr, None) or {})
        self._by_lower = {str(k).lower(): v for k, v in merged.items()}
        self.types: list[str] = list(getattr(obj, "types", None) or [])

    def raw(self, name: str) -> Any:
        return self._by_lower.get(name.lower())

    def text(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        return default if value is None else str(value)

    def optional_text(self, name: str) -> str | None:
        value = self.raw(name)
        return None if value is None or str(value) == "" else str(value)

    def integer(self, name: str, default: int = 0) -> int:
        value = self.raw(name)
        sets = getattr(value, "property_sets", None)
        if sets:
            value = sets[0]
        return default if value is None or value == "" else int(value)

    def boolean(self, name: str) -> bool:
        value = self.raw(name)
        if isinstance(value, str):
            return value.strip().lower() == "true"
        return bool(value)

    def guid(self, name: str) -> uuid.UUID | None:
        value = self.raw(name)
        return None if value in (None, "") else uuid.UUID(str(value))

    def time(self, name: str) -> dt.datetime | None:
        value = self.raw(name)
        if value is None or value == "":
            return None
        if isinstance(value, dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return parse_clixml_datetime(str(value))


def has_type(obj: Any, type_name: str) -> bool:
    """True when the remoting object is of .NET type ``type_name`` (``Deserialized.`` or not). One
    round trip of several statements answers with a mix of objects: their type tells them apart."""
    return any(t.removeprefix("Deserialized.") == type_name for t in getattr(obj, "types", None) or [])


# .NET round-trip ("o") DateTime as CLIXML carries it: 0-7 fractional digits (trailing zeros trimmed),
# then "Z", a local offset, or nothing (DateTimeKind.Unspecified). Parsed here rather than with
# ``datetime.fromisoformat``, whose accepted shapes changed between Python versions.
_CLIXML_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})"
    r"(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?"
)


def parse_clixml_datetime(text: str) -> dt.datetime:
    """An aware datetime from a CLIXML DateTime; no offset is read as UTC. Ticks below a microsecond
    (the 7th digit) are dropped: Python keeps microseconds."""
    match = _CLIXML_DATETIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a CLIXML DateTime (yyyy-MM-ddTHH:mm:ss[.fffffff][Z|+hh:mm])")
    year, month, day = (int(part) for part in match["date"].split("-"))
    micro = int((match["frac"] or "0")[:6].ljust(6, "0"))
    tz = match["tz"]
    if tz is None or tz == "Z":
        zone = dt.timezone.utc
    else:
        digits = tz[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        zone = dt.timezone(-offset if tz[0] == "-" else offset)
    return dt.datetime(
        year, month, day, int(match["h"]), int(match["m"]), int(match["s"]), micro, tzinfo=zone
    )


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(
        value, (VMState, CheckpointType, SnapshotType, HeartbeatStatus, OperationalStatus, VhdType)
    ):
        return value.name
    if isinstance(value, list):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    return value


class Record:
    """Mixin: records become plain JSON-able dicts for XCom and reports."""

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(asdict(self))  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True)
class VirtualMachine(Record):
    id: uuid.UUID
    name: str
    state: VMState
    status: str  # localized display text: show it, never branch on it
    heartbeat: HeartbeatStatus | None
    checkpoint_type: CheckpointType
    automatic_checkpoints: bool
    parent_checkpoint_id: uuid.UUID | None = None
    parent_checkpoint_name: str | None = None
    host_name: str = ""

    @classmethod
    def decode(cls, obj: Any) -> VirtualMachine:
        p = Props(obj)
        heartbeat = p.raw("Heartbeat")
        vm_id = p.guid("Id") or p.guid("VMId")
        if vm_id is None:
            raise ValueError("a VirtualMachine object without an Id")
        return cls(
            id=vm_id,
            name=p.text("Name") or p.text("VMName"),
            state=VMState.parse(p.raw("State")),
            status=p.text("Status"),
            heartbeat=None if heartbeat in (None, "") else HeartbeatStatus.parse(heartbeat),
            checkpoint_type=CheckpointType.parse(p.raw("CheckpointType")),
            automatic_checkpoints=p.boolean("AutomaticCheckpointsEnabled"),
            parent_checkpoint_id=p.guid("ParentSnapshotId"),
            parent_checkpoint_name=p.optional_text("ParentSnapshotName"),
            host_name=p.text("ComputerName"),
        )


@dataclass(frozen=True)
class Checkpoint(Record):
    id: uuid.UUID
    name: str
    vm_id: uuid.UUID
    vm_name: str
    snapshot_type: SnapshotType
    state: VMState  # Saved: memory state kept (standard of a running VM); Off: disks only
    parent_id: uuid.UUID | None
    creation_time: dt.datetime | None
    path: str
    is_automatic: bool = False

    @property
    def has_memory_state(self) -> bool:
        return self.state is VMState.Saved

    @classmethod
    def decode(cls, obj: Any) -> Checkpoint:
        p = Props(obj)
        cp_id, vm_id = p.guid("Id"), p.guid("VMId")
        if cp_id is None or vm_id is None:
            raise ValueError("a VMSnapshot object without Id or VMId")
        return cls(
            id=cp_id,
            name=p.text("Name"),
            vm_id=vm_id,
            vm_name=p.text("VMName"),
            snapshot_type=SnapshotType.parse(p.raw("SnapshotType")),
            state=VMState.parse(p.raw("State")),
            parent_id=p.guid("ParentSnapshotId"),
            creation_time=p.time("CreationTime"),
            path=p.text("Path"),
            is_automatic=p.boolean("IsAutomaticCheckpoint"),
        )


class ServiceComponent:
    """The fixed component GUIDs at the end of a VMIntegrationComponent ``Id``
    (``Microsoft:<VMId>\\<GUID>``). Names are localized ("Takt" on a German host) and changed between
    Windows versions ("Backup (volume shadow copy)" on Server 2012 R2): identify a service by these."""

    VSS = "5ced1297-4598-4915-a5fc-ad21bb4d02a4"
    HEARTBEAT = "84eaae65-2f2e-45f5-9bb5-0e857dc8eb47"
    KEY_VALUE_PAIR_EXCHANGE = "2a34b1c2-fd73-4043-8a5b-dd2159bc743f"
    SHUTDOWN = "9f8233ac-be49-4c79-8ee3-e7e1985b2077"
    TIME_SYNCHRONIZATION = "2497f4de-e9fa-4204-80e4-4b75c46419c0"
    GUEST_SERVICE_INTERFACE = "6c09bb55-d683-4da0-8931-c9bf705f6480"


def component_id(service_id: str) -> str | None:
    """The lower-case component GUID at the end of a service ``Id``; None if there is none."""
    tail = service_id.strip().rsplit("\\", 1)[-1]
    try:
        return str(uuid.UUID(tail))
    except ValueError:
        return None


@dataclass(frozen=True)
class IntegrationService(Record):
    name: str  # localized display text: show it, never branch on it
    enabled: bool
    primary_status: OperationalStatus | None
    status_description: str  # localized display text
    vm_id: uuid.UUID | None = None
    component: str | None = None  # ServiceComponent GUID, from the Id

    @property
    def is_backup_service(self) -> bool:
        """The VSS ("Backup (volume shadow copy)") service, by its component GUID: never by name."""
        return self.component == ServiceComponent.VSS

    @property
    def healthy(self) -> bool:
        return self.enabled and self.primary_status is OperationalStatus.Ok

    @classmethod
    def decode(cls, obj: Any) -> IntegrationService:
        p = Props(obj)
        status = p.raw("PrimaryOperationalStatus")
        return cls(
            name=p.text("Name"),
            enabled=p.boolean("Enabled"),
            primary_status=None if status in (None, "") else OperationalStatus.parse(status),
            status_description=p.text("PrimaryStatusDescription"),
            vm_id=p.guid("VMId"),
            component=component_id(p.text("Id")),
        )


@dataclass(frozen=True)
class HardDiskDrive(Record):
    """A VM's disk slot: ``path`` is the disk the VM writes to now (an .avhdx while checkpointed)."""

    vm_id: uuid.UUID | None
    controller_type: str
    controller_number: int
    controller_location: int
    path: str

    @classmethod
    def decode(cls, obj: Any) -> HardDiskDrive:
        p = Props(obj)
        return cls(
            vm_id=p.guid("VMId"),
            controller_type=p.text("ControllerType"),
            controller_number=p.integer("ControllerNumber"),
            controller_location=p.integer("ControllerLocation"),
            path=p.text("Path"),
        )


@dataclass(frozen=True)
class VirtualDisk(Record):
    """A VHD/VHDX/AVHDX file as Get-VHD reports it."""

    path: str
    vhd_type: VhdType
    parent_path: str | None
    size: int  # maximum virtual size, bytes
    file_size: int  # bytes on the host volume

    @property
    def is_differencing(self) -> bool:
        return self.vhd_type is VhdType.Differencing

    @property
    def is_checkpoint_disk(self) -> bool:
        """A checkpoint's differencing disk: Hyper-V names it ``<disk>_<CHECKPOINT-GUID>.avhdx``
        (``.avhd`` for VHD); a VM's own differencing disk over a golden image is a ``.vhdx``."""
        return self.is_differencing and self.path.lower().endswith((".avhdx", ".avhd"))

    @classmethod
    def decode(cls, obj: Any) -> VirtualDisk:
        p = Props(obj)
        return cls(
            path=p.text("Path"),
            vhd_type=VhdType.parse(p.raw("VhdType")),
            parent_path=p.optional_text("ParentPath"),
            size=p.integer("Size"),
            file_size=p.integer("FileSize"),
        )


@dataclass(frozen=True)
class DiskChain(Record):
    """One drive's chain from the disk the VM writes to down to its base disk."""

    drive: HardDiskDrive
    disks: list[VirtualDisk] = field(default_factory=list)

    @property
    def depth(self) -> int:
        """Checkpoint depth: the checkpoint disks (``.avhdx``/``.avhd``) above the VM's own disk.

        A VM built on a differencing ``.vhdx`` over a golden parent runs at depth 0 with no checkpoint;
        every checkpoint adds one ``<disk>_<GUID>.avhdx`` (see ``is_checkpoint_disk``)."""
        return sum(1 for d in self.disks if d.is_checkpoint_disk)

    @property
    def differencing_depth(self) -> int:
        """Every differencing level, golden-image parents included."""
        return sum(1 for d in self.disks if d.is_differencing)

    @property
    def current_path(self) -> str:
        return self.drive.path


@dataclass(frozen=True)
class VMHost(Record):
    name: str
    logical_processors: int
    memory_capacity: int
    virtual_machine_path: str
    virtual_hard_disk_path: str

    @classmethod
    def decode(cls, obj: Any) -> VMHost:
        p = Props(obj)
        return cls(
            name=p.text("ComputerName") or p.text("Name"),
            logical_processors=p.integer("LogicalProcessorCount"),
            memory_capacity=p.integer("MemoryCapacity"),
            virtual_machine_path=p.text("VirtualMachinePath"),
            virtual_hard_disk_path=p.text("VirtualHardDiskPath"),
        )


@dataclass(frozen=True)
class DriveSpace(Record):
    """Free and used bytes of a host drive (Get-PSDrive)."""

    name: str
    free: int
    used: int

    @classmethod
    def decode(cls, obj: Any) -> DriveSpace:
        p = Props(obj)
        return cls(name=p.text("Name"), free=p.integer("Free"), used=p.integer("Used"))


@dataclass(frozen=True)
class VolumeSpace(Record):
    """The volume that holds a path, as ``Get-Volume -FilePath`` reports it (MSFT_Volume).

    ``drive_letter`` is empty for a volume mounted on a folder: a Cluster Shared Volume
    (``C:\\ClusterStorage\\Volume1``, FileSystem CSVFS) or a mount point. Sizes are bytes.
    """

    path: str  # the volume's own \\?\Volume{GUID}\ path
    drive_letter: str
    file_system: str
    label: str
    size: int
    free: int  # SizeRemaining

    @classmethod
    def decode(cls, obj: Any) -> VolumeSpace:
        p = Props(obj)
        letter = p.raw("DriveLetter")
        if isinstance(letter, int):  # a [char] arrives as its code point
            letter = chr(letter) if letter else ""
        return cls(
            path=p.text("Path"),
            drive_letter=str(letter or "").strip("\x00"),
            file_system=p.text("FileSystem"),
            label=p.text("FileSystemLabel"),
            size=p.integer("Size"),
            free=p.integer("SizeRemaining"),
        )


@dataclass(frozen=True)
class RemoteFile(Record):
    """A file on the host (Get-ChildItem -File)."""

    path: str
    length: int

    @classmethod
    def decode(cls, obj: Any) -> RemoteFile:
        p = Props(obj)
        return cls(path=p.text("FullName"), length=p.integer("Length"))


@dataclass(frozen=True)
class FileHash(Record):
    path: str
    algorithm: str
    hash: str

    @classmethod
    def decode(cls, obj: Any) -> FileHash:
        p = Props(obj)
        return cls(path=p.text("Path"), algorithm=p.text("Algorithm"), hash=p.text("Hash").upper())


@dataclass(frozen=True)
class ExportManifest(Record):
    """What a verified export holds: every file, its size and checksum, relative to the export root."""

    vm_id: str
    vm_name: str
    checkpoint_id: str
    checkpoint_name: str
    consistency: str
    path: str
    files: list[dict[str, Any]]  # {"path": relative, "length": bytes, "sha256": hex}

    @property
    def total_bytes(self) -> int:
        return sum(int(f["length"]) for f in self.files)


CLUSTER_NODE_TYPE = "Microsoft.FailoverClusters.PowerShell.ClusterNode"
CLUSTER_GROUP_TYPE = "Microsoft.FailoverClusters.PowerShell.ClusterGroup"


def _node_name(value: Any) -> str:
    """A node reference: its name as text, or a (deserialized) ClusterNode object with a Name."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    name = Props(value).optional_text("Name")
    return name or str(getattr(value, "to_string", "") or value)


@dataclass(frozen=True)
class ClusterNode(Record):
    """A node of a failover cluster as ``Get-ClusterNode`` reports it."""

    name: str
    state: ClusterNodeState
    cluster: str

    @classmethod
    def decode(cls, obj: Any) -> ClusterNode:
        p = Props(obj)
        try:
            state = ClusterNodeState.parse(p.raw("State"))
        except ValueError:
            state = ClusterNodeState.Unknown
        return cls(name=p.text("Name"), state=state, cluster=p.text("Cluster"))


@dataclass(frozen=True)
class ClusterRole(Record):
    """A clustered role (cluster group) as ``Get-ClusterGroup`` reports it: where it runs and its state."""

    name: str
    owner_node: str
    state: ClusterGroupState
    cluster: str

    @classmethod
    def decode(cls, obj: Any) -> ClusterRole:
        p = Props(obj)
        try:
            state = ClusterGroupState.parse(p.raw("State"))
        except ValueError:
            state = ClusterGroupState.Unknown
        return cls(
            name=p.text("Name"),
            owner_node=_node_name(p.raw("OwnerNode")),
            state=state,
            cluster=p.text("Cluster"),
        )

    @property
    def settled(self) -> bool:
        """Not in transition: a Pending group (a live migration, a move, an online/offline) is waited for."""
        return self.state is not ClusterGroupState.Pending
