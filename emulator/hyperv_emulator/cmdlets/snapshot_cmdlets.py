"""Checkpoint-VM, Get-VMSnapshot, Export-, Remove-, Restore-, Rename-VMSnapshot (+ Checkpoint aliases)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hyperv_emulator.cmdlets.base import (
    AS_JOB,
    COMPUTER,
    OWNER_VM_INPUT,
    OWNER_VM_NAME,
    PASSTHRU,
    VM_INPUT,
    VM_NAME,
    Call,
    cmdlet,
    target_snapshots,
    target_vms,
)
from hyperv_emulator.cmdlets.binding import Param
from hyperv_emulator.faults import Fault
from hyperv_emulator.model.enums import SnapshotType
from hyperv_emulator.model.errors import (
    ConfirmationRequiredError,
    SnapshotNotFoundError,
)
from hyperv_emulator.model.wildcard import WildcardPattern

NS = "Microsoft.HyperV.PowerShell.Commands."
SNAP_OBJ = Param(
    "VMSnapshot", "snapshots", ("VMCheckpoint",), pipeline=True, excludes=("VMName", "VM", "Name")
)
SNAP_TARGETING = [
    OWNER_VM_NAME,
    OWNER_VM_INPUT,
    SNAP_OBJ,
    Param("Name", "strings", position=1),
]


@cmdlet(
    "Checkpoint-VM",
    NS + "CheckpointVM",
    [
        VM_NAME,
        VM_INPUT,
        Param("SnapshotName", "string", ("CheckpointName",), position=1),
        PASSTHRU,
        AS_JOB,
        COMPUTER,
    ],
    should_process=True,
    local_only=True,
)
def checkpoint_vm(call: Call) -> Iterator[Any]:
    for vm in target_vms(call):
        if not call.should_process(vm.id):
            continue
        # Like the real cmdlet, the snapshot is made under the default name "<vm> - (<date>)" and
        # renamed to -SnapshotName after (docs/emulator.md, Leases): a session lost in between
        # leaves a checkpoint with the default name.
        cp = call.host.checkpoint_vm(vm, None, call.cancelled)
        if cp is None:  # the client stopped the pipeline
            return
        call.touch(cp.id)
        wanted = call.get("SnapshotName")
        if wanted and call.host.faults.take(
            Fault.SESSION_LOST_BEFORE_RENAME,
            cmdlets=["Checkpoint-VM"],
            vms=[vm.name, str(vm.id)],
            detail=f"{call.host.name}/{vm.name}",
        ):
            call.cancelled.set()  # the session went away: PowerShell stops the rest of the invocation
            return
        if wanted:
            _rename(call, cp, wanted)
        if call.flag("Passthru"):
            yield cp


def _rename(call: Call, cp: Any, new_name: str) -> None:
    with call.host.lock:
        cp.name = new_name
        for vm in call.host.vms():
            for other in vm.checkpoints:
                if other.parent_id == cp.id:
                    other.parent_name = new_name


@cmdlet(
    "Rename-VMSnapshot",
    NS + "RenameVMSnapshot",
    [*SNAP_TARGETING, Param("NewName", "string", position=2, mandatory=True), PASSTHRU, COMPUTER],
    aliases=("Rename-VMCheckpoint",),
    should_process=True,
    local_only=True,
)
def rename_snapshot(call: Call) -> Iterator[Any]:
    for vm, cp in target_snapshots(call):
        if not call.should_process(vm.id, cp.id):
            continue
        _rename(call, cp, call.get("NewName"))
        if call.flag("Passthru"):
            yield cp


@cmdlet(
    "Get-VMSnapshot",
    NS + "GetVMSnapshot",
    [
        OWNER_VM_NAME,
        OWNER_VM_INPUT,
        Param("Name", "string", position=1),
        Param("Id", "guid"),
        Param("SnapshotType", "enum", enum=SnapshotType),
        Param("ParentOf", "snapshots"),
        Param("ChildOf", "snapshots"),
        COMPUTER,
    ],
    aliases=("Get-VMCheckpoint",),
    local_only=True,
)
def get_snapshot(call: Call) -> Iterator[Any]:
    if call.has("ParentOf") or call.has("ChildOf"):
        raise call.not_modelled("Get-VMSnapshot -ParentOf/-ChildOf")
    if call.has("Id"):
        vm, cp = call.host.snapshot_by_id(call.get("Id"))
        call.touch(cp.id)
        yield cp
        return
    vms = target_vms(call, name_param="VMName", required=False)
    pattern = WildcardPattern(call.get("Name")) if call.has("Name") else None
    found = 0
    for vm in vms:
        call.touch(vm.id)
        for cp in call.host.snapshots(vm):
            if pattern is not None and not pattern.match(cp.name):
                continue
            if call.has("SnapshotType") and cp.snapshot_type is not call.get("SnapshotType"):
                continue
            found += 1
            call.touch(cp.id)
            yield cp
    if pattern is not None and not found:
        raise SnapshotNotFoundError(call.get("Name"))


@cmdlet(
    "Export-VMSnapshot",
    NS + "ExportVMSnapshot",
    [*SNAP_TARGETING, Param("Path", "string", position=2, mandatory=True), PASSTHRU, AS_JOB, COMPUTER],
    aliases=("Export-VMCheckpoint",),
    should_process=True,
    local_only=True,
)
def export_snapshot(call: Call) -> Iterator[Any]:
    for vm, cp in target_snapshots(call):
        if not call.should_process(vm.id, cp.id):
            continue
        result = call.host.export_snapshot(vm, cp, call.get("Path"), call.cancelled)
        if result is None:
            return
        call.touch(result.path)
        if call.flag("Passthru"):
            yield cp


@cmdlet(
    "Remove-VMSnapshot",
    NS + "RemoveVMSnapshot",
    [
        *SNAP_TARGETING,
        Param("IncludeAllChildSnapshots", "switch", ("IncludeAllChildCheckpoints",)),
        PASSTHRU,
        AS_JOB,
        COMPUTER,
    ],
    aliases=("Remove-VMCheckpoint",),
    should_process=True,
    local_only=True,
)
def remove_snapshot(call: Call) -> Iterator[Any]:
    for vm, cp in target_snapshots(call):
        if not call.should_process(vm.id, cp.id):
            continue
        if vm.checkpoint(cp.id) is None:  # already gone with an earlier -IncludeAllChildSnapshots
            continue
        removed = call.host.remove_snapshot(vm, cp, include_children=call.flag("IncludeAllChildSnapshots"))
        for dead in removed:
            call.touch(dead.id)
        if call.flag("Passthru"):
            yield from removed


@cmdlet(
    "Restore-VMSnapshot",
    NS + "RestoreVMSnapshot",
    [*SNAP_TARGETING, PASSTHRU, AS_JOB, COMPUTER],
    aliases=("Restore-VMCheckpoint",),
    should_process=True,
    prompts=True,
    local_only=True,
)
def restore_snapshot(call: Call) -> Iterator[Any]:
    for vm, cp in target_snapshots(call):
        if not call.should_process(vm.id, cp.id):
            continue
        if call.get("Confirm", True) is not False:
            # ConfirmImpact High: a real host prompts; this host cannot, like any non-interactive host.
            raise ConfirmationRequiredError("Restore-VMSnapshot", cp.name)
        if not call.host.restore_snapshot(vm, cp, call.cancelled):
            return
        if call.flag("Passthru"):
            yield cp
