"""Virtual hard disks and their differencing chain.

Each checkpoint adds one AVHDX per hard drive, named like real hosts do: ``<disk>_<CHECKPOINT-GUID>.avhdx``
next to the parent (VirtualEngine/Lability issue captures). ``content`` is a cumulative token for
"what the guest sees through this disk": merging a child into its parent keeps the token, so an export
of the same checkpoint is byte-identical before and after unrelated merges.
"""

from __future__ import annotations

import hashlib
import ntpath
import uuid
from dataclasses import dataclass, field

from hyperv_emulator.model.enums import VhdFormat, VhdType

MiB = 1024 * 1024
GiB = 1024 * MiB


def derive_content(parent_content: str, salt: str) -> str:
    return hashlib.sha256(f"{parent_content}|{salt}".encode()).hexdigest()[:32]


@dataclass(eq=False)
class VirtualDisk:
    """One VHDX/AVHDX file. ``file_size`` is the logical bytes it occupies; ``size`` the virtual size."""

    path: str
    size: int
    file_size: int
    vhd_type: VhdType = VhdType.Dynamic
    parent: VirtualDisk | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    content: str = ""
    merge_blocked: bool = False  # a failed merge left its child orphaned; the host never retries it
    # A shared parent (golden image) that VMs' own differencing .vhdx disks are built on: a VM with no
    # checkpoint runs on a differencing disk, and the host never merges anything into this one.
    golden: bool = False

    @property
    def vhd_format(self) -> VhdFormat:
        return VhdFormat.VHD if self.path.lower().endswith((".vhd", ".avhd")) else VhdFormat.VHDX

    @property
    def parent_path(self) -> str:
        return self.parent.path if self.parent is not None else ""

    def chain(self) -> list[VirtualDisk]:
        """This disk, its parent, … down to the base disk."""
        out: list[VirtualDisk] = []
        disk: VirtualDisk | None = self
        while disk is not None:
            out.append(disk)
            disk = disk.parent
        return out

    @property
    def depth(self) -> int:
        """Number of differencing levels above the base disk (0 = running on the base VHDX)."""
        return len(self.chain()) - 1

    def base(self) -> VirtualDisk:
        return self.chain()[-1]

    def header(self) -> dict[str, object]:
        """What the real stand-in file records, so Get-VHD works on files the model did not create."""
        return {
            "kind": "vhd",
            "format": self.vhd_format.name,
            "vhd_type": self.vhd_type.name,
            "size": self.size,
            "file_size": self.file_size,
            "parent": self.parent_path,
            "disk_id": str(self.id).upper(),
            "content": self.content,
        }


def avhdx_path(parent: VirtualDisk, checkpoint_id: uuid.UUID) -> str:
    """``<folder>\\<base name>_<GUID>.avhdx`` beside the base disk."""
    base = parent.base()
    folder, name = ntpath.split(base.path)
    stem = ntpath.splitext(name)[0]
    ext = ".avhd" if base.vhd_format is VhdFormat.VHD else ".avhdx"
    return f"{folder}\\{stem}_{str(checkpoint_id).upper()}{ext}"


def flattened_header(disk: VirtualDisk) -> dict[str, object]:
    """Header of a flattened (exported) copy of ``disk``: no parent, the chain's content, stable bytes."""
    base = disk.base()
    return {
        "kind": "vhd",
        "format": base.vhd_format.name,
        "vhd_type": (VhdType.Fixed if base.vhd_type is VhdType.Fixed else VhdType.Dynamic).name,
        "size": base.size,
        "file_size": flattened_size(disk),
        "parent": "",
        "content": disk.content,
    }


def flattened_size(disk: VirtualDisk) -> int:
    """Bytes of a flattened copy: the chain's data, never more than the virtual size (fixed = size)."""
    base = disk.base()
    if base.vhd_type is VhdType.Fixed:
        return base.size
    return min(base.size, sum(d.file_size for d in disk.chain()))
