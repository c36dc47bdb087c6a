"""Hyper-V enums with their real numeric values and .NET type names.

Values come from the Hyper-V PowerShell module's types (public type stubs of
``Microsoft.HyperV.PowerShell`` and ``Microsoft.Vhd.PowerShell``) and the Set-VM docs; the serialiser
sends them as enum-typed integers with these type names, like a real host.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

E = TypeVar("E", bound=IntEnum)


class VMState(IntEnum):
    """Microsoft.HyperV.PowerShell.VMState as the decompiled module declares it (Windows Server 2019+;
    eryph-org/eryph notes the numbers after ForceShutdown differ on older Windows)."""

    Other = 1
    Running = 2
    Off = 3
    Stopping = 4
    Saved = 6
    Paused = 9
    Starting = 10
    Reset = 11
    Saving = 32773
    Pausing = 32776
    Resuming = 32777
    FastSaved = 32779
    FastSaving = 32780
    ForceShutdown = 32781
    ForceReboot = 32782
    Hibernated = 32783
    ComponentServicing = 32784
    # The Critical twins: the VM's health is not OK (e.g. PausedCritical when its storage is full).
    RunningCritical = 32785
    OffCritical = 32786
    StoppingCritical = 32787
    SavedCritical = 32788
    PausedCritical = 32789
    StartingCritical = 32790
    ResetCritical = 32791
    SavingCritical = 32792
    PausingCritical = 32793
    ResumingCritical = 32794
    FastSavedCritical = 32795
    FastSavingCritical = 32796


class CheckpointType(IntEnum):
    Disabled = 2
    Production = 3
    ProductionOnly = 4
    Standard = 5


class SnapshotType(IntEnum):
    Standard = 0
    Recovery = 1
    Planned = 2
    Missing = 5
    Replica = 6
    AppConsistentReplica = 7
    SyncedReplica = 8


class VMHeartbeatStatus(IntEnum):
    Unknown = 0
    Disabled = 1
    NoContact = 2
    Error = 3
    LostCommunication = 4
    OkApplicationsUnknown = 5
    OkApplicationsHealthy = 6
    OkApplicationsCritical = 7
    Paused = 8


class IntegrationStatus(IntEnum):
    """Microsoft.HyperV.PowerShell.VMIntegrationComponentOperationalStatus."""

    Ok = 2
    Degraded = 3
    Error = 6
    NonRecoverableError = 7
    NoContact = 12
    LostCommunication = 13
    ProtocolMismatch = 32775
    ApplicationCritical = 32782
    CommunicationTimedOut = 32783
    CommunicationFailed = 32784
    Disabled = 32896


class ControllerType(IntEnum):
    IDE = 0
    SCSI = 1


class VhdType(IntEnum):
    Unknown = 0
    Fixed = 2
    Dynamic = 3
    Differencing = 4


class VhdFormat(IntEnum):
    Unknown = 0
    VHD = 2
    VHDX = 3
    VHDSet = 4


# --- FailoverClusters (Microsoft.FailoverClusters.PowerShell) ------------------------------------------


class ClusterNodeState(IntEnum):
    """CLUSTER_NODE_STATE ("CLUSTER_NODE_STATE enumeration (clusapi.h)", learn.microsoft.com)."""

    Unknown = -1
    Up = 0
    Down = 1
    Paused = 2
    Joining = 3


class ClusterGroupState(IntEnum):
    """ClusResGroup.State / CLUSTER_GROUP_STATE with the numbers the automation type library gives
    ("ClusResGroup.State property", learn.microsoft.com)."""

    Unknown = -1
    Online = 0
    Offline = 1
    Failed = 2
    PartialOnline = 3
    Pending = 4


class GroupType(IntEnum):
    """CLUSGROUP_TYPE, the values a cluster group's GroupType prints ("CLUSGROUP_TYPE enumeration
    (clusapi.h)", learn.microsoft.com); only the ones the emulator uses."""

    Cluster = 1
    AvailableStorage = 2
    VirtualMachine = 111


ENUM_TYPE_NAMES: dict[type[IntEnum], str] = {
    VMState: "Microsoft.HyperV.PowerShell.VMState",
    CheckpointType: "Microsoft.HyperV.PowerShell.CheckpointType",
    SnapshotType: "Microsoft.HyperV.PowerShell.SnapshotType",
    VMHeartbeatStatus: "Microsoft.HyperV.PowerShell.VMHeartbeatStatus",
    IntegrationStatus: "Microsoft.HyperV.PowerShell.VMIntegrationComponentOperationalStatus",
    ControllerType: "Microsoft.HyperV.PowerShell.ControllerType",
    VhdType: "Microsoft.Vhd.PowerShell.VhdType",
    VhdFormat: "Microsoft.Vhd.PowerShell.VhdFormat",
    ClusterNodeState: "Microsoft.FailoverClusters.PowerShell.ClusterNodeState",
    ClusterGroupState: "Microsoft.FailoverClusters.PowerShell.ClusterGroupState",
    GroupType: "Microsoft.FailoverClusters.PowerShell.GroupType",
}


def parse_enum(enum: type[E], value: object) -> E:
    """Bind like PowerShell: an enum name (case-insensitive) or its integer value."""
    if isinstance(value, enum):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return enum(value)
    text = str(value).strip()
    for member in enum:
        if member.name.lower() == text.lower():
            return member
    if text.lstrip("-").isdigit():
        return enum(int(text))
    raise ValueError(
        f"Unable to match the identifier name {text} to a valid enumerator name. Specify one of the "
        f"following enumerator names and try again: {', '.join(m.name for m in enum)}"
    )
