"""Export-VMSnapshot: a checkpoint's configuration and flattened disks written under the export path at
the host's export rate, checking the target volume's free space as it goes."""

from __future__ import annotations

import ntpath
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hyperv_emulator.faults import Fault
from hyperv_emulator.model.checkpoint import Checkpoint
from hyperv_emulator.model.disk import MiB, flattened_header, flattened_size
from hyperv_emulator.model.errors import ExportExistsError, NotEnoughSpaceError
from hyperv_emulator.model.vm import VirtualMachine

if TYPE_CHECKING:
    from hyperv_emulator.model.host import HostModel

# Progress granularity of an emulated copy: 1/200 of a file (0.5 %) at the slowest.
MAX_COPY_STEPS = 200


@dataclass(frozen=True)
class ExportResult:
    path: str  # <Path>\<VMName>
    files: tuple[str, ...]
    bytes_written: int


def export_snapshot(
    host: HostModel,
    vm: VirtualMachine,
    cp: Checkpoint,
    path: str,
    cancelled: threading.Event | None = None,
    *,
    cmdlet: str = "Export-VMSnapshot",
) -> ExportResult | None:
    """Write ``<Path>\\<VMName>\\{Virtual Machines,Virtual Hard Disks,Snapshots}`` with flattened disks at
    the export rate, checking the target volume's free space as it goes. Layout *unconfirmed* for
    Export-VMSnapshot (it follows Export-VM, hashicorp/packer#5913). On failure the partial folder stays."""
    with host.lock:
        host.settle()
        if vm.busy == "migrating":
            host._require_idle(vm, "Export operation")
        dest = host.fs.join(host.fs.normalize(path), vm.name)
        volume = host.fs.volume_for(dest)  # a CSV or mount point has its own free space
        uid = str(vm.id).upper()
        plan: list[tuple[str, dict[str, object], int]] = [
            (
                host.fs.join(dest, "Virtual Machines", f"{uid}.vmcx"),
                {
                    "kind": "vmcx",
                    "vm_id": uid,
                    "checkpoint": cp.name,
                    "state": cp.state.name,
                    # what Import-VM reads back (emulator/model/importing.py)
                    "name": vm.name,
                    "generation": vm.generation,
                    "guest": vm.guest_os,
                    "memory": vm.memory_startup,
                    "disks": [ntpath.basename(cp.frozen[i].base().path) for i in sorted(cp.frozen)],
                },
                64 * 1024,
            ),
            (
                host.fs.join(dest, "Virtual Machines", f"{uid}.vmgs"),
                {"kind": "vmgs", "vm_id": uid},
                1 * MiB,
            ),
        ]
        if cp.has_saved_state:
            plan.append(
                (
                    host.fs.join(dest, "Virtual Machines", f"{uid}.VMRS"),
                    {"kind": "vmrs", "vm_id": uid, "checkpoint": str(cp.id)},
                    cp.memory_bytes,
                )
            )
        for index in sorted(cp.frozen):
            disk = cp.frozen[index]
            base_name = ntpath.basename(disk.base().path)
            plan.append(
                (
                    host.fs.join(dest, "Virtual Hard Disks", base_name),
                    flattened_header(disk),
                    flattened_size(disk),
                )
            )
        for target, _, _ in plan:
            if host.fs.to_real(target).exists():
                raise ExportExistsError(
                    f"Failed to copy file during export.\nFailed to copy file from '{vm.name}' to "
                    f"'{target}': The file exists. (0x80070050).",
                    target_name=target,
                    target_type="String",
                )
        for sub in ("Virtual Machines", "Virtual Hard Disks", "Snapshots"):
            host.fs.mkdir(host.fs.join(dest, sub))
        total = sum(size for _, _, size in plan)
        fault = host.faults.take(
            Fault.DISK_FULL_DURING_EXPORT,
            cmdlets=[cmdlet],
            vms=[vm.name, str(vm.id)],
            detail=f"{host.name}/{vm.name} -> {dest}",
        )
        fail_after = total // 2 if fault is not None else None
        vm.busy = vm.busy or "export"
    written = 0
    rate = host.timing.export_mb_per_s * MiB
    # The copy keeps to the rate from this moment: every byte is due at started + bytes/rate, so time
    # that passes in one jump (a ManualClock moved on by a test) writes what that much time writes.
    started = host.clock.now()
    try:
        for target, header, size in plan:
            done = 0
            # One emulated second a step, but never more than MAX_COPY_STEPS steps a file: a slow rate
            # (tests use 0.25 MiB/s to keep an export running) must not mean thousands of wake-ups.
            chunk = max(int(rate), -(-size // MAX_COPY_STEPS), 1)
            while True:
                step = min(size - done, chunk)
                with host.lock:
                    allowed = min(step, host.fs.free(volume))
                    if fail_after is not None:
                        allowed = min(allowed, max(0, fail_after - written))
                    done += allowed
                    written += allowed
                    host.fs.write_standin(target, header, size, fraction=(done / size) if size else 1.0)
                    if allowed < step:
                        raise NotEnoughSpaceError(
                            f"Failed to copy file during export.\nFailed to copy file from '{vm.name}' to "
                            f"'{target}': There is not enough space on the disk. (0x80070070).",
                            target_name=vm.name,
                            target_type="VMSnapshot",
                        )
                if done >= size:
                    break
                if not host.clock.sleep_until(started + written / rate, cancelled):
                    return None
    finally:
        with host.lock:
            if vm.busy == "export":
                vm.busy = ""
    return ExportResult(path=dest, files=tuple(t for t, _, _ in plan), bytes_written=written)
