"""Import-VM of an export, Remove-VM, and the one network adapter each VM has.

``Import-VM -Path <vmcx> -Copy -GenerateNewId -VhdDestinationPath <dir> -VirtualMachinePath <dir>``
(windows-powershell-docs ``hyper-v/Import-VM.md``): reads the configuration the export wrote, copies
every disk it names from the export's ``Virtual Hard Disks`` folder, and registers a new VM (a new Id
with -GenerateNewId; the name is kept, so two VMs may share a name until the copy is renamed). A disk
the configuration names but the export lacks fails the import with the text real hosts print
("Unable to import virtual machine due to configuration errors. Please use Compare-VM to repair the
virtual machine."; FQID *unconfirmed*). A disk whose bytes are damaged still imports: the guest simply
never answers its heartbeat (what a VM whose boot disk is corrupt looks like from the host).

Networking is modelled minimally: every VM has one adapter "Network Adapter", connected to switch
``DEFAULT_SWITCH`` until Disconnect-VMNetworkAdapter empties its SwitchName. An imported copy is
connected like its original, which is why a restore test must disconnect it before starting it.
"""

from __future__ import annotations

import ntpath
import shutil
import uuid
import weakref
from typing import TYPE_CHECKING

from hyperv_emulator.model.disk import VirtualDisk
from hyperv_emulator.model.enums import VhdType, VMState
from hyperv_emulator.model.errors import OperationFailedError, PathNotFoundError
from hyperv_emulator.model.paths import read_standin_header
from hyperv_emulator.model.vm import HardDrive, VirtualMachine

if TYPE_CHECKING:
    from hyperv_emulator.model.host import HostModel

DEFAULT_SWITCH = "LAN"
ADAPTER_NAME = "Network Adapter"
CONFIG_ERRORS = (
    "Unable to import virtual machine due to configuration errors.  Please use Compare-VM to repair the "
    "virtual machine."
)
_DISCONNECTED: weakref.WeakKeyDictionary[HostModel, set[uuid.UUID]] = weakref.WeakKeyDictionary()


class ImportFailedError(OperationFailedError):
    """Import-VM failed (OperationFailed,…ImportVM; category *unconfirmed*)."""


def switch_of(host: HostModel, vm: VirtualMachine) -> str:
    return "" if vm.id in _DISCONNECTED.get(host, set()) else DEFAULT_SWITCH


def disconnect(host: HostModel, vm: VirtualMachine) -> None:
    _DISCONNECTED.setdefault(host, set()).add(vm.id)


def import_vm(
    host: HostModel,
    path: str,
    *,
    copy: bool,
    generate_new_id: bool,
    vhd_destination: str | None = None,
    vm_path: str | None = None,
) -> VirtualMachine:
    fs = host.fs
    real = fs.to_real(path)
    if not real.is_file():
        raise PathNotFoundError(path)
    header = read_standin_header(real)
    if header is None or header.get("kind") != "vmcx":
        raise ImportFailedError(
            f"Failed to import a virtual machine. The file '{path}' is not a valid virtual machine configuration.",
            target_name=path,
            target_type="String",
        )
    original_id = uuid.UUID(str(header["vm_id"]))
    name = str(header.get("name") or ntpath.basename(ntpath.dirname(ntpath.dirname(fs.to_windows(real)))))
    export_root = ntpath.dirname(ntpath.dirname(fs.to_windows(real)))
    disks = [str(d) for d in header.get("disks") or []]  # type: ignore[attr-defined]
    sources = [fs.join(export_root, "Virtual Hard Disks", d) for d in disks]
    missing = [s for s in sources if not fs.to_real(s).is_file()]
    if missing:
        raise ImportFailedError(CONFIG_ERRORS + f" (missing: {', '.join(missing)})", target_name=path)
    new_id = uuid.uuid4() if generate_new_id else original_id
    with host.lock:
        if not generate_new_id and any(v.id == new_id for v in host.vms()):
            raise ImportFailedError(
                "Failed to import a virtual machine. The virtual machine could not be imported because a "
                f"virtual machine with the same identifier already exists. (Virtual machine ID {str(new_id).upper()})",
                target_name=path,
            )
    folder = vm_path or fs.join(host.vm_path, name)
    vhd_folder = vhd_destination or fs.join(folder, "Virtual Hard Disks")
    drives: list[HardDrive] = []
    healthy = True
    for index, source in enumerate(sources):
        src_real = fs.to_real(source)
        disk_header = read_standin_header(src_real) or {}
        if disk_header.get("kind") != "vhd":
            healthy = False  # damaged bytes: the guest will not boot from it
        target = fs.join(vhd_folder, ntpath.basename(source)) if copy else fs.to_windows(src_real)
        if copy:
            dst_real = fs.to_real(target)
            if dst_real.exists():
                raise ImportFailedError(
                    f"Failed to copy file during import: '{target}': The file exists. (0x80070050).",
                    target_name=target,
                )
            dst_real.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src_real, dst_real)
            fs.set_logical(dst_real, fs.logical_size(src_real))
        size = int(str(disk_header.get("size", fs.logical_size(src_real))))
        vhd_type = str(disk_header.get("vhd_type", "Dynamic"))
        disk = VirtualDisk(
            path=target,
            size=size,
            file_size=fs.logical_size(fs.to_real(target)),
            vhd_type=VhdType[vhd_type] if vhd_type in VhdType.__members__ else VhdType.Dynamic,
            content=str(disk_header.get("content", "")) or f"damaged-{index}",
        )
        drives.append(HardDrive(disk, controller_location=index))
    vm = VirtualMachine(
        id=new_id,
        name=name,
        state=VMState.Off,
        guest_os="linux" if header.get("guest") == "linux" else "windows",
        guest_heartbeat=healthy,
        generation=int(str(header.get("generation", 2))),
        memory_startup=int(str(header.get("memory", 4 * 1024**3))),
        path=folder,
        snapshot_path=folder,
        creation_time=host.clock.now(),
        hard_drives=drives,
    )
    host.add_vm(vm, allow_duplicate_name=True)
    if copy:
        fs.write_standin(
            fs.join(folder, "Virtual Machines", f"{str(new_id).upper()}.vmcx"),
            {**header, "vm_id": str(new_id).upper()},
            64 * 1024,
        )
    return vm
