"""A virtual machine, its guest and its integration services.

Whether the guest can quiesce follows the Hyper-V module's own ``IsProductionSnapshotAvailable``
(decompiled): an Off VM always can (nothing to quiesce), a Running VM can when the VSS integration
component reports Ok/Degraded — which needs the VSS service enabled, a guest with the VSS writer
(Windows ``vmicvss``) or ``hv_vss_daemon`` (Linux) and a live heartbeat. Saved/Paused VMs cannot.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

from hyperv_emulator.model.checkpoint import Checkpoint
from hyperv_emulator.model.culture import EN_US, SERVICE_IDS
from hyperv_emulator.model.disk import VirtualDisk
from hyperv_emulator.model.enums import (
    CheckpointType,
    ControllerType,
    IntegrationStatus,
    VMHeartbeatStatus,
    VMState,
)

GuestOS = Literal["windows", "linux"]

# Integration services by their en-US PowerShell name, with the component GUID that ends their Id
# (``Microsoft:<VMId>\\<GUID>``). What a host *prints* depends on its culture (model/culture.py).
INTEGRATION_SERVICES: dict[str, str] = SERVICE_IDS
DISPLAY_ALIASES = {"backup (volume shadow copy)": "VSS", "backup (volume checkpoint)": "VSS"}
STATUS_TEXT = EN_US.status
OPERATING_NORMALLY = EN_US.operating_normally
MERGING_DISKS = EN_US.merging_disks


@dataclass
class IntegrationService:
    name: str
    enabled: bool = True

    @property
    def service_id(self) -> str:
        return INTEGRATION_SERVICES.get(self.name, "00000000-0000-0000-0000-000000000000")


@dataclass(eq=False)
class HardDrive:
    disk: VirtualDisk
    controller_type: ControllerType = ControllerType.SCSI
    controller_number: int = 0
    controller_location: int = 0

    @property
    def name(self) -> str:
        return (
            f"Hard Drive on {self.controller_type.name} controller number {self.controller_number} "
            f"at location {self.controller_location}"
        )


@dataclass(eq=False)
class VirtualMachine:
    id: uuid.UUID
    name: str
    state: VMState
    guest_os: GuestOS = "windows"
    guest_vss: bool = True  # VSS writer (Windows) / hv_vss_daemon (Linux) installed and running in the guest
    guest_heartbeat: bool = True  # the guest answers the heartbeat (integration components installed)
    checkpoint_type: CheckpointType = CheckpointType.Production
    automatic_checkpoints_enabled: bool = False
    generation: int = 2
    processor_count: int = 2
    memory_startup: int = 4 * 1024**3
    path: str = ""
    snapshot_path: str = ""
    churn_bytes: int = 256 * 1024**2  # what the guest writes into a new AVHDX before it is merged
    creation_time: float = 0.0
    started_at: float | None = None
    notes: str = ""
    integration: list[IntegrationService] = field(
        default_factory=lambda: [IntegrationService(n) for n in INTEGRATION_SERVICES]
    )
    hard_drives: list[HardDrive] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    parent_checkpoint_id: uuid.UUID | None = None
    merge_until: float | None = None  # a background merge runs until this emulated time
    busy: str = ""  # an operation in progress that excludes others ("checkpoint", "export", "migrating", ...)
    clustered: bool = True  # on a cluster node: a clustered role (fleet ``clustered: false`` keeps it local)

    # --- derived, read-only views ---------------------------------------------------------------------

    @property
    def status(self) -> str:
        """The en-US Status text; the serializer sends the host culture's own (model/culture.py)."""
        return MERGING_DISKS if self.merge_until is not None else OPERATING_NORMALLY

    @property
    def is_merging(self) -> bool:
        return self.merge_until is not None

    def service(self, name: str) -> IntegrationService | None:
        wanted = DISPLAY_ALIASES.get(name.lower(), name).lower()
        return next((s for s in self.integration if s.name.lower() == wanted), None)

    def service_status(self, svc: IntegrationService) -> IntegrationStatus | None:
        """PrimaryOperationalStatus: None when the VM is not running (the real value is empty then)."""
        if self.state is not VMState.Running:
            return None
        if not svc.enabled:
            return IntegrationStatus.Disabled
        if not self.guest_heartbeat:
            return IntegrationStatus.NoContact
        if svc.name == "VSS" and not self.guest_vss:
            return IntegrationStatus.NoContact
        return IntegrationStatus.Ok

    @property
    def heartbeat(self) -> VMHeartbeatStatus | None:
        if self.state is not VMState.Running:
            return None
        svc = self.service("Heartbeat")
        if svc is None or not svc.enabled:
            return VMHeartbeatStatus.Disabled
        return (
            VMHeartbeatStatus.OkApplicationsUnknown if self.guest_heartbeat else VMHeartbeatStatus.NoContact
        )

    def production_available(self) -> bool:
        """Hyper-V's IsProductionSnapshotAvailable: Off, or Running with VSS reporting Ok/Degraded."""
        if self.state is VMState.Off:
            return True
        if self.state is not VMState.Running:
            return False
        vss = self.service("VSS")
        heartbeat_ok = self.heartbeat in (
            VMHeartbeatStatus.OkApplicationsUnknown,
            VMHeartbeatStatus.OkApplicationsHealthy,
        )
        return (
            vss is not None
            and heartbeat_ok
            and self.service_status(vss) in (IntegrationStatus.Ok, IntegrationStatus.Degraded)
        )

    def live_checkpoints(self) -> list[Checkpoint]:
        return sorted(self.checkpoints, key=lambda c: c.creation_time)

    def checkpoint(self, cp_id: uuid.UUID) -> Checkpoint | None:
        return next((c for c in self.checkpoints if c.id == cp_id), None)

    @property
    def parent_checkpoint(self) -> Checkpoint | None:
        return self.checkpoint(self.parent_checkpoint_id) if self.parent_checkpoint_id else None

    def uptime(self, now: float) -> float:
        return max(0.0, now - self.started_at) if self.state is VMState.Running and self.started_at else 0.0
