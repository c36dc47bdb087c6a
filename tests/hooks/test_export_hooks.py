"""Hook- and emulator-level pieces of export safety: an uncertain start, checkpoint drives, shares,
Windows' own path limits for generated paths."""

from __future__ import annotations

import uuid

import pytest

from airflow_hyperv.hyperv import pipelines
from airflow_hyperv.hyperv.enums import Consistency
from airflow_hyperv.hyperv.errors import InvalidInputError
from airflow_hyperv.hyperv.names import (
    MAX_GENERATED_PATH_LENGTH,
    MAX_PATH_LENGTH,
    host_path,
    require_generated_paths,
    require_host_path,
)
from hyperv_emulator.faults import Fault
from tests.support.emulated import settings_for


def test_a_start_whose_command_was_lost_names_the_operation_for_a_later_poll(emulator, hook):
    from airflow_hyperv.hooks.disconnected import StartUncertainError, poll_disconnected, start_disconnected

    vm = hook.get_vm(name="web-01")
    made = hook.create_checkpoint(
        vm.id, "airflow-hyperv 20261129T0100Z 0123456789ab", consistency=Consistency.APPLICATION
    )
    hook.make_directory("D:\\Backups\\lost")
    emulator.faults.inject(Fault.DROP_BEFORE_RUN, cmdlet="Export-VMSnapshot")
    settings = settings_for(emulator, "hv-01")
    with pytest.raises(StartUncertainError) as err:
        start_disconnected(settings, pipelines.export_checkpoint(made.checkpoint.id, "D:\\Backups\\lost"))
    assert emulator.faults.count_fired(Fault.DROP_BEFORE_RUN) == 1
    # The shell was kept (disconnected), so a poll can tell: this Command never ran.
    assert poll_disconnected(settings, err.value.operation).state == "gone"
    assert not emulator.audit.entries(cmdlet="Export-VMSnapshot")


def test_a_checkpoint_reports_its_own_drives(emulator, hook):
    vm = hook.get_vm(name="sql-01")
    made = hook.create_checkpoint(
        vm.id, "airflow-hyperv 20261129T0100Z 0123456789ab", consistency=Consistency.APPLICATION
    )
    drives = hook.checkpoint_drives(made.checkpoint.id)
    now = hook.disk_chains(vm.id)
    # The checkpoint's drives hold its state (the parents); the VM now writes to new AVHDX files.
    assert [d.path.lower().endswith(".vhdx") for d in drives] == [True, True]
    assert all(c.disks[0].path.lower().endswith(".avhdx") for c in now)
    touched = emulator.audit.touched(str(made.checkpoint.id))
    assert "Get-VMHardDiskDrive" in [e.cmdlet for e in touched]  # bound -VMSnapshot from the pipeline


def test_a_share_is_one_folder_for_every_host_with_one_size(emulator, tmp_path):
    real = tmp_path / "fileserver"
    for name in emulator.host_names:
        emulator.host(name).fs.add_share("\\\\backup01\\exports", real, 10**12)
    one, two = emulator.host("hv-01").fs, emulator.host("hv-02").fs
    path = "\\\\backup01\\exports\\hv-01\\disk.vhdx"
    one.write_standin(path, {"kind": "vhd"}, 5 * 1024**3)
    assert two.to_real(path) == one.to_real(path)
    assert two.logical_size(two.to_real(path)) == 5 * 1024**3
    assert two.normalize("\\\\BACKUP01\\Exports\\hv-01\\DISK.vhdx") == path


def test_generated_paths_are_held_to_windows_limits_not_the_user_limit():
    generated = "D:\\" + "x" * (MAX_PATH_LENGTH + 10)
    with pytest.raises(InvalidInputError):
        require_host_path(generated, "export root")  # user input: 200
    assert host_path(generated) == generated  # what the provider generated: MAX_PATH
    with pytest.raises(InvalidInputError):
        host_path("D:\\" + "x" * MAX_GENERATED_PATH_LENGTH)
    require_generated_paths({"D:\\" + "f" * 240: "folder", "D:\\" + "x" * 250: "file"})
    with pytest.raises(InvalidInputError, match=r"(?s)folder path .*\(MAX_PATH\)"):
        require_generated_paths({"D:\\" + "f" * 250: "folder"})
    with pytest.raises(InvalidInputError, match="file path"):
        require_generated_paths({"D:\\" + "x" * 260: "file"})


def test_host_folder_keeps_different_names_apart():
    from airflow_hyperv.operators.export import host_folder, vm_export_folder

    assert host_folder("HV-01") == "hv-01"
    assert host_folder("hv:01") != host_folder("hv_01") and "%3A" in host_folder("hv:01")
    vm_id = uuid.uuid4()
    assert vm_export_folder("D:\\B", "HV-01", vm_id) != vm_export_folder("D:\\B", "HV-02", vm_id)


def test_bytes_under_sums_the_logical_length_of_every_file_below_a_folder(emulator, hook):
    fs = emulator.host("hv-01").fs
    fs.write_standin("D:\\Backups\\sizes\\a\\disk.vhdx", {"kind": "vhdx"}, 40 * 2**30, fraction=0.25)
    fs.write_standin("D:\\Backups\\sizes\\b.vmcx", {"kind": "vmcx"}, 64 * 1024)
    fs.write_standin("D:\\Backups\\elsewhere.vhdx", {"kind": "vhdx"}, 2**30)  # not under the folder
    # Get-ChildItem's Length of a stand-in is its logical size (what a real file of that size says),
    # not the few bytes the emulator keeps on disk.
    assert hook.bytes_under("D:\\Backups\\sizes") == 10 * 2**30 + 64 * 1024
    fs.write_standin("D:\\Backups\\sizes\\a\\disk.vhdx", {"kind": "vhdx"}, 40 * 2**30, fraction=0.5)
    assert hook.bytes_under("D:\\Backups\\sizes") == 20 * 2**30 + 64 * 1024  # it grows as it is written
    sent = emulator.audit.entries(cmdlet="Get-ChildItem")[-1]
    assert sorted(sent.parameters) == ["File", "LiteralPath", "Recurse"]  # the one pipeline, bound


def test_the_expected_export_size_is_what_an_export_writes_for_the_checkpoints_disks(emulator, hook):
    from airflow_hyperv.hyperv.progress import expected_export_bytes

    vm = hook.get_vm(name="sql-01")  # two dynamic disks
    made = hook.create_checkpoint(
        vm.id, "airflow-hyperv 20261129T0100Z 0123456789ab", consistency=Consistency.APPLICATION
    )
    chains = hook.disk_chains(vm.id, drives=hook.checkpoint_drives(made.checkpoint.id))
    hook.make_directory("D:\\Backups\\sized")
    hook.export_checkpoint(made.checkpoint.id, "D:\\Backups\\sized")
    disks = [f for f in hook.list_files("D:\\Backups\\sized") if "\\virtual hard disks\\" in f.path.lower()]
    assert len(disks) == 2
    assert expected_export_bytes(chains) == sum(f.length for f in disks)
