"""Get-VMNetworkAdapter and Disconnect-VMNetworkAdapter: the one adapter each VM has (model/importing.py).

A restore test disconnects an imported copy before it starts it, so the copy never meets its original
on the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hyperv_emulator.cmdlets.base import (
    COMPUTER,
    OWNER_VM_INPUT,
    OWNER_VM_NAME,
    PASSTHRU,
    Call,
    cmdlet,
    target_vms,
)
from hyperv_emulator.cmdlets.binding import Param
from hyperv_emulator.cmdlets.output_views import NetworkAdapterView
from hyperv_emulator.model.importing import disconnect

HV = "Microsoft.HyperV.PowerShell.Commands."


@cmdlet(
    "Get-VMNetworkAdapter",
    HV + "GetVMNetworkAdapter",
    [
        OWNER_VM_NAME,
        OWNER_VM_INPUT,
        Param("Name", "strings"),
        COMPUTER,
    ],
    local_only=True,
)
def get_network_adapter(call: Call) -> Iterator[Any]:
    for vm in target_vms(call, name_param="VMName"):
        call.touch(vm.id)
        yield NetworkAdapterView(vm)


@cmdlet(
    "Disconnect-VMNetworkAdapter",
    HV + "DisconnectVMNetworkAdapter",
    [
        OWNER_VM_NAME,
        Param("VMNetworkAdapter", "adapters", pipeline=True, excludes=("VMName",)),
        Param("Name", "strings"),
        PASSTHRU,
        COMPUTER,
    ],
    should_process=True,
    local_only=True,
)
def disconnect_network_adapter(call: Call) -> Iterator[Any]:
    if call.has("VMNetworkAdapter"):
        vms = [call.host.vm_by_id(a.vm.id) for a in call.get("VMNetworkAdapter")]
    else:
        vms = target_vms(call, name_param="VMName")
    for vm in vms:
        if call.should_process(vm.id):
            disconnect(call.host, vm)
        if call.flag("Passthru"):
            yield NetworkAdapterView(vm)
