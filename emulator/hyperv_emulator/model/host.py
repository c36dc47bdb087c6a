"""A Hyper-V host: its VMs, volumes, disk chains and the operations that take time.

Locking: one re-entrant lock guards state; an operation that takes time (checkpoint, export) checks
and reserves under the lock, waits on the clock *without* it, then commits under it again, so other
pipelines keep working meanwhile. Background merges are not threads: ``settle()`` applies every merge
whose end time has passed, and every public method settles first, so a test with a ManualClock sees a
merge finish exactly when it advances the clock past it.

``HostModel`` holds the state and the VM and checkpoint operations; it composes the jobs that have
modules of their own: the merge engine (``model/merging.py``), Export-VMSnapshot
(``model/exporting.py``), Get-VHD (``model/vhd.py``) and Import-VM (``model/importing.py``).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hyperv_emulator.faults import Fault, FaultPlan
from hyperv_emulator.model.checkpoint import Checkpoint, Consistency
from hyperv_emulator.model.clock import Clock, to_datetime
from hyperv_emulator.model.culture import HostCulture
from hyperv_emulator.model.disk import (
    MiB,
    VirtualDisk,
    avhdx_path,
    derive_content,
)
from hyperv_emulator.model.enums import CheckpointType, VhdType, VMState
from hyperv_emulator.model.errors import (
    CheckpointNoSpaceError,
    CheckpointsDisabledError,
    InvalidStateError,
    OperationFailedError,
    ProductionCheckpointError,
    SnapshotNotFoundError,
    VMNotFoundError,
)
from hyperv_emulator.model.eventlog import VMMS_ADMIN, WORKER_ADMIN, HostEventLog
from hyperv_emulator.model.exporting import ExportResult, export_snapshot
from hyperv_emulator.model.merging import MergeEngine, disk_tree, merge_plan, pinned_disks
from hyperv_emulator.model.paths import HostFileSystem, Volume
from hyperv_emulator.model.vhd import VhdInfo, vhd_info
from hyperv_emulator.model.vm import VirtualMachine
from hyperv_emulator.model.wildcard import WildcardPattern

if TYPE_CHECKING:
    from hyperv_emulator.model.cluster import Cluster


@dataclass
class Timing:
    """How long host operations take, in emulated seconds / MB per emulated second."""

    checkpoint_seconds: float = 3.0
    restore_seconds: float = 2.0
    export_mb_per_s: float = 250.0
    merge_mb_per_s: float = 150.0
    avhdx_initial_mb: float = 4.0  # a fresh AVHDX of an Off VM (metadata only)

    def validate(self) -> None:
        for name in ("export_mb_per_s", "merge_mb_per_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"timing.{name} must be > 0")
        for name in ("checkpoint_seconds", "restore_seconds", "avhdx_initial_mb"):
            if getattr(self, name) < 0:
                raise ValueError(f"timing.{name} must be >= 0")


class HostModel:
    """One emulated Hyper-V host. Thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        root_dir: Path,
        volumes: dict[str, Volume],
        clock: Clock,
        faults: FaultPlan,
        timing: Timing,
        logical_processors: int = 16,
        memory_capacity: int = 256 * 1024**3,
        vm_path: str = "C:\\ProgramData\\Microsoft\\Windows\\Hyper-V",
        vhd_path: str = "C:\\ProgramData\\Microsoft\\Windows\\Virtual Hard Disks",
    ) -> None:
        self.name = name
        self.fs = HostFileSystem(root_dir, volumes)
        self.clock = clock
        self.faults = faults
        self.timing = timing
        self.logical_processors = logical_processors
        self.memory_capacity = memory_capacity
        self.vm_path = vm_path
        self.vhd_path = vhd_path
        self.lock = threading.RLock()
        self._vms: dict[uuid.UUID, VirtualMachine] = {}
        self.merges = MergeEngine(self)  # background merges (model/merging.py)
        self.events = HostEventLog(clock)  # Get-WinEvent (emulator/model/eventlog.py)
        self.culture = HostCulture()  # language, time zone, Windows version (emulator/model/culture.py)
        self.caller_is_hyperv_admin = True  # False: every Hyper-V cmdlet answers AccessDenied
        self.cluster: Cluster | None = None  # the failover cluster this host is a node of (model/cluster.py)
        self.down = False  # a cluster node that is down answers nothing

    # --- building ---------------------------------------------------------------------------------------

    def add_vm(self, vm: VirtualMachine, *, allow_duplicate_name: bool = False) -> VirtualMachine:
        """Register a VM and write its base disks as real stand-in files. Real hosts allow two VMs
        with one name (an imported copy keeps its name); fleet files do not."""
        with self.lock:
            if vm.id in self._vms:
                raise ValueError(f"duplicate VM id {vm.id}")
            if not allow_duplicate_name and any(
                v.name.lower() == vm.name.lower() for v in self._vms.values()
            ):
                raise ValueError(f"duplicate VM name {vm.name!r}")
            for drive in vm.hard_drives:
                for disk in reversed(drive.disk.chain()):
                    disk.path = self.fs.normalize(disk.path)
                    if not disk.content:
                        disk.content = derive_content(str(vm.id), disk.path.lower())
                    self.write_disk(disk)
            self.fs.mkdir(vm.path)
            self._vms[vm.id] = vm
            return vm

    def detach_vm(self, vm_id: uuid.UUID) -> VirtualMachine:
        """Take a VM off this host (it moves to another node of its cluster); under the cluster lock."""
        return self._vms.pop(vm_id)

    def attach_vm(self, vm: VirtualMachine) -> None:
        """Register a VM that moved here from another node (its files are on shared storage)."""
        self._vms[vm.id] = vm

    def write_disk(self, disk: VirtualDisk) -> None:
        """Write (or rewrite) a disk's stand-in file."""
        self.fs.write_standin(disk.path, disk.header(), disk.file_size)

    # --- settling timed transitions -----------------------------------------------------------------------

    def settle(self) -> None:
        """End every live migration whose time is up (a cluster node), then apply every background
        merge whose end time has passed."""
        with self.lock:
            if self.cluster is not None:
                self.cluster.settle()
            self.merges.settle(self._vms.values())

    # --- lookups -------------------------------------------------------------------------------------------

    def vms(self) -> list[VirtualMachine]:
        with self.lock:
            self.settle()
            return list(self._vms.values())

    def vm_by_id(self, vm_id: uuid.UUID) -> VirtualMachine:
        with self.lock:
            self.settle()
            vm = self._vms.get(vm_id)
            if vm is None:
                raise VMNotFoundError.by_id(str(vm_id))
            return vm

    def find_vms(self, pattern: str) -> list[VirtualMachine]:
        """VMs whose name matches ``pattern`` as a PowerShell wildcard; a literal that matches nothing raises."""
        wp = WildcardPattern(pattern)
        found = [vm for vm in self.vms() if wp.match(vm.name)]
        if not found:
            raise VMNotFoundError.by_name(pattern)
        return found

    def snapshots(self, vm: VirtualMachine) -> list[Checkpoint]:
        with self.lock:
            self.settle()
            return vm.live_checkpoints()

    def snapshot_by_id(self, cp_id: uuid.UUID) -> tuple[VirtualMachine, Checkpoint]:
        with self.lock:
            self.settle()
            for vm in self._vms.values():
                cp = vm.checkpoint(cp_id)
                if cp is not None:
                    return vm, cp
            raise SnapshotNotFoundError(str(cp_id))

    def find_snapshots(self, vm: VirtualMachine, pattern: str) -> list[Checkpoint]:
        wp = WildcardPattern(pattern)
        found = [c for c in self.snapshots(vm) if wp.match(c.name)]
        if not found:
            raise SnapshotNotFoundError(pattern)
        return found

    # --- VM settings and power ---------------------------------------------------------------------------

    def set_vm(
        self,
        vm: VirtualMachine,
        *,
        checkpoint_type: CheckpointType | None = None,
        automatic_checkpoints: bool | None = None,
    ) -> None:
        with self.lock:
            self.settle()
            if self.faults.take(Fault.SET_VM_FAILURE, cmdlets=["Set-VM"], vms=[vm.name, str(vm.id)]):
                raise OperationFailedError(
                    f"Failed to modify settings of '{vm.name}'. (Virtual machine ID {str(vm.id).upper()})",
                    target_name=vm.name,
                    target_type="VirtualMachine",
                )
            if checkpoint_type is not None:
                vm.checkpoint_type = checkpoint_type
            if automatic_checkpoints is not None:
                vm.automatic_checkpoints_enabled = automatic_checkpoints

    def start_vm(self, vm: VirtualMachine) -> bool:
        """Off/Saved/Paused -> Running. False when it already runs (real hosts only warn)."""
        with self.lock:
            self.settle()
            if vm.state is VMState.Running:
                return False
            vm.state = VMState.Running
            vm.started_at = self.clock.now()
            self.events.write(WORKER_ADMIN, 18500, name=vm.name, vm_id=vm.id)
            return True

    def stop_vm(self, vm: VirtualMachine, *, turn_off: bool = False) -> bool:
        """Running/Paused/Saved -> Off (a guest shutdown or a power-off). False when already Off."""
        with self.lock:
            self.settle()
            if vm.state is VMState.Off:
                return False
            if vm.busy:
                raise InvalidStateError(
                    f"'{vm.name}' failed to change state. The operation cannot be performed while the object "
                    f"is in its current state. (Virtual machine ID {str(vm.id).upper()})",
                    target_name=vm.name,
                    target_type="VirtualMachine",
                )
            vm.state = VMState.Off
            vm.started_at = None
            self.events.write(WORKER_ADMIN, 18502 if turn_off else 18504, name=vm.name, vm_id=vm.id)
            return True

    def remove_vm(self, vm: VirtualMachine) -> None:
        """Remove-VM: forget the VM's configuration. Its disk files stay, as on a real host."""
        with self.lock:
            self.settle()
            if vm.state is not VMState.Off or vm.busy or vm.merge_until is not None:
                self._require_idle(vm, "Remove operation")
                raise InvalidStateError(
                    f"'{vm.name}' failed to delete: the virtual machine must be turned off. "
                    f"(Virtual machine ID {str(vm.id).upper()})",
                    target_name=vm.name,
                    target_type="VirtualMachine",
                )
            self._vms.pop(vm.id, None)
            self.events.write(VMMS_ADMIN, 13003, name=vm.name, vm_id=vm.id)

    # --- checkpoints ----------------------------------------------------------------------------------------

    def checkpoint_vm(
        self,
        vm: VirtualMachine,
        name: str | None = None,
        cancelled: threading.Event | None = None,
        *,
        cmdlet: str = "Checkpoint-VM",
    ) -> Checkpoint | None:
        """Create a checkpoint following the VM's CheckpointType; None if the client stopped the pipeline."""
        with self.lock:
            self.settle()
            self._require_idle(vm, "Checkpoint operation")
            ctype = vm.checkpoint_type
            if ctype is CheckpointType.Disabled:
                raise CheckpointsDisabledError(vm.name, str(vm.id))
            self._require_room_for_checkpoint(vm)
            consistency = self._decide_consistency(vm, ctype, cmdlet)
            vm.busy = "checkpoint"
            start = self.clock.now()
        try:
            if not self.clock.sleep_until(start + self.timing.checkpoint_seconds, cancelled):
                return None
        finally:
            with self.lock:
                vm.busy = ""
        with self.lock:
            return self._commit_checkpoint(vm, name, consistency, start)

    def _require_room_for_checkpoint(self, vm: VirtualMachine) -> None:
        """A new differencing disk needs room on its drive's volume (at least a fresh AVHDX's size)."""
        need = int(self.timing.avhdx_initial_mb * MiB)
        for drive in vm.hard_drives:
            volume = self.fs.volume_for(drive.disk.path)
            if self.fs.free(volume) < need:
                raise CheckpointNoSpaceError(vm.name, str(vm.id), volume.root.rstrip("\\"))

    def _decide_consistency(self, vm: VirtualMachine, ctype: CheckpointType, cmdlet: str) -> Consistency:
        """Production -> production if possible else *silently* standard; ProductionOnly -> production or fail."""
        if ctype is CheckpointType.Standard:
            return "offline" if vm.state is VMState.Off else "standard"
        if vm.state is VMState.Off:
            return "offline"
        possible = vm.production_available()
        if possible and self.faults.take(
            Fault.GUEST_CANNOT_QUIESCE,
            cmdlets=[cmdlet],
            vms=[vm.name, str(vm.id)],
            detail=f"{self.name}/{vm.name}",
        ):
            possible = False
        if possible:
            return "production"
        if ctype is CheckpointType.ProductionOnly:
            self.events.write(VMMS_ADMIN, 18016, name=vm.name, vm_id=vm.id)
            self.events.write(VMMS_ADMIN, 18012, name=vm.name, vm_id=vm.id)
            raise ProductionCheckpointError(vm.name, str(vm.id))
        return "standard"

    def _commit_checkpoint(
        self, vm: VirtualMachine, name: str | None, consistency: Consistency, start: float
    ) -> Checkpoint:
        now = self.clock.now()
        cp_id = uuid.uuid4()
        if not name:
            name = f"{vm.name} - ({to_datetime(start).strftime('%m/%d/%Y - %I:%M:%S %p')})"
        parent = vm.parent_checkpoint
        saved = consistency == "standard"
        cp = Checkpoint(
            id=cp_id,
            name=name,
            vm_id=vm.id,
            vm_name=vm.name,
            creation_time=now,
            state=VMState.Saved if saved else VMState.Off,
            consistency=consistency,
            parent_id=parent.id if parent else None,
            parent_name=parent.name if parent else "",
            path=vm.snapshot_path,
            memory_bytes=vm.memory_startup if saved else 0,
        )
        grows = vm.state is VMState.Running
        for index, drive in enumerate(vm.hard_drives):
            frozen = drive.disk
            size = vm.churn_bytes if grows else int(self.timing.avhdx_initial_mb * MiB)
            child = VirtualDisk(
                path=avhdx_path(frozen, cp_id),
                size=frozen.size,
                file_size=size,
                vhd_type=VhdType.Differencing,
                parent=frozen,
                content=derive_content(frozen.content, str(cp_id)),
            )
            self.write_disk(child)
            drive.disk = child
            cp.frozen[index] = frozen
        vm.checkpoints.append(cp)
        vm.parent_checkpoint_id = cp.id
        return cp

    def _require_idle(self, vm: VirtualMachine, what: str) -> None:
        if vm.busy == "migrating" and self.cluster is not None:
            self.cluster.mark_seen(vm.id)
        if vm.busy or vm.merge_until is not None:
            doing = "merging disks" if vm.merge_until is not None else vm.busy
            raise InvalidStateError(
                f"{what} failed for '{vm.name}': the virtual machine is {doing}. The operation cannot be "
                f"performed while the object is in its current state. (Virtual machine ID {str(vm.id).upper()})",
                target_name=vm.name,
                target_type="VirtualMachine",
            )

    def restore_snapshot(
        self, vm: VirtualMachine, cp: Checkpoint, cancelled: threading.Event | None = None
    ) -> bool:
        """Apply a checkpoint: new differencing disks off its frozen ones; production/offline -> Off,
        standard (saved memory) -> Saved. Changes since the last checkpoint are discarded."""
        with self.lock:
            self.settle()
            self._require_idle(vm, "Restore operation")
            vm.busy = "restore"
            start = self.clock.now()
        try:
            if not self.clock.sleep_until(start + self.timing.restore_seconds, cancelled):
                return False
        finally:
            with self.lock:
                vm.busy = ""
        with self.lock:
            pinned = pinned_disks(vm)
            for index, drive in enumerate(vm.hard_drives):
                frozen = cp.frozen.get(index)
                if frozen is None:
                    continue
                old = drive.disk
                new_id = uuid.uuid4()
                drive.disk = VirtualDisk(
                    path=avhdx_path(frozen, new_id),
                    size=frozen.size,
                    file_size=int(self.timing.avhdx_initial_mb * MiB),
                    vhd_type=VhdType.Differencing,
                    parent=frozen,
                    content=derive_content(frozen.content, str(new_id)),
                )
                self.write_disk(drive.disk)
                if old.parent is not None and id(old) not in pinned:
                    self.delete_disk(old)
            vm.state = VMState.Saved if cp.has_saved_state else VMState.Off
            vm.started_at = None
            vm.parent_checkpoint_id = cp.id
            return True

    # --- removal (the merges it starts: model/merging.py) ---------------------------------------------------------------------

    def remove_snapshot(
        self,
        vm: VirtualMachine,
        cp: Checkpoint,
        *,
        include_children: bool = False,
        cmdlet: str = "Remove-VMSnapshot",
    ) -> list[Checkpoint]:
        """Delete the checkpoint(s) at once and start the merge on the host; returns what was removed."""
        with self.lock:
            self.settle()
            if vm.busy:
                self._require_idle(vm, "Remove checkpoint operation")
            doomed = [cp]
            if include_children:
                frontier = [cp.id]
                while frontier:
                    pid = frontier.pop()
                    kids = [c for c in vm.checkpoints if c.parent_id == pid]
                    doomed.extend(kids)
                    frontier.extend(k.id for k in kids)
            before = merge_plan(vm)
            reachable = disk_tree(vm)[0]
            for dead in doomed:
                vm.checkpoints.remove(dead)
                for other in vm.checkpoints:  # children re-parent to the removed one's parent
                    if other.parent_id == dead.id:
                        other.parent_id, other.parent_name = dead.parent_id, dead.parent_name
                if vm.parent_checkpoint_id == dead.id:
                    vm.parent_checkpoint_id = dead.parent_id
            # A removed checkpoint's differencing disk that nothing depends on any more (its branch
            # was left by a restore to an older checkpoint) has nothing to merge: it is deleted.
            still = {id(d) for d in disk_tree(vm)[0]}
            for disk in reachable:
                if id(disk) not in still and disk.parent is not None:
                    self.delete_disk(disk)
            self.merges.start(vm, before, cp, cmdlet)
            return doomed

    def delete_disk(self, disk: VirtualDisk) -> None:
        """Delete a disk's stand-in file, if it is there."""
        real = self.fs.to_real(disk.path)
        if real.exists():
            self.fs.remove(disk.path)

    # --- export (model/exporting.py) and Get-VHD (model/vhd.py) ---------------------------------------------

    def export_snapshot(
        self,
        vm: VirtualMachine,
        cp: Checkpoint,
        path: str,
        cancelled: threading.Event | None = None,
        *,
        cmdlet: str = "Export-VMSnapshot",
    ) -> ExportResult | None:
        """Export-VMSnapshot of ``cp`` to ``path`` (model/exporting.py); None if the client stopped it."""
        return export_snapshot(self, vm, cp, path, cancelled, cmdlet=cmdlet)

    def vhd_info(self, path: str) -> VhdInfo:
        """Get-VHD of ``path`` (model/vhd.py)."""
        return vhd_info(self, path)
