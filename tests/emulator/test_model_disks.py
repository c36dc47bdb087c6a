"""Disk chains, background merges (and their failure), exports (complete and disk-full partial)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hyperv_emulator.faults import Fault, FaultPlan
from hyperv_emulator.model import Fleet, ManualClock
from hyperv_emulator.model.disk import GiB, MiB
from hyperv_emulator.model.errors import ExportExistsError, InvalidStateError, NotEnoughSpaceError
from hyperv_emulator.model.host import HostModel
from hyperv_emulator.model.paths import read_standin_header
from hyperv_emulator.model.vm import MERGING_DISKS, OPERATING_NORMALLY, VirtualMachine


def _host(
    tmp_path: Path,
    *,
    volumes: dict[str, Any] | None = None,
    faults: FaultPlan | None = None,
    churn_mb: int = 1500,
) -> tuple[HostModel, VirtualMachine, ManualClock, FaultPlan]:
    clock, faults = ManualClock(), faults or FaultPlan()
    fleet = Fleet.load(
        {
            "timing": {"merge_mb_per_s": 100, "export_mb_per_s": 1000, "checkpoint_seconds": 1},
            "hosts": [
                {
                    "name": "hv-d",
                    "volumes": volumes or {"C": {"capacity_gb": 200}, "D": {"capacity_gb": 100}},
                    "vms": [
                        {
                            "name": "db",
                            "churn_mb": churn_mb,
                            "memory_mb": 2048,
                            "disks": [{"size_gb": 40, "file_gb": 10}],
                        }
                    ],
                }
            ],
        },
        root_dir=tmp_path,
        clock=clock,
        faults=faults,
    )
    host = fleet.hosts["hv-d"]
    return host, host.find_vms("db")[0], clock, faults


def test_one_avhdx_per_checkpoint_and_chain_depth(tmp_path: Path) -> None:
    host, vm, _, _ = _host(tmp_path)
    base = vm.hard_drives[0].disk
    assert host.fs.to_real(base.path).is_file()
    cps = [host.checkpoint_vm(vm, f"c{i}") for i in range(3)]
    disk = vm.hard_drives[0].disk
    assert disk.depth == 3 and disk.base() is base
    assert all(host.fs.to_real(d.path).is_file() for d in disk.chain())
    assert [c.frozen[0] for c in cps if c] == list(reversed(disk.chain()[1:]))
    info = host.vhd_info(disk.path)
    assert info.parent_path == disk.parent_path and info.attached


def test_merge_finishes_later_with_status_merging_disks(tmp_path: Path) -> None:
    host, vm, clock, _ = _host(tmp_path)
    cp = host.checkpoint_vm(vm, "backup")
    assert cp is not None
    avhdx = vm.hard_drives[0].disk
    host.remove_snapshot(vm, cp)
    # gone from the list at once, but the host is still merging
    assert host.snapshots(vm) == []
    assert vm.status == MERGING_DISKS
    assert vm.hard_drives[0].disk is avhdx and host.fs.to_real(avhdx.path).exists()
    with pytest.raises(InvalidStateError):
        host.checkpoint_vm(vm, "during merge")
    clock.advance(1500 / 100 - 1)  # 1500 MB at 100 MB/s = 15 s
    host.settle()
    assert vm.status == MERGING_DISKS
    clock.advance(2)
    assert host.vms()[0].status == OPERATING_NORMALLY  # settles lazily on read
    disk = vm.hard_drives[0].disk
    assert disk.depth == 0 and disk.path.endswith("db.vhdx")
    assert not host.fs.to_real(avhdx.path).exists()
    assert disk.file_size == 10 * GiB + 1500 * MiB
    assert disk.content == avhdx.content  # the merged parent holds what the guest saw


def test_removing_the_middle_checkpoint_keeps_the_later_one_exportable(tmp_path: Path) -> None:
    host, vm, clock, _ = _host(tmp_path)
    c1 = host.checkpoint_vm(vm, "c1")
    c2 = host.checkpoint_vm(vm, "c2")
    assert c1 is not None and c2 is not None
    content_c2 = c2.frozen[0].content
    host.remove_snapshot(vm, c1)
    clock.advance(3600)
    host.settle()
    assert vm.hard_drives[0].disk.depth == 1
    assert c2.frozen[0].content == content_c2 and c2.frozen[0].parent is None


def test_merge_failure_leaves_orphaned_avhdx(tmp_path: Path) -> None:
    faults = FaultPlan()
    host, vm, clock, _ = _host(tmp_path, faults=faults)
    cp = host.checkpoint_vm(vm, "x")
    assert cp is not None
    faults.inject(Fault.MERGE_FAILURE, vm="db")
    avhdx = vm.hard_drives[0].disk
    host.remove_snapshot(vm, cp)
    clock.advance(3600)
    host.settle()
    assert host.snapshots(vm) == []  # the checkpoint is gone …
    assert vm.status == OPERATING_NORMALLY  # … the status is back to normal …
    assert vm.hard_drives[0].disk is avhdx and host.fs.to_real(avhdx.path).exists()  # … the AVHDX stays
    assert avhdx.depth == 1
    assert faults.count_fired(Fault.MERGE_FAILURE) == 1
    # the host never retries it on its own
    c2 = host.checkpoint_vm(vm, "y")
    assert c2 is not None
    host.remove_snapshot(vm, c2)
    clock.advance(3600)
    host.settle()
    assert vm.hard_drives[0].disk is avhdx


def test_export_writes_real_complete_files(tmp_path: Path) -> None:
    host, vm, clock, _ = _host(tmp_path)
    cp = host.checkpoint_vm(vm, "b")
    assert cp is not None
    t0 = clock.now()
    result = host.export_snapshot(vm, cp, "D:\\Backups\\run1")
    assert result is not None
    assert clock.now() - t0 >= (10 * GiB) / (1000 * MiB) - 1  # took its time at 1000 MB/s
    root = host.fs.to_real("D:\\Backups\\run1\\db")
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    uid = str(vm.id).upper()
    assert names == sorted(
        [
            "Snapshots",
            "Virtual Hard Disks",
            "Virtual Machines",
            "Virtual Hard Disks/db.vhdx",
            f"Virtual Machines/{uid}.vmcx",
            f"Virtual Machines/{uid}.vmgs",
        ]
    )
    vhdx = root / "Virtual Hard Disks" / "db.vhdx"
    header = read_standin_header(vhdx)
    assert header is not None and header["parent"] == "" and header["content"] == cp.frozen[0].content
    assert host.fs.logical_size(vhdx) == 10 * GiB
    assert host.vhd_info("D:\\Backups\\run1\\db\\Virtual Hard Disks\\db.vhdx").size == 40 * GiB
    with pytest.raises(ExportExistsError):
        host.export_snapshot(vm, cp, "D:\\Backups\\run1")


def test_an_export_writes_what_the_emulated_time_that_passed_writes(tmp_path: Path) -> None:
    """At 1000 MB/s, moving the clock on by 3 s in one jump writes 3000 MB, not one step's worth: the
    export keeps to its rate from its start (what a long export's progress lines are read from)."""
    import threading

    from tests.support.waiting import wait_for

    host, vm, clock, _ = _host(tmp_path)
    cp = host.checkpoint_vm(vm, "b")
    assert cp is not None
    clock.auto_advance = False
    done = threading.Thread(target=host.export_snapshot, args=(vm, cp, "D:\\Backups\\held"))
    done.start()
    vhdx = host.fs.to_real("D:\\Backups\\held\\db\\Virtual Hard Disks\\db.vhdx")
    try:
        wait_for(vhdx.exists, 30, what="the export's first step")
        clock.advance(3)
        # 3 s at 1000 MB/s (a step is written when it starts): one step at a time would be 2000 MB.
        wait_for(lambda: host.fs.logical_size(vhdx) >= 3000 * MiB, 30, what="3 s worth written")
        assert host.fs.logical_size(vhdx) < 10 * GiB  # and no more than that: it is still being written
    finally:
        clock.auto_advance = True
        clock.advance(3600)
        done.join(30)
    assert host.fs.logical_size(vhdx) == 10 * GiB


def test_standard_checkpoint_export_has_memory_state(tmp_path: Path) -> None:
    host, vm, _, _ = _host(tmp_path)
    vm.guest_vss = False
    cp = host.checkpoint_vm(vm, "std")
    assert cp is not None and cp.has_saved_state
    host.export_snapshot(vm, cp, "D:\\e")
    assert host.fs.to_real(f"D:\\e\\db\\Virtual Machines\\{str(vm.id).upper()}.VMRS").is_file()


def test_export_disk_full_leaves_partial_folder(tmp_path: Path) -> None:
    host, vm, _, _ = _host(tmp_path, volumes={"C": {"capacity_gb": 200}, "E": {"capacity_gb": 6}})
    cp = host.checkpoint_vm(vm, "b")
    assert cp is not None
    with pytest.raises(NotEnoughSpaceError) as info:
        host.export_snapshot(vm, cp, "E:\\Backups")
    assert "not enough space" in info.value.message
    vhdx = host.fs.to_real("E:\\Backups\\db\\Virtual Hard Disks\\db.vhdx")
    assert vhdx.is_file() and host.fs.logical_size(vhdx) < 10 * GiB
    assert read_standin_header(vhdx) is None or vhdx.stat().st_size < 4096  # truncated
    assert host.fs.free("E") == 0


def test_disk_full_fault_fails_half_way(tmp_path: Path) -> None:
    faults = FaultPlan()
    host, vm, _, _ = _host(tmp_path, faults=faults)
    cp = host.checkpoint_vm(vm, "b")
    assert cp is not None
    faults.inject(Fault.DISK_FULL_DURING_EXPORT, cmdlet="Export-VMSnapshot")
    with pytest.raises(NotEnoughSpaceError):
        host.export_snapshot(vm, cp, "D:\\Backups")
    vhdx = host.fs.to_real("D:\\Backups\\db\\Virtual Hard Disks\\db.vhdx")
    assert 0 < host.fs.logical_size(vhdx) < 10 * GiB
    assert host.fs.to_real("D:\\Backups\\db\\Virtual Machines").is_dir()  # partial export stays
