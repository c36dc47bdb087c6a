"""The merge engine: which differencing disks a host merges after Remove-VMSnapshot, and how the chain
collapses when a merge finishes (or is left as it is when the merge failed).

Merges are not threads: ``MergeEngine.start`` sets the VM's ``merge_until`` from the bytes to merge and
the host's merge rate, and ``MergeEngine.settle`` (which ``HostModel.settle`` calls before every read)
applies every merge whose end time has passed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hyperv_emulator.faults import Fault
from hyperv_emulator.model.checkpoint import Checkpoint
from hyperv_emulator.model.disk import MiB, VirtualDisk
from hyperv_emulator.model.enums import VhdType
from hyperv_emulator.model.vm import VirtualMachine

if TYPE_CHECKING:
    from hyperv_emulator.model.host import HostModel

MergePair = tuple[VirtualDisk, VirtualDisk]  # (parent, child)


def pinned_disks(vm: VirtualMachine) -> set[int]:
    """The disks a checkpoint holds (by ``id``): never merged away."""
    return {id(d) for c in vm.checkpoints for d in c.frozen.values()}


def disk_tree(vm: VirtualMachine) -> tuple[list[VirtualDisk], dict[int, list[VirtualDisk]]]:
    """Every disk of the VM's chains (current and checkpointed), and each disk's children by ``id``."""
    seen: dict[int, VirtualDisk] = {}
    roots = [d.disk for d in vm.hard_drives] + [d for c in vm.checkpoints for d in c.frozen.values()]
    for disk in roots:
        for d in disk.chain():
            seen[id(d)] = d
    children: dict[int, list[VirtualDisk]] = {k: [] for k in seen}
    for d in seen.values():
        if d.parent is not None:
            children[id(d.parent)].append(d)
    return list(seen.values()), children


def merge_plan(vm: VirtualMachine) -> list[MergePair]:
    """(parent, child) pairs the host would merge now: an unpinned, not-running disk with one child."""
    pinned = pinned_disks(vm)
    current = {id(d.disk) for d in vm.hard_drives}
    disks, children = disk_tree(vm)
    return [
        (d, children[id(d)][0])
        for d in disks
        if id(d) not in pinned
        and id(d) not in current
        and not d.merge_blocked
        and not d.golden  # a golden image is never merged into (model/disk.py)
        and len(children[id(d)]) == 1
    ]


class MergeEngine:
    """The background merges of one host: when they finish, whether they fail, what they fold."""

    def __init__(self, host: HostModel) -> None:
        self._host = host
        self._failed: dict[uuid.UUID, bool] = {}  # VMs whose running merge will fail
        # (VM name, start, end) of every merge scheduled, emulated seconds: when each AVHDX stopped
        # existing, which the audit log (Remove-VMSnapshot returns at once) cannot say.
        self.history: list[tuple[str, float, float]] = []

    def start(self, vm: VirtualMachine, before: list[MergePair], cp: Checkpoint, cmdlet: str) -> None:
        """After checkpoints were removed: schedule the merge of every pair that was not mergeable
        ``before`` (at the host's merge rate, after any merge still running). Called under the lock."""
        host = self._host
        plan = [pair for pair in merge_plan(vm) if pair not in before]
        merge_bytes = sum(child.file_size for _, child in plan)
        if not plan:
            return
        now = host.clock.now()
        start = max(now, vm.merge_until or now)
        vm.merge_until = start + merge_bytes / (host.timing.merge_mb_per_s * MiB)
        self.history.append((vm.name, start, vm.merge_until))
        fault = host.faults.take(
            Fault.MERGE_FAILURE,
            cmdlets=[cmdlet],
            vms=[vm.name, str(vm.id)],
            detail=f"{host.name}/{vm.name}/{cp.name}",
        )
        if fault is not None:
            self._failed[vm.id] = True
        if vm.merge_until <= now:
            host.settle()

    def settle(self, vms: Iterable[VirtualMachine]) -> None:
        """Finish every merge whose end time has passed. Called under the lock."""
        now = self._host.clock.now()
        for vm in vms:
            if vm.merge_until is not None and vm.merge_until <= now:
                failed = self._failed.pop(vm.id, False)
                vm.merge_until = None
                self._collapse(vm, failed=failed)

    def _collapse(self, vm: VirtualMachine, *, failed: bool) -> None:
        """Finish a merge — or, when the merge failed, leave the AVHDX chain as it is and never retry it
        (orphaned AVHDX, like real hosts). The direction follows docs/emulator.md (Merges): the disk
        the VM writes to folds into its parent (the drive moves down), so does a child of a base disk;
        an older checkpoint's differencing disk folds into its child (the drive path stays)."""
        host = self._host
        while True:
            plan = merge_plan(vm)
            if not plan:
                return
            if failed:
                for parent, _ in plan:
                    parent.merge_blocked = True
                return
            parent, child = plan[0]
            current = any(d.disk is child for d in vm.hard_drives)
            if parent.parent is not None and not current:
                self._fold_into_child(parent, child)
                continue
            parent.content = child.content
            if parent.vhd_type is not VhdType.Fixed:
                parent.file_size = (
                    min(parent.size, parent.file_size + child.file_size)
                    if parent.parent is None
                    else parent.file_size + child.file_size
                )
            _, children = disk_tree(vm)
            for grandchild in children[id(child)]:
                grandchild.parent = parent
            for drive in vm.hard_drives:
                if drive.disk is child:
                    drive.disk = parent
            for c in vm.checkpoints:
                for idx, d in c.frozen.items():
                    if d is child:
                        c.frozen[idx] = parent
            host.write_disk(parent)
            host.delete_disk(child)

    def _fold_into_child(self, disk: VirtualDisk, child: VirtualDisk) -> None:
        """Merge an unreferenced differencing disk into its only child: the child keeps its path and
        takes the disk's parent; the disk's file is deleted."""
        child.parent = disk.parent
        child.file_size = child.file_size + disk.file_size
        self._host.write_disk(child)
        self._host.delete_disk(disk)
