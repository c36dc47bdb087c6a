"""HyperVHook: typed Hyper-V operations over one runspace pool, each acting on a VM by its Id."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow_hyperv.hooks.base import HyperVBaseHook
from airflow_hyperv.hyperv import pipelines
from airflow_hyperv.hyperv.enums import CheckpointType, Consistency
from airflow_hyperv.hyperv.errors import (
    AmbiguousVMNameError,
    CheckpointNotFoundError,
    CheckpointsDisabledError,
    CommandFailedError,
    ErrorInfo,
    HyperVError,
    InvalidStateError,
    OperationInProgressError,
    ProductionCheckpointImpossibleError,
    StorageFullError,
    VMNotFoundError,
    classify,
)
from airflow_hyperv.hyperv.names import host_path, require_exact_name, require_host_path
from airflow_hyperv.hyperv.records import (
    Checkpoint,
    DiskChain,
    DriveSpace,
    FileHash,
    HardDiskDrive,
    IntegrationService,
    RemoteFile,
    VirtualDisk,
    VirtualMachine,
    VMHost,
)
from airflow_hyperv.hyperv.waits import HostSnapshot

VM_TYPE = "Microsoft.HyperV.PowerShell.VirtualMachine"
SNAPSHOT_TYPE = "Microsoft.HyperV.PowerShell.VMSnapshot"
SERVICE_TYPE = "Microsoft.HyperV.PowerShell.VMIntegrationComponent"
DRIVE_TYPE = "Microsoft.HyperV.PowerShell.HardDiskDrive"


def _is(obj: Any, type_name: str) -> bool:
    return any(t.removeprefix("Deserialized.") == type_name for t in getattr(obj, "types", None) or [])


def _raise_first(errors: list[ErrorInfo], *, what: str) -> None:
    if errors:
        error = classify(errors[0])
        raise type(error)(f"{what}: {error}", error.info)


@dataclass(frozen=True)
class CheckpointResult:
    checkpoint: Checkpoint
    consistency: Consistency
    created: bool  # False when a previous try of the same run had already made it


@dataclass(frozen=True)
class VMOverview:
    vm: VirtualMachine
    services: list[IntegrationService]
    checkpoints: list[Checkpoint]
    drives: list[HardDiskDrive]


@dataclass(frozen=True)
class HostInfo:
    host: VMHost
    drive: DriveSpace | None


class HyperVHook(HyperVBaseHook):
    """Typed Hyper-V operations. Resolve a VM once (``get_vm``), then pass its Id everywhere."""

    # -- virtual machines -------------------------------------------------------------------------
    def get_vm(self, *, name: str | None = None, vm_id: uuid.UUID | str | None = None) -> VirtualMachine:
        """The one VM with this exact name or Id; wildcard characters in a name are refused."""
        if (name is None) == (vm_id is None):
            raise ValueError("give exactly one of name or vm_id")
        if name is not None:
            pipeline = pipelines.get_vm_by_name(require_exact_name(name))
            what = f"VM {name!r}"
        else:
            pipeline = pipelines.get_vm_by_id(uuid.UUID(str(vm_id)))
            what = f"VM {vm_id}"
        result = self.read(pipeline)
        vms = [VirtualMachine.decode(o) for o in result.output]
        if not vms:
            if result.errors:
                error = classify(result.errors[0])
                if isinstance(error, (VMNotFoundError, CommandFailedError)):
                    raise VMNotFoundError(f"{what} was not found on {self.settings.host}", error.info)
                raise type(error)(f"{what}: {error}", error.info)
            raise VMNotFoundError(f"{what} was not found on {self.settings.host}")
        if len(vms) > 1:
            ids = ", ".join(str(v.id) for v in vms)
            raise AmbiguousVMNameError(
                f"{len(vms)} VMs on {self.settings.host} are named {name!r} ({ids}): use the Id"
            )
        return vms[0]

    def resolve_vm(self, reference: str) -> VirtualMachine:
        """A VM by Id when ``reference`` is a GUID, else by exact name."""
        try:
            vm_id = uuid.UUID(str(reference))
        except ValueError:
            return self.get_vm(name=reference)
        return self.get_vm(vm_id=vm_id)

    def vm_with_checkpoints(self, vm_id: uuid.UUID) -> tuple[VirtualMachine, list[Checkpoint]]:
        """The VM and its checkpoints in one round trip."""
        result = self.read(pipelines.get_vm_by_id(vm_id).then(pipelines.list_checkpoints(vm_id)))
        vms = [VirtualMachine.decode(o) for o in result.output if _is(o, VM_TYPE)]
        if not vms:
            raise VMNotFoundError(f"VM {vm_id} was not found on {self.settings.host}")
        _raise_first(result.errors, what=f"listing checkpoints of {vms[0].name}")
        return vms[0], [Checkpoint.decode(o) for o in result.output if _is(o, SNAPSHOT_TYPE)]

    def vm_overview(self, vm_id: uuid.UUID) -> VMOverview:
        """Everything verification needs about a VM but its disk chain, in one round trip."""
        result = self.read(pipelines.vm_overview(vm_id))
        vms = [VirtualMachine.decode(o) for o in result.output if _is(o, VM_TYPE)]
        if not vms:
            raise VMNotFoundError(f"VM {vm_id} was not found on {self.settings.host}")
        _raise_first(result.errors, what=f"reading VM {vms[0].name}")
        return VMOverview(
            vm=vms[0],
            services=[IntegrationService.decode(o) for o in result.output if _is(o, SERVICE_TYPE)],
            checkpoints=[Checkpoint.decode(o) for o in result.output if _is(o, SNAPSHOT_TYPE)],
            drives=[HardDiskDrive.decode(o) for o in result.output if _is(o, DRIVE_TYPE)],
        )

    def host_state(self) -> HostSnapshot:
        """VM states, checkpoint ids and current disks of every VM on the host, in one round trip."""
        result = self.read(pipelines.host_state())
        _raise_first(result.errors, what="reading host state")
        snapshot = HostSnapshot()
        for obj in result.output:
            if _is(obj, VM_TYPE):
                vm = VirtualMachine.decode(obj)
                snapshot.vms[str(vm.id).lower()] = {
                    "name": vm.name,
                    "state": vm.state.name,
                    "heartbeat_ok": bool(vm.heartbeat and vm.heartbeat.is_ok),
                }
            elif _is(obj, SNAPSHOT_TYPE):
                snapshot.checkpoint_ids.append(str(Checkpoint.decode(obj).id).lower())
            elif _is(obj, DRIVE_TYPE):
                drive = HardDiskDrive.decode(obj)
                snapshot.drive_paths.setdefault(str(drive.vm_id).lower(), []).append(drive.path)
        return snapshot

    def integration_services(self, vm_id: uuid.UUID) -> list[IntegrationService]:
        result = self.read(pipelines.integration_services(vm_id))
        _raise_first(result.errors, what=f"integration services of VM {vm_id}")
        return [IntegrationService.decode(o) for o in result.output]

    def set_checkpoint_type(self, vm_id: uuid.UUID, checkpoint_type: CheckpointType) -> VirtualMachine:
        result = self.write(
            pipelines.set_checkpoint_type(vm_id, checkpoint_type),
            already_done=lambda: self._vm_if(vm_id, lambda vm: vm.checkpoint_type is checkpoint_type),
        )
        if isinstance(result, VirtualMachine):
            return result
        _raise_first(result.errors, what=f"setting checkpoint type {checkpoint_type.name} on VM {vm_id}")
        return VirtualMachine.decode(result.output[0]) if result.output else self.get_vm(vm_id=vm_id)

    def _vm_if(self, vm_id: uuid.UUID, predicate: Any) -> VirtualMachine | None:
        vm = self.get_vm(vm_id=vm_id)
        return vm if predicate(vm) else None

    def start_vm(self, vm_id: uuid.UUID) -> VirtualMachine:
        result = self.write(pipelines.start_vm(vm_id), already_done=lambda: self._vm_if(vm_id, _running))
        if isinstance(result, VirtualMachine):
            return result
        _raise_first(result.errors, what=f"starting VM {vm_id}")
        return self.get_vm(vm_id=vm_id)

    def stop_vm(self, vm_id: uuid.UUID, *, turn_off: bool = False) -> VirtualMachine:
        result = self.write(
            pipelines.stop_vm(vm_id, turn_off=turn_off), already_done=lambda: self._vm_if(vm_id, _off)
        )
        if isinstance(result, VirtualMachine):
            return result
        _raise_first(result.errors, what=f"stopping VM {vm_id}")
        return self.get_vm(vm_id=vm_id)

    # -- checkpoints ------------------------------------------------------------------------------
    def list_checkpoints(self, vm_id: uuid.UUID) -> list[Checkpoint]:
        return self.vm_with_checkpoints(vm_id)[1]

    def find_checkpoint(self, vm_id: uuid.UUID, name: str) -> Checkpoint | None:
        """The checkpoint with exactly this name (compared here: ``-Name`` would take wildcards)."""
        matches = [c for c in self.list_checkpoints(vm_id) if c.name == name]
        if len(matches) > 1:
            raise HyperVError(f"VM {vm_id} has {len(matches)} checkpoints named {name!r}")
        return matches[0] if matches else None

    def get_checkpoint(self, checkpoint_id: uuid.UUID) -> Checkpoint | None:
        result = self.read(pipelines.get_checkpoint(checkpoint_id))
        if result.output:
            return Checkpoint.decode(result.output[0])
        if result.errors and not isinstance(
            classify(result.errors[0]), (CheckpointNotFoundError, VMNotFoundError)
        ):
            _raise_first(result.errors, what=f"reading checkpoint {checkpoint_id}")
        return None

    def create_checkpoint(self, vm_id: uuid.UUID, name: str, *, consistency: Consistency) -> CheckpointResult:
        """Make the checkpoint ``name`` once. Application consistency is attempted with ProductionOnly
        so it can never fall back silently; the VM's own checkpoint type is restored in the same
        round trip, whatever happens. A checkpoint of that name already there (an earlier try whose
        answer was lost) is returned instead of making a second one."""
        consistency = Consistency(consistency)
        vm, existing = self.vm_with_checkpoints(vm_id)
        for checkpoint in existing:
            if checkpoint.name == name:
                # An earlier try made it. Memory state means it was taken as a standard checkpoint
                # (a fallback whose answer was lost): report what it is, not what was asked.
                found = Consistency.CRASH if checkpoint.has_memory_state else consistency
                return CheckpointResult(checkpoint, found, created=False)
        if vm.checkpoint_type is CheckpointType.Disabled:
            raise CheckpointsDisabledError(
                f"checkpoints are disabled on VM {vm.name} ({vm.id}); enable them (Set-VM -CheckpointType) "
                "or skip this VM"
            )
        attempt = (
            CheckpointType.ProductionOnly
            if consistency is Consistency.APPLICATION
            else CheckpointType.Standard
        )
        pipeline = pipelines.checkpoint_with_type(vm_id, name, attempt, vm.checkpoint_type)
        result = self.write(pipeline, already_done=lambda: self.find_checkpoint(vm_id, name))
        if isinstance(result, Checkpoint):
            return CheckpointResult(result, consistency, created=True)
        made = [Checkpoint.decode(o) for o in result.output if _is(o, SNAPSHOT_TYPE)]
        if made:
            return CheckpointResult(made[0], consistency, created=True)
        if not result.errors:
            raise CommandFailedError(f"Checkpoint-VM on {vm.name} returned neither a checkpoint nor an error")
        error = classify(result.errors[0])
        # Only a failed checkpoint itself means "production impossible": a VM busy with another
        # operation (InvalidState / ResourceBusy) or a full disk is not the guest's fault.
        if attempt is CheckpointType.ProductionOnly and not isinstance(
            error, (VMNotFoundError, InvalidStateError, OperationInProgressError, StorageFullError)
        ):
            raise ProductionCheckpointImpossibleError(
                f"a production (application-consistent) checkpoint of {vm.name} is impossible: the guest could "
                f"not quiesce ({error})",
                error.info,
            )
        raise type(error)(f"checkpoint of {vm.name}: {error}", error.info)

    def remove_checkpoint(self, checkpoint_id: uuid.UUID) -> bool:
        """Remove (merge) a checkpoint. False if it was already gone. The merge goes on on the host
        after this returns: wait on ``disk_chains`` for it to end."""
        if self.get_checkpoint(checkpoint_id) is None:
            return False
        result = self.write(
            pipelines.remove_checkpoint(checkpoint_id),
            already_done=lambda: True if self.get_checkpoint(checkpoint_id) is None else None,
        )
        if result is True:
            return True
        _raise_first(result.errors, what=f"removing checkpoint {checkpoint_id}")
        return True

    def restore_checkpoint(self, checkpoint_id: uuid.UUID) -> VirtualMachine:
        """Apply a checkpoint. A production checkpoint leaves the VM Off; starting it is the caller's
        choice. Not retried after a lost answer: re-applying is harmless but the caller decides."""
        checkpoint = self.get_checkpoint(checkpoint_id)
        if checkpoint is None:
            raise CheckpointNotFoundError(f"checkpoint {checkpoint_id} was not found on {self.settings.host}")
        result = self.run_pipeline(pipelines.restore_checkpoint(checkpoint_id))
        _raise_first(result.errors, what=f"restoring checkpoint {checkpoint.name}")
        return self.get_vm(vm_id=checkpoint.vm_id)

    def export_checkpoint(self, checkpoint_id: uuid.UUID, path: str) -> None:
        """Export a checkpoint and wait for it here. Deferrable tasks use ``start_disconnected``."""
        path = host_path(path, "export path")
        result = self.run_pipeline(pipelines.export_checkpoint(checkpoint_id, path))
        _raise_first(result.errors, what=f"exporting checkpoint {checkpoint_id} to {path}")

    def checkpoint_drives(self, checkpoint_id: uuid.UUID) -> list[HardDiskDrive]:
        """The checkpoint's own hard drives (``Get-VMSnapshot -Id | Get-VMHardDiskDrive``): the disks
        as they were when it was taken. A drive added to the VM afterwards is not among them."""
        result = self.read(pipelines.checkpoint_drives(checkpoint_id))
        _raise_first(result.errors, what=f"hard disk drives of checkpoint {checkpoint_id}")
        return [HardDiskDrive.decode(o) for o in result.output if _is(o, DRIVE_TYPE)]

    # -- disks, host, files -----------------------------------------------------------------------
    def disk_chains(self, vm_id: uuid.UUID, drives: list[HardDiskDrive] | None = None) -> list[DiskChain]:
        """Each drive's chain from the disk the VM writes to, down to its base disk (one round trip
        per level; ``drives`` from ``vm_overview`` saves the first)."""
        if drives is None:
            result = self.read(pipelines.hard_disk_drives(vm_id))
            _raise_first(result.errors, what=f"hard disk drives of VM {vm_id}")
            drives = [HardDiskDrive.decode(o) for o in result.output]
        chains = {d.path: [] for d in drives if d.path}  # type: dict[str, list[VirtualDisk]]
        frontier = {d.path: d.path for d in drives if d.path}  # chain key -> next path to read
        for _ in range(64):  # Hyper-V allows 50 checkpoints per VM: a longer chain is a loop
            if not frontier:
                break
            disks = self.get_vhds(list(frontier.values()))
            by_path = {d.path.lower(): d for d in disks}
            next_frontier = {}
            for key, path in frontier.items():
                disk = by_path.get(path.lower())
                if disk is None:
                    raise CommandFailedError(f"Get-VHD returned nothing for {path} of VM {vm_id}")
                chains[key].append(disk)
                if disk.parent_path:
                    next_frontier[key] = disk.parent_path
            frontier = next_frontier
        return [DiskChain(drive=d, disks=chains.get(d.path, [])) for d in drives]

    def get_vhds(self, paths: Sequence[str]) -> list[VirtualDisk]:
        result = self.read(pipelines.get_vhds(paths))
        _raise_first(result.errors, what="reading virtual disks")
        return [VirtualDisk.decode(o) for o in result.output]

    def host_info(self, drive: str | None = None) -> HostInfo:
        result = self.read(pipelines.host_info(drive))
        _raise_first(result.errors, what="reading host information")
        hosts = [VMHost.decode(o) for o in result.output if _is(o, "Microsoft.HyperV.PowerShell.VMHost")]
        drives = [
            DriveSpace.decode(o) for o in result.output if not _is(o, "Microsoft.HyperV.PowerShell.VMHost")
        ]
        if not hosts:
            raise CommandFailedError(f"Get-VMHost returned nothing on {self.settings.host}")
        return HostInfo(hosts[0], drives[0] if drives else None)

    def free_space(self, path: str) -> int:
        """Free bytes on the drive that holds ``path`` (a drive-letter path)."""
        path = require_host_path(path)
        if path.startswith("\\\\"):
            raise HyperVError(
                f"free space of a UNC path ({path}) is not known to the host; give a drive path"
            )
        result = self.read(pipelines.drive_space(path[0].upper()))
        _raise_first(result.errors, what=f"free space of {path}")
        return DriveSpace.decode(result.output[0]).free

    def path_exists(self, path: str) -> bool:
        result = self.read(pipelines.test_path(host_path(path)))
        _raise_first(result.errors, what=f"testing {path}")
        return bool(result.output and str(result.output[0]).lower() == "true")

    def list_files(self, path: str) -> list[RemoteFile]:
        result = self.read(pipelines.list_files(host_path(path)))
        _raise_first(result.errors, what=f"listing {path}")
        return [RemoteFile.decode(o) for o in result.output]

    def is_empty_folder(self, path: str) -> bool:
        """True when the folder holds nothing at all (no file, no sub-folder)."""
        result = self.read(pipelines.list_entries(host_path(path)))
        _raise_first(result.errors, what=f"listing {path}")
        return not result.output

    def file_hashes(self, paths: Sequence[str]) -> list[FileHash]:
        if not paths:
            return []
        result = self.read(pipelines.file_hashes([host_path(p) for p in paths]))
        _raise_first(result.errors, what="hashing files")
        return [FileHash.decode(o) for o in result.output]

    def make_directory(self, path: str) -> None:
        result = self.read(pipelines.make_directory(host_path(path)))  # -Force: repeating is harmless
        _raise_first(result.errors, what=f"creating {path}")

    def move_item(self, path: str, destination: str) -> None:
        source, target = host_path(path), host_path(destination)
        result = self.write(
            pipelines.move_item(source, target),
            already_done=lambda: True if self.path_exists(target) and not self.path_exists(source) else None,
        )
        if result is not True:
            _raise_first(result.errors, what=f"moving {path} to {destination}")

    def remove_item(self, path: str) -> None:
        target = host_path(path)
        result = self.write(
            pipelines.remove_item(target), already_done=lambda: True if not self.path_exists(target) else None
        )
        if result is not True:
            _raise_first(result.errors, what=f"removing {path}")


def _running(vm: VirtualMachine) -> bool:
    return vm.state.name == "Running"


def _off(vm: VirtualMachine) -> bool:
    return vm.state.name == "Off"
