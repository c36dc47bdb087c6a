"""The progress line of a long export, when it is due, and what it counts against. Pure: no host."""

from __future__ import annotations

import pytest

from airflow_hyperv.hyperv.enums import VhdType
from airflow_hyperv.hyperv.progress import (
    GiB,
    OutputProgress,
    ProgressPacer,
    expected_export_bytes,
    format_duration,
    progress_line,
)
from airflow_hyperv.hyperv.records import DiskChain, HardDiskDrive, VirtualDisk
from airflow_hyperv.hyperv.waits import WaitFor, WaitTarget


def chain(*disks: tuple[VhdType, int, int]) -> DiskChain:
    """A drive's chain, top first: (type, virtual size, file size) per disk."""
    return DiskChain(
        drive=HardDiskDrive(vm_id=None, controller_type="SCSI", controller_number=0, controller_location=0,
                            path=f"D:\\vm\\d{len(disks)}.vhdx"),
        disks=[VirtualDisk(path=f"D:\\vm\\{i}.vhdx", vhd_type=t, parent_path=None, size=s, file_size=f)
               for i, (t, s, f) in enumerate(disks)],
    )  # fmt: skip


def test_the_line_says_gib_percent_and_elapsed_time():
    line = progress_line("sql-01", int(12.5 * GiB), 40 * GiB, 200)
    assert line == "Export of sql-01: 12.5 of 40.0 GiB (31 %), 3m20s elapsed"
    assert progress_line("sql-01", 0, 40 * GiB, 5) == "Export of sql-01: 0.0 of 40.0 GiB (0 %), 5s elapsed"
    # More than the disks hold (a saved memory state): no percentage above 100.
    over = progress_line("sql-01", 45 * GiB, 40 * GiB, 7260)
    assert "45.0 GiB written, more than the 40.0 GiB" in over and "%" not in over and "2h01m elapsed" in over
    unread = progress_line("sql-01", None, 40 * GiB, 61, unknown="TransientTransportError: reset")
    assert unread == (
        "Export of sql-01: still running, 1m01s elapsed (bytes written not known: TransientTransportError: reset)"
    )
    assert progress_line("vm", GiB, 0, 1) == "Export of vm: 1.0 GiB written, 1s elapsed"


def test_durations():
    assert [format_duration(s) for s in (-1, 0, 59.9, 60, 3599, 3600, 86400)] == [
        "0s", "0s", "59s", "1m00s", "59m59s", "1h00m", "24h00m",
    ]  # fmt: skip


def test_the_first_line_is_due_at_once_then_at_most_every_interval():
    pacer = ProgressPacer(60)
    assert [pacer.due(t) for t in (100.0, 101.0, 159.9, 160.0, 170.0, 219.9, 220.0)] == [
        True, False, False, True, False, False, True,
    ]  # fmt: skip
    every = ProgressPacer(0)
    assert all(every.due(t) for t in (1.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="0 or more"):
        ProgressPacer(-1)


def test_the_expected_size_is_the_checkpoints_disks_flattened():
    fixed = chain((VhdType.Fixed, 40 * GiB, 40 * GiB + 4096))
    dynamic = chain((VhdType.Differencing, 30 * GiB, 2 * GiB), (VhdType.Dynamic, 30 * GiB, 6 * GiB))
    full = chain((VhdType.Differencing, 10 * GiB, 8 * GiB), (VhdType.Dynamic, 10 * GiB, 9 * GiB))
    assert expected_export_bytes([fixed]) == 40 * GiB + 4096  # copied whole
    assert expected_export_bytes([dynamic]) == 8 * GiB  # the chain's data
    assert expected_export_bytes([full]) == 10 * GiB  # never more than the virtual size
    assert expected_export_bytes([fixed, dynamic, DiskChain(drive=fixed.drive)]) == 48 * GiB + 4096


def test_the_watched_folder_travels_in_the_wait_target():
    watch = OutputProgress("D:\\Backups\\hv-01\\x\\.staging-1", 40 * GiB, "sql-01")
    target = WaitTarget(
        WaitFor.OPERATION_DONE, "a", operation={"shell_id": "s", "command_id": "c"}, progress=watch
    )
    assert WaitTarget.from_dict(target.to_dict()) == target
    old = {k: v for k, v in target.to_dict().items() if k != "progress"}  # a trigger serialized before
    assert WaitTarget.from_dict(old).progress is None


def test_asking_whether_a_line_is_due_does_not_count_it_as_logged():
    pacer = ProgressPacer(60)
    assert pacer.is_due(100.0) and pacer.is_due(100.0)  # asking twice changes nothing
    assert pacer.due(100.0)  # logging it does
    assert not pacer.is_due(130.0)
    assert pacer.is_due(160.0)
