"""HyperVHook: typed Hyper-V operations over one runspace pool, each acting on a VM by its Id."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from airflow_hyperv.hooks.base import HyperVBaseHook
from airflow_hyperv.hyperv import events as event_log
from airflow_hyperv.hyperv import pipelines, restore
from airflow_hyperv.hyperv.enums import CheckpointType, ClusterNodeState, Consistency, SnapshotType
from airflow_hyperv.hyperv.errors import (
    NEARLY_FULL_BYTES,
    AmbiguousVMNameError,
    CheckpointNotFoundError,
    CheckpointsDisabledError,
    CommandFailedError,
    ErrorInfo,
    HyperVError,
    OperationInProgressError,
    ProductionCheckpointImpossibleError,
    StorageFullError,
    VMNotFoundError,
    classify,
    means_production_impossible,
)
from airflow_hyperv.hyperv.lease import Lease, lease_path
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
    VolumeSpace,
    has_type,
)
from airflow_hyperv.hyperv.restore import (
    NETWORK_ADAPTER_TYPE,
    CopyImportError,
    CopyRemoval,
    NetworkAdapter,
    NetworkIsolation,
    VMLocation,
)
from airflow_hyperv.hyperv.waits import HostSnapshot, host_snapshot

log = logging.getLogger(__name__)

VM_TYPE = "Microsoft.HyperV.PowerShell.VirtualMachine"
SNAPSHOT_TYPE = "Microsoft.HyperV.PowerShell.VMSnapshot"
SERVICE_TYPE = "Microsoft.HyperV.PowerShell.VMIntegrationComponent"
DRIVE_TYPE = "Microsoft.HyperV.PowerShell.HardDiskDrive"
VHD_TYPE = "Microsoft.Vhd.PowerShell.VirtualHardDisk"
FILE_TYPE = "System.IO.FileInfo"
VMHOST_TYPE = "Microsoft.HyperV.PowerShell.VMHost"
FILE_HASH_TYPE = "Microsoft.Powershell.Utility.FileHash"
VOLUME_TYPE = "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Storage/MSFT_Volume"
# The command part of a FullyQualifiedErrorId ("<ErrorId>,<command>") says which statement of a round
# trip of several failed: the Hyper-V cmdlets' classes, Get-Content's (a compiled cmdlet).
HYPERV_COMMANDS = "Microsoft.HyperV.PowerShell."  # Get-VM, Get-VMSnapshot, Get-VMHost, ...
GET_CONTENT_COMMAND = "Microsoft.PowerShell.Commands.GetContentCommand"
GET_VM_COMMAND = "Microsoft.HyperV.PowerShell.Commands.GetVM"


def _raise_first(errors: list[ErrorInfo], *, what: str) -> None:
    if errors:
        error = classify(errors[0])
        raise type(error)(f"{what}: {error}", error.info)


@dataclass(frozen=True)
class CheckpointResult:
    checkpoint: Checkpoint
    consistency: Consistency
    created: bool  # False when a previous try of the same run had already made it
    drives: list[HardDiskDrive] | None = None  # the VM's drives right after the checkpoint, when read


@dataclass(frozen=True)
class LeaseClaim:
    """The lease on the host after an attempt to acquire it: ``ours`` or held by another run."""

    lease: Lease
    ours: bool
    resumed: bool = False  # ours already: an earlier try of this run acquired it


@dataclass(frozen=True)
class VMOverview:
    vm: VirtualMachine
    services: list[IntegrationService]
    checkpoints: list[Checkpoint]
    drives: list[HardDiskDrive]
    host: VMHost | None = None  # the host (Get-VMHost), when it was asked for in the same round trip
    volume: VolumeSpace | None = None  # the volume of ``resolve_overview(volume_of=)``'s path; None: unknown


@dataclass(frozen=True)
class DiskReadings:
    """What verify reads once it has a VM's drives, in one round trip: the disk chains, the volume of
    each disk (None: unknown) and the VM's lease (None: nobody holds it; ``lease_error``: unreadable)."""

    chains: list[DiskChain]
    volumes: dict[str, VolumeSpace | None]
    lease: Lease | None
    lease_error: HyperVError | None = None


@dataclass(frozen=True)
class LeaseRead:
    """A VM's lease and the VM, read in one round trip for ``finish_lease``: ``lease`` None when
    nobody holds it, ``lease_error`` when it cannot be read; ``vm`` None (with ``vm_errors``) when the
    VM could not be read."""

    lease: Lease | None
    vm: VirtualMachine | None
    vm_errors: list[ErrorInfo]
    lease_error: HyperVError | None = None


@dataclass(frozen=True)
class ExportContents:
    """What checking an export reads: the checkpoint (None when gone), its disk chains, the files
    under the folder and their SHA-256 (empty when the checkpoint is gone)."""

    checkpoint: Checkpoint | None
    chains: list[DiskChain]
    files: list[RemoteFile]
    hashes: list[FileHash]
    # ``then_test``'s answer, tested after the hashes in their round trip; None when it was not asked
    then_exists: bool | None = None


@dataclass(frozen=True)
class HostInfo:
    host: VMHost
    drive: DriveSpace | None


