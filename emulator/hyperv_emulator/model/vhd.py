"""Get-VHD: what a host reports for a virtual hard disk path, a VM's disk or a stand-in file."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hyperv_emulator.model.enums import VhdType
from hyperv_emulator.model.errors import VhdNotFoundError
from hyperv_emulator.model.merging import disk_tree
from hyperv_emulator.model.paths import read_standin_header

if TYPE_CHECKING:
    from hyperv_emulator.model.host import HostModel


@dataclass(frozen=True)
class VhdInfo:
    """What Get-VHD reports for a path: the model's disk, or a stand-in VHD file found on a volume."""

    path: str
    vhd_type: VhdType
    format_name: str
    size: int
    file_size: int
    parent_path: str
    disk_id: str
    attached: bool


def vhd_info(host: HostModel, path: str) -> VhdInfo:
    """Get-VHD: a disk of a VM (attached), or a stand-in VHD file anywhere on the host's volumes."""
    with host.lock:
        wanted = host.fs.normalize(path).lower()
        for vm in host.vms():  # settles first
            for disk in disk_tree(vm)[0]:
                if disk.path.lower() == wanted:
                    current = any(d.disk is disk for d in vm.hard_drives)
                    return VhdInfo(
                        disk.path,
                        disk.vhd_type,
                        disk.vhd_format.name,
                        disk.size,
                        disk.file_size,
                        disk.parent_path,
                        str(disk.id).upper(),
                        current,
                    )
        real = host.fs.to_real(path)
        header = read_standin_header(real) if real.is_file() else None
        if header is None or header.get("kind") != "vhd":
            raise VhdNotFoundError(path)
        return VhdInfo(
            host.fs.to_windows(real),
            VhdType[str(header["vhd_type"])],
            str(header["format"]),
            int(str(header["size"])),
            host.fs.logical_size(real),
            str(header.get("parent", "")),
            str(header.get("disk_id", "")) or str(uuid.uuid5(uuid.NAMESPACE_URL, str(real))).upper(),
            False,
        )
