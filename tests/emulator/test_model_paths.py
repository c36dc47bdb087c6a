"""Wildcards, Windows path mapping (never escaping the host root) and fleet validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperv_emulator.api import command_hosts
from hyperv_emulator.faults import FaultPlan
from hyperv_emulator.model import Fleet, FleetError, ManualClock
from hyperv_emulator.model.errors import DriveNotFoundError, InvalidPathError, WildcardPatternError
from hyperv_emulator.model.paths import HostFileSystem, Volume
from hyperv_emulator.model.wildcard import has_wildcards, matches, unescape

EXAMPLE = Path(__file__).resolve().parents[2] / "emulator" / "hyperv_emulator" / "fleets" / "example.yaml"


@pytest.mark.parametrize(
    ("pattern", "text", "ok"),
    [
        ("sql-*", "SQL-01", True),
        ("sql-0?", "sql-01", True),
        ("sql-0?", "sql-011", False),
        ("sql-0[12]", "sql-02", True),
        ("sql-0[a-c]", "sql-0B", True),
        ("sql-0[a-c]", "sql-0d", False),
        ("x`*", "x*", True),
        ("x`*", "xy", False),
        ("x'; Remove-VM *", "x'; Remove-VM anything", True),
        ("x'; Remove-VM *", "sql-01", False),
        ("*", "anything", True),
        ("a.b", "aXb", False),
    ],
)
def test_wildcards(pattern: str, text: str, ok: bool) -> None:
    assert matches(pattern, text) is ok


def test_wildcard_helpers() -> None:
    assert (
        has_wildcards("a*")
        and has_wildcards("[ab]")
        and not has_wildcards("a`*b")
        and not has_wildcards("abc")
    )
    assert unescape("a`*b") == "a*b"
    with pytest.raises(WildcardPatternError):
        matches("a[", "a[")


@pytest.fixture
def fs(tmp_path: Path) -> HostFileSystem:
    return HostFileSystem(tmp_path / "hv", {"C": Volume("C", 10**12), "D": Volume("D", 10**12)})


def test_paths_map_case_insensitively(fs: HostFileSystem) -> None:
    real = fs.mkdir("C:\\Hyper-V\\VM1\\Virtual Hard Disks")
    assert real == fs.root / "C" / "Hyper-V" / "VM1" / "Virtual Hard Disks"
    assert fs.to_real("c:/hyper-v/vm1/virtual hard disks") == real
    assert fs.normalize("C:\\HYPER-V\\vm1") == "C:\\Hyper-V\\VM1"
    assert fs.normalize("Microsoft.PowerShell.Core\\FileSystem::D:\\x") == "D:\\x"


@pytest.mark.parametrize(
    "hostile", ["C:\\..\\..\\..\\etc", "C:\\a\\..\\..\\..\\..", "D:\\..\\..\\C\\x\\..\\..\\.."]
)
def test_dotdot_never_leaves_the_drive(fs: HostFileSystem, hostile: str) -> None:
    real = fs.to_real(hostile)
    assert fs.root.resolve() in real.resolve().parents or real.resolve() == fs.root.resolve()
    assert real.resolve().relative_to(fs.root.resolve()).parts[0] == hostile[0]


@pytest.mark.parametrize("bad", ["\\\\server\\share\\x", "C:\\a\\b*c", "C:\\a<b", "C:\\a\\b:c"])
def test_invalid_paths_are_refused(fs: HostFileSystem, bad: str) -> None:
    with pytest.raises(InvalidPathError):
        fs.to_real(bad)


def test_unknown_drive(fs: HostFileSystem) -> None:
    with pytest.raises(DriveNotFoundError):
        fs.to_real("Z:\\x")


def test_free_space_counts_logical_sizes(fs: HostFileSystem) -> None:
    before = fs.free("D")
    fs.write_standin("D:\\x\\big.vhdx", {"kind": "vhd"}, 5 * 10**9)
    assert before - fs.free("D") == 5 * 10**9
    fs.move("D:\\x\\big.vhdx", "C:\\big.vhdx")
    assert fs.free("D") == before
    fs.remove("C:\\big.vhdx")
    assert fs.used("C") == 0


def test_example_fleet_loads(tmp_path: Path) -> None:
    fleet = Fleet.load(EXAMPLE, root_dir=tmp_path, clock=ManualClock(), faults=FaultPlan())
    assert list(fleet.hosts) == ["hv-01", "hv-02"]
    assert list(command_hosts(fleet)) == ["hv-01", "hv-02"]
    assert fleet.hosts["hv-01"].find_vms("sql-01")[0].hard_drives[1].disk.size == 500 * 1024**3
    fleet.timing.merge_mb_per_s = 1.0  # knobs are shared, overridable by code
    assert fleet.hosts["hv-02"].timing.merge_mb_per_s == 1.0


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"checkpoint_type": "Prod"}, "vm 'v1': field 'checkpoint_type'"),
        ({"state": False}, "field 'state'"),
        ({"guest": "bsd"}, "field 'guest'"),
        ({"cpus": "two"}, "field 'cpus'"),
        ({"colour": "red"}, "field 'colour'"),
        ({"disks": [{"size_gb": 10, "file_gb": 20}]}, "disks[0]: field 'file_gb'"),
        ({"disks": [{"size_gb": 10, "volume": "Q"}]}, "field 'volume'"),
        ({"id": "not-a-guid"}, "field 'id'"),
    ],
)
def test_fleet_errors_name_host_vm_and_field(tmp_path: Path, patch: dict[str, object], needle: str) -> None:
    data = {"hosts": [{"name": "hv-x", "vms": [{"name": "v1", **patch}]}]}
    with pytest.raises(FleetError) as info:
        Fleet.load(data, root_dir=tmp_path, clock=ManualClock(), faults=FaultPlan())
    assert "hosts[0] 'hv-x'" in str(info.value) and needle in str(info.value)


def test_fleet_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    twin_id = "id: 3f2a7c4e-1b2d-4c5e-8f90-a1b2c3d4e5f6"
    bad.write_text(
        f"hosts:\n  - name: hv-1\n    vms:\n      - {{name: a, {twin_id}}}\n      - {{name: b, {twin_id}}}\n"
    )
    with pytest.raises(FleetError, match=r"bad\.yaml: hosts\[0\] 'hv-1' vm 'b': field 'id': duplicate"):
        Fleet.load(bad, root_dir=tmp_path / "r", clock=ManualClock(), faults=FaultPlan())
    bad.write_text("hosts: [\n")
    with pytest.raises(FleetError, match=r"bad\.yaml: not valid YAML"):
        Fleet.load(bad, root_dir=tmp_path / "r", clock=ManualClock(), faults=FaultPlan())
    with pytest.raises(FleetError, match="field 'hosts'"):
        Fleet.load({"hosts": []}, root_dir=tmp_path, clock=ManualClock(), faults=FaultPlan())
    with pytest.raises(FleetError, match="timing: field 'merge_mb_per_s'"):
        Fleet.load(
            {"timing": {"merge_mb_per_s": "fast"}, "hosts": [{"name": "h"}]},
            root_dir=tmp_path,
            clock=ManualClock(),
            faults=FaultPlan(),
        )
