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
        Param("VM", "vms", pipeline=True, excludes=("VMName",)),
        Param("ControllerType", "enum", enum=ControllerType),
        Param("ControllerNumber", "int"),
        Param("ControllerLocation", "int"),
        COMPUTER,
    ],
)
def get_hard_disk_drive(call: Call) -> Iterator[Any]:
    _local_only(call)
    for vm in target_vms(call, name_param="VMName"):
        call.touch(vm.id)
        for drive in vm.hard_drives:
            if call.has("ControllerType") and drive.controller_type is not call.get("ControllerType"):
                continue
            if call.has("ControllerNumber") and drive.controller_number != call.get("ControllerNumber"):
                continue
            if call.has("ControllerLocation") and drive.controller_location != call.get("ControllerLocation"):
                continue
            yield DriveView(vm, drive)


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
