"""Builders of cmdlet pipelines with bound parameters.

A ``Pipeline`` is data: statements of commands with named parameters. The hook replays it with pypsrp's
``add_cmdlet``/``add_parameter``/``add_statement``; no user value is ever pasted into script text.
Every VM-targeted pipeline starts from ``Get-VM -Id`` (``-Name`` accepts wildcards; Checkpoint-VM has
no ``-Id``), and every checkpoint-targeted one from ``Get-VMSnapshot -Id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_hyperv.hyperv.enums import CheckpointType
from airflow_hyperv.hyperv.names import require_exact_name
from airflow_hyperv.hyperv.waits import HOST_STATE_PROPERTIES

SWITCH = object()  # a switch parameter: sent as ``add_parameter(name)`` with no value


@dataclass(frozen=True)
class Command:
    name: str
    parameters: tuple[tuple[str, Any], ...] = ()

    def describe(self) -> str:
        """Cmdlet and parameter names only: values may be sensitive or huge."""
        return " ".join([self.name, *(f"-{n}" for n, _ in self.parameters)])


@dataclass(frozen=True)
class Pipeline:
    statements: tuple[tuple[Command, ...], ...]
    label: str = field(default="", compare=False)
    # Only these properties of each output object are decoded (``clixml.lean_object``, in the thread
    # that runs the pipeline); empty: every object fully. A poll that reads a few fields of hundreds
    # of objects (``host_state``) skips the rest.
    decode_only: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def cmdlets(self) -> list[str]:
        return [c.name for s in self.statements for c in s]

    def describe(self) -> str:
        return "; ".join(" | ".join(c.describe() for c in s) for s in self.statements)

    def then(self, other: Pipeline) -> Pipeline:
        """Run ``other``'s statements after ours in the same round trip."""
        lean = self.decode_only | other.decode_only if self.decode_only and other.decode_only else frozenset()
        return Pipeline(self.statements + other.statements, self.label or other.label, lean)


def bound_command(name: str, **params: Any) -> Command:
    """One command with its values bound as named parameters (never pasted into script text);
    a parameter given as None is left out, so optional ones need no branching at the call site."""
    return Command(name, tuple((k, v) for k, v in params.items() if v is not None))


def single_statement(*commands: Command, label: str = "") -> Pipeline:
    """A pipeline of one statement, ``commands`` piped into each other (``Get-VM -Id x | Start-VM``);
    join several with ``Pipeline.then`` to send them in one round trip."""
    return Pipeline((tuple(commands),), label)


def _vm(vm_id: uuid.UUID) -> Command:
    return bound_command("Get-VM", Id=uuid.UUID(str(vm_id)))


def _checkpoint(checkpoint_id: uuid.UUID) -> Command:
    return bound_command("Get-VMSnapshot", Id=uuid.UUID(str(checkpoint_id)))


def cluster_nodes() -> Pipeline:
    """``Get-ClusterNode``: every node of the cluster the answering node belongs to, with its state.
    No ``-Cluster``: a named cluster would be opened over the network from the node, a second hop
    the session's credentials cannot make without delegation (docs/operations.md, Preparing a cluster)."""
    return single_statement(bound_command("Get-ClusterNode"), label="cluster-nodes")


def cluster_role_of_vm(vm_id: uuid.UUID) -> Pipeline:
    """``Get-ClusterGroup -VMId <guid>``: the VM's role, its owner node and state (bound, by Id)."""
    return single_statement(
        bound_command("Get-ClusterGroup", VMId=uuid.UUID(str(vm_id))), label="cluster-role"
    )


def cluster_role_by_name(name: str) -> Pipeline:
    """``Get-ClusterGroup -Name <name>``: -Name takes wildcards, so the name must be exact (checked)."""
    return single_statement(
        bound_command("Get-ClusterGroup", Name=require_exact_name(name)), label="cluster-role"
    )


def get_vm_by_name(name: str) -> Pipeline:
    return single_statement(bound_command("Get-VM", Name=require_exact_name(name)), label="get-vm")


def get_vm_by_id(vm_id: uuid.UUID) -> Pipeline:
    return single_statement(_vm(vm_id), label="get-vm")


def integration_services(vm_id: uuid.UUID) -> Pipeline:
    return single_statement(
        _vm(vm_id), bound_command("Get-VMIntegrationService"), label="integration-services"
    )


def set_checkpoint_type(vm_id: uuid.UUID, checkpoint_type: CheckpointType) -> Pipeline:
    return single_statement(
        _vm(vm_id),
        bound_command("Set-VM", CheckpointType=checkpoint_type.name, Passthru=SWITCH),
        label="set-checkpoint-type",
    )


def set_automatic_checkpoints(vm_id: uuid.UUID, enabled: bool) -> Pipeline:
    return single_statement(
        _vm(vm_id),
        bound_command("Set-VM", AutomaticCheckpointsEnabled=enabled, Passthru=SWITCH),
        label="set-vm",
    )


