"""Get-VM, Set-VM, Start-VM, Stop-VM, Get-VMIntegrationService, Get-VMHost, and the VM life cycle of a
restore test: Import-VM (model/importing.py), Rename-VM, Remove-VM."""

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
    target_vms,
)
from hyperv_emulator.cmdlets.binding import Param
from hyperv_emulator.cmdlets.output_views import HostView, IntegrationView
from hyperv_emulator.model.enums import CheckpointType
from hyperv_emulator.model.errors import (
    ConfirmationRequiredError,
    GetVMNameNotFoundError,
    VMNotFoundError,
)
from hyperv_emulator.model.importing import import_vm
from hyperv_emulator.model.wildcard import WildcardPattern

NS = "Microsoft.HyperV.PowerShell.Commands."


@cmdlet("Get-VM", NS + "GetVM", [VM_NAME, Param("Id", "guid"), COMPUTER], local_only=True)
def get_vm(call: Call) -> Iterator[Any]:
    if call.has("Id"):
        vm = call.host.vm_by_id(call.get("Id"))
        call.touch(vm.id)
        yield vm
        return
    if not call.has("Name"):
        for vm in call.host.vms():
            call.touch(vm.id)
            yield vm
        return
    found: list[Any] = []
    for pattern in call.get("Name"):
        try:
            matches = call.host.find_vms(pattern)
        except VMNotFoundError:  # Get-VM -Name says InvalidParameter where -VMName cmdlets say ObjectNotFound
            call.error(GetVMNameNotFoundError(pattern), pattern)
            continue
        for vm in matches:
            if vm not in found:
                found.append(vm)
                call.touch(vm.id)
                yield vm


@cmdlet(
    "Set-VM",
    NS + "SetVM",
    [
        VM_NAME,
        VM_INPUT,
        Param("CheckpointType", "enum", enum=CheckpointType),
        Param("AutomaticCheckpointsEnabled", "bool"),
        PASSTHRU,
        COMPUTER,
    ],
    should_process=True,
    local_only=True,
)
def set_vm(call: Call) -> Iterator[Any]:
    for vm in target_vms(call):
        if call.should_process(vm.id):
            call.host.set_vm(
                vm,
                checkpoint_type=call.get("CheckpointType"),
                automatic_checkpoints=call.get("AutomaticCheckpointsEnabled"),
            )
        if call.flag("Passthru"):
            yield vm


@cmdlet(
    "Start-VM",
    NS + "StartVM",
    [VM_NAME, VM_INPUT, PASSTHRU, AS_JOB, COMPUTER],
    should_process=True,
    local_only=True,
)
def start_vm(call: Call) -> Iterator[Any]:
    for vm in target_vms(call):
        if call.should_process(vm.id) and not call.host.start_vm(vm):
            call.warnings.append(f"The virtual machine '{vm.name}' is already in the specified state.")
        if call.flag("Passthru"):
            yield vm


@cmdlet(
    "Stop-VM",
    NS + "StopVM",
    [
        VM_NAME,
        VM_INPUT,
        Param("Force", "switch"),
        Param("TurnOff", "switch"),
        Param("Save", "switch"),
        PASSTHRU,
        AS_JOB,
        COMPUTER,
    ],
    should_process=True,
    local_only=True,
)
def stop_vm(call: Call) -> Iterator[Any]:
    if call.flag("Save"):
        raise call.not_modelled("Stop-VM -Save")
    for vm in target_vms(call):
        if call.should_process(vm.id) and not call.host.stop_vm(vm, turn_off=call.flag("TurnOff")):
            call.warnings.append(f"The virtual machine '{vm.name}' is already in the specified state.")
        if call.flag("Passthru"):
            yield vm


@cmdlet(
    "Get-VMIntegrationService",
    NS + "GetVMIntegrationService",
    [
        OWNER_VM_NAME,
        OWNER_VM_INPUT,
        Param("Name", "strings", position=1),
        COMPUTER,
    ],
    local_only=True,
)
def get_integration(call: Call) -> Iterator[Any]:
    # -Name matches the names this host prints, which are localized (PlagueHO/LabBuilder#183: "Heartbeat"
    # finds nothing on a German host, whose service is "Takt").
    patterns = [WildcardPattern(p) for p in call.get("Name") or ["*"]]
    culture = call.host.culture
    for vm in target_vms(call, name_param="VMName"):
        call.touch(vm.id)
        for svc in vm.integration:
            if any(p.match(culture.service_name(svc.name)) for p in patterns):
                yield IntegrationView(vm, svc)


@cmdlet("Get-VMHost", NS + "GetVMHost", [COMPUTER], local_only=True)
def get_vmhost(call: Call) -> Iterator[Any]:
    yield HostView(call.host)


@cmdlet(
    "Import-VM",
    NS + "ImportVM",
    [
        Param("Path", "string", position=0, mandatory=True),
        Param("Copy", "switch"),
        Param("GenerateNewId", "switch"),
        Param("VhdDestinationPath", "string"),
        Param("VirtualMachinePath", "string"),
        Param("SnapshotFilePath", "string"),
        Param("SmartPagingFilePath", "string"),
        Param("Register", "switch"),
        COMPUTER,
    ],
    should_process=True,
    local_only=True,
)
def import_vm_cmdlet(call: Call) -> Iterator[Any]:
    if not call.should_process():
        return
    vm = import_vm(
        call.host,
        call.get("Path"),
        copy=call.flag("Copy"),
        generate_new_id=call.flag("GenerateNewId"),
        vhd_destination=call.get("VhdDestinationPath"),
        vm_path=call.get("VirtualMachinePath"),
    )
    call.touch(vm.id)
    yield vm


@cmdlet(
    "Remove-VM",
    NS + "RemoveVM",
    [VM_NAME, VM_INPUT, Param("Force", "switch"), PASSTHRU, COMPUTER],
    should_process=True,
    local_only=True,
)
def remove_vm(call: Call) -> Iterator[Any]:
    if not call.flag("Force") and call.get("Confirm", True) is not False:
        raise ConfirmationRequiredError("Remove-VM", ",".join(v.name for v in call.get("VM") or []))
    for vm in target_vms(call):
        if not call.should_process(vm.id):
            continue
        call.host.remove_vm(vm)
        if call.flag("Passthru"):
            yield vm


@cmdlet(
    "Rename-VM",
    NS + "RenameVM",
    [VM_NAME, VM_INPUT, Param("NewName", "string", position=1, mandatory=True), PASSTHRU, COMPUTER],
    should_process=True,
    local_only=True,
)
def rename_vm(call: Call) -> Iterator[Any]:
    for vm in target_vms(call):
        if call.should_process(vm.id):
            with call.host.lock:
                vm.name = call.get("NewName")
        if call.flag("Passthru"):
            yield vm
