"""What a handler gets (``Call``), the registry, and the targeting rules shared by cmdlet families."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hyperv_emulator.cmdlets.audit import AuditEntry
from hyperv_emulator.cmdlets.binding import Cmdlet, Param
from hyperv_emulator.host_runtime import ErrorSpec
from hyperv_emulator.model.checkpoint import Checkpoint
from hyperv_emulator.model.errors import (
    AccessDeniedError,
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

# --- parameters the Hyper-V cmdlets share -----------------------------------------------------------------

COMPUTER = Param("ComputerName", "strings", ("PSComputerName",))
PASSTHRU = Param("Passthru", "switch")
AS_JOB = Param("AsJob", "switch")
# A VM cmdlet's own target: -Name (alias -VMName), or -VM objects piped in.
VM_NAME = Param("Name", "strings", ("VMName",), position=0)
VM_INPUT = Param("VM", "vms", pipeline=True, excludes=("Name",))
# The VM that owns what a cmdlet is about (its snapshots, drives, adapters): -VMName, or -VM piped in.
OWNER_VM_NAME = Param("VMName", "strings", position=0)
OWNER_VM_INPUT = Param("VM", "vms", pipeline=True, excludes=("VMName",))


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
    local_only: bool = False,
    cluster_only: bool = False,
) -> Callable[[Callable[[Call], Iterable[Any]]], Cmdlet]:
    """Decorator: register a handler generator as a cmdlet.

    What every handler would otherwise check first is declared here and applied by ``invoke``, in this
    order: ``-AsJob`` is refused by every cmdlet that declares it; ``local_only`` (a cmdlet of this
    host) requires a Hyper-V administrator and a local ``-ComputerName``; a ``mandatory`` parameter
    that is missing fails. ``should_process`` cmdlets ask ``Call.should_process`` before acting.
    """

    def wrap(fn: Callable[[Call], Iterable[Any]]) -> Cmdlet:
        return register(
            Cmdlet(
                name,
                command_type,
                tuple(params),
                fn,
                tuple(aliases),
                should_process,
                prompts,
                local_only=local_only,
                cluster_only=cluster_only,
            )
        )

    return wrap


def invoke(call: Call) -> Iterator[Any]:
    """Run one invocation of a cmdlet: its declared preamble (see ``cmdlet``), then its handler. A
    generator, so that what the preamble raises surfaces where the handler's own errors do."""
    declared = call.cmdlet
    if call.flag("AsJob") and any(p.name == "AsJob" for p in declared.params):
        raise call.not_modelled("-AsJob (remote jobs die with the runspace)")
    if declared.local_only:
        _require_local(call)
    missing = [p.name for p in declared.params if p.mandatory and not call.has(p.name)]
    if missing:
        raise ParameterBindingError.missing_mandatory(missing)
    yield from declared.handler(call)


def _require_local(call: Call) -> None:
    if not call.host.caller_is_hyperv_admin:
        raise AccessDeniedError(call.host.name)
    for name in call.get("ComputerName") or []:
        if name.lower() not in (call.host.name.lower(), "localhost", "."):
            raise OperationFailedError(f"Hyper-V was unable to connect to computer '{name}' from this host.")


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

    def should_process(self, *targets: object) -> bool:
        """PowerShell's ShouldProcess: record the targets the action is about (the audit log), and
        say whether to act (False under -WhatIf)."""
        for target in targets:
            self.touch(target)
        return not self.flag("WhatIf")

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
