"""Hyper-V enums with the values real hosts send (Microsoft.HyperV.PowerShell.*).

Remoting sends an enum as an object whose ToString is the name and whose value is the integer; a
JSON dump shows the integer. ``parse`` accepts either, so the domain never branches on display text.
"""

from __future__ import annotations

from enum import Enum, IntEnum
from typing import Any, TypeVar

E = TypeVar("E", bound="HyperVEnum")


class HyperVEnum(IntEnum):
    # A member is its own copy. Debian 12's Python 3.11.2 deep-copies an enum by looking its name up
    # again (3.11.7 does not), which fails for VMState's pseudo-members of states a newer Windows
    # reports (``Unknown32801``): ``dataclasses.asdict`` of a record holding one raised there.
    def __copy__(self) -> HyperVEnum:
        return self

    def __deepcopy__(self, memo: Any) -> HyperVEnum:
        return self

    @classmethod
    def parse(cls: type[E], value: Any) -> E:
        """Decode an enum from an int, a name, or a remoting enum object (``property_sets``/``to_string``).

        A remoting enum object is decoded by its name first: the name is the .NET identifier (never
        localized), while some numbers differ between Windows versions (VMState past ForceShutdown)."""
        sets = getattr(value, "property_sets", None)
        if sets:
            by_name = cls._by_name(str(getattr(value, "to_string", "") or ""))
            return by_name if by_name is not None else cls(int(sets[0]))
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a {cls.__name__}")
        if isinstance(value, int):
            return cls(value)
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            return cls(int(text))
        by_name = cls._by_name(text)
        if by_name is not None:
            return by_name
        raise ValueError(
            f"{text!r} is not a {cls.__name__} (expected one of {', '.join(m.name for m in cls)})"
        )

    @classmethod
    def _by_name(cls: type[E], text: str) -> E | None:
        wanted = text.strip().lower()
        return next((m for m in cls if m.name.lower() == wanted), None) if wanted else None


class VMState(HyperVEnum):
    """Microsoft.HyperV.PowerShell.VMState (decompiled module; see docs/emulator.md, Conformance).

    A VM whose health is not OK reports the *Critical* twin of its state (PausedCritical when the
    storage under it is full). A value this list does not know (a newer Windows) decodes to an
    ``Unknown<n>`` pseudo-member that keeps the number, so one odd VM never breaks a host-wide read.
    """

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

    @classmethod
    def _missing_(cls, value: object) -> VMState | None:
        if isinstance(value, int) and not isinstance(value, bool):
            pseudo = int.__new__(cls, value)
            pseudo._name_ = f"Unknown{value}"
            pseudo._value_ = value
            return pseudo
        return None

    @property
    def is_known(self) -> bool:
        return self._name_ in type(self).__members__

    @property
    def is_critical(self) -> bool:
        """Hyper-V reports the VM's health as not OK (storage full or unreachable, a failed device)."""
        return self.is_known and self._name_.endswith("Critical")

    @property
    def base(self) -> VMState:
        """The state without its health: RunningCritical -> Running; others are themselves."""
        if self.is_critical:
            return type(self)[self._name_.removesuffix("Critical")]
        return self


class CheckpointType(HyperVEnum):
    """Microsoft.HyperV.PowerShell.CheckpointType (Set-VM -CheckpointType)."""

    Disabled = 2
    Production = 3
    ProductionOnly = 4
    Standard = 5


class SnapshotType(HyperVEnum):
    """Microsoft.HyperV.PowerShell.SnapshotType. There is no "Production" value: a checkpoint does not
    say whether it is application-consistent."""

    Standard = 0
    Recovery = 1
    Planned = 2
    Missing = 5
    Replica = 6
    AppConsistentReplica = 7
    SyncedReplica = 8


class HeartbeatStatus(HyperVEnum):
    """Microsoft.HyperV.PowerShell.VMHeartbeatStatus."""

    Unknown = 0
    Disabled = 1
    NoContact = 2
    Error = 3
    LostCommunication = 4
    OkApplicationsUnknown = 5
    OkApplicationsHealthy = 6
    OkApplicationsCritical = 7
    Paused = 8

    @property
    def is_ok(self) -> bool:
        return self in (
            HeartbeatStatus.OkApplicationsUnknown,
            HeartbeatStatus.OkApplicationsHealthy,
            HeartbeatStatus.OkApplicationsCritical,
        )


class OperationalStatus(HyperVEnum):
    """Microsoft.HyperV.PowerShell.VMIntegrationComponentOperationalStatus (the codes that matter)."""

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


class VhdType(HyperVEnum):
    """Microsoft.Vhd.PowerShell.VhdType."""

    Unknown = 0
    Fixed = 2
    Dynamic = 3
    Differencing = 4


class Consistency(str, Enum):
    """What a checkpoint really guarantees; a str so it lands in XCom as plain text."""

    APPLICATION = "application"  # production checkpoint: VSS / fsfreeze inside the guest succeeded
    CRASH = "crash"  # standard checkpoint: disks as after a power cut (memory saved, if running)


class ClusterNodeState(HyperVEnum):
    """Microsoft.FailoverClusters.PowerShell.ClusterNodeState (CLUSTER_NODE_STATE, clusapi.h)."""

    Unknown = -1
    Up = 0
    Down = 1
    Paused = 2
    Joining = 3


class ClusterGroupState(HyperVEnum):
    """Microsoft.FailoverClusters.PowerShell.ClusterGroupState (ClusResGroup.State values)."""

    Unknown = -1
    Online = 0
    Offline = 1
    Failed = 2
    PartialOnline = 3
    Pending = 4