def checkpoint_vm(vm_id: uuid.UUID, name: str) -> Pipeline:
    return single_statement(
        _vm(vm_id), bound_command("Checkpoint-VM", SnapshotName=name, Passthru=SWITCH), label="checkpoint-vm"
    )


def checkpoint_with_type(
    vm_id: uuid.UUID, name: str, attempt: CheckpointType, restore: CheckpointType
) -> Pipeline:
    """Set the type for this attempt, checkpoint, and put the VM's own type back: one round trip.

    The first Set-VM runs with ``-ErrorAction Stop``: if the type cannot be set, the invocation
    stops there, so no checkpoint is ever attempted under the VM's own (possibly falling-back) type.
    A failed checkpoint is a non-terminating error, so the third statement restores the type
    (``restore``: the type recorded in the run's lease) whatever the checkpoint did. The fourth reads
    the VM's drives (read-only): with a checkpoint made, the AVHDX paths the merge will wait on.
    """
    first = single_statement(
        _vm(vm_id),
        bound_command("Set-VM", CheckpointType=attempt.name, Passthru=SWITCH, ErrorAction="Stop"),
        label="set-checkpoint-type",
    )
    return (
        first.then(checkpoint_vm(vm_id, name))
        .then(set_checkpoint_type(vm_id, restore))
        .then(hard_disk_drives(vm_id))
    )


def rename_checkpoint(checkpoint_id: uuid.UUID, new_name: str) -> Pipeline:
    """Give a checkpoint (found by Id) its run's name: adopting one whose rename never ran."""
    return single_statement(
        _checkpoint(checkpoint_id),
        bound_command(
            "Rename-VMSnapshot", NewName=require_exact_name(new_name, "checkpoint name"), Passthru=SWITCH
        ),
        label="rename-checkpoint",
    )


def create_lease(folder: str, path: str, content: str) -> Pipeline:
    """Make the lease folder (``-Force``: repeating is harmless), then the lease file WITHOUT
    ``-Force``: New-Item fails (NewItemIOError) when the file exists, so one run wins."""
    return make_directory(folder).then(
        single_statement(
            bound_command("New-Item", ItemType="File", Path=path, Value=content), label="create-lease"
        )
    )


def write_text(path: str, content: str) -> Pipeline:
    """New-Item -ItemType File -Force: creates or overwrites (FileMode.Create)."""
    return single_statement(
        bound_command("New-Item", ItemType="File", Path=path, Value=content, Force=SWITCH), label="write-text"
    )


def read_text(path: str) -> Pipeline:
    return single_statement(bound_command("Get-Content", LiteralPath=path, Raw=SWITCH), label="read-text")


def remove_file(path: str) -> Pipeline:
    """One file (no ``-Recurse``), ``-Force`` for a read-only or hidden one."""
    return single_statement(bound_command("Remove-Item", LiteralPath=path, Force=SWITCH), label="remove-file")


def vm_overview(vm_id: uuid.UUID) -> Pipeline:
    """The VM, its integration services, checkpoints and drives: four statements, one round trip."""
    return (
        get_vm_by_id(vm_id)
        .then(integration_services(vm_id))
        .then(list_checkpoints(vm_id))
        .then(hard_disk_drives(vm_id))
    )


def vm_overview_by_name(name: str) -> Pipeline:
    """``vm_overview`` of the VM with this exact name (wildcards refused): resolving it costs no round
    trip of its own. Every statement starts from ``Get-VM -Name``; several VMs of that name show as
    several VM objects in the first statement's output (the caller refuses them)."""
    vm = bound_command("Get-VM", Name=require_exact_name(name))
    return Pipeline(
        (
            (vm,),
            (vm, bound_command("Get-VMIntegrationService")),
            (vm, bound_command("Get-VMSnapshot")),
            (vm, bound_command("Get-VMHardDiskDrive")),
        ),
        label="vm-overview",
    )


def host_state(disk_paths: Sequence[str] = ()) -> Pipeline:
    """Every VM, checkpoint and drive of the host in one round trip: one poll serves every wait.
    ``disk_paths`` adds Get-VHD of those disks (a merge wait watches its checkpoint's disks)."""
    statements: tuple[tuple[Command, ...], ...] = (
        (bound_command("Get-VM"),),
        (bound_command("Get-VM"), bound_command("Get-VMSnapshot")),
        (bound_command("Get-VM"), bound_command("Get-VMHardDiskDrive")),
    )
    if disk_paths:
        statements += ((bound_command("Get-VHD", Path=list(disk_paths)),),)
    return Pipeline(statements, label="host-state", decode_only=HOST_STATE_PROPERTIES)


def checkpoint_drives(checkpoint_id: uuid.UUID) -> Pipeline:
    """The checkpoint's own drives: each Path is the disk that holds the checkpoint's state."""
    return single_statement(
        _checkpoint(checkpoint_id), bound_command("Get-VMHardDiskDrive"), label="checkpoint-drives"
    )


def list_checkpoints(vm_id: uuid.UUID) -> Pipeline:
    return single_statement(_vm(vm_id), bound_command("Get-VMSnapshot"), label="list-checkpoints")


