"""Volumes mounted on folders (a CSV, a mount point) and Get-Volume, driven directly."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from hyperv_emulator.cmdlets import AuditLog, HyperVCommandHost
from hyperv_emulator.faults import FaultPlan
from hyperv_emulator.host_runtime import BoundParameter, CommandInvocation, ErrorSpec, PipelineContext
from hyperv_emulator.model import Fleet, ManualClock
from hyperv_emulator.model.fleet import FleetError

GiB = 1 << 30
CSV = "C:\\ClusterStorage\\Volume1"


class Sink:
    def __init__(self) -> None:
        self.output: list[Any] = []
        self.errors: list[ErrorSpec] = []

    def write_output(self, obj: Any) -> None:
        self.output.append(obj)

    def write_error(self, error: ErrorSpec, target_object: Any = None) -> None:
        self.errors.append(error)

    def write_warning(self, message: str) -> None:
        pass

    def write_verbose(self, message: str) -> None:
        pass


def load(tmp_path: Path, **host: Any) -> Fleet:
    return Fleet.load(
        {"hosts": [{"name": "hv-v", **host}]}, root_dir=tmp_path, clock=ManualClock(), faults=FaultPlan()
    )


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return load(
        tmp_path,
        volumes={
            "C": {"capacity_gb": 100, "used_gb": 90},
            "D": {"capacity_gb": 500},
            CSV: {"capacity_gb": 1000, "used_gb": 100, "label": "CSV1"},
            "D:\\Mounts\\Fast": {"capacity_gb": 50, "file_system": "ReFS"},
        },
        vms=[{"name": "on-csv", "path": f"{CSV}\\on-csv", "disks": [{"size_gb": 40, "file_gb": 10}]}],
    )


def get_volume(fleet: Fleet, *params: tuple[str, Any]) -> Sink:
    host = HyperVCommandHost(fleet.hosts["hv-v"], audit=AuditLog())
    sink = Sink()
    invocation = CommandInvocation("Get-Volume", False, tuple(BoundParameter(n, v) for n, v in params))
    host.run([(invocation,)], sink, PipelineContext("hv-v", "u", uuid.uuid4(), uuid.uuid4()))
    return sink


def test_a_mounted_volume_owns_the_files_under_its_folder(fleet: Fleet) -> None:
    fs = fleet.hosts["hv-v"].fs
    csv = fs.volume_for(f"{CSV}\\on-csv\\Virtual Hard Disks\\on-csv.vhdx")
    assert csv.mount_point == CSV and csv.file_system == "CSVFS"  # a CSV folder defaults to CSVFS
    assert fs.used(csv) == 110 * GiB  # used_gb + the VM's 10 GB disk
    assert fs.used("C") == 90 * GiB  # C: does not count what lives on the CSV
    assert fs.volume_for("c:\\clusterstorage\\volume10\\x").letter == "C"  # a prefix is not a mount point
    fs.write_standin("D:\\Mounts\\Fast\\a.bin", {"kind": "x"}, 5 * GiB)
    assert fs.free(fs.volume_for("D:\\Mounts\\Fast")) == 45 * GiB and fs.used("D") == 0


def test_get_volume_by_file_path_answers_the_volume_that_holds_it(fleet: Fleet) -> None:
    out = get_volume(fleet, ("FilePath", f"{CSV}\\on-csv")).output
    assert len(out) == 1
    vol = out[0]
    assert (
        vol.PSTypeNames[0]
        == "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Storage/MSFT_Volume"
    )
    assert vol.DriveLetter is None and vol.FileSystem == "CSVFS" and vol.FileSystemLabel == "CSV1"
    assert int(vol.Size) == 1000 * GiB and int(vol.SizeRemaining) == 890 * GiB
    assert str(vol.Path).startswith("\\\\?\\Volume{")
    c = get_volume(fleet, ("DriveLetter", "C")).output[0]
    assert int(c.DriveLetter) == ord("C") and int(c.SizeRemaining) == 10 * GiB
    assert len(get_volume(fleet).output) == 4  # every volume, mounted ones included


def test_get_volume_that_finds_nothing_writes_the_cdxml_not_found_error(fleet: Fleet) -> None:
    sink = get_volume(fleet, ("DriveLetter", "Z"))
    assert not sink.output
    error = sink.errors[0]
    assert error.message == (
        "No MSFT_Volume objects found with property 'DriveLetter' equal to 'Z'.  Verify the value of the "
        "property and retry."
    )
    assert (error.fully_qualified_error_id, error.category) == (
        "CmdletizationQuery_NotFound_DriveLetter,Get-Volume",
        "ObjectNotFound",
    )
    missing = get_volume(fleet, ("FilePath", "D:\\not\\there")).errors[0]  # *unconfirmed* on real hosts
    assert missing.fully_qualified_error_id == "CmdletizationQuery_NotFound_FilePath,Get-Volume"


def test_bad_volume_and_golden_image_entries_are_named(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="a volume key is one drive letter, or the folder"):
        load(tmp_path / "a", volumes={"C": {"capacity_gb": 1}, "CSV1": {"capacity_gb": 1}})
    with pytest.raises(FleetError, match="host has no volume E:"):
        load(tmp_path / "b", volumes={"C": {"capacity_gb": 1}, "E:\\Mounts\\x": {"capacity_gb": 1}})
    with pytest.raises(FleetError, match=r"field 'parent': .* is not one of the host's golden_images"):
        load(tmp_path / "c", vms=[{"name": "g", "disks": [{"parent": "C:\\Golden\\none.vhdx"}]}])