class HyperVHook(HyperVBaseHook):
    """Typed Hyper-V operations. Resolve a VM once (``get_vm``), then pass its Id everywhere.

    With a cluster connection every call about a VM goes to the node that owns it (hooks/cluster.py).

    Use it as a context manager (``with HyperVHook("hyperv_hv_01") as hv:``): one runspace pool for
    every call, closed on the host at the end. Reads are repeated after a transient fault; writes
    first ask the host whether the lost try took effect; a rejected login is never repeated.

    .. seealso::
        docs/hook.md (the hook) and docs/connection.md (preparing a host, the ``hyperv`` connection).

    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host or cluster.
        Default ``hyperv_default``.
    :param settings: Already parsed connection settings, used instead of reading ``hyperv_conn_id``.
        Default None: read the connection on first use.
    """

    _cluster_vms: set[str] = set()  # a cluster connection: the VMs the last host_state saw

    # -- virtual machines -------------------------------------------------------------------------
    def get_vm(self, *, name: str | None = None, vm_id: uuid.UUID | None = None) -> VirtualMachine:
        """The one VM with this exact name or Id; wildcard characters in a name are refused.

        :param name: The VM's exact name. Wildcard characters (``* ? [ ]`` and the backtick), control
            characters and over-long names are refused before the host is contacted.
        :param vm_id: The VM's Id. Give exactly one of ``name`` and ``vm_id`` (else ValueError).
        :return: The VM.
        :raises VMNotFoundError: No VM has this name or Id.
        :raises AmbiguousVMNameError: Several VMs have this name (the message lists their Ids: use one).
        """
        if (name is None) == (vm_id is None):
            raise ValueError("give exactly one of name or vm_id")
        if self.routes:  # a cluster: ask it where the VM runs, then ask that node
            if name is not None:
                role = self.router.settled_role(name=require_exact_name(name))
                self.router.go_to(role.owner_node, None)
            else:
                self._at(uuid.UUID(str(vm_id)))
        if name is not None:
            pipeline = pipelines.get_vm_by_name(require_exact_name(name))
            what = f"VM {name!r}"
        else:
            pipeline = pipelines.get_vm_by_id(uuid.UUID(str(vm_id)))
            what = f"VM {vm_id}"
        result = self.run_repeatable(pipeline)
        return self._one_vm(result, what, name)

    def _one_vm(self, result: Any, what: str, name: str | None, *, mixed: bool = False) -> VirtualMachine:
        """The one VM among ``result``'s output (its VM objects only when ``mixed``), or the error
        that says why not."""
        vms = [VirtualMachine.decode(o) for o in result.output if not mixed or has_type(o, VM_TYPE)]
        if not vms:
            if result.errors:
                # Only a not-found record means "not found": a permission error hides whether the VM
                # exists, and any other failure is reported with the host's own reason.
                error = classify(result.errors[0])
                if isinstance(error, VMNotFoundError):
                    raise VMNotFoundError(f"{what} was not found on {self.settings.host}", error.info)
                raise type(error)(f"{what} on {self.settings.host}: {error}", error.info)
            raise VMNotFoundError(f"{what} was not found on {self.settings.host}")
        if len(vms) > 1:
            ids = ", ".join(str(v.id) for v in vms)
            raise AmbiguousVMNameError(
                f"{len(vms)} VMs on {self.settings.host} are named {name!r} ({ids}): use the Id"
            )
        if self.routes:
            self.router.focus = vms[0].id
        return vms[0]

    def resolve_overview(
        self, reference: str, *, with_host: bool = False, volume_of: str | None = None
    ) -> VMOverview:
        """``resolve_vm`` and ``vm_overview`` together: for a name on one host in a single round trip
        (every statement starts from ``Get-VM -Name``), else (an Id, a cluster) one after the other.

        :param reference: A VM Id (a GUID) or an exact VM name (what operators take as ``vm``).
        :param with_host: Also read the host (``Get-VMHost``) in that round trip, for a name on one
            host (``host`` of the result; None otherwise). Default False.
        :param volume_of: A host path whose volume (``volume_of``) to read too: in that round trip for a
            name on one host, else after it (``volume`` of the result). Default None.
        :return: A ``VMOverview`` of the one VM (act on ``overview.vm.id`` from here on).
        :raises VMNotFoundError: No VM has this name or Id.
        :raises AmbiguousVMNameError: Several VMs have this name.
        """
        try:
            uuid.UUID(str(reference))
        except ValueError:
            by_name = not self.routes  # a cluster asks the cluster where the VM runs first
        else:
            by_name = False
        if not by_name:
            overview = self.vm_overview(self.resolve_vm(reference).id)
            return dataclasses.replace(overview, volume=self.volume_of(volume_of)) if volume_of else overview
        name = require_exact_name(reference)
        pipeline = pipelines.vm_overview_by_name(name)
        if with_host:
            pipeline = pipeline.then(pipelines.host_info())
        candidates = _volume_candidates(require_host_path(volume_of)) if volume_of else None
        if candidates:
            pipeline = pipeline.then(pipelines.volume_of_first(candidates))
        result = self.run_repeatable(pipeline)
        vm = self._one_vm(result, f"VM {name!r}", name, mixed=True)
        # With the volume read beside it, only the Hyper-V cmdlets' errors are the VM's: any other
        # (Get-Volume's, whatever its exact id on a real host) leaves the volume unknown.
        vm_errors = [e for e in result.errors if not candidates or e.command.startswith(HYPERV_COMMANDS)]
        _raise_first(vm_errors, what=f"reading VM {vm.name}")
        hosts = [VMHost.decode(o) for o in result.output if has_type(o, VMHOST_TYPE)]
        overview = self._overview(vm, result.output, hosts[0] if hosts else None)
        if not candidates:  # none asked, or a share: no local volume (as volume_of answers)
            return overview
        volume = self._first_volume(
            [o for o in result.output if has_type(o, VOLUME_TYPE)],
            [e for e in result.errors if e not in vm_errors],
            volume_of or "",
        )
        return dataclasses.replace(overview, volume=volume)

    def _overview(self, vm: VirtualMachine, output: list[Any], host: VMHost | None = None) -> VMOverview:
        return VMOverview(
            vm=vm,
            services=[IntegrationService.decode(o) for o in output if has_type(o, SERVICE_TYPE)],
            checkpoints=[Checkpoint.decode(o) for o in output if has_type(o, SNAPSHOT_TYPE)],
            drives=[HardDiskDrive.decode(o) for o in output if has_type(o, DRIVE_TYPE)],
            host=host,
        )

    def checkpoint_chains_and_path(
        self, checkpoint_id: uuid.UUID, vm_id: uuid.UUID, path: str
    ) -> tuple[list[DiskChain], bool]:
        """The chains of a checkpoint's own drives and whether ``path`` exists: the drives and
        ``Test-Path -LiteralPath`` in one round trip, then one per level of the chains.

        :param checkpoint_id: The checkpoint's Id.
        :param vm_id: The VM's Id.
        :param path: An absolute path on the host.
        :return: ``(one DiskChain per drive of the checkpoint, whether path exists)``.
        """
        self._require_focus("reading the drives of a checkpoint")
        result = self.run_repeatable(
            pipelines.checkpoint_drives(checkpoint_id).then(pipelines.test_path(host_path(path)))
        )
        _raise_first(result.errors, what=f"drives of checkpoint {checkpoint_id} and testing {path}")
        drives = [HardDiskDrive.decode(o) for o in result.output if has_type(o, DRIVE_TYPE)]
        answers = [o for o in result.output if not has_type(o, DRIVE_TYPE)]
        return self.disk_chains(vm_id, drives), _said_true(answers)

    # -- clusters (hooks/cluster.py) --------------------------------------------------------------
    def follow(self, vm_id: uuid.UUID) -> str | None:
        """A cluster connection: find the node the VM runs on now (waiting, bounded, while it is being
        live-migrated) and send every later call there. Returns that node; None for one host (no-op).

        :param vm_id: The VM's Id.
        :return: The VM's owner node, or None for a connection to one host.
        """
        if not self.routes:
            return None
        role = self.router.settled_role(vm_id=uuid.UUID(str(vm_id)))
        self.router.go_to(role.owner_node, uuid.UUID(str(vm_id)))
        return role.owner_node

    def _at(self, vm_id: uuid.UUID) -> None:
        """Before a call about ``vm_id``: on a cluster, make sure work goes to its owner node."""
        if self.routes and (self.router.focus != uuid.UUID(str(vm_id)) or self.router.current is None):
            self.follow(vm_id)

    def _require_focus(self, what: str) -> None:
        """Checkpoint calls name no VM: on a cluster they need the VM's node chosen first."""
        if self.routes and self.router.focus is None:
            raise HyperVError(
                f"{what} on cluster {self.router.cluster}: resolve the VM first (resolve_vm, get_vm or "
                "follow) so the call goes to the node that owns it"
            )

    @property
    def node(self) -> str | None:
        """The cluster node work goes to now (None for a connection to one host)."""
        return self.router.current if self.routes else None

    def resolve_vm(self, reference: str) -> VirtualMachine:
        """A VM by Id when ``reference`` is a GUID, else by exact name.

        :param reference: A VM Id (a GUID) or an exact VM name (what operators take as ``vm``).
        :return: The VM; act on its ``id`` from here on.
        """
        try:
            vm_id = uuid.UUID(str(reference))
        except ValueError:
            return self.get_vm(name=reference)
        return self.get_vm(vm_id=vm_id)

    def vm_with_checkpoints(self, vm_id: uuid.UUID) -> tuple[VirtualMachine, list[Checkpoint]]:
        """The VM and its checkpoints in one round trip.

        :param vm_id: The VM's Id.
        :return: ``(vm, checkpoints)``.
        """
        self._at(vm_id)
        result = self.run_repeatable(pipelines.get_vm_by_id(vm_id).then(pipelines.list_checkpoints(vm_id)))
        return self._vm_and_checkpoints(result, vm_id, result.errors)

    def _vm_and_checkpoints(
        self, result: Any, vm_id: uuid.UUID, errors: list[ErrorInfo]
    ) -> tuple[VirtualMachine, list[Checkpoint]]:
        """The VM and its checkpoints among a round trip's answers; ``errors``: those of their statements."""
        vms = [VirtualMachine.decode(o) for o in result.output if has_type(o, VM_TYPE)]
        if not vms:
            raise VMNotFoundError(f"VM {vm_id} was not found on {self.settings.host}")
        _raise_first(errors, what=f"listing checkpoints of {vms[0].name}")
        return vms[0], [Checkpoint.decode(o) for o in result.output if has_type(o, SNAPSHOT_TYPE)]

    def vm_checkpoints_and_lease(
        self, vm_id: uuid.UUID
    ) -> tuple[VirtualMachine, list[Checkpoint], Lease | None]:
        """``vm_with_checkpoints`` and ``read_lease`` in one round trip: what a run records in its
        lease, and the lease as it is on the host (for ``record_lease(held=...)``).

        :param vm_id: The VM's Id.
        :return: ``(the VM, its checkpoints, the lease or None when nobody holds it)``.
        :raises VMNotFoundError: No VM has this Id.
        :raises HyperVError: The lease file is empty or cannot be read.
        """
        self._at(vm_id)
        path = self.lease_file(vm_id)
        result = self.run_repeatable(
            pipelines.get_vm_by_id(vm_id)
            .then(pipelines.list_checkpoints(vm_id))
            .then(pipelines.read_text(path))
        )
        vm, checkpoints = self._vm_and_checkpoints(result, vm_id, _not_lease_errors(result.errors))
        return vm, checkpoints, self._lease_in(result, path)

    def vm_overview(self, vm_id: uuid.UUID) -> VMOverview:
        """Everything verification needs about a VM but its disk chain, in one round trip.

        :param vm_id: The VM's Id.
        :return: A ``VMOverview``: the VM, its integration services, checkpoints and hard disk drives.
        """
        self._at(vm_id)
        result = self.run_repeatable(pipelines.vm_overview(vm_id))
        vms = [VirtualMachine.decode(o) for o in result.output if has_type(o, VM_TYPE)]
        if not vms:
            raise VMNotFoundError(f"VM {vm_id} was not found on {self.settings.host}")
        _raise_first(result.errors, what=f"reading VM {vms[0].name}")
        return VMOverview(
            vm=vms[0],
            services=[IntegrationService.decode(o) for o in result.output if has_type(o, SERVICE_TYPE)],
            checkpoints=[Checkpoint.decode(o) for o in result.output if has_type(o, SNAPSHOT_TYPE)],
            drives=[HardDiskDrive.decode(o) for o in result.output if has_type(o, DRIVE_TYPE)],
        )

    def host_state(self, disk_paths: Sequence[str] = ()) -> HostSnapshot:
        """VM states, checkpoint ids and current disks of every VM on the host, in one round trip;
        with ``disk_paths``, also the parent of each of those disks (a path that is no disk any more,
        ObjectNotFound from Get-VHD, is simply absent; any other error fails the poll).

        A cluster connection: the same from every node that is not down, merged (a VM is wherever it
        runs now). A VM seen by the last poll but by no node now (it finished moving between two
        nodes' answers) makes the poll look once more.

        :param disk_paths: Disks whose parent to report too (what a merge wait watches). Default: none.
        :return: A ``HostSnapshot``: per VM Id (lower case) its name, state and heartbeat; the checkpoint
            Ids; each VM's current disk paths; ``disk_parents`` of ``disk_paths``.
        """
        if not self.routes:
            return self._host_state_on(self, disk_paths)
        snapshot = HostSnapshot()
        for _ in range(2):
            nodes = [n for n in self.router.nodes() if n.state is not ClusterNodeState.Down]
            snapshot = HostSnapshot()
            for node in nodes:
                part = self._host_state_on(self.router.hook(node.name), disk_paths)
                snapshot.vms.update(part.vms)
                snapshot.checkpoint_ids.extend(part.checkpoint_ids)
                for vm, paths in part.drive_paths.items():
                    snapshot.drive_paths.setdefault(vm, []).extend(paths)
                snapshot.disk_parents.update(part.disk_parents)
            if not set(self._cluster_vms) - set(snapshot.vms):
                break
        self._cluster_vms = set(snapshot.vms)
        return snapshot

    def _host_state_on(self, hook: HyperVBaseHook, disk_paths: Sequence[str]) -> HostSnapshot:
        result = hook.run_repeatable(pipelines.host_state(disk_paths))
        watched = {p.lower() for p in disk_paths}
        _raise_first(
            [e for e in result.errors if not (e.target_name.lower() in watched and _not_found(e))],
            what="reading host state",
        )
        return host_snapshot(result.output)

    def checkpoint_drives(self, checkpoint_id: uuid.UUID) -> list[HardDiskDrive]:
        """The checkpoint's own drives (``Get-VMSnapshot -Id | Get-VMHardDiskDrive``), as they were when it
        was taken (a drive added later is not among them): each path is the disk that holds the
        checkpoint's state, the parent of the differencing disk made with it.

        :param checkpoint_id: The checkpoint's Id.
        :return: The checkpoint's hard disk drives.
        """
        self._require_focus("reading the drives of a checkpoint")
        result = self.run_repeatable(pipelines.checkpoint_drives(checkpoint_id))
        _raise_first(result.errors, what=f"drives of checkpoint {checkpoint_id}")
        return [HardDiskDrive.decode(o) for o in result.output if has_type(o, DRIVE_TYPE)]

    def integration_services(self, vm_id: uuid.UUID) -> list[IntegrationService]:
        """The VM's integration services (``Get-VMIntegrationService``): whether Backup (VSS), Heartbeat and
        the others are enabled and answering.

        :param vm_id: The VM's Id.
        :return: One ``IntegrationService`` per service.
        """
        self._at(vm_id)
        result = self.run_repeatable(pipelines.integration_services(vm_id))
        _raise_first(result.errors, what=f"integration services of VM {vm_id}")
        return [IntegrationService.decode(o) for o in result.output]

    def set_checkpoint_type(self, vm_id: uuid.UUID, checkpoint_type: CheckpointType) -> VirtualMachine:
        """Set the VM's checkpoint type (``Set-VM -CheckpointType``). After a lost answer the VM's type is
        read first, and the command is sent again only if it did not take effect.

        :param vm_id: The VM's Id.
        :param checkpoint_type: The type to set (Disabled, Production, ProductionOnly, Standard).
        :return: The VM as it is now.
        """
        self._at(vm_id)
        result = self.run_checked_write(
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
        """Start the VM (``Start-VM``). After a lost answer, a VM already running is not started again.

        :param vm_id: The VM's Id.
        :return: The VM as it is now.
        """
        self._at(vm_id)
        result = self.run_checked_write(
            pipelines.start_vm(vm_id), already_done=lambda: self._vm_if(vm_id, _running)
        )
        if isinstance(result, VirtualMachine):
            return result
        _raise_first(result.errors, what=f"starting VM {vm_id}")
        return self.get_vm(vm_id=vm_id)

    def stop_vm(self, vm_id: uuid.UUID, *, turn_off: bool = False) -> VirtualMachine:
        """Stop the VM: ``Stop-VM -Force`` (the guest is shut down, even with unsaved work) or, with
        ``turn_off``, ``Stop-VM -TurnOff`` (power cut: whatever the guest had not written is lost). After
        a lost answer, a VM already Off is not stopped again.

        :param vm_id: The VM's Id.
        :param turn_off: Turn the VM off instead of shutting the guest down. Default False.
        :return: The VM as it is now.
        """
        self._at(vm_id)
        result = self.run_checked_write(
            pipelines.stop_vm(vm_id, turn_off=turn_off), already_done=lambda: self._vm_if(vm_id, _off)
        )
        if isinstance(result, VirtualMachine):
            return result
        _raise_first(result.errors, what=f"stopping VM {vm_id}")
        return self.get_vm(vm_id=vm_id)

    # -- checkpoints ------------------------------------------------------------------------------
    def list_checkpoints(self, vm_id: uuid.UUID) -> list[Checkpoint]:
        """The VM's checkpoints (``Get-VMSnapshot``).

        :param vm_id: The VM's Id.
        :return: Its checkpoints.
        """
        return self.vm_with_checkpoints(vm_id)[1]

    def find_checkpoint(self, vm_id: uuid.UUID, name: str) -> Checkpoint | None:
        """The checkpoint with exactly this name (compared here: ``-Name`` would take wildcards).

        :param vm_id: The VM's Id.
        :param name: The checkpoint's exact name.
        :return: The checkpoint, or None if the VM has none of that name.
        :raises HyperVError: Several checkpoints of the VM have this name.
        """
        matches = [c for c in self.list_checkpoints(vm_id) if c.name == name]
        if len(matches) > 1:
            raise HyperVError(f"VM {vm_id} has {len(matches)} checkpoints named {name!r}")
        return matches[0] if matches else None

    def get_checkpoint(self, checkpoint_id: uuid.UUID) -> Checkpoint | None:
        """A checkpoint by its Id.

        :param checkpoint_id: The checkpoint's Id.
        :return: The checkpoint, or None when it (or its VM) is gone.
        """
        self._require_focus("reading a checkpoint")
        result = self.run_repeatable(pipelines.get_checkpoint(checkpoint_id))
        if result.output:
            return Checkpoint.decode(result.output[0])
        if result.errors and not isinstance(
            classify(result.errors[0]), (CheckpointNotFoundError, VMNotFoundError)
        ):
            _raise_first(result.errors, what=f"reading checkpoint {checkpoint_id}")
        return None

    def create_checkpoint(
        self,
        vm_id: uuid.UUID,
        name: str,
        *,
        consistency: Consistency,
        lease: Lease | None = None,
        known: tuple[VirtualMachine, list[Checkpoint]] | None = None,
    ) -> CheckpointResult:
        """Make the checkpoint ``name`` once. Application consistency is attempted with ProductionOnly
        (set with ``-ErrorAction Stop``: if that fails nothing is attempted) so it never falls back
        silently; the VM's type is put back to the one recorded in ``lease`` in the same round trip.
        A checkpoint of that name already there (an earlier try whose answer was lost) is returned,
        and so is one the host made but never renamed (it appeared after ``lease`` was taken): it is
        renamed, never made twice. The label says what the host did, not what was asked.

        :param vm_id: The VM's Id.
        :param name: The checkpoint's name (a run's deterministic name, so a retry finds it).
        :param consistency: ``Consistency.APPLICATION`` (a production checkpoint) or ``Consistency.CRASH``
            (a standard checkpoint).
        :param lease: This run's lease on the VM: the checkpoint type to put back, and the checkpoints
            that existed before it was taken. Default None: put back the VM's current type, and adopt no
            unnamed checkpoint.
        :param known: The VM and its checkpoints as this task read them just before, while holding
            ``lease`` (``vm_with_checkpoints``): used instead of reading them again. Default None: read.
        :return: A ``CheckpointResult``: the checkpoint, the consistency reached (``crash`` whenever it
            holds saved memory state) and ``created`` (False when an earlier try had made it).
        :raises CheckpointsDisabledError: Checkpoints are disabled on the VM.
        :raises ProductionCheckpointImpossibleError: Application consistency was asked and the guest could
            not quiesce (the caller decides whether to fall back to ``CRASH``).
        :raises StorageFullError: The checkpoint failed and a volume under the VM's disks is nearly full.
        """
        consistency = Consistency(consistency)
        vm, existing = known if known is not None else self.vm_with_checkpoints(vm_id)
        restore = CheckpointType.parse(lease.checkpoint_type_before) if lease else vm.checkpoint_type
        for checkpoint in existing:
            if checkpoint.name == name:
                return CheckpointResult(checkpoint, _label(checkpoint, consistency), created=False)
        if lease is not None:
            adopted = self._adopt_unnamed(vm, name, existing, set(lease.existing_checkpoint_ids))
            if adopted is not None:
                self.ensure_checkpoint_type(vm_id, restore)
                return CheckpointResult(adopted, _label(adopted, consistency), created=False)
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
        before = {str(c.id).lower() for c in existing}

        def made_meanwhile() -> Checkpoint | None:
            """After a lost answer: the checkpoint the lost try made, named or not yet renamed."""
            current, checkpoints = self.vm_with_checkpoints(vm_id)
            found = next((c for c in checkpoints if c.name == name), None)
            found = found or self._adopt_unnamed(current, name, checkpoints, before)
            if found is not None:
                self.ensure_checkpoint_type(vm_id, restore)
            return found

        pipeline = pipelines.checkpoint_with_type(vm_id, name, attempt, restore)
        result = self.run_checked_write(pipeline, already_done=made_meanwhile)
        if isinstance(result, Checkpoint):
            return CheckpointResult(result, _label(result, consistency), created=True)
        made = [Checkpoint.decode(o) for o in result.output if has_type(o, SNAPSHOT_TYPE)]
        if made:
            drives = [HardDiskDrive.decode(o) for o in result.output if has_type(o, DRIVE_TYPE)]
            return CheckpointResult(made[0], _label(made[0], consistency), created=True, drives=drives)
        if not result.errors:
            raise CommandFailedError(f"Checkpoint-VM on {vm.name} returned neither a checkpoint nor an error")
        error = classify(result.errors[0])
        if error.info is not None and error.info.command.endswith(".SetVM"):
            # -ErrorAction Stop: the invocation ended at the first Set-VM; nothing else ran.
            raise type(error)(
                f"setting checkpoint type {attempt.name} on {vm.name} failed, so no checkpoint was attempted: "
                f"{error.info.message or error}",
                error.info,
            )
        # Only a failed checkpoint job itself means "production impossible": a busy VM, a full disk
        # or a permission error is not the guest's fault (errors.means_production_impossible).
        if attempt is CheckpointType.ProductionOnly and means_production_impossible(error):
            self._raise_if_volume_full(vm, error)
            raise ProductionCheckpointImpossibleError(
                f"a production (application-consistent) checkpoint of {vm.name} is impossible: the guest could "
                f"not quiesce ({error})",
                error.info,
            )
        raise type(error)(f"checkpoint of {vm.name}: {error}", error.info)

    def _raise_if_volume_full(self, vm: VirtualMachine, error: HyperVError) -> None:
        """A failed job with a nearly full volume under the VM's disks is that volume's fault: a standard
        fallback would fail the same way, so it is never read as "the guest could not quiesce"."""
        for drive in self.vm_overview(vm.id).drives:
            volume = self.volume_of(drive.path) if drive.path else None
            if volume is not None and volume.free < NEARLY_FULL_BYTES:
                raise StorageFullError(
                    f"checkpoint of {vm.name} failed and the volume holding {drive.path} has only "
                    f"{volume.free >> 20} MiB free: free space there (Hyper-V said: {error})",
                    error.info,
                )

    def _adopt_unnamed(
        self, vm: VirtualMachine, name: str, checkpoints: list[Checkpoint], before: set[str]
    ) -> Checkpoint | None:
        """A checkpoint Checkpoint-VM made under its default name "<vm> - (<date>)" and never renamed
        (the session ended in between), made after ``before`` was recorded: give it ``name``."""
        new = [
            c
            for c in checkpoints
            if str(c.id).lower() not in before
            and c.snapshot_type is SnapshotType.Standard
            and c.name.startswith(f"{vm.name} - (")
        ]
        if not new:
            return None
        if len(new) > 1:
            raise HyperVError(
                f"{vm.name} has {len(new)} new checkpoints with default names ({', '.join(c.name for c in new)}); "
                f"cannot tell which one is {name!r}: check the VM by hand"
            )
        log.warning(
            "Adopting checkpoint %r (%s) of %s as %r: its rename never ran",
            new[0].name,
            new[0].id,
            vm.name,
            name,
        )
        result = self.run_checked_write(
            pipelines.rename_checkpoint(new[0].id, name),
            already_done=lambda: self._named(new[0].id, name),
        )
        if isinstance(result, Checkpoint):
            return result
        _raise_first(result.errors, what=f"renaming checkpoint {new[0].id} to {name!r}")
        renamed = [Checkpoint.decode(o) for o in result.output if has_type(o, SNAPSHOT_TYPE)]
        return renamed[0] if renamed else self.get_checkpoint(new[0].id)

    def _named(self, checkpoint_id: uuid.UUID, name: str) -> Checkpoint | None:
        found = self.get_checkpoint(checkpoint_id)
        return found if found is not None and found.name == name else None

    def ensure_checkpoint_type(
        self, vm_id: uuid.UUID, wanted: CheckpointType, *, vm: VirtualMachine | None = None
    ) -> bool:
        """Put the VM's checkpoint type back to ``wanted``; True if it had to be repaired.

        :param vm_id: The VM's Id.
        :param wanted: The checkpoint type the VM must have.
        :param vm: The VM as just read. Default None: read it here.
        :return: True if it had another type and was changed, False if it already had ``wanted``.
        """
        vm = vm if vm is not None else self.get_vm(vm_id=vm_id)
        if vm.checkpoint_type is wanted:
            return False
        log.warning(
            "VM %s has checkpoint type %s; putting back %s", vm.name, vm.checkpoint_type.name, wanted.name
        )
        self.set_checkpoint_type(vm_id, wanted)
        return True

    # -- protection leases (docs/operations.md, Overlapping runs) -----------------------------------
    def lease_file(self, vm_id: uuid.UUID) -> str:
        """Where the VM's protection lease lives on the host (under the connection's ``lease_folder``).

        :param vm_id: The VM's Id.
        :return: The lease file's path on the host.
        """
        return lease_path(self.settings.lease_folder, vm_id)

    def read_lease(self, vm_id: uuid.UUID) -> Lease | None:
        """The lease on the VM, or None if nobody holds it.

        :param vm_id: The VM's Id.
        :return: The lease, or None.
        :raises HyperVError: The lease file is empty (a run is writing it, or it was left damaged).
        """
        path = self.lease_file(vm_id)
        result = self.run_repeatable(pipelines.read_text(path))
        return self._lease_from("".join(str(o) for o in result.output), result.errors, path)

    def _lease_in(self, result: Any, path: str) -> Lease | None:
        """The lease in a round trip of several statements: its text (the only strings answered) and
        the errors Get-Content wrote."""
        text = "".join(o for o in result.output if isinstance(o, str))
        return self._lease_from(text, [e for e in result.errors if e.command == GET_CONTENT_COMMAND], path)

    @staticmethod
    def _lease_from(text: str, errors: list[ErrorInfo], path: str) -> Lease | None:
        """The lease in ``Get-Content``'s answer: None when the file is not there."""
        if errors:
            info = errors[0]
            if info.error_id == "PathNotFound" or info.category == "ObjectNotFound":
                return None
            _raise_first(errors, what=f"reading lease {path}")
        text = text.strip()
        if not text:
            raise HyperVError(f"the lease file {path} is empty: a run is writing it, or it was left damaged")
        return Lease.decode(text)

    def acquire_lease(self, candidate: Lease) -> LeaseClaim:
        """Create the VM's lease file atomically (New-Item without -Force). If it exists: this run's
        own lease is resumed (with what it recorded), another run's is returned as the holder.

        :param candidate: This run's lease (DAG id, run id, VM, checkpoint name, host).
        :return: A ``LeaseClaim``: ``ours`` (acquired, or ``resumed`` when an earlier try of this run held
            it already), or not ours with the holder's lease. A holder is never displaced here.
        :raises OperationInProgressError: The lease kept changing hands between create and read.
        """
        path = self.lease_file(candidate.vm_uuid)
        for _ in range(3):  # the holder may release between our create and our read
            result = self.run_checked_write(
                pipelines.create_lease(self.settings.lease_folder, path, candidate.encode()),
                already_done=lambda: self._own_lease(candidate),
            )
            if isinstance(result, Lease):
                return LeaseClaim(result, ours=True, resumed=False)
            exists = [e for e in result.errors if e.error_id == "NewItemIOError"]
            others = [e for e in result.errors if e.error_id != "NewItemIOError"]
            if others:
                _raise_first(others, what=f"creating lease {path}")
            if not exists:
                return LeaseClaim(candidate, ours=True)
            held = self.read_lease(candidate.vm_uuid)
            if held is None:
                continue
            if held.same_owner(candidate):
                return LeaseClaim(held, ours=True, resumed=True)
            return LeaseClaim(held, ours=False)
        raise OperationInProgressError(f"the lease {path} keeps changing hands; try again")

    def _own_lease(self, candidate: Lease) -> Lease | None:
        held = self.read_lease(candidate.vm_uuid)
        return held if held is not None and held.same_owner(candidate) else None

    def record_lease(self, lease: Lease, *, held: Lease | Literal["unread"] | None = "unread") -> Lease:
        """Rewrite this run's own lease (New-Item -Force) with what it must restore.

        :param lease: This run's lease with what it recorded (the checkpoint type before, the Ids of the
            checkpoints that existed).
        :param held: The lease on the host as read just before (``vm_checkpoints_and_lease``). Default:
            read it here.
        :return: ``lease``.
        :raises HyperVError: The lease on the host is no longer this run's (or is gone).
        """
        path = self.lease_file(lease.vm_uuid)
        if held == "unread":
            held = self.read_lease(lease.vm_uuid)
        if held is None or not held.same_owner(lease):
            raise HyperVError(
                f"the lease {path} is no longer this run's ({held.describe() if held else 'gone'})"
            )
        result = self.run_repeatable(pipelines.write_text(path, lease.encode()))  # overwriting is idempotent
        _raise_first(result.errors, what=f"writing lease {path}")
        return lease

    def release_lease(self, lease: Lease) -> bool:
        """Remove the VM's lease file if it is still ``lease``'s owner's; False if it was not.

        :param lease: The lease to release.
        :return: True when it was removed, False when it was gone or another run holds the VM.
        """
        held = self.read_lease(lease.vm_uuid)
        if held is None:
            return False
        if not held.same_owner(lease):
            log.info("Not releasing the lease of VM %s: it is held by %s", lease.vm_id, held.describe())
            return False
        path = self.lease_file(lease.vm_uuid)
        result = self.run_checked_write(
            pipelines.remove_file(path),
            already_done=lambda: True if self.read_lease(lease.vm_uuid) is None else None,
        )
        if result is not True:
            _raise_first(result.errors, what=f"removing lease {path}")
        return True

    def finish_lease(
        self, vm_id: uuid.UUID, checkpoint_name: str, *, read: LeaseRead | None = None
    ) -> Lease | None:
        """End of a run's work on a VM: if the VM's lease is the one taken for ``checkpoint_name``,
        put the checkpoint type it recorded back (a dropped connection may have left ProductionOnly)
        and release it. Returns the released lease, None if there was none of ours.

        :param vm_id: The VM's Id.
        :param checkpoint_name: The checkpoint name the run's lease was taken for.
        :param read: The lease and the VM as just read (``confirm_merge_reads``). Default None: read here.
        :return: The released lease, or None.
        """
        if read is None and self.routes:  # a cluster: the VM is read on its owner node if the lease is ours
            read = LeaseRead(self.read_lease(vm_id), None, [])
        elif read is None:  # one host: the lease and the VM in one round trip
            read = self._decode_lease_and_vm(self.run_repeatable(self._lease_and_vm(vm_id)), vm_id)
        if read.lease_error is not None:
            raise read.lease_error
        held, vm = read.lease, read.vm
        if held is None or held.checkpoint_name != checkpoint_name or held.vm_id != str(vm_id).lower():
            return None
        before = CheckpointType.parse(held.checkpoint_type_before) if held.checkpoint_type_before else None
        if vm is None and before is not None and read.vm_errors:
            _raise_first(read.vm_errors, what=f"reading VM {vm_id}")
        if before is not None and self.ensure_checkpoint_type(vm_id, before, vm=vm):
            log.warning(
                "Repaired the checkpoint type of VM %s to %s, as recorded in the lease",
                vm_id,
                held.checkpoint_type_before,
            )
        self.release_lease(held)
        return held

    def _lease_and_vm(self, vm_id: uuid.UUID) -> pipelines.Pipeline:
        """The VM's lease file and the VM, two statements (``_decode_lease_and_vm``)."""
        return pipelines.read_text(self.lease_file(vm_id)).then(pipelines.get_vm_by_id(vm_id))

    def _decode_lease_and_vm(self, result: Any, vm_id: uuid.UUID) -> LeaseRead:
        """``_lease_and_vm``'s answer, told apart from other statements of the round trip by type and
        by the command that wrote each error."""
        vm_errors = [e for e in result.errors if e.command == GET_VM_COMMAND]
        vms = [VirtualMachine.decode(o) for o in result.output if has_type(o, VM_TYPE)]
        vm = vms[0] if len(vms) == 1 else None
        try:
            lease = self._lease_in(result, self.lease_file(vm_id))
        except HyperVError as exc:
            return LeaseRead(None, vm, vm_errors, exc)
        return LeaseRead(lease, vm, vm_errors)

    def take_over_lease(self, stale: Lease, candidate: Lease) -> LeaseClaim:
        """Replace a stale holder's lease (its run is over) by ours; its checkpoint is not touched.

        Only for a holder whose DAG run is known to be over: taking a live run's lease would let two runs
        change one VM at once.

        :param stale: The stale holder's lease.
        :param candidate: This run's lease.
        :return: The claim, as ``acquire_lease``'s: not ``ours`` when a third run was faster.
        """
        if self.release_lease(stale):
            log.warning("Took over the stale lease of VM %s from %s", stale.vm_id, stale.describe())
        return self.acquire_lease(candidate)

    def remove_checkpoint(self, checkpoint_id: uuid.UUID) -> bool:
        """Remove (merge) a checkpoint. False if it was already gone. The merge goes on on the host
        after this returns: wait on ``disk_chains`` for it to end.

        :param checkpoint_id: The checkpoint's Id.
        :return: True when it was removed (by this call or a try whose answer was lost), False when it was
            already gone.
        """
        self._require_focus("removing a checkpoint")
        # No read first: the pipeline starts from Get-VMSnapshot -Id, whose not-found says "already gone".
        result = self.run_checked_write(
            pipelines.remove_checkpoint(checkpoint_id),
            already_done=lambda: True if self.get_checkpoint(checkpoint_id) is None else None,
        )
        if result is True:
            return True
        if result.errors and isinstance(
            classify(result.errors[0]), (CheckpointNotFoundError, VMNotFoundError)
        ):
            return False
        _raise_first(result.errors, what=f"removing checkpoint {checkpoint_id}")
        return True

    def restore_checkpoint(self, checkpoint_id: uuid.UUID) -> VirtualMachine:
        """Apply a checkpoint. A production checkpoint leaves the VM Off; starting it is the caller's
        choice. Not retried after a lost answer: re-applying is harmless but the caller decides.

        Whatever the VM wrote since the checkpoint is discarded.

        :param checkpoint_id: The checkpoint's Id.
        :return: The VM after the restore.
        :raises CheckpointNotFoundError: No such checkpoint.
        """
        self._require_focus("restoring a checkpoint")
        checkpoint = self.get_checkpoint(checkpoint_id)
        if checkpoint is None:
            raise CheckpointNotFoundError(f"checkpoint {checkpoint_id} was not found on {self.settings.host}")
        result = self.run_pipeline(pipelines.restore_checkpoint(checkpoint_id))
        _raise_first(result.errors, what=f"restoring checkpoint {checkpoint.name}")
        return self.get_vm(vm_id=checkpoint.vm_id)

    def export_checkpoint(self, checkpoint_id: uuid.UUID, path: str) -> None:
        """Export a checkpoint and wait for it here. Deferrable tasks use ``start_disconnected``.

        Sent once; the call lasts as long as the export. Unlike ``HyperVExportCheckpointOperator`` it
        neither stages, verifies nor promotes.

        :param checkpoint_id: The checkpoint's Id.
        :param path: The folder to export into (an absolute Windows path or a UNC path on the host);
            Export-VMSnapshot writes ``<path>\\<VM name>``.
        """
        self._require_focus("exporting a checkpoint")
        path = host_path(path, "export path")
        result = self.run_pipeline(pipelines.export_checkpoint(checkpoint_id, path))
        _raise_first(result.errors, what=f"exporting checkpoint {checkpoint_id} to {path}")

    # -- disks, host, files -----------------------------------------------------------------------
    def disk_chains(self, vm_id: uuid.UUID, drives: list[HardDiskDrive] | None = None) -> list[DiskChain]:
        """Each drive's chain from the disk the VM writes to, down to its base disk (one round trip
        per level; ``drives`` from ``vm_overview`` saves the first).

        :param vm_id: The VM's Id.
        :param drives: The drives to follow, if already read (``vm_overview(...).drives``, or
            ``checkpoint_drives`` for a checkpoint's own chains). Default None: read the VM's drives.
        :return: One ``DiskChain`` per drive.
        :raises CommandFailedError: Get-VHD returned nothing for a disk of a chain.
        """
        self._at(vm_id)
        if drives is None:
            result = self.run_repeatable(pipelines.hard_disk_drives(vm_id))
            _raise_first(result.errors, what=f"hard disk drives of VM {vm_id}")
            drives = [HardDiskDrive.decode(o) for o in result.output]
        paths = list(dict.fromkeys(d.path for d in drives if d.path))  # each disk read once
        return self._chains(drives, self.get_vhds(paths) if paths else [], f" of VM {vm_id}")

    def export_contents(
        self, checkpoint_id: uuid.UUID, folder: str, *, then_test: str | None = None
    ) -> ExportContents:
        """Everything checking an export of a checkpoint reads, in two round trips (one more per level
        of a disk chain deeper than one): the checkpoint, its own drives and the folder's files; then
        the drives' disks and every file's SHA-256 (Get-FileHash reads every byte of them).

        :param checkpoint_id: The checkpoint exported.
        :param folder: The export's folder on the host.
        :param then_test: A path to ``Test-Path`` at the end of the second round trip, after the hashes
            (``then_exists`` of the result). Default None.
        :return: An ``ExportContents``; with no checkpoint (it is gone) nothing more is read.
        """
        self._require_focus("reading an exported checkpoint")
        folder = host_path(folder)
        result = self.run_repeatable(pipelines.checkpoint_with_files(checkpoint_id, folder))
        checkpoints = [Checkpoint.decode(o) for o in result.output if has_type(o, SNAPSHOT_TYPE)]
        if not checkpoints:
            gone = [
                e
                for e in result.errors
                if isinstance(classify(e), (CheckpointNotFoundError, VMNotFoundError))
            ]
            _raise_first(
                [e for e in result.errors if e not in gone], what=f"reading checkpoint {checkpoint_id}"
            )
            return ExportContents(None, [], [], [])
        _raise_first(result.errors, what=f"reading checkpoint {checkpoint_id} and listing {folder}")
        drives = [HardDiskDrive.decode(o) for o in result.output if has_type(o, DRIVE_TYPE)]
        files = [RemoteFile.decode(o) for o in result.output if has_type(o, FILE_TYPE)]
        paths = [d.path for d in drives if d.path]
        if not paths and not files:
            return ExportContents(checkpoints[0], [DiskChain(drive=d, disks=[]) for d in drives], [], [])
        pipeline = pipelines.vhds_and_hashes(paths, [f.path for f in files])
        if then_test is not None:
            pipeline = pipeline.then(pipelines.test_path(host_path(then_test)))
        second = self.run_repeatable(pipeline)
        _raise_first(second.errors, what="reading virtual disks and hashing files")
        first_level = [VirtualDisk.decode(o) for o in second.output if has_type(o, VHD_TYPE)]
        hashes = [FileHash.decode(o) for o in second.output if has_type(o, FILE_HASH_TYPE)]
        answers = [o for o in second.output if not has_type(o, VHD_TYPE) and not has_type(o, FILE_HASH_TYPE)]
        exists = None if then_test is None else _said_true(answers)
        return ExportContents(checkpoints[0], self._chains(drives, first_level), files, hashes, exists)

    def _chains(
        self, drives: list[HardDiskDrive], first_level: list[VirtualDisk], whose: str = ""
    ) -> list[DiskChain]:
        """Each drive's chain, given its first disks already read: the parents one round trip a level
        (``whose`` ends the error message, e.g. " of VM <id>")."""
        chains = {d.path: [] for d in drives if d.path}  # type: dict[str, list[VirtualDisk]]
        frontier = {d.path: d.path for d in drives if d.path}  # chain key -> next path to read
        disks = first_level
        for _ in range(64):  # Hyper-V allows 50 checkpoints per VM: a longer chain is a loop
            if not frontier:
                break
            by_path = {d.path.lower(): d for d in disks}
            next_frontier = {}
            for key, path in frontier.items():
                disk = by_path.get(path.lower())
                if disk is None:
                    raise CommandFailedError(f"Get-VHD returned nothing for {path}{whose}")
                chains[key].append(disk)
                if disk.parent_path:
                    next_frontier[key] = disk.parent_path
            frontier = next_frontier
            if frontier:
                disks = self.get_vhds(list(frontier.values()))
        return [DiskChain(drive=d, disks=chains.get(d.path, [])) for d in drives]

    def checkpoint_links(
        self, checkpoint_id: uuid.UUID, vm_id: uuid.UUID, drives: list[HardDiskDrive]
    ) -> tuple[list[HardDiskDrive], list[DiskChain]]:
        """A checkpoint's own drives and the chains of the VM's ``drives``, the first disk of each chain
        read in the same round trip (one more per level below it): what a merge dissolves.

        :param checkpoint_id: The checkpoint's Id.
        :param vm_id: The VM's Id.
        :param drives: The VM's drives (``vm_overview(...).drives``).
        :return: ``(the checkpoint's drives, one DiskChain per drive of the VM)``.
        """
        self._at(vm_id)
        paths = [d.path for d in drives if d.path]
        pipeline = pipelines.checkpoint_drives(checkpoint_id)
        if paths:
            pipeline = pipeline.then(pipelines.get_vhds(paths))
        result = self.run_repeatable(pipeline)
        _raise_first(result.errors, what=f"drives of checkpoint {checkpoint_id} and disks of VM {vm_id}")
        own = [HardDiskDrive.decode(o) for o in result.output if has_type(o, DRIVE_TYPE)]
        first_level = [VirtualDisk.decode(o) for o in result.output if has_type(o, VHD_TYPE)]
        return own, self._chains(drives, first_level)

    def checkpoint_and_chains(
        self, checkpoint_id: uuid.UUID, vm_id: uuid.UUID
    ) -> tuple[Checkpoint | None, list[DiskChain]]:
        """Whether a checkpoint is still there, and the chains of every drive of its VM: the checkpoint
        and the drives in one round trip, then one per level of the chains (confirming a merge).

        :param checkpoint_id: The checkpoint's Id.
        :param vm_id: The VM's Id.
        :return: ``(the checkpoint or None when it is gone, one DiskChain per drive of the VM)``.
        """
        self._at(vm_id)
        result = self.run_repeatable(
            pipelines.get_checkpoint(checkpoint_id).then(pipelines.hard_disk_drives(vm_id))
        )
        found = [Checkpoint.decode(o) for o in result.output if has_type(o, SNAPSHOT_TYPE)]
        errors = result.errors
        if not found:  # a checkpoint that is gone answers not-found: that is the answer, not an error
            errors = [e for e in errors if not isinstance(classify(e), CheckpointNotFoundError)]
        _raise_first(errors, what=f"reading checkpoint {checkpoint_id} and the drives of VM {vm_id}")
        drives = [HardDiskDrive.decode(o) for o in result.output if has_type(o, DRIVE_TYPE)]
        return (found[0] if found else None), self.disk_chains(vm_id, drives)

    def confirm_merge_reads(
        self, checkpoint_id: uuid.UUID, vm_id: uuid.UUID
    ) -> tuple[Checkpoint | None, list[DiskChain], LeaseRead]:
        """``checkpoint_and_chains`` with the VM's lease and the VM read in its first round trip: what
        confirming a merge and then ending the run's lease (``finish_lease(read=...)``) read.

        :param checkpoint_id: The checkpoint's Id.
        :param vm_id: The VM's Id.
        :return: ``(the checkpoint or None when it is gone, one DiskChain per drive of the VM, the
            lease and the VM)``.
        """
        self._at(vm_id)
        result = self.run_repeatable(
            pipelines.get_checkpoint(checkpoint_id)
            .then(pipelines.hard_disk_drives(vm_id))
            .then(self._lease_and_vm(vm_id))
        )
        read = self._decode_lease_and_vm(result, vm_id)
        found = [Checkpoint.decode(o) for o in result.output if has_type(o, SNAPSHOT_TYPE)]
        errors = _not_lease_errors(result.errors)
        if not found:  # a checkpoint that is gone answers not-found: that is the answer, not an error
            errors = [e for e in errors if not isinstance(classify(e), CheckpointNotFoundError)]
        _raise_first(errors, what=f"reading checkpoint {checkpoint_id} and the drives of VM {vm_id}")
        drives = [HardDiskDrive.decode(o) for o in result.output if has_type(o, DRIVE_TYPE)]
        return (found[0] if found else None), self.disk_chains(vm_id, drives), read

    def get_vhds(self, paths: Sequence[str]) -> list[VirtualDisk]:
        """The virtual disks at ``paths`` (``Get-VHD``), in one round trip.

        :param paths: The disks' paths on the host.
        :return: One ``VirtualDisk`` per disk (its size, type and parent).
        """
        result = self.run_repeatable(pipelines.get_vhds(paths))
        _raise_first(result.errors, what="reading virtual disks")
        return [VirtualDisk.decode(o) for o in result.output]

    def host_info(self, drive: str | None = None) -> HostInfo:
        """The host (``Get-VMHost``) and, with ``drive``, that drive's free space (``Get-PSDrive``).

        :param drive: A drive name (``D``). Default None: no drive.
        :return: A ``HostInfo``: the host (its ``name`` is the host's own computer name) and the drive, or
            None.
        """
        result = self.run_repeatable(pipelines.host_info(drive))
        _raise_first(result.errors, what="reading host information")
        hosts = [VMHost.decode(o) for o in result.output if has_type(o, "Microsoft.HyperV.PowerShell.VMHost")]
        drives = [
            DriveSpace.decode(o)
            for o in result.output
            if not has_type(o, "Microsoft.HyperV.PowerShell.VMHost")
        ]
        if not hosts:
            raise CommandFailedError(f"Get-VMHost returned nothing on {self.settings.host}")
        return HostInfo(hosts[0], drives[0] if drives else None)

    def volume_of(self, path: str) -> VolumeSpace | None:
        """The volume that holds ``path`` (a CSV, a mount point or a drive), or None when the host
        cannot tell (a UNC share has no local volume). A folder that does not exist yet (a new
        export root) is on the volume of its nearest existing parent: a volume can only be mounted
        on an existing folder, so asking each parent in turn finds the right one.

        :param path: An absolute path on the host.
        :return: The volume (its free bytes, drive letter or path), or None.
        """
        path = require_host_path(path)
        candidates = _volume_candidates(path)
        if not candidates:
            return None
        result = self.run_repeatable(pipelines.volume_of_first(candidates))
        return self._first_volume(list(result.output), result.errors, path)

    def _first_volume(self, output: list[Any], errors: list[ErrorInfo], path: str) -> VolumeSpace | None:
        """The answer of ``volume_of_first``: a path's parents exist when it does, so the candidates
        that answer are the last ones, and the first volume is the nearest existing folder's."""
        for error in errors:
            self.log.info("No volume for %s: %s", error.target_name or path, classify(error))
        if output:
            return VolumeSpace.decode(output[0])
        self.log.warning("The volume holding %s is unknown", path)
        return None

    def disks_and_lease(self, vm_id: uuid.UUID, drives: list[HardDiskDrive]) -> DiskReadings:
        """The chains of ``drives``, the volume of each of their disks and the VM's lease: the first
        disk of each chain, ``Get-Volume -FilePath`` of each disk and the lease file in one round trip
        (one more per level of a chain below the first; volumes the one round trip cannot match to
        their disks are asked again one disk at a time).

        :param vm_id: The VM's Id.
        :param drives: The VM's drives (``vm_overview(...).drives``).
        :return: A ``DiskReadings``.
        :raises CommandFailedError: Get-VHD returned nothing for a disk of a chain.
        """
        self._at(vm_id)
        paths = list(dict.fromkeys(d.path for d in drives if d.path))  # each disk read once
        lease_file = self.lease_file(vm_id)
        local = [p for p in paths if _volume_candidates(p)]  # a disk on a share has no local volume
        pipeline = pipelines.read_text(lease_file)
        if paths:
            pipeline = pipelines.get_vhds(paths).then(pipeline)
            for path in local:  # an attached disk exists: its own path answers, no parents needed
                pipeline = pipeline.then(pipelines.volume_of(path))
        result = self.run_repeatable(pipeline)
        # Get-VHD's errors are raised, Get-Content's are the lease's answer; any other (Get-Volume's,
        # whatever their exact id on a real host) only leaves a disk's volume unknown.
        disk_errors = [e for e in result.errors if e.command.lower().endswith(".getvhd")]
        volume_errors = [e for e in _not_lease_errors(result.errors) if e not in disk_errors]
        _raise_first(disk_errors, what=f"reading the virtual disks of VM {vm_id}")
        first_level = [VirtualDisk.decode(o) for o in result.output if has_type(o, VHD_TYPE)]
        chains = self._chains(drives, first_level, f" of VM {vm_id}")
        answered = [VolumeSpace.decode(o) for o in result.output if has_type(o, VOLUME_TYPE)]
        volumes: dict[str, VolumeSpace | None] = dict.fromkeys(paths)
        if len(answered) == len(local) and not volume_errors:
            volumes.update(zip(local, answered, strict=True))  # one answer per statement, in order
        else:  # some disk had no answer: which one cannot be told from the output, so ask each
            for error in volume_errors:
                self.log.info("No volume in one round trip: %s", classify(error))
            volumes.update({path: self.volume_of(path) for path in local})
        try:
            lease = self._lease_in(result, lease_file)
        except HyperVError as exc:
            return DiskReadings(chains, volumes, None, exc)
        return DiskReadings(chains, volumes, lease)

    def free_space(self, path: str) -> int | None:
        """Free bytes on the volume that holds ``path``; None when unknown (never another volume's).

        :param path: An absolute path on the host.
        :return: Free bytes, or None.
        """
        volume = self.volume_of(path)
        return None if volume is None else volume.free

    def path_exists(self, path: str) -> bool:
        """Whether ``path`` exists on the host (``Test-Path -LiteralPath``: no wildcards).

        :param path: An absolute path on the host.
        :return: True if it exists.
        """
        result = self.run_repeatable(pipelines.test_path(host_path(path)))
        _raise_first(result.errors, what=f"testing {path}")
        return _said_true(result.output)

    def list_files(self, path: str) -> list[RemoteFile]:
        """Every file under the folder ``path``, recursively (``Get-ChildItem -Recurse -File``).

        :param path: An absolute folder path on the host.
        :return: One ``RemoteFile`` (full path, size) per file; folders are not listed.
        """
        result = self.run_repeatable(pipelines.list_files(host_path(path)))
        _raise_first(result.errors, what=f"listing {path}")
        return [RemoteFile.decode(o) for o in result.output]

    def bytes_under(self, path: str) -> int:
        """The bytes in every file under a folder: the ``Length`` of ``Get-ChildItem -LiteralPath <path>
        -Recurse -File``, summed here (one object per file; an export writes a handful). An export's
        progress: what Hyper-V has written into its staging folder so far.

        :param path: An absolute folder path on the host.
        :return: The summed ``Length`` of its files, in bytes.
        """
        return sum(f.length for f in self.list_files(path))

    def is_empty_folder(self, path: str) -> bool:
        """True when the folder holds nothing at all (no file, no sub-folder).

        :param path: An absolute folder path on the host.
        :return: True when it is empty.
        """
        result = self.run_repeatable(pipelines.list_entries(host_path(path)))
        _raise_first(result.errors, what=f"listing {path}")
        return not result.output

    def file_hashes(self, paths: Sequence[str]) -> list[FileHash]:
        """The SHA-256 of each file (``Get-FileHash``), in one round trip; reads every byte of them.

        :param paths: Absolute file paths on the host.
        :return: One ``FileHash`` per file; an empty list (and no round trip) for no paths.
        """
        if not paths:
            return []
        result = self.run_repeatable(pipelines.file_hashes([host_path(p) for p in paths]))
        _raise_first(result.errors, what="hashing files")
        return [FileHash.decode(o) for o in result.output]

    def make_directory(self, path: str) -> None:
        """Create the folder ``path`` and any missing parent (``New-Item -Force``: safe to repeat).

        :param path: An absolute folder path on the host.
        """
        result = self.run_repeatable(
            pipelines.make_directory(host_path(path))
        )  # -Force: repeating is harmless
        _raise_first(result.errors, what=f"creating {path}")

    def move_item(self, path: str, destination: str) -> None:
        """Move (rename) ``path`` to ``destination`` (``Move-Item``). After a lost answer it counts as done
        when ``destination`` exists and ``path`` does not. Onto an existing folder Move-Item moves
        ``path`` *into* it: make sure ``destination`` does not exist.

        :param path: The absolute path to move.
        :param destination: Its new absolute path.
        """
        source, target = host_path(path), host_path(destination)
        result = self.run_checked_write(
            pipelines.move_item(source, target),
            already_done=lambda: True if self.path_exists(target) and not self.path_exists(source) else None,
        )
        if result is not True:
            _raise_first(result.errors, what=f"moving {path} to {destination}")

    def move_and_list(self, path: str, destination: str) -> list[RemoteFile]:
        """``move_item``, then every file under ``destination``, in one round trip (the listing is a
        read: after a lost answer the move is judged as ``move_item`` does, then listed again).

        :param path: The absolute folder path to move.
        :param destination: Its new absolute path; must not exist (Move-Item would move INTO it).
        :return: One ``RemoteFile`` per file under ``destination`` after the move.
        """
        source, target = host_path(path), host_path(destination)
        result = self.run_checked_write(
            pipelines.move_item(source, target).then(pipelines.list_files(target)),
            already_done=lambda: True if self.path_exists(target) and not self.path_exists(source) else None,
        )
        if result is True:
            return self.list_files(target)
        _raise_first(result.errors, what=f"moving {path} to {destination}")
        return [RemoteFile.decode(o) for o in result.output if has_type(o, FILE_TYPE)]

    def remove_item(self, path: str) -> None:
        """Delete ``path`` and everything under it (``Remove-Item -Recurse -Force``), irreversibly.

        :param path: The absolute path to delete.
        """
        target = host_path(path)
        result = self.run_checked_write(
            pipelines.remove_item(target), already_done=lambda: True if not self.path_exists(target) else None
        )
        if result is not True:
            _raise_first(result.errors, what=f"removing {path}")

    # -- restore verification (hyperv/restore.py) -------------------------------------------------
    def list_vm_locations(self) -> list[VMLocation]:
        """Every VM of the host with the folder it lives in (``Get-VM``): how a restore copy is found
        by its work folder even when the answer to Import-VM was lost. Errors are not raised: a VM
        that cannot be read is simply not listed.

        :return: One ``VMLocation`` (Id, name, folder) per VM.
        """
        result = self.run_repeatable(restore.list_vms())
        return [vm for vm in (VMLocation.decode(o) for o in result.output) if vm is not None]

    def verify_export(self, manifest: Mapping[str, Any]) -> list[str]:
        """Problems of the export on disk compared with its manifest (empty: intact). Test-Path, a
        listing, and one Get-FileHash of the files that are there with the right size.

        :param manifest: The export's manifest (the export task's XCom: ``path``, ``files``...).
        :return: What is wrong, one line each; empty when the export is intact.
        """
        problem = restore.manifest_problem(manifest)
        if problem is not None:
            return [problem]
        folder = manifest["path"]
        if not self.path_exists(folder):
            return [f"the export folder {folder} does not exist"]
        listed = self.list_files(folder)
        problems, present = restore.size_problems(manifest, listed)
        return problems + restore.hash_problems(manifest, listed, self.file_hashes(present))

    def import_vm_copy(self, vmcx: str, work: str) -> VirtualMachine:
        """Import the configuration ``vmcx`` as a copy with a new Id, its files under ``work``. Sent
        once, never repeated: a repeat would make a second copy (cleanup finds a lost one by its
        folder). Raises ``CopyImportError`` with the host's reason when no copy was made.

        :param vmcx: The exported VM configuration file (``.vmcx``).
        :param work: The folder the copy's configuration and disks are written to.
        :return: The copy.
        """
        result = self.run_pipeline(restore.import_copy(vmcx, work))
        copies = [VirtualMachine.decode(o) for o in result.output if has_type(o, VM_TYPE)]
        if not copies:
            info = result.errors[0] if result.errors else None
            raise CopyImportError(info.describe() if info else "Import-VM returned nothing", info)
        return copies[0]

    def rename_vm(self, vm_id: uuid.UUID, new_name: str) -> VirtualMachine | None:
        """Rename the VM with this Id (safe to repeat: the same name again). The renamed VM, or None
        when the host passed none back; the host's errors are logged, not raised.

        :param vm_id: The VM's Id.
        :param new_name: Its new name.
        :return: The renamed VM, or None.
        """
        result = self.run_repeatable(restore.rename(vm_id, new_name))
        for error in result.errors:
            log.warning("Renaming VM %s failed: %s", vm_id, error.describe())
        renamed = [VirtualMachine.decode(o) for o in result.output if has_type(o, VM_TYPE)]
        return renamed[0] if renamed else None

    def isolate_vm(self, vm_id: uuid.UUID) -> NetworkIsolation:
        """Disconnect every network adapter of the VM and read them back, in one round trip (safe to
        repeat). The caller decides from ``isolated`` whether the VM may boot.

        :param vm_id: The VM's Id.
        :return: A ``NetworkIsolation``: the adapters as read back, the host's errors, ``isolated``.
        """
        result = self.run_repeatable(restore.isolate(vm_id))
        return NetworkIsolation(
            vm_id,
            adapters=[NetworkAdapter.decode(o) for o in result.output if has_type(o, NETWORK_ADAPTER_TYPE)],
            errors=[e.describe() for e in result.errors],
        )

    def remove_vm_copy(self, vm_id: uuid.UUID) -> CopyRemoval:
        """Turn a restore copy off and Remove-VM it (its files stay: they go with its work folder).
        Sent once, not retried; "not found" is no error (the copy is already gone).

        It removes whatever VM ``vm_id`` names, without a shutdown: meant for restore copies only.

        :param vm_id: The copy's Id.
        :return: A ``CopyRemoval``: the host's errors (empty: removed or already gone).
        """
        result = self.run_pipeline(restore.remove_copy(vm_id))
        real = [e for e in result.errors if not e.fully_qualified_error_id.startswith("ObjectNotFound")]
        return CopyRemoval(vm_id, [e.message for e in real])

    # -- event log (hyperv/events.py) -------------------------------------------------------------
    def read_events(
        self, channel: str, after: int, event_ids: Sequence[int], max_events: int = 100, host: str = ""
    ) -> list[event_log.HostEvent]:
        """Records of ``channel`` after RecordId ``after``, oldest first. "No events" is an empty list.

        :param channel: The event-log channel (``Microsoft-Windows-Hyper-V-Worker-Admin``...).
        :param after: The last RecordId already seen; only newer records are read.
        :param event_ids: The event ids to read.
        :param max_events: At most this many records. Default 100.
        :param host: The host label each event records. Default empty.
        :return: The records as ``HostEvent`` objects, oldest first.
        """
        result = self.run_repeatable(event_log.events_after(channel, after, event_ids, max_events))
        if not event_log.only_no_match(result.errors):
            _raise_first(result.errors, what=f"reading {channel}")
        return event_log.events_in_order(result.output, after, host, channel)

    def newest_event_record_id(self, channel: str) -> int:
        """The newest RecordId of ``channel`` (0 for an empty log): where a new watcher starts.

        :param channel: The event-log channel.
        :return: The RecordId, 0 for an empty log.
        """
        result = self.run_repeatable(event_log.newest_event(channel))
        if not event_log.only_no_match(result.errors):
            _raise_first(result.errors, what=f"reading {channel}")
        return event_log.newest_of(result.output)


def _label(checkpoint: Checkpoint, asked: Consistency) -> Consistency:
    """What the host did: saved memory state means a standard (crash-consistent) checkpoint whatever
    was asked; "application" only when ProductionOnly was in force (asked) and there is none."""
    if checkpoint.has_memory_state:
        return Consistency.CRASH
    return asked


def _not_lease_errors(errors: list[ErrorInfo]) -> list[ErrorInfo]:
    """The errors of a round trip but the lease's (Get-Content's: "no lease" is an answer)."""
    return [e for e in errors if e.command != GET_CONTENT_COMMAND]


def _said_true(answers: Sequence[Any]) -> bool:
    """Test-Path's answer, the last of ``answers`` (the statements before it answered objects)."""
    return bool(answers and str(answers[-1]).lower() == "true")


def _volume_candidates(path: str) -> list[str]:
    """``path`` and each of its parents up to the drive's root, nearest first; none for a UNC share
    (it has no local volume). A new export root is on the volume of its nearest existing parent: a
    volume can only be mounted on an existing folder."""
    if path.startswith("\\\\") or path[1:3] != ":\\":
        return []
    parts = [p for p in path[3:].split("\\") if p]
    return ["\\".join([path[:2], *parts[:n]]) for n in range(len(parts), 0, -1)] + [path[:3]]


def _not_found(error: ErrorInfo) -> bool:
    return error.category == "ObjectNotFound" or error.error_id == "ObjectNotFound"


def _running(vm: VirtualMachine) -> bool:
    return vm.state.name == "Running"


def _off(vm: VirtualMachine) -> bool:
    return vm.state.name == "Off"