def get_checkpoint(checkpoint_id: uuid.UUID) -> Pipeline:
    return single_statement(_checkpoint(checkpoint_id), label="get-checkpoint")


def export_checkpoint(checkpoint_id: uuid.UUID, path: str) -> Pipeline:
    return single_statement(
        _checkpoint(checkpoint_id),
        bound_command("Export-VMSnapshot", Path=path, Passthru=SWITCH),
        label="export",
    )


def remove_checkpoint(checkpoint_id: uuid.UUID) -> Pipeline:
    return single_statement(
        _checkpoint(checkpoint_id), bound_command("Remove-VMSnapshot"), label="remove-checkpoint"
    )


def restore_checkpoint(checkpoint_id: uuid.UUID) -> Pipeline:
    return single_statement(
        _checkpoint(checkpoint_id),
        bound_command("Restore-VMSnapshot", Confirm=False),
        label="restore-checkpoint",
    )


def start_vm(vm_id: uuid.UUID) -> Pipeline:
    return single_statement(_vm(vm_id), bound_command("Start-VM", Passthru=SWITCH), label="start-vm")


def stop_vm(vm_id: uuid.UUID, *, turn_off: bool = False) -> Pipeline:
    option = {"TurnOff": SWITCH} if turn_off else {"Force": SWITCH}
    return single_statement(_vm(vm_id), bound_command("Stop-VM", Passthru=SWITCH, **option), label="stop-vm")


def hard_disk_drives(vm_id: uuid.UUID) -> Pipeline:
    return single_statement(_vm(vm_id), bound_command("Get-VMHardDiskDrive"), label="hard-disk-drives")


def get_vhds(paths: Sequence[str]) -> Pipeline:
    return single_statement(bound_command("Get-VHD", Path=list(paths)), label="get-vhd")


def host_info(drive: str | None = None) -> Pipeline:
    pipeline = single_statement(bound_command("Get-VMHost"), label="host-info")
    if drive:
        pipeline = pipeline.then(
            single_statement(bound_command("Get-PSDrive", Name=drive, PSProvider="FileSystem"))
        )
    return pipeline


def volume_of(path: str) -> Pipeline:
    """The volume that holds ``path`` (Storage module ``Get-Volume -FilePath``): the CSV or mount point
    a folder is on, not the drive letter its path starts with."""
    return single_statement(bound_command("Get-Volume", FilePath=path), label="volume-of")


def volume_of_first(candidates: Sequence[str]) -> Pipeline:
    """``Get-Volume -FilePath`` of each candidate (a path, then its parents), one statement each, in one
    round trip: the first volume in the output is the one of the first candidate that has one."""
    pipeline = volume_of(candidates[0])
    for candidate in candidates[1:]:
        pipeline = pipeline.then(volume_of(candidate))
    return pipeline


def checkpoint_with_files(checkpoint_id: uuid.UUID, folder: str) -> Pipeline:
    """A checkpoint, its own drives and every file under ``folder``: what checking an export of it
    reads first, in one round trip."""
    return get_checkpoint(checkpoint_id).then(checkpoint_drives(checkpoint_id)).then(list_files(folder))


def vhds_and_hashes(vhd_paths: Sequence[str], file_paths: Sequence[str]) -> Pipeline:
    """``Get-VHD`` of some disks and ``Get-FileHash`` of some files in one round trip (either may be
    empty, not both)."""
    statements = []
    if vhd_paths:
        statements.append(get_vhds(vhd_paths))
    if file_paths:
        statements.append(file_hashes(file_paths))
    pipeline = statements[0]
    for more in statements[1:]:
        pipeline = pipeline.then(more)
    return pipeline


def list_files(path: str) -> Pipeline:
    return single_statement(
        bound_command("Get-ChildItem", LiteralPath=path, Recurse=SWITCH, File=SWITCH), label="list-files"
    )


def list_entries(path: str) -> Pipeline:
    """A folder's own files and folders (not recursive)."""
    return single_statement(bound_command("Get-ChildItem", LiteralPath=path), label="list-entries")


def file_hashes(paths: Sequence[str]) -> Pipeline:
    return single_statement(
        bound_command("Get-FileHash", LiteralPath=list(paths), Algorithm="SHA256"), label="file-hashes"
    )


def test_path(path: str) -> Pipeline:
    return single_statement(bound_command("Test-Path", LiteralPath=path), label="test-path")


def make_directory(path: str) -> Pipeline:
    return single_statement(
        bound_command("New-Item", ItemType="Directory", Path=path, Force=SWITCH), label="make-directory"
    )


def move_item(path: str, destination: str) -> Pipeline:
    return single_statement(
        bound_command("Move-Item", LiteralPath=path, Destination=destination), label="move-item"
    )


def remove_item(path: str) -> Pipeline:
    return single_statement(
        bound_command("Remove-Item", LiteralPath=path, Recurse=SWITCH, Force=SWITCH), label="remove-item"
    )
