"""Get-VMHardDiskDrive and Get-VHD: how a client sees the disk chain (and so whether a merge finished)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from airflow_hyperv.emulator.cmdlets.base import Call, cmdlet, target_vms
from airflow_hyperv.emulator.cmdlets.binding import Param
from airflow_hyperv.emulator.cmdlets.views import DriveView
from airflow_hyperv.emulator.cmdlets.vm_cmdlets import COMPUTER, _local_only
from airflow_hyperv.emulator.model.enums import ControllerType
from airflow_hyperv.emulator.model.errors import HyperVError, ParameterBindingError

NS = "Microsoft.HyperV.PowerShell.Commands."


@cmdlet(
    "Get-VMHardDiskDrive",
    NS + "GetVMHardDiskDrive",
    [
        Param("VMName", "strings", position=0),
        Param("VM", "vms", pipeline=True, excludes=("VMName", "VMSnapshot")),
        # a checkpoint's drives (learn.microsoft.com Get-VMHardDiskDrive, parameter set VMSnapshot)
        Param("VMSnapshot", "snapshots", ("VMCheckpoint",), pipeline=True, excludes=("VMName", "VM")),
        Param("ControllerType", "enum", enum=ControllerType),
        Param("ControllerNumber", "int"),
        Param("ControllerLocation", "int"),
        COMPUTER,
    ],
)
def get_hard_disk_drive(call: Call) -> Iterator[Any]:
    _local_only(call)
    if call.has("VMSnapshot"):
        for cp in call.get("VMSnapshot"):
            vm, live = call.host.snapshot_by_id(cp.id)
            call.touch(live.id)
            for index, drive in enumerate(vm.hard_drives):
                if index in live.frozen and _wanted(call, drive):  # a drive added later is not in it
                    yield DriveView(vm, drive, live, index)
        return
    for vm in target_vms(call, name_param="VMName"):
        call.touch(vm.id)
        for drive in vm.hard_drives:
            if _wanted(call, drive):
                yield DriveView(vm, drive)


def _wanted(call: Call, drive: Any) -> bool:
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
    [Param("Path", "strings", ("FullName",), position=0), COMPUTER],
)
def get_vhd(call: Call) -> Iterator[Any]:
    _local_only(call)
    if not call.has("Path"):
        raise ParameterBindingError.missing_mandatory(["Path"])
    for path in call.get("Path"):
        try:
            info = call.host.vhd_info(path)
        except HyperVError as err:
            call.error(err, path)
            continue
        call.touch(info.path)
        yield info
