"""HyperVCommandHost driven directly: binding, aliases, pipelines, hostile names, errors, serialisation."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from psrpcore.types import PSObject, serialize

from hyperv_emulator.api import command_hosts
from hyperv_emulator.cmdlets import AuditLog, HyperVCommandHost
from hyperv_emulator.faults import FaultPlan
from hyperv_emulator.host_runtime import (
    BoundParameter,
    CommandInvocation,
    ErrorSpec,
    PipelineContext,
    TerminatingError,
)
from hyperv_emulator.model import Fleet, ManualClock


class Sink:
    def __init__(self) -> None:
        self.output: list[Any] = []
        self.errors: list[ErrorSpec] = []
        self.warnings: list[str] = []

    def write_output(self, obj: Any) -> None:
        self.output.append(obj)

    def write_error(self, error: ErrorSpec, target_object: Any = None) -> None:
        self.errors.append(error)

    def write_warning(self, message: str) -> None:
        self.warnings.append(message)

    def write_verbose(self, message: str) -> None:
        pass


def cmd(name: str, *params: tuple[str | None, Any], script: bool = False) -> CommandInvocation:
    return CommandInvocation(name, script, tuple(BoundParameter(n, v) for n, v in params))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Any]:
    clock, audit = ManualClock(), AuditLog()
    fleet = Fleet.load(
        {
            "hosts": [
                {
                    "name": "hv-c",
                    "volumes": {"C": {"capacity_gb": 300}, "D": {"capacity_gb": 300}},
                    "vms": [
                        {"name": "sql-01"},
                        {"name": "sql-02"},
                        {"name": "x'; Remove-VM *"},
                        {"name": "lx", "guest": "linux", "vss": False},
                        {"name": "off", "state": "Off"},
                    ],
                }
            ]
        },
        root_dir=tmp_path,
        clock=clock,
        faults=FaultPlan(),
    )
    host = command_hosts(fleet, audit=audit)["hv-c"]
    return {"host": host, "model": fleet.hosts["hv-c"], "clock": clock, "audit": audit}


def run(host: HyperVCommandHost, *commands: CommandInvocation) -> Sink:
    sink = Sink()
    host.run([tuple(commands)], sink, PipelineContext("hv-c", "CORP\\backup", uuid.uuid4(), uuid.uuid4()))
    return sink


def vm_id(env: dict[str, Any], name: str) -> str:
    return str(env["model"].find_vms(name)[0].id)


def test_get_vm_serialises_real_types_and_enums(env: dict[str, Any]) -> None:
    out = run(env["host"], cmd("Get-VM", ("Name", "sql-01"))).output
    assert len(out) == 1
    vm = out[0]
    assert isinstance(vm, PSObject)
    assert vm.PSTypeNames[0] == "Microsoft.HyperV.PowerShell.VirtualMachine"
    xml = serialize(vm, None)
    text = __import__("xml.etree.ElementTree", fromlist=["tostring"]).tostring(xml).decode()
    assert "<T>Microsoft.HyperV.PowerShell.VMState</T>" in text and "<ToString>Running</ToString>" in text
    assert int(vm.State) == 2 and int(vm.CheckpointType) == 3
    assert vm.Status == "Operating normally" and str(vm.Id) == vm_id(env, "sql-01") == str(vm.VMId)


def test_parameter_aliases_prefixes_and_case(env: dict[str, Any]) -> None:
    h = env["host"]
    assert len(run(h, cmd("get-vm", ("vmname", "SQL-01"))).output) == 1
    assert len(run(h, cmd("Get-VM", ("Na", "sql-0*"))).output) == 2  # unambiguous prefix
    assert len(run(h, cmd("Get-VM", (None, "sql-02"))).output) == 1  # positional
    with pytest.raises(TerminatingError) as info:
        run(h, cmd("Get-VM", ("Bogus", "x")))
    assert (
        info.value.error.fully_qualified_error_id
        == "NamedParameterNotFound,Microsoft.HyperV.PowerShell.Commands.GetVM"
    )
    assert info.value.error.exception_type == "System.Management.Automation.ParameterBindingException"
    assert info.value.error.category == "InvalidArgument"
    with pytest.raises(TerminatingError) as info:
        run(h, cmd("Checkpoint-VM", ("Name", "sql-01"), ("C", "x")))  # CheckpointName / Confirm / ...
    assert info.value.error.fully_qualified_error_id.startswith("AmbiguousParameter,")
    with pytest.raises(TerminatingError) as info:
        run(h, cmd("Set-VM", ("Name", "sql-01"), ("CheckpointType", "Prod")))
    assert info.value.error.fully_qualified_error_id.startswith("CannotConvertArgumentNoMessage,")


def test_checkpoint_by_id_through_the_pipeline(env: dict[str, Any]) -> None:
    h = env["host"]
    out = run(
        h,
        cmd("Get-VM", ("Id", vm_id(env, "sql-01"))),
        cmd("Checkpoint-VM", ("CheckpointName", "nightly"), ("Passthru", None)),
    ).output
    assert [o.Name for o in out] == ["nightly"]
    snap = out[0]
    assert snap.PSTypeNames[0] == "Microsoft.HyperV.PowerShell.VMSnapshot"
    assert int(snap.SnapshotType) == 0 and int(snap.State) == 3  # production: Off
    listed = run(h, cmd("Get-VMCheckpoint", ("VMName", "sql-01"))).output
    assert [str(s.Id) for s in listed] == [str(snap.Id)]
    entry = env["audit"].entries(cmdlet="Checkpoint-VM")[-1]
    assert entry.targets[0] == vm_id(env, "sql-01") and entry.parameters["VM"].startswith("VirtualMachine(")
    assert entry.user == "CORP\\backup" and entry.outcome == "ok"


def test_switch_values_none_true_false(env: dict[str, Any]) -> None:
    h = env["host"]
    out = run(h, cmd("Checkpoint-VM", ("Name", "sql-02"), ("SnapshotName", "a"), ("Passthru", False))).output
    assert out == []
    out = run(h, cmd("Checkpoint-VM", ("Name", "sql-02"), ("SnapshotName", "b"), ("Passthru", True))).output
    assert [o.Name for o in out] == ["b"]


def test_remove_by_snapshot_id_pipeline_and_merge_status(env: dict[str, Any]) -> None:
    h = env["host"]
    snap = run(h, cmd("Checkpoint-VM", ("Name", "sql-01"), ("SnapshotName", "s"), ("Passthru", None))).output[
        0
    ]
    sink = run(h, cmd("Get-VMSnapshot", ("Id", str(snap.Id))), cmd("Remove-VMSnapshot"))
    assert sink.errors == []
    assert run(h, cmd("Get-VM", ("Name", "sql-01"))).output[0].Status == "Merging disks"
    path = run(h, cmd("Get-VMHardDiskDrive", ("VMName", "sql-01"))).output[0].Path
    assert path.endswith(".avhdx")
    env["clock"].advance(3600)
    assert run(h, cmd("Get-VM", ("Name", "sql-01"))).output[0].Status == "Operating normally"
    drive = run(h, cmd("Get-VMHardDiskDrive", ("VMName", "sql-01"))).output[0]
    assert drive.PSTypeNames[0] == "Microsoft.HyperV.PowerShell.HardDiskDrive" and drive.Path.endswith(
        ".vhdx"
    )
    vhd = run(h, cmd("Get-VHD", ("Path", drive.Path))).output[0]
    assert vhd.PSTypeNames[0] == "Microsoft.Vhd.PowerShell.VirtualHardDisk" and vhd.ParentPath is None
    assert int(vhd.VhdType) == 3


def test_hostile_name_is_only_a_pattern(env: dict[str, Any]) -> None:
    h = env["host"]
    hostile = "x'; Remove-VM *"
    out = run(h, cmd("Checkpoint-VM", ("Name", hostile), ("SnapshotName", "h"), ("Passthru", None))).output
    assert [o.VMName for o in out] == [hostile]
    entry = env["audit"].entries(cmdlet="Checkpoint-VM")[-1]
    others = {vm_id(env, n) for n in ("sql-01", "sql-02", "lx", "off")}
    assert not others & set(entry.targets)
    for name in ("sql-01", "sql-02", "lx", "off"):
        assert run(h, cmd("Get-VMSnapshot", ("VMName", name))).output == []
    # a literal name that matches nothing is an ObjectNotFound error, not an action on anything
    sink = run(h, cmd("Checkpoint-VM", ("Name", "nope'; Stop-VM *")))
    assert [e.fully_qualified_error_id for e in sink.errors] == [
        "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.CheckpointVM"
    ]
    assert env["audit"].entries(cmdlet="Stop-VM") == []


def test_star_matches_per_wildcard_rules(env: dict[str, Any]) -> None:
    names = sorted(o.Name for o in run(env["host"], cmd("Get-VM", ("Name", "*"))).output)
    assert names == sorted(["sql-01", "sql-02", "x'; Remove-VM *", "lx", "off"])
    # escaped, the pattern is the literal hostile name and matches only that VM
    assert [o.Name for o in run(env["host"], cmd("Get-VM", ("Name", "x'; Remove-VM `*"))).output] == [
        "x'; Remove-VM *"
    ]


def test_snapshot_name_filter_matching_nothing_is_object_not_found(env: dict[str, Any]) -> None:
    sink = run(env["host"], cmd("Get-VMSnapshot", ("VMName", "sql-01"), ("Name", "missing*")))
    assert sink.output == []
    err = sink.errors[0]
    assert err.fully_qualified_error_id == "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.GetVMSnapshot"
    assert err.category == "ObjectNotFound" and err.activity == "Get-VMSnapshot"
    with pytest.raises(TerminatingError):
        run(
            env["host"],
            cmd("Get-VMSnapshot", ("VMName", "sql-01"), ("Name", "missing"), ("ErrorAction", "Stop")),
        )


def test_production_only_error_and_silent_fallback(env: dict[str, Any]) -> None:
    h = env["host"]
    out = run(
        h, cmd("Checkpoint-VM", ("Name", "lx"), ("SnapshotName", "fallback"), ("Passthru", None))
    ).output
    assert int(out[0].State) == 6  # Saved: it silently became a standard checkpoint
    run(h, cmd("Set-VM", ("Name", "lx"), ("CheckpointType", "ProductionOnly")))
    sink = run(h, cmd("Checkpoint-VM", ("Name", "lx"), ("SnapshotName", "strict")))
    assert (
        sink.errors[0].fully_qualified_error_id
        == "OperationFailed,Microsoft.HyperV.PowerShell.Commands.CheckpointVM"
    )
    assert "Production checkpoints cannot be created" in sink.errors[0].message
    vss = run(h, cmd("Get-VMIntegrationService", ("VMName", "lx"), ("Name", "VSS"))).output[0]
    assert vss.PSTypeNames[0] == "Microsoft.HyperV.PowerShell.VMIntegrationComponent"
    assert int(vss.PrimaryOperationalStatus) == 12  # NoContact


def test_unknown_cmdlet_and_scripts_are_refused(env: dict[str, Any]) -> None:
    with pytest.raises(TerminatingError) as info:
        run(env["host"], cmd("Remove-VMSwitch", ("Name", "*")))
    err = info.value.error
    assert err.fully_qualified_error_id == "CommandNotFoundException" and err.category == "ObjectNotFound"
    assert err.exception_type == "System.Management.Automation.CommandNotFoundException"
    assert "The term 'Remove-VMSwitch' is not recognized" in err.message
    with pytest.raises(TerminatingError) as info:
        run(env["host"], cmd("Get-VM | Remove-VM", script=True))
    assert info.value.error.fully_qualified_error_id == "ScriptsNotAllowed"
    assert info.value.error.exception_type == "System.Management.Automation.ParseException"
    assert len(run(env["host"], cmd("Get-VM")).output) == 5  # nothing was removed


def test_unknown_command_later_in_pipeline_runs_nothing(env: dict[str, Any]) -> None:
    with pytest.raises(TerminatingError):
        run(env["host"], cmd("Checkpoint-VM", ("Name", "sql-01"), ("SnapshotName", "z")), cmd("Nope-VM"))
    assert run(env["host"], cmd("Get-VMSnapshot", ("VMName", "sql-01"))).output == []


def test_restore_needs_confirm_false(env: dict[str, Any]) -> None:
    h = env["host"]
    run(h, cmd("Checkpoint-VM", ("Name", "sql-01"), ("SnapshotName", "r")))
    sink = run(h, cmd("Restore-VMSnapshot", ("VMName", "sql-01"), ("Name", "r")))
    assert sink.errors[0].fully_qualified_error_id.startswith("HostFunctionNotImplemented,")
    sink = run(h, cmd("Restore-VMCheckpoint", ("VMName", "sql-01"), ("Name", "r"), ("Confirm", False)))
    assert sink.errors == []
    assert int(run(h, cmd("Get-VM", ("Name", "sql-01"))).output[0].State) == 3  # production restore -> Off


def test_deserialized_objects_cannot_bind_to_vm(env: dict[str, Any]) -> None:
    obj = run(env["host"], cmd("Get-VM", ("Name", "sql-01"))).output[0]
    with pytest.raises(TerminatingError) as info:
        run(env["host"], cmd("Checkpoint-VM", ("VM", obj)))
    assert info.value.error.fully_qualified_error_id.startswith("CannotConvertArgumentNoMessage,")


def test_input_not_bound_when_parameter_already_given(env: dict[str, Any]) -> None:
    sink = run(
        env["host"],
        cmd("Get-VM", ("Name", "sql-01")),
        cmd("Checkpoint-VM", ("Name", "sql-02"), ("SnapshotName", "n"), ("Passthru", None)),
    )
    assert sink.output == []
    assert (
        sink.errors[0].fully_qualified_error_id
        == "InputObjectNotBound,Microsoft.HyperV.PowerShell.Commands.CheckpointVM"
    )
    assert run(env["host"], cmd("Get-VMSnapshot", ("VMName", "sql-0*"))).output == []


def test_export_and_file_cmdlets(env: dict[str, Any]) -> None:
    h = env["host"]
    run(h, cmd("Checkpoint-VM", ("Name", "sql-02"), ("SnapshotName", "e")))
    assert (
        run(h, cmd("New-Item", ("ItemType", "Directory"), ("Path", "D:\\Backups\\run")))
        .output[0]
        .PSTypeNames[0]
        == "System.IO.DirectoryInfo"
    )
    snap = run(h, cmd("Get-VMSnapshot", ("VMName", "sql-02"), ("Name", "e"))).output
    sink = run(
        h,
        cmd("Get-VMSnapshot", ("Id", str(snap[0].Id))),
        cmd("Export-VMSnapshot", ("Path", "D:\\Backups\\run"), ("Passthru", None)),
    )
    assert sink.errors == [] and sink.output[0].Name == "e"
    files = run(
        h, cmd("Get-ChildItem", ("LiteralPath", "D:\\Backups\\run"), ("Recurse", None), ("File", None))
    ).output
    assert {f.PSTypeNames[0] for f in files} == {"System.IO.FileInfo"}
    vhdx = next(f for f in files if f.Name == "sql-02.vhdx")
    assert vhdx.Length == 10 * 1024**3
    digest = run(h, cmd("Get-FileHash", ("LiteralPath", vhdx.FullName), ("Algorithm", "SHA256"))).output[0]
    assert len(digest.Hash) == 64 and digest.Algorithm == "SHA256"
    assert run(h, cmd("Test-Path", ("LiteralPath", vhdx.FullName))).output == [True]
    assert run(h, cmd("Test-Path", ("LiteralPath", "D:\\nope"))).output == [False]
    drive = run(h, cmd("Get-PSDrive", ("Name", "D"), ("PSProvider", "FileSystem"))).output[0]
    assert drive.Used >= 10 * 1024**3 and drive.Free + drive.Used == 300 * 1024**3
    run(h, cmd("Move-Item", ("LiteralPath", "D:\\Backups\\run"), ("Destination", "D:\\Backups\\done")))
    assert run(h, cmd("Test-Path", ("LiteralPath", "D:\\Backups\\done\\sql-02"))).output == [True]
    run(h, cmd("Remove-Item", ("LiteralPath", "D:\\Backups\\done"), ("Recurse", None)))
    assert run(h, cmd("Test-Path", ("LiteralPath", "D:\\Backups\\done"))).output == [False]
    sink = run(h, cmd("Get-ChildItem", ("LiteralPath", "D:\\nope")))
    assert (
        sink.errors[0].fully_qualified_error_id
        == "PathNotFound,Microsoft.PowerShell.Commands.GetChildItemCommand"
    )


def test_vm_disks_cannot_be_deleted_by_hand(env: dict[str, Any]) -> None:
    h = env["host"]
    path = run(h, cmd("Get-VMHardDiskDrive", ("VMName", "sql-01"))).output[0].Path
    sink = run(h, cmd("Remove-Item", ("LiteralPath", path)))
    assert sink.errors and sink.errors[0].exception_type == "System.IO.IOException"
    assert run(h, cmd("Test-Path", ("LiteralPath", path))).output == [True]


def test_stop_start_and_host(env: dict[str, Any]) -> None:
    h = env["host"]
    run(h, cmd("Stop-VM", ("Name", "sql-01"), ("TurnOff", None)))
    assert int(run(h, cmd("Get-VM", ("Name", "sql-01"))).output[0].State) == 3
    sink = run(h, cmd("Stop-VM", ("Name", "sql-01"), ("Force", None)))
    assert sink.warnings
    run(h, cmd("Start-VM", ("Name", "sql-01")))
    assert int(run(h, cmd("Get-VM", ("Name", "sql-01"))).output[0].State) == 2
    host = run(h, cmd("Get-VMHost")).output[0]
    assert host.PSTypeNames[0] == "Microsoft.HyperV.PowerShell.VMHost" and host.Name == "hv-c"
