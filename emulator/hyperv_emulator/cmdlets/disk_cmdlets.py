"""Get-VMHardDiskDrive and Get-VHD: how a client sees the disk chain (and so whether a merge finished)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hyperv_emulator.cmdlets.base import COMPUTER, OWNER_VM_INPUT, OWNER_VM_NAME, Call, cmdlet, target_vms
from hyperv_emulator.cmdlets.binding import Param
from hyperv_emulator.cmdlets.output_views import DriveView
from hyperv_emulator.model.enums import ControllerType
from hyperv_emulator.model.errors import HyperVError
from hyperv_emulator.model.vm import HardDrive

NS = "Microsoft.HyperV.PowerShell.Commands."


@cmdlet(
    "Get-VMHardDiskDrive",
    NS + "GetVMHardDiskDrive",
    [
        OWNER_VM_NAME,
        OWNER_VM_INPUT,
        # The checkpoint's own drives (windows-powershell-docs Get-VMHardDiskDrive.md, parameter set
        # VMSnapshot: pipeline input by value, alias VMCheckpoint).
        Param("VMSnapshot", "snapshots", ("VMCheckpoint",), pipeline=True, excludes=("VMName", "VM")),
        Param("ControllerType", "enum", enum=ControllerType),
        Param("ControllerNumber", "int"),
        Param("ControllerLocation", "int"),
        COMPUTER,
    ],
    local_only=True,
)
def get_hard_disk_drive(call: Call) -> Iterator[Any]:
    if call.has("VMSnapshot"):
        for snapshot in call.get("VMSnapshot"):
            vm, cp = call.host.snapshot_by_id(snapshot.id)
            call.touch(vm.id)
            call.touch(cp.id)
            for index in sorted(cp.frozen):
                # The slot as it was: the disk holding the checkpoint's state, on the controller the
                # VM's drive of that index uses (drives are only appended after a checkpoint here).
                slot = vm.hard_drives[index] if index < len(vm.hard_drives) else HardDrive(cp.frozen[index])
                drive = HardDrive(
                    cp.frozen[index], slot.controller_type, slot.controller_number, slot.controller_location
                )
                if _selected(call, drive):
                    yield DriveView(vm, drive, snapshot=cp)
        return
    for vm in target_vms(call, name_param="VMName"):
        call.touch(vm.id)
        for drive in vm.hard_drives:
            if _selected(call, drive):
                yield DriveView(vm, drive)


def _selected(call: Call, drive: HardDrive) -> bool:
    if call.has("ControllerType") and drive.controller_type is not call.get("ControllerType"):
        return False
    if call.has("ControllerNumber") and drive.controller_number != call.get("ControllerNumber"):
        return False
    return not (
        call.has("ControllerLocation") and drive.controller_location != call.get("ControllerLocation")
    )


@cmdlet(
    "Get-VHD",
    "Microsoft.Vhd.PowerShell.Cmdlets.GetVhd",
    [Param("Path", "strings", ("FullName",), position=0, mandatory=True), COMPUTER],
    local_only=True,
)
def get_vhd(call: Call) -> Iterator[Any]:
    for path in call.get("Path"):
        try:
            info = call.host.vhd_info(path)
        except HyperVError as err:
            call.error(err, path)
            continue
        call.touch(info.path)
        yield info
