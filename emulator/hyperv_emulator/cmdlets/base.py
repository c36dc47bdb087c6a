"""What a handler gets (``Call``), the registry, and the targeting rules shared by cmdlet families."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hyperv_emulator.cmdlets.audit import AuditEntry
from hyperv_emulator.cmdlets.binding import Cmdlet, Param
from hyperv_emulator.host_runtime import ErrorSpec
from hyperv_emulator.model.checkpoint import Checkpoint
from hyperv_emulator.model.errors import (
    HyperVError,
    OperationFailedError,
    ParameterBindingError,
    SnapshotNotFoundError,
    VMNotFoundError,
)
from hyperv_emulator.model.host import HostModel
from hyperv_emulator.model.vm import VirtualMachine
from hyperv_emulator.model.wildcard import WildcardPattern

REGISTRY: dict[str, Cmdlet] = {}


def register(cmdlet: Cmdlet) -> Cmdlet:
    for name in (cmdlet.name, *cmdlet.aliases):
        REGISTRY[name.lower()] = cmdlet
    return cmdlet


def cmdlet(
    name: str,
    command_type: str,
    params: Iterable[Param],
    *,
    aliases: Iterable[str] = (),
    should_process: bool = False,
    prompts: bool = False,
) -> Callable[[Callable[[Call], Iterable[Any]]], Cmdlet]:
    """Decorator: register a handler generator as a cmdlet."""

    def wrap(fn: Callable[[Call], Iterable[Any]]) -> Cmdlet:
        return register(
            Cmdlet(name, command_type, tuple(params), fn, tuple(aliases), should_process, prompts)
        )

    return wrap


@dataclass
class Call:
    """One invocation of a cmdlet (for one pipeline input, or once when it leads the pipeline)."""

    cmdlet: Cmdlet
    host: HostModel
    params: dict[str, Any]
    audit: AuditEntry
    cancelled: threading.Event
    write_error: Callable[[ErrorSpec, Any], None]
    warnings: list[str] = field(default_factory=list)

    def get(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    def has(self, name: str) -> bool:
        return name in self.params

    def flag(self, name: str) -> bool:
        return bool(self.params.get(name, False))

    def touch(self, target: object) -> None:
        text = str(target)
        if text not in self.audit.targets:
            self.audit.targets.append(text)

    def error(self, err: HyperVError, target: Any = None) -> None:
        """A non-terminating error (the cmdlet goes on with its next target)."""
        self.write_error(err.to_spec(self.cmdlet.name, self.cmdlet.command_type), target)

    def not_modelled(self, what: str) -> OperationFailedError:
        return OperationFailedError(f"{what} is not modelled by this emulated Hyper-V host.")


# --- targeting: which VMs / checkpoints an invocation acts on ------------------------------------------


def target_vms(
    call: Call, *, name_param: str = "Name", vm_param: str = "VM", required: bool = True
) -> list[VirtualMachine]:
    """-VM objects, or -Name/-VMName wildcard patterns (each non-matching pattern is an error), or all VMs."""
    if call.has(vm_param):
        vms = [call.host.vm_by_id(vm.id) for vm in call.get(vm_param)]
    elif call.has(name_param):
        vms = []
        for pattern in call.get(name_param):
            try:
                for vm in call.host.find_vms(pattern):
                    if vm not in vms:
                        vms.append(vm)
            except VMNotFoundError as err:
                call.error(err, pattern)
    elif required:
        raise ParameterBindingError.missing_mandatory([name_param])
    else:
        vms = call.host.vms()
    return vms


def target_snapshots(
    call: Call, *, snapshot_param: str = "VMSnapshot", vm_name_param: str = "VMName", name_param: str = "Name"
) -> list[tuple[VirtualMachine, Checkpoint]]:
    """-VMSnapshot objects, or -Name (wildcards) within -VMName/-VM."""
    if call.has(snapshot_param):
        out = []
        for cp in call.get(snapshot_param):
            vm, live = call.host.snapshot_by_id(cp.id)
            out.append((vm, live))
        return out
    if not call.has(name_param):
        raise ParameterBindingError.missing_mandatory([name_param])
    if not (call.has(vm_name_param) or call.has("VM")):
        raise ParameterBindingError.missing_mandatory([vm_name_param])
    vms = target_vms(call, name_param=vm_name_param)
    out = []
    for vm in vms:
        for pattern in call.get(name_param):
            wp = WildcardPattern(pattern)
            hits = [c for c in call.host.snapshots(vm) if wp.match(c.name)]
            if not hits:
                call.error(SnapshotNotFoundError(pattern), pattern)
            out.extend((vm, c) for c in hits if (vm, c) not in out)
    return out
